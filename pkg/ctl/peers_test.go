package ctl

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// hostMetrics is what an edged's /metrics says of its build and keys.
func hostMetrics(version, hash string, keys ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# TYPE edged_build_info gauge\nedged_build_info{config_hash=%q,draining=\"false\",version=%q} 1\n", hash, version)
	b.WriteString("# TYPE edged_worker_app_key_info gauge\n")
	for i, k := range keys {
		fmt.Fprintf(&b, "edged_worker_app_key_info{django_unsafe=\"false\",fingerprint=%q,source=\"credential\",weak=\"false\",worker=\"%d\"} 1\n", k, i+1)
	}
	return b.String()
}

func TestCheckPeers(t *testing.T) {
	peer := func(text string) string {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprint(w, text)
		}))
		t.Cleanup(srv.Close)
		return strings.TrimPrefix(srv.URL, "http://")
	}
	here := hostMetrics("abc123", "h1", "1f2", "1f2")
	tests := []struct {
		name    string
		peers   []string
		verdict string
		says    string
	}{
		{"none given", nil, verdictSkip, "no --peer given"},
		{"the same", []string{peer(hostMetrics("abc123", "h1", "1f2")), peer(here)}, verdictOK, "2 peers: the same edged (abc123)"},
		{"another build", []string{peer(hostMetrics("def456", "h1", "1f2"))}, verdictFail, "runs edged def456, this host abc123"},
		{"another config", []string{peer(hostMetrics("abc123", "h2", "1f2"))}, verdictFail, "has config h2, this host h1"},
		{"another key", []string{peer(hostMetrics("abc123", "h1", "3aa"))}, verdictFail, "app secret key differs"},
		{"unreachable", []string{"127.0.0.1:1"}, verdictFail, "peer 127.0.0.1:1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &patient{ctx: context.Background(), peers: tt.peers, after: parsed(t, time.Now(), here)}
			f := checkPeers(p)
			if f.Verdict != tt.verdict || !strings.Contains(f.Evidence, tt.says) {
				t.Errorf("peers = %s %q, want %s saying %q", f.Verdict, f.Evidence, tt.verdict, tt.says)
			}
		})
	}
}
