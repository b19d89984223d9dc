package e2e

import (
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCertReload: a certificate file renewed on disk (as certbot's
// renewal does) serves the next handshakes of a running edged, with no
// reload and no restart; a pair whose key does not match is refused with
// a log line, the current certificate serving on.
func TestCertReload(t *testing.T) {
	s := startSuite(t, suiteOpts{tls: true, workers: 1})
	addr := strings.TrimPrefix(s.https, "https://")
	serial := func() string {
		t.Helper()
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr,
			&tls.Config{ServerName: "localhost", RootCAs: s.certs})
		if err != nil {
			t.Fatalf("handshake: %v", err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	before := serial()
	// A half-done renewal: a new certificate beside a key from elsewhere.
	other := t.TempDir()
	_, strayKey := writeCert(t, other, "localhost", s.certs)
	key, _ := os.ReadFile(strayKey)
	certFile := filepath.Join(s.dir, "localhost.crt")
	keyFile := filepath.Join(s.dir, "localhost.key")
	writeCert(t, s.dir, "localhost", s.certs) // the new pair...
	newKey, _ := os.ReadFile(keyFile)
	os.WriteFile(keyFile, key, 0o600) // ...but a key that is not its own
	wait := func(what string, ok func() bool) {
		t.Helper()
		for end := time.Now().Add(15 * time.Second); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
			if ok() {
				return
			}
		}
		t.Fatalf("%s within 15s:\n%s", what, tail(s.out.String(), 10))
	}
	wait("no log line refusing the mismatched pair", func() bool {
		return strings.Contains(s.out.String(), "a certificate file changed but cannot be used")
	})
	if got := serial(); got != before {
		t.Errorf("a pair whose key is not the certificate's was put in use")
	}
	// The renewal completes: its own key.
	os.WriteFile(keyFile, newKey, 0o600)
	now := time.Now().Add(time.Minute)
	os.Chtimes(keyFile, now, now)
	os.Chtimes(certFile, now, now)
	wait("the renewed certificate is not served", func() bool { return serial() != before })
}
