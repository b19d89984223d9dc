package config_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/edged/edged/pkg/config"
)

// TestSecretError checks that a caller finds a refused secret with
// errors.As, whatever else the file gets wrong and however the error is
// wrapped, and finds none when no secret is refused.
func TestSecretError(t *testing.T) {
	for _, tt := range []struct {
		name string
		src  string
		want *config.SecretError // nil: none
	}{
		{
			name: "by value",
			src:  "[app]\nmodule = \"shop:app\"\n[app.env]\nDATABASE_URL = \"postgres://shop:hunter2@db/shop\"\n",
			want: &config.SecretError{Key: "app.env.DATABASE_URL", Why: "holds a URL with a password in it"},
		},
		{
			name: "by name",
			src:  "secret_key = \"abc\"\n[app]\nmodule = \"shop:app\"\n",
			want: &config.SecretError{Key: "secret_key", Why: "looks like a secret by its name"},
		},
		{
			name: "after other problems",
			src:  "[app]\nmodule = \"shop:app\"\ntimeout = \"0s\"\nbogus = 1\n[app.env]\nAPI_TOKEN = \"x1\"\n",
			want: &config.SecretError{Key: "app.env.API_TOKEN", Why: "looks like a secret by its name"},
		},
		{
			name: "pasted key",
			src:  "[app]\nmodule = \"shop:app\"\n[[tls]]\ncert = \"tls/site.crt\"\nkey = \"\"\"\n-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n\"\"\"\n",
			want: &config.SecretError{Why: "holds a private key"},
		},
		{
			name: "other problems only",
			src:  "[app]\nmodule = \"shop:app\"\ntimeout = \"0s\"\n",
		},
		{
			name: "harmless",
			src:  "[app]\nmodule = \"shop:app\"\n[app.env]\nPASSWORD_MIN_LENGTH = \"12\"\n[app.credentials]\nSECRET_KEY = \"secret-key\"\n",
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			makeTree(t, dir)
			file := filepath.Join(dir, "edged.toml")
			if err := os.WriteFile(file, []byte(tt.src), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := config.Load(file)
			if tt.want == nil && err == nil {
				return
			}
			if err == nil {
				t.Fatalf("Load: no error, want one wrapping %#v", tt.want)
			}
			for how, e := range map[string]error{
				"as returned":     err,
				"wrapped":         fmt.Errorf("edgectl: %w", err),
				"joined":          errors.Join(errors.New("another"), err),
				"joined, wrapped": fmt.Errorf("check: %w", errors.Join(err, errors.New("another"))),
			} {
				var got *config.SecretError
				found := errors.As(e, &got)
				switch {
				case tt.want == nil && found:
					t.Errorf("%s: errors.As found %#v, want no SecretError in %v", how, got, e)
				case tt.want != nil && !found:
					t.Errorf("%s: errors.As found no SecretError, want %#v in %v", how, tt.want, e)
				case tt.want != nil && *got != *tt.want:
					t.Errorf("%s: errors.As found %#v, want %#v", how, got, tt.want)
				}
			}
		})
	}
}

// TestSecretErrorText checks what a SecretError says: the key and why,
// never the value.
func TestSecretErrorText(t *testing.T) {
	for _, tt := range []struct {
		in   config.SecretError
		want string
	}{
		{config.SecretError{Key: "app.env.DATABASE_URL", Why: "holds a URL with a password in it"}, "app.env.DATABASE_URL holds a URL with a password in it"},
		{config.SecretError{Why: "holds a private key"}, "a value holds a private key"},
	} {
		if got := tt.in.Error(); got != tt.want {
			t.Errorf("%#v.Error() = %q, want %q", tt.in, got, tt.want)
		}
	}
}
