package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	binDir   string
	repoRoot string
	python   string
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	root, err := filepath.Abs("../..")
	if err != nil {
		panic(err)
	}
	repoRoot = root
	python = os.Getenv("EDGED_PYTHON")
	if python == "" {
		python = "/usr/bin/python3"
	}
	dir, err := os.MkdirTemp("", "edged-e2e-bin-*")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	binDir = dir
	build := exec.Command("go", "build", "-o", dir+"/", "./cmd/...")
	build.Dir = root
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building the binaries:", err)
		return 1
	}
	return m.Run()
}

// needFlask skips when the Debian python3-flask package is missing; `make
// test` installs it, so in CI this never skips.
func needFlask(t testing.TB) {
	t.Helper()
	if err := exec.Command(python, "-c", "import flask").Run(); err != nil {
		t.Skipf("SKIPPED: %s cannot import flask (install python3-flask: `make deps`)", python)
	}
}

// execPython runs code with the Python the tests use.
func execPython(code string) error {
	return exec.Command(python, "-c", code).Run()
}

// suite is edged and its workers, run by `edgectl run` as `make run` does.
type suite struct {
	t      testing.TB
	dir    string
	cfg    string
	http   string // base URL
	https  string // base URL, when TLS is on
	cmd    *exec.Cmd
	out    *syncBuffer
	done   chan error
	certs  *x509.CertPool
	socket string
	static string   // the [[static]] root
	args   []string // edgectl run's
	env    []string // more of edgectl run's environment
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type suiteOpts struct {
	module  string // default flaskapp:app
	workers int    // default 2
	extra   string // more TOML, appended
	tls     bool
	// limits replaces the [limits] table body.
	limits string
	class  string
	// app and pool are more of the [app] and [pool] tables.
	app, pool string
	// static is the [[static]] root; default an empty directory of the
	// suite's own.
	static string
	// appDir is app.directory; default testdata/apps.
	appDir string
	// args are more arguments for edgectl run (--reload).
	args []string
	// acme, when set, is the [acme] table's body: the top-level site
	// says tls = "acme" and gets an HTTPS listener with no certificate
	// file.
	acme string
	// httpAddr and httpsAddr are the listeners' addresses; free ports
	// by default.
	httpAddr, httpsAddr string
	// listen is more of the [listen] table (proxy_protocol).
	listen string
	// env is more of edgectl run's environment (NAME=value).
	env []string
}

func freePort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startSuite writes a config, starts `edgectl run`, and waits until the app
// answers.
func startSuite(t testing.TB, o suiteOpts) *suite {
	t.Helper()
	s, err := trySuite(t, o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// trySuite is startSuite for a caller that handles the suite not coming up
// (edgectl run refusing the config, say): that is its error, with what
// edgectl printed.
func trySuite(t testing.TB, o suiteOpts) (*suite, error) {
	t.Helper()
	if o.module == "" {
		o.module = "flaskapp:app"
	}
	if strings.HasPrefix(o.module, "flaskapp") {
		needFlask(t)
	}
	if o.workers == 0 {
		o.workers = 2
	}
	if o.class == "" {
		o.class = "sync"
	}
	dir := t.TempDir()
	s := &suite{t: t, dir: dir, out: &syncBuffer{}, done: make(chan error, 1), socket: filepath.Join(dir, "workers"), env: o.env}
	httpAddr := o.httpAddr
	if httpAddr == "" {
		httpAddr = freePort(t)
	}
	s.http = "http://" + httpAddr
	var b strings.Builder
	if o.acme != "" {
		b.WriteString("tls = \"acme\"\n")
	}
	fmt.Fprintf(&b, "[listen]\nhttp = [%q]\n%s\n", httpAddr, o.listen)
	if o.tls || o.acme != "" {
		httpsAddr := o.httpsAddr
		if httpsAddr == "" {
			httpsAddr = freePort(t)
		}
		s.https = "https://" + httpsAddr
		fmt.Fprintf(&b, "https = [%q]\n", httpsAddr)
	}
	if o.acme != "" {
		fmt.Fprintf(&b, "[acme]\n%s\n", o.acme)
	}
	if o.tls {
		s.certs = x509.NewCertPool()
		for _, name := range []string{"localhost", "other.test"} {
			cert, key := writeCert(t, dir, name, s.certs)
			fmt.Fprintf(&b, "[[tls]]\ncert = %q\nkey = %q\n", cert, key)
		}
	}
	s.static = o.static
	if s.static == "" {
		s.static = filepath.Join(dir, "static")
		os.MkdirAll(s.static, 0o755)
	}
	fmt.Fprintf(&b, "[[static]]\nprefix = \"/static/\"\nroot = %q\nindex = \"index.html\"\n", s.static)
	if o.appDir == "" {
		o.appDir = filepath.Join(repoRoot, "testdata", "apps")
	}
	fmt.Fprintf(&b, "[app]\nmodule = %q\ndirectory = %q\npython = %q\n%s\n", o.module, o.appDir, python, o.app)
	fmt.Fprintf(&b, "[pool]\nclass = %q\nthreads = 4\nworkers = %d\n%s\n", o.class, o.workers, o.pool)
	if o.limits != "" {
		fmt.Fprintf(&b, "[limits]\n%s\n", o.limits)
	}
	fmt.Fprintf(&b, "[log]\nformat = \"json\"\n%s\n", o.extra)
	s.cfg = filepath.Join(dir, "edged.toml")
	if err := os.WriteFile(s.cfg, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}

	s.args = append([]string{"run", "-c", s.cfg, "--socket-dir", s.socket}, o.args...)
	s.start()
	t.Cleanup(s.stop)
	return s, s.waitReady(o.workers)
}

// start starts edgectl run on the suite's config.
func (s *suite) start() {
	s.cmd = exec.Command(filepath.Join(binDir, "edgectl"), s.args...)
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	if len(s.env) > 0 {
		s.cmd.Env = append(os.Environ(), s.env...)
	}
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	done := make(chan error, 1)
	s.done = done
	cmd := s.cmd
	go func() { done <- cmd.Wait() }()
}

// restart stops the suite and starts it again on the same config and
// state; its output goes on in s.out after a marker line.
func (s *suite) restart(workers int) {
	s.t.Helper()
	s.stop()
	fmt.Fprintf(s.out, "\n=== restart ===\n")
	s.start()
	if err := s.waitReadySince(workers, strings.LastIndex(s.out.String(), "=== restart ===")); err != nil {
		s.t.Fatal(err)
	}
}

// waitReady waits until every worker has loaded the app and edged answers.
// Its error says whether edgectl run exited first or was still not ready
// after 30s.
func (s *suite) waitReady(workers int) error { return s.waitReadySince(workers, 0) }

// waitReadySince is waitReady counting the workers' lines from offset
// from of the output on.
func (s *suite) waitReadySince(workers, from int) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-s.done:
			return fmt.Errorf("edgectl run exited early: %v\n%s", err, s.out.String())
		default:
		}
		if strings.Count(s.out.String()[from:], "app loaded, serving") >= workers {
			if resp, err := http.Get(s.http + "/static/"); err == nil {
				resp.Body.Close()
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("suite not ready after 30s:\n%s", s.out.String())
}

// stop ends edgectl run, unless it has ended already, and shows its
// output when the test failed: one that died mid-test says why there.
func (s *suite) stop() {
	if s.cmd.ProcessState == nil {
		s.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-s.done:
		case <-time.After(20 * time.Second):
			s.cmd.Process.Kill()
			s.t.Errorf("edgectl run did not stop within 20s of SIGINT")
			// Its Wait sets ProcessState, read below.
			select {
			case <-s.done:
			case <-time.After(5 * time.Second):
			}
		}
	}
	if s.t.Failed() {
		s.t.Logf("edgectl run ended (%v); its output:\n%s", s.cmd.ProcessState, tail(s.out.String(), 60))
	}
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// writeStatic puts a file under the static root.
func (s *suite) writeStatic(name string, data []byte) string {
	p := filepath.Join(s.static, name)
	os.MkdirAll(filepath.Dir(p), 0o755)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		s.t.Fatal(err)
	}
	return p
}

func (s *suite) client() *http.Client {
	return &http.Client{Timeout: 30 * time.Second}
}

// get fetches url and returns the status and body.
func get(t testing.TB, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading body: %v", url, err)
	}
	return resp.StatusCode, string(b)
}

// writeCert makes a self-signed certificate for name in dir.
func writeCert(t testing.TB, dir, name string, pool *x509.CertPool) (certFile, keyFile string) {
	t.Helper()
	return writeCertFor(t, dir, pool, []string{name})
}

// writeCertFor makes one self-signed certificate for names, saved as
// FIRST.crt and FIRST.key in dir.
func writeCertFor(t testing.TB, dir string, pool *x509.CertPool, names []string) (certFile, keyFile string) {
	t.Helper()
	name := names[0]
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: name},
		DNSNames:              names,
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(90 * 24 * time.Hour), // a Let's Encrypt life: make testssl judges edged, not the test's certificate
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	if name == "localhost" {
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	pool.AddCert(c)
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile = filepath.Join(dir, name+".crt")
	keyFile = filepath.Join(dir, name+".key")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	return certFile, keyFile
}

func (s *suite) tlsClient(serverName string) *http.Client {
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{RootCAs: s.certs, ServerName: serverName},
			ForceAttemptHTTP2: true,
		},
	}
}

// rawRequest writes req on a new TCP connection and returns what the
// server sent until it closed or 5s passed.
func rawRequest(t testing.TB, addr, req string) string {
	t.Helper()
	return rawRequestFrom(t, "", strings.TrimPrefix(addr, "http://"), req)
}

// rawRequestFrom is rawRequest from the local address from ("": any).
func rawRequestFrom(t testing.TB, from, addr, req string) string {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	if from != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(from)}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return rawExchange(c, req)
}

// rawExchange writes req on c and returns what came back until c closed
// or 5s passed; it closes c.
func rawExchange(c net.Conn, req string) string {
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, req)
	b, _ := io.ReadAll(c)
	return string(b)
}

var _ = context.Background
