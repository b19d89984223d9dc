package ctl

import (
	"strings"
	"testing"
	"time"

	"github.com/edged/edged/pkg/config"
)

func TestCheckAppKey(t *testing.T) {
	line := func(worker, source, weak, unsafe, print string) string {
		return `edged_worker_app_key_info{worker="` + worker + `",source="` + source + `",weak="` + weak +
			`",django_unsafe="` + unsafe + `",fingerprint="` + print + `"} 1` + "\n"
	}
	public := &config.Config{Listen: config.Listen{HTTP: []string{"0.0.0.0:80"}}}
	local := &config.Config{Listen: config.Listen{HTTP: []string{"127.0.0.1:8080"}}}
	for _, tt := range []struct {
		name    string
		cfg     *config.Config
		metrics string
		verdict string
		want    string
	}{
		{"nothing reported", public, "", verdictOK, "no worker reported"},
		{"a credential, the same everywhere", public, line("1", "credential", "false", "false", "0a1") + line("2", "credential", "false", "false", "0a1"), verdictOK, "credential, the same in all 2 workers"},
		{"a key per worker", public, line("1", "process", "true", "false", "0a1") + line("2", "process", "true", "false", "3f2"), verdictFail, "2 different keys among 2 workers"},
		{"one site's keys differ, the other's not", public, line("shop/1", "environment", "false", "false", "001") + line("shop/2", "environment", "false", "false", "002") +
			line("blog/1", "environment", "false", "false", "003"), verdictFail, "site shop: 2 different keys"},
		{"a literal", public, line("1", "literal", "false", "false", "0a1"), verdictWarn, "a literal in the code"},
		{"a weak key", public, line("1", "environment", "true", "false", "0a1"), verdictWarn, "under 32 bytes"},
		{"DEBUG behind a public listener", public, line("1", "environment", "false", "true", "0a1"), verdictWarn, "DEBUG = True"},
		{"DEBUG on loopback", local, line("1", "environment", "false", "true", "0a1"), verdictOK, "environment"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			text := "# TYPE edged_worker_app_key_info gauge\n" + tt.metrics
			p := &patient{cfg: tt.cfg, after: parsed(t, time.Now(), text)}
			f := checkAppKey(p)
			if f.Verdict != tt.verdict || !strings.Contains(f.Evidence, tt.want) {
				t.Errorf("checkAppKey = %+v, want %s with %q", f, tt.verdict, tt.want)
			}
		})
	}
}

func TestUniq(t *testing.T) {
	got := strings.Join(uniq([]string{"a", "b", "a", "c", "b"}), ",")
	if got != "a,b,c" {
		t.Errorf("uniq = %q, want a,b,c (a repeat apart from its first is dropped too)", got)
	}
}
