package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const acmeSystemdConfig = `tls = "acme"

[listen]
http = ["0.0.0.0:80"]
https = ["0.0.0.0:443"]

[acme]
ca = "https://127.0.0.1:14000/dir"
ca_root = "/run/edged-test/pebble/localhost.crt"
names = ["shop.test", "www.shop.test"]
email = "ops@shop.test"

[app]
module = "sample:app"
directory = "/run/edged-test/app"
python = "/usr/bin/python3"

[log]
format = "json"
access = false

[metrics]
listen = "127.0.0.1:9180"
`

// TestSystemdACME: under the real systemd, edged (a DynamicUser) gets its
// certificates from pebble, running inside the machine, and keeps them in
// its StateDirectory, owned by its dynamic user and readable by no one
// else; a restart serves the same ones without a new order.
func TestSystemdACME(t *testing.T) {
	if testing.Short() {
		t.Skip("boots systemd")
	}
	needTools(t, "pebble", "pebble-challtestsrv")
	m := bootMachine(t)
	// StateDirectory= leaves its link in the host's /var/lib (the
	// private directory it points to is the machine's own).
	t.Cleanup(func() { m.exec("rm", "-f", "/var/lib/edged") })
	m.install(acmeSystemdConfig)

	// pebble and its DNS inside the machine's namespaces, validating on
	// ports 80 and 443.
	dir := t.TempDir()
	caFile, keyFile := writeCert(t, dir, "localhost", x509.NewCertPool())
	for _, f := range []string{caFile, keyFile} {
		b, _ := os.ReadFile(f)
		m.write(testRoot+"/pebble/"+filepath.Base(f), b, 0o644)
	}
	os.Chmod(filepath.Join(m.root, testRoot, "pebble"), 0o755)
	conf, _ := json.Marshal(map[string]any{"pebble": map[string]any{
		"listenAddress": "127.0.0.1:14000", "managementListenAddress": "127.0.0.1:15000",
		"certificate": testRoot + "/pebble/localhost.crt", "privateKey": testRoot + "/pebble/localhost.key",
		"httpPort": 80, "tlsPort": 443, "ocspResponderURL": "", "externalAccountBindingRequired": false,
	}})
	m.write(testRoot+"/pebble/pebble.json", conf, 0o644)
	// As transient units: they end with the machine.
	background := func(unit string, args ...string) {
		m.mustExec(append([]string{"systemd-run", "--unit", unit, "--setenv=PEBBLE_VA_NOSLEEP=1", "--setenv=PEBBLE_WFE_NONCEREJECT=0"}, args...)...)
	}
	pebbleLog := func() string {
		o, _ := m.exec("journalctl", "-u", "pebble", "-u", "challtestsrv", "-o", "cat", "-n", "40")
		return o
	}
	background("challtestsrv", "/usr/bin/pebble-challtestsrv", "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "", "-dns01", "127.0.0.1:8053",
		"-http01", "", "-https01", "", "-tlsalpn01", "", "-management", "127.0.0.1:8055")
	background("pebble", "/usr/bin/pebble", "-config", testRoot+"/pebble/pebble.json", "-dnsserver", "127.0.0.1:8053", "-strict")

	dial := m.dialer()
	var roots *x509.CertPool
	for end := time.Now().Add(20 * time.Second); roots == nil; time.Sleep(200 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("pebble did not answer in the machine:\n%s", pebbleLog())
		}
		pem, err := m.exec("curl", "-sSf", "--cacert", testRoot+"/pebble/localhost.crt", "https://127.0.0.1:15000/roots/0")
		if err == nil {
			roots = x509.NewCertPool()
			if !roots.AppendCertsFromPEM([]byte(pem)) {
				t.Fatalf("pebble's root: %q", pem)
			}
		}
	}

	m.mustExec("systemctl", "enable", "--now", "edged.socket", "edged-https.socket")
	if o, err := m.exec(testRoot+"/bin/edgectl", "scale", "1"); err != nil {
		t.Fatalf("edgectl scale 1: %v\n%s", err, o)
	}
	c := m.client()
	if status, _ := get(t, c, "http://127.0.0.1/"); status != 200 {
		t.Fatalf("first request: %d\n%s", status, m.journal())
	}
	serial := func(name string) (string, error) {
		raw, err := dial(context.Background(), "tcp", "127.0.0.1:443")
		if err != nil {
			return "", err
		}
		tc := tls.Client(raw, &tls.Config{ServerName: name, RootCAs: roots})
		defer tc.Close()
		tc.SetDeadline(time.Now().Add(5 * time.Second))
		if err := tc.Handshake(); err != nil {
			return "", err
		}
		return tc.ConnectionState().PeerCertificates[0].SerialNumber.String(), nil
	}
	issued := map[string]string{}
	for _, name := range []string{"shop.test", "www.shop.test"} {
		var err error
		for end := time.Now().Add(60 * time.Second); ; time.Sleep(300 * time.Millisecond) {
			if issued[name], err = serial(name); err == nil {
				break
			}
			if time.Now().After(end) {
				t.Fatalf("%s: no certificate from pebble within 60s: %v\n%s\npebble:\n%s", name, err, m.journal(), pebbleLog())
			}
		}
	}

	// The state: /var/lib/private/edged, the dynamic user's, 0700.
	pid := strings.TrimSpace(m.mustExec("systemctl", "show", "-P", "MainPID", "edged.service"))
	uid := strings.TrimSpace(m.mustExec("ps", "-o", "uid=", "-p", pid))
	st := strings.Fields(m.mustExec("stat", "-c", "%u %a", "/var/lib/private/edged", "/var/lib/private/edged/acme"))
	if len(st) != 4 || st[0] != uid || st[2] != uid || st[1] != "700" || st[3] != "700" {
		t.Errorf("state directories (uid mode, uid mode) = %v, want edged's uid %s and 700", st, uid)
	}
	if o, _ := m.exec("find", "/var/lib/private/edged/acme", "-name", "shop.test.crt"); !strings.Contains(o, "shop.test.crt") {
		t.Errorf("no certificate kept under the state directory:\n%s", m.mustExec("find", "/var/lib/private/edged"))
	}

	// A restart (the state survives it, as it does an upgrade: systemd
	// keeps a StateDirectory= until it is removed by hand).
	since := strings.TrimSpace(m.mustExec("date", "+%Y-%m-%d %H:%M:%S"))
	m.mustExec("systemctl", "restart", "edged.service")
	for name, was := range issued {
		var now string
		var err error
		for end := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
			if now, err = serial(name); err == nil || time.Now().After(end) {
				break
			}
		}
		if now != was {
			t.Errorf("%s after a restart: serial %q (%v), want the stored %q", name, now, err, was)
		}
	}
	if j, _ := m.exec("journalctl", "-u", "edged.service", "--since", since, "-o", "cat"); strings.Contains(j, "obtaining certificate") {
		t.Errorf("a new order after the restart:\n%s", tail(j, 30))
	}
}
