package edge

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestAccessAdvice checks what `edged --check`, run as root, tells an
// operator whose file the service user cannot read: the bits to add for
// a directory or a certificate, and never to let others read a private
// key.
func TestAccessAdvice(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("SKIPPED: the advice is given to root only (unreadable asks the kernel for anyone else); run as root")
	}
	base := t.TempDir()
	// t.TempDir's directories are 0700: open them, so that each case
	// is judged on its own files.
	for _, d := range []string{filepath.Dir(base), base} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	const (
		cert  = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
		key   = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n"
		ecKey = "-----BEGIN EC PRIVATE KEY-----\nMHcC\n-----END EC PRIVATE KEY-----\n"
	)
	for _, tt := range []struct {
		name    string
		dirMode os.FileMode // of the directory holding the file
		content string      // "" makes the path a directory of its own
		mode    os.FileMode
		want    []string // in the advice; none: the service user can read it
		never   []string // never in the advice
	}{
		{name: "static root", dirMode: 0o755, mode: 0o700, want: []string{"cannot read", "chmod o+rx ", "chgrp edged-workers ", "chmod g+rx"}},
		{name: "static root readable", dirMode: 0o755, mode: 0o755},
		{name: "certificate", dirMode: 0o755, content: cert, mode: 0o600, want: []string{"chmod o+r ", "chgrp edged-workers "}},
		{name: "key", dirMode: 0o755, content: key, mode: 0o600,
			want:  []string{"a private key must never be readable by others", "put it in /etc/edged/tls/", "LoadCredential=tls:/etc/edged/tls", "chgrp edged-workers ", "chmod g+r,o-rwx "},
			never: []string{"o+r "}},
		{name: "EC key", dirMode: 0o755, content: ecKey, mode: 0o600,
			want: []string{"/etc/edged/tls/", "chmod g+r,o-rwx "}, never: []string{"o+r "}},
		{name: "chain and key in one file", dirMode: 0o755, content: cert + key, mode: 0o640,
			want: []string{"/etc/edged/tls/", "chmod g+r,o-rwx "}, never: []string{"o+r "}},
		{name: "key in a closed directory", dirMode: 0o700, content: key, mode: 0o600,
			want: []string{"cannot enter", "chmod o+x "}, never: []string{"o+r "}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(base, strings.ReplaceAll(tt.name, " ", "-"))
			if err := os.Mkdir(dir, tt.dirMode); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, "site.pem")
			if tt.content == "" {
				if err := os.Mkdir(path, tt.mode); err != nil {
					t.Fatal(err)
				}
			} else if err := os.WriteFile(path, []byte(tt.content), tt.mode); err != nil {
				t.Fatal(err)
			}
			for _, p := range []string{dir, path} { // past the umask
				mode := tt.dirMode
				if p == path {
					mode = tt.mode
				}
				if err := os.Chmod(p, mode); err != nil {
					t.Fatal(err)
				}
			}
			got := unreadable(path)
			if len(tt.want) == 0 && got != "" {
				t.Errorf("unreadable(%s) = %q, want \"\"", tt.name, got)
			}
			if len(tt.want) > 0 && got == "" {
				t.Errorf("unreadable(%s) = \"\", want advice with %q", tt.name, tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("unreadable(%s) = %q, want it to hold %q", tt.name, got, w)
				}
			}
			for _, n := range tt.never {
				if strings.Contains(got, n) {
					t.Errorf("unreadable(%s) = %q, which advises %q", tt.name, got, n)
				}
			}
		})
	}
}
