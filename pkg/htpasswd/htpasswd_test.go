package htpasswd

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

func hash(t testing.TB, pw string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

func TestCheck(t *testing.T) {
	src := "# staff\nalice:" + hash(t, "s3cret") + "\n\nbob:" + strings.Replace(hash(t, "hunter2"), "$2a$", "$2y$", 1) + "\r\n"
	f, err := Parse(strings.NewReader(src))
	if err != nil {
		t.Fatal(err)
	}
	if f.Users() != 2 {
		t.Errorf("Users() = %d, want 2", f.Users())
	}
	tests := []struct {
		user, pw string
		want     bool
	}{
		{"alice", "s3cret", true},
		{"alice", "s3cret", true}, // remembered
		{"alice", "S3cret", false},
		{"alice", "", false},
		{"bob", "hunter2", true},
		{"bob", "s3cret", false},
		{"carol", "s3cret", false},
		{"", "", false},
		{"edged: no such user", "edged: no such user", false},
	}
	for _, tt := range tests {
		if got := f.Check(tt.user, tt.pw); got != tt.want {
			t.Errorf("Check(%q, %q) = %v, want %v", tt.user, tt.pw, got, tt.want)
		}
	}
}

func TestParseRefuses(t *testing.T) {
	good := hash(t, "pw")
	tests := []struct{ name, src, want string }{
		{"empty", "# nobody\n", "no users"},
		{"no colon", "alice\n", "line 1: not \"user:hash\""},
		{"md5", "alice:$apr1$x$y\n", "line 1: user \"alice\" has an MD5 hash"},
		{"sha1", "bob:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n", "SHA-1"},
		{"plain", "alice:password\n", "plain-text"},
		{"des", "alice:rl0uE1pTBR0iw\n", "DES"},
		{"twice", "alice:" + good + "\nalice:" + good + "\n", "line 2: user \"alice\" is given twice"},
		{"broken bcrypt", "alice:$2y$10$short\n", "not a bcrypt hash"},
		{"space", "al ice:" + good + "\n", "space"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(strings.NewReader(tt.src))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Parse = %v, want an error with %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "$2") || strings.Contains(err.Error(), "password\n") {
				t.Errorf("the error shows a hash: %v", err)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	p := filepath.Join(t.TempDir(), "users")
	if err := os.WriteFile(p, []byte("alice:"+hash(t, "pw")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := Load(p)
	if err != nil || !f.Check("alice", "pw") {
		t.Fatalf("Load: %v", err)
	}
	if _, err := Load(p + ".missing"); err == nil {
		t.Error("Load of a missing file: no error")
	}
}

func FuzzParse(f *testing.F) {
	f.Add("alice:$2y$04$abcdefghijklmnopqrstuu5Hq8gYbcRkKM1y1CJSE4oXaG3Eo5W.K\n")
	f.Add("# c\n\nbob:{SHA}x\n")
	f.Add("a:b:c\r\n")
	f.Fuzz(func(t *testing.T, src string) {
		hf, err := Parse(strings.NewReader(src))
		if err != nil {
			return
		}
		if hf.Users() == 0 {
			t.Fatal("parsed with no users")
		}
	})
}

// A hash too costly for every stranger's attempt to pay is refused.
func TestParseRefusesCost(t *testing.T) {
	h, err := bcrypt.GenerateFromPassword([]byte("pw"), MaxCost+1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Parse(strings.NewReader("alice:" + string(h) + "\n")); err == nil || !strings.Contains(err.Error(), "bcrypt cost 13") {
		t.Errorf("Parse = %v, want the cost refused", err)
	}
}
