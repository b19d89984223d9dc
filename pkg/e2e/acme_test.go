package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// pebble is an ACME CA on loopback: Let's Encrypt's test server, with
// pebble-challtestsrv as its DNS (every name is 127.0.0.1), validating
// on the ports given (edged's listeners).
type pebble struct {
	directory string // the ACME directory URL
	mgmt      string // the management address
	caFile    string // pebble's own HTTPS certificate: edged's acme.ca_root
	pool      *x509.CertPool
	out       *syncBuffer
}

type pebbleOpts struct {
	bin               string // pebble's binary; Debian's by default
	httpPort, tlsPort string // where validations connect
	// validity is the certificates' lifetime in seconds (a newer pebble's
	// profile; Debian's issues for five years whatever this says).
	validity int
}

func startPebble(t *testing.T, o pebbleOpts) *pebble {
	t.Helper()
	needTools(t, "pebble", "pebble-challtestsrv")
	if o.bin == "" {
		o.bin = "pebble"
	}
	if o.validity == 0 {
		o.validity = 90 * 24 * 3600
	}
	dir := t.TempDir()
	p := &pebble{out: &syncBuffer{}, pool: x509.NewCertPool()}
	p.caFile, _ = writeCert(t, dir, "localhost", p.pool)
	keyFile := filepath.Join(dir, "localhost.key")
	listen, mgmt := freePort(t), freePort(t)
	p.directory, p.mgmt = "https://"+listen+"/dir", mgmt
	conf := map[string]any{"pebble": map[string]any{
		"listenAddress": listen, "managementListenAddress": mgmt,
		"certificate": p.caFile, "privateKey": keyFile,
		"httpPort": atoi(t, o.httpPort), "tlsPort": atoi(t, o.tlsPort),
		"ocspResponderURL": "", "externalAccountBindingRequired": false,
		"profiles": map[string]any{"default": map[string]any{"description": "test", "validityPeriod": o.validity}},
	}}
	b, _ := json.Marshal(conf)
	confFile := filepath.Join(dir, "pebble.json")
	os.WriteFile(confFile, b, 0o644)

	dns := freePort(t)
	run := func(name string, env []string, args ...string) {
		cmd := exec.Command(name, args...)
		cmd.Env = append(os.Environ(), env...)
		cmd.Stdout, cmd.Stderr = p.out, p.out
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		t.Cleanup(func() {
			cmd.Process.Kill()
			cmd.Wait()
			if t.Failed() {
				t.Logf("%s's output:\n%s", name, tail(p.out.String(), 30))
			}
		})
	}
	run("pebble-challtestsrv", nil, "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "", "-dns01", dns,
		"-http01", "", "-https01", "", "-tlsalpn01", "", "-management", freePort(t))
	run(o.bin, []string{"PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0", "PEBBLE_AUTHZREUSE=0"},
		"-config", confFile, "-dnsserver", dns, "-strict")
	for end := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if _, err := p.get("/roots/0"); err == nil {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("pebble did not answer within 20s:\n%s", p.out.String())
		}
	}
	return p
}

func atoi(t *testing.T, s string) int {
	var n int
	if _, err := fmt.Sscan(s, &n); err != nil {
		t.Fatalf("port %q: %v", s, err)
	}
	return n
}

// get fetches path from pebble's management interface.
func (p *pebble) get(path string) ([]byte, error) {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.pool}}}
	resp, err := c.Get("https://" + p.mgmt + path)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("%s: %s", path, resp.Status)
	}
	return io.ReadAll(resp.Body)
}

// roots are the roots pebble issues under: new at each start of pebble.
func (p *pebble) roots(t *testing.T) (*x509.CertPool, string) {
	t.Helper()
	b, err := p.get("/roots/0")
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		t.Fatalf("pebble's /roots/0 holds no certificate:\n%s", b)
	}
	f := filepath.Join(t.TempDir(), "pebble-root.pem")
	os.WriteFile(f, b, 0o644)
	return pool, f
}

// splitPorts are the ports of two "host:port" addresses.
func splitPorts(t *testing.T, a, b string) (string, string) {
	_, pa, err1 := net.SplitHostPort(a)
	_, pb, err2 := net.SplitHostPort(b)
	if err1 != nil || err2 != nil {
		t.Fatalf("addresses %q %q", a, b)
	}
	return pa, pb
}

// acmeSuite is a suite whose top-level site gets its certificates from
// the CA at directory, for shop.test and www.shop.test.
func acmeSuite(t *testing.T, ca *pebble, httpAddr, httpsAddr, more string) (*suite, string) {
	t.Helper()
	metricsAddr := freePort(t)
	acme := fmt.Sprintf("ca = %q\nca_root = %q\nnames = [\"shop.test\", \"www.shop.test\"]\nemail = \"ops@shop.test\"\nstorage = %q\n%s",
		ca.directory, ca.caFile, t.TempDir(), more)
	s := startSuite(t, suiteOpts{module: "sample:app", workers: 1, acme: acme, httpAddr: httpAddr, httpsAddr: httpsAddr,
		extra: fmt.Sprintf("[metrics]\nlisten = %q\n", metricsAddr)})
	return s, metricsAddr
}

// served is the certificate the suite's HTTPS listener gives name, and
// whether roots verify it.
func served(t *testing.T, s *suite, name string, roots *x509.CertPool) (*x509.Certificate, error) {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", strings.TrimPrefix(s.https, "https://"),
		&tls.Config{ServerName: name, InsecureSkipVerify: true})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	leaf := c.ConnectionState().PeerCertificates[0]
	inter := x509.NewCertPool()
	for _, ic := range c.ConnectionState().PeerCertificates[1:] {
		inter.AddCert(ic)
	}
	_, err = leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: roots, Intermediates: inter})
	return leaf, err
}

// waitIssued waits until every name gets a certificate roots verify.
func waitIssued(t *testing.T, s *suite, roots *x509.CertPool, names ...string) map[string]*x509.Certificate {
	t.Helper()
	out := map[string]*x509.Certificate{}
	for _, n := range names {
		var err error
		for end := time.Now().Add(60 * time.Second); ; time.Sleep(250 * time.Millisecond) {
			var c *x509.Certificate
			if c, err = served(t, s, n, roots); err == nil {
				out[n] = c
				break
			}
			if time.Now().After(end) {
				t.Fatalf("%s: no certificate from the CA within 60s: %v\n%s", n, err, tail(s.out.String(), 40))
			}
		}
	}
	return out
}

// certificatesOf reads edged's /certificates on the admin listener.
func certificatesOf(t *testing.T, metricsAddr string) []certInfo {
	t.Helper()
	resp, err := http.Get("http://" + metricsAddr + "/certificates")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Certificates []certInfo `json:"certificates"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	return body.Certificates
}

type certInfo struct {
	Names     []string  `json:"names"`
	Source    string    `json:"source"`
	Issuer    string    `json:"issuer"`
	NotAfter  time.Time `json:"not_after"`
	RenewAt   time.Time `json:"renew_at"`
	RenewBy   string    `json:"renew_by"`
	LastError string    `json:"last_error"`
	Failures  int       `json:"failures"`
}

// TestACME: a site with two names gets its certificates from Debian's
// pebble, over HTTP-01 and, in a second run, over TLS-ALPN-01; curl
// trusts them with pebble's root; a restart serves them again without a
// new order.
func TestACME(t *testing.T) {
	for _, ch := range []string{"http-01", "tls-alpn-01"} {
		t.Run(ch, func(t *testing.T) {
			httpAddr, httpsAddr := freePort(t), freePort(t)
			hp, tp := splitPorts(t, httpAddr, httpsAddr)
			ca := startPebble(t, pebbleOpts{httpPort: hp, tlsPort: tp})
			s, metricsAddr := acmeSuite(t, ca, httpAddr, httpsAddr, fmt.Sprintf("challenges = [%q]\n", ch))
			roots, rootFile := ca.roots(t)
			got := waitIssued(t, s, roots, "shop.test", "www.shop.test")

			// As a client would see it: curl, trusting pebble's root only.
			needTools(t, "curl")
			out, err := exec.Command("curl", "-sS", "--max-time", "10", "--cacert", rootFile,
				"--resolve", "shop.test:"+tp+":127.0.0.1", "https://shop.test:"+tp+"/").CombinedOutput()
			if err != nil {
				t.Fatalf("curl --cacert pebble's root: %v\n%s", err, out)
			}
			if !strings.Contains(s.out.String(), `"challenge":"`+ch+`"`) {
				t.Errorf("no %s challenge answered in edged's log:\n%s", ch, tail(s.out.String(), 40))
			}
			for _, in := range certificatesOf(t, metricsAddr) {
				if in.Source != "acme" || !strings.Contains(in.Issuer, "Pebble") || in.RenewAt.IsZero() || in.LastError != "" {
					t.Errorf("/certificates: %+v, want an acme certificate from Pebble with its renewal time", in)
				}
			}

			// The operator's view.
			out, _ = exec.Command(filepath.Join(binDir, "edgectl"), "status", "-c", s.cfg, "--interval", "200ms").CombinedOutput()
			if !regexp.MustCompile(`(?m)^www\.shop\.test\s+acme\s+Pebble.*\s+ok$`).Match(out) {
				t.Errorf("edgectl status does not list www.shop.test's certificate:\n%s", out)
			}

			// A restart reads them from storage: the same certificates,
			// and no order.
			s.restart(1)
			again := waitIssued(t, s, roots, "shop.test", "www.shop.test")
			for n, c := range got {
				if again[n].SerialNumber.Cmp(c.SerialNumber) != 0 {
					t.Errorf("%s: a new certificate after a restart (serial %v, was %v): the stored one should serve", n, again[n].SerialNumber, c.SerialNumber)
				}
			}
			after := s.out.String()[strings.LastIndex(s.out.String(), "=== restart ==="):]
			if strings.Contains(after, "obtaining certificate") {
				t.Errorf("a new order after the restart:\n%s", tail(after, 30))
			}
		})
	}
}

// TestACMEFailure: a CA that cannot be reached, and a challenge that
// fails: edged serves a self-signed stand-in, says so loudly, retries
// with back-off, and /certificates and edgectl doctor give the CA's own
// words.
func TestACMEFailure(t *testing.T) {
	t.Run("CA unreachable", func(t *testing.T) {
		ca := &pebble{directory: "https://" + freePort(t) + "/dir"}
		ca.caFile, _ = writeCert(t, t.TempDir(), "localhost", x509.NewCertPool())
		s, metricsAddr := acmeSuite(t, ca, "", "", "")
		c, err := served(t, s, "shop.test", x509.NewCertPool())
		if err == nil || c == nil || !strings.Contains(strings.Join(c.Subject.Organization, " "), "self-signed") {
			t.Fatalf("want the self-signed stand-in, got %v (%v)", c, err)
		}
		waitLog(t, s, "serving a self-signed one")
		waitLog(t, s, "retrying_in") // the library's back-off
		waitFailure(t, metricsAddr, "connection refused")
	})
	t.Run("challenge fails", func(t *testing.T) {
		// pebble validates on a port where nothing listens.
		ca := startPebble(t, pebbleOpts{httpPort: portOf(t, freePort(t)), tlsPort: portOf(t, freePort(t))})
		s, metricsAddr := acmeSuite(t, ca, "", "", "")
		in := waitFailure(t, metricsAddr, "urn:ietf:params:acme:error:")
		// The CA's problem document reaches the operator: doctor's tls
		// check warns with it.
		out, _ := exec.Command(filepath.Join(binDir, "edgectl"), "doctor", "-c", s.cfg).CombinedOutput()
		if !strings.Contains(string(out), in.LastError[:40]) {
			t.Errorf("edgectl doctor does not give the CA's error %q:\n%s", in.LastError, out)
		}
		if _, err := served(t, s, "shop.test", x509.NewCertPool()); err == nil {
			t.Errorf("a certificate verified by no root")
		}
	})
}

func portOf(t *testing.T, addr string) string {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func waitLog(t *testing.T, s *suite, text string) {
	t.Helper()
	for end := time.Now().Add(60 * time.Second); !strings.Contains(s.out.String(), text); time.Sleep(200 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("no %q in the log within 60s:\n%s", text, tail(s.out.String(), 40))
		}
	}
}

// waitFailure waits until /certificates reports a failed order whose
// error has text.
func waitFailure(t *testing.T, metricsAddr, text string) certInfo {
	t.Helper()
	for end := time.Now().Add(60 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		for _, in := range certificatesOf(t, metricsAddr) {
			if in.Failures > 0 && strings.Contains(in.LastError, text) {
				if in.Source != "self-signed" {
					t.Errorf("%v: source %q while no order succeeded", in.Names, in.Source)
				}
				return in
			}
		}
		if time.Now().After(end) {
			t.Fatalf("/certificates reports no failure with %q within 60s: %+v", text, certificatesOf(t, metricsAddr))
		}
	}
}

// TestACMERenewal: with a newer pebble (pinned in packaging/tools) that
// issues 90-second certificates and offers ACME Renewal Information,
// edged renews them as they go, under load: every request answered,
// every handshake verified, no restart.
func TestACMERenewal(t *testing.T) {
	bin := buildTool(t, "pebble-pinned", "github.com/letsencrypt/pebble/v2/cmd/pebble")
	httpAddr, httpsAddr := freePort(t), freePort(t)
	hp, tp := splitPorts(t, httpAddr, httpsAddr)
	ca := startPebble(t, pebbleOpts{bin: bin, httpPort: hp, tlsPort: tp, validity: 90})
	s, metricsAddr := acmeSuite(t, ca, httpAddr, httpsAddr, "renew_check = \"2s\"\n")
	roots, _ := ca.roots(t)
	first := waitIssued(t, s, roots, "shop.test")["shop.test"]

	// Load: new connections (a handshake each) and kept-alive ones.
	var ok, failed atomic.Int64
	var errMu sync.Mutex
	var errs []string
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "shop.test"}, DisableKeepAlives: i%2 == 0}
			c := &http.Client{Timeout: 10 * time.Second, Transport: tr}
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := c.Get(s.https + "/")
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
				}
				if err != nil {
					failed.Add(1)
					errMu.Lock()
					errs = append(errs, err.Error())
					errMu.Unlock()
				} else {
					ok.Add(1)
				}
				time.Sleep(20 * time.Millisecond)
			}
		}()
	}
	var renewed *x509.Certificate
	for end := time.Now().Add(150 * time.Second); time.Now().Before(end); time.Sleep(time.Second) {
		c, err := served(t, s, "shop.test", roots)
		if err == nil && c.SerialNumber.Cmp(first.SerialNumber) != 0 {
			renewed = c
			break
		}
	}
	close(stop)
	wg.Wait()
	if renewed == nil {
		t.Fatalf("the certificate (ends %s) was not renewed within 150s:\n%s", first.NotAfter.Format(time.TimeOnly), tail(s.out.String(), 40))
	}
	t.Logf("renewed %s before its end; %d requests answered, %d failed", first.NotAfter.Sub(renewed.NotBefore).Round(time.Second), ok.Load(), failed.Load())
	if failed.Load() > 0 || ok.Load() == 0 {
		t.Errorf("%d requests failed during the renewal (of %d): %v", failed.Load(), ok.Load()+failed.Load(), errs[:min(len(errs), 5)])
	}
	var ari bool
	for _, in := range certificatesOf(t, metricsAddr) {
		ari = ari || in.RenewBy == "ari"
	}
	if !ari {
		t.Errorf("/certificates: no renewal time from the CA's ARI window: %+v", certificatesOf(t, metricsAddr))
	}
	b := metricsText(t, metricsAddr)
	if !strings.Contains(b, `edged_certificate_renewals_total{order="renewal",result="ok"}`) ||
		!strings.Contains(b, `edged_certificate_expiry_seconds{name="shop.test",source="acme"}`) {
		t.Errorf("the metrics do not count the renewal:\n%s", grepLines(b, "edged_certificate"))
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestACMESharedStorage: the fleet's answer to certificates is a shared
// acme.storage. Two hosts share the directory; the CA's validations reach
// only host B (as a balancer may send them anywhere). B orders shop.test;
// A, started with one more name, takes shop.test from the storage without
// an order, and orders www.shop.test, whose validation B answers from the
// storage: one issuance serves every host.
func TestACMESharedStorage(t *testing.T) {
	httpB, httpsB := freePort(t), freePort(t)
	hp, tp := splitPorts(t, httpB, httpsB)
	ca := startPebble(t, pebbleOpts{httpPort: hp, tlsPort: tp})
	roots, _ := ca.roots(t)
	storage := t.TempDir()
	host := func(httpAddr, httpsAddr string, names ...string) *suite {
		acme := fmt.Sprintf("ca = %q\nca_root = %q\nnames = [\"%s\"]\nemail = \"ops@shop.test\"\nstorage = %q\nchallenges = [\"http-01\"]\n",
			ca.directory, ca.caFile, strings.Join(names, `", "`), storage)
		return startSuite(t, suiteOpts{module: "sample:app", workers: 1, acme: acme, httpAddr: httpAddr, httpsAddr: httpsAddr,
			extra: "access = true\n"})
	}
	b := host(httpB, httpsB, "shop.test")
	gotB := waitIssued(t, b, roots, "shop.test")
	a := host(freePort(t), freePort(t), "shop.test", "www.shop.test")
	gotA := waitIssued(t, a, roots, "shop.test", "www.shop.test")

	if gotA["shop.test"].SerialNumber.Cmp(gotB["shop.test"].SerialNumber) != 0 {
		t.Errorf("A serves shop.test with serial %v, B with %v: want B's certificate, from the storage", gotA["shop.test"].SerialNumber, gotB["shop.test"].SerialNumber)
	}
	for _, line := range strings.Split(a.out.String(), "\n") {
		if strings.Contains(line, "obtaining certificate") && strings.Contains(line, `"shop.test"`) {
			t.Errorf("A ordered shop.test, which B had in the storage already:\n%s", line)
		}
	}
	answered := false
	for _, line := range strings.Split(b.out.String(), "\n") {
		if strings.Contains(line, "/.well-known/acme-challenge/") && strings.Contains(line, "www.shop.test") && strings.Contains(line, `"status":200`) {
			answered = true
			t.Logf("B answered A's validation: %s", line)
		}
	}
	if !answered {
		t.Errorf("B's log has no answered validation of www.shop.test, A's order:\n%s", tail(b.out.String(), 30))
	}

	// B, given the second name as well, serves A's certificate for it.
	if again := waitIssued(t, host(freePort(t), freePort(t), "shop.test", "www.shop.test"), roots, "www.shop.test"); again["www.shop.test"].SerialNumber.Cmp(gotA["www.shop.test"].SerialNumber) != 0 {
		t.Errorf("a third host serves www.shop.test with serial %v, want A's %v", again["www.shop.test"].SerialNumber, gotA["www.shop.test"].SerialNumber)
	}
}
