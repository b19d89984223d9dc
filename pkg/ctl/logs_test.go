package ctl

import (
	"slices"
	"strings"
	"testing"
)

func TestJournalctlArgs(t *testing.T) {
	units := "-u edged.service -u edged.socket -u edged-https.socket -u workerd@* -u workerd.socket -u workerd-*"
	for _, tt := range []struct {
		name string
		o    logsOpts
		want string
	}{
		{"everything", logsOpts{}, units},
		{"errors, followed", logsOpts{errors: true, follow: true}, "-f -p err " + units},
		{"a site", logsOpts{site: "shop", lines: 50, linesSet: true}, "-n 50 SITE=shop"},
		{"a request", logsOpts{request: "5f1c2a", output: "verbose"}, "-o verbose REQUEST_ID=5f1c2a"},
		{"a site's errors since", logsOpts{site: "blog", errors: true, since: "10 min ago"}, "--since|10 min ago|-p|err|SITE=blog"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := journalctlArgs(tt.o)
			if err != nil {
				t.Fatal(err)
			}
			sep := " "
			if strings.Contains(tt.want, "|") {
				sep = "|"
			}
			if want := strings.Split(tt.want, sep); !slices.Equal(got, want) {
				t.Errorf("journalctlArgs(%+v) = %q, want %q", tt.o, got, want)
			}
		})
	}
	if _, err := journalctlArgs(logsOpts{request: "a\nb"}); err == nil {
		t.Error("a request id with a newline was taken")
	}
}
