package config_test

import (
	"strings"
	"testing"

	"github.com/edged/edged/pkg/config"
)

// TestMetricsListen checks that metrics.listen takes only addresses that
// keep the metrics off the internet: loopback, private and link-local
// ones, "localhost" and Unix sockets.
func TestMetricsListen(t *testing.T) {
	for _, tt := range []struct {
		listen string
		want   string // in the error; "" when accepted
	}{
		{"127.0.0.1:9180", ""},
		{"127.0.0.53:9180", ""},
		{"[::1]:9180", ""},
		{"localhost:9180", ""},
		{"[::ffff:127.0.0.1]:9180", ""},
		{"10.1.2.3:9180", ""},
		{"172.16.0.9:9180", ""},
		{"192.168.1.20:9180", ""},
		{"[fd12:3456::1]:9180", ""},
		{"169.254.10.1:9180", ""},
		{"[fe80::1%eth0]:9180", ""},
		{"/run/edged/metrics.sock", ""},
		{"0.0.0.0:9180", `"0.0.0.0:9180": a wildcard address serves metrics on every interface, public ones included: use "127.0.0.1:9180", a private address of this host, or a Unix socket path`},
		{"[::]:9180", "a wildcard address"},
		{"[::ffff:0.0.0.0]:9180", "a wildcard address"},
		{":9180", "a wildcard address"},
		{"8.8.8.8:9180", "8.8.8.8 is a public address"},
		{"[2001:db8::1]:9180", "2001:db8::1 is a public address"},
		{"[::ffff:8.8.8.8]:9180", "8.8.8.8 is a public address"},
		{"metrics.example.com:9180", "a host name may resolve to any address"},
		{"224.0.0.1:9180", "is not a loopback, private or link-local address"},
		{"127.0.0.1:x", `bad port "x"`},
	} {
		t.Run(tt.listen, func(t *testing.T) {
			src := "[app]\nmodule = \"shop:app\"\n[metrics]\nlisten = \"" + tt.listen + "\"\n"
			_, err := config.Parse("edged.toml", t.TempDir(), []byte(src))
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("metrics.listen = %q: got error %v, want none", tt.listen, err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), "metrics.listen: ") || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("metrics.listen = %q: got error %v, want one naming metrics.listen with %q", tt.listen, err, tt.want)
			}
		})
	}
}
