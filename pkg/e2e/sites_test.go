package e2e

import (
	"bufio"
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
	"syscall"
	"testing"
	"time"
)

// sitesSuite is edgectl run serving testdata/sites.toml, the README's
// example of two sites, on free ports of loopback.
type sitesSuite struct {
	*suite
	httpAddr, httpsAddr string
}

// startSites copies the example config into a directory of its own,
// with loopback listeners, certificates made for the sites' names, and
// the credential the blog reads, and runs it.
func startSites(t *testing.T) *sitesSuite {
	t.Helper()
	needFlask(t)
	if err := exec.Command(python, "-c", "import django").Run(); err != nil {
		t.Skipf("SKIPPED: %s cannot import django (install python3-django: `make deps`)", python)
	}
	src, err := os.ReadFile(filepath.Join(repoRoot, "testdata", "sites.toml"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, name := range []string{"apps", "static", "errors", "drafts.htpasswd"} {
		if err := os.Symlink(filepath.Join(repoRoot, "testdata", name), filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	s := &sitesSuite{suite: &suite{t: t, dir: dir, out: &syncBuffer{}, done: make(chan error, 1), socket: filepath.Join(dir, "workers"), certs: x509.NewCertPool()}}
	os.MkdirAll(filepath.Join(dir, "tls"), 0o755)
	writeCertNames(t, filepath.Join(dir, "tls"), s.certs, "shop.example", "www.shop.example")
	writeCertNames(t, filepath.Join(dir, "tls"), s.certs, "blog.example")
	creds := filepath.Join(dir, "credentials")
	os.MkdirAll(creds, 0o700)
	os.WriteFile(filepath.Join(creds, "blog-secret-key"), []byte("a-test-only-key-for-the-blog\n"), 0o600)

	s.httpAddr, s.httpsAddr = freePort(t), freePort(t)
	s.http, s.https = "http://"+s.httpAddr, "https://"+s.httpsAddr
	cfg := strings.Replace(string(src), `http = ["0.0.0.0:80"]`, fmt.Sprintf("http = [%q]", s.httpAddr), 1)
	cfg = strings.Replace(cfg, `https = ["0.0.0.0:443"]`, fmt.Sprintf("https = [%q]", s.httpsAddr), 1)
	cfg = strings.ReplaceAll(cfg, "directory = \"apps\"\n", fmt.Sprintf("directory = \"apps\"\npython = %q\n", python))
	cfg += "\n[log]\nformat = \"json\"\n"
	s.cfg = filepath.Join(dir, "edged.toml")
	os.WriteFile(s.cfg, []byte(cfg), 0o644)

	s.cmd = exec.Command(filepath.Join(binDir, "edgectl"), "run", "-c", s.cfg, "--socket-dir", s.socket)
	s.cmd.Env = append(os.Environ(), "CREDENTIALS_DIRECTORY="+creds)
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.done <- s.cmd.Wait() }()
	t.Cleanup(s.stop)
	deadline := time.Now().Add(60 * time.Second)
	for strings.Count(s.out.String(), "app loaded, serving") < 5 {
		select {
		case err := <-s.done:
			t.Fatalf("edgectl run exited early: %v\n%s", err, s.out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the two sites' 5 workers not ready after 60s:\n%s", s.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return s
}

// writeCertNames makes one self-signed certificate for names, saved as
// FIRST.crt and FIRST.key in dir.
func writeCertNames(t *testing.T, dir string, pool *x509.CertPool, names ...string) {
	t.Helper()
	writeCertFor(t, dir, pool, names)
}

// do sends a raw request, over TLS with sni when sni is set, and reads
// the answer.
func (s *sitesSuite) do(t *testing.T, sni, req string) (*http.Response, string) {
	t.Helper()
	var c net.Conn
	var err error
	if sni != "" {
		c, err = tls.Dial("tcp", s.httpsAddr, &tls.Config{ServerName: sni, RootCAs: s.certs, NextProtos: []string{"http/1.1"}})
	} else {
		c, err = net.Dial("tcp", s.httpAddr)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(c, strings.ReplaceAll(req, "\n", "\r\n")); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("%q: %v", req, err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

// TestSites serves the README's example, a Flask factory app and a
// Django project, from one edged on one HTTP and one HTTPS listener, by
// Host and by SNI, each from its own pool, and tries every rule it sets
// with raw requests.
func TestSites(t *testing.T) {
	s := startSites(t)
	_, httpsPort, _ := net.SplitHostPort(s.httpsAddr)

	t.Run("by Host and SNI, each its own pool", func(t *testing.T) {
		pids := map[string]map[float64]bool{"shop": {}, "blog": {}}
		for i := 0; i < 12; i++ {
			resp, body := s.do(t, "shop.example", "GET /whoami HTTP/1.1\nHost: shop.example\n\n")
			var shop map[string]any
			if resp.StatusCode != 200 || json.Unmarshal([]byte(body), &shop) != nil || shop["site"] != "shop" || shop["scheme"] != "https" {
				t.Fatalf("shop: %d %s", resp.StatusCode, body)
			}
			pids["shop"][shop["pid"].(float64)] = true
			resp, body = s.do(t, "blog.example", "GET / HTTP/1.1\nHost: blog.example\n\n")
			var blog map[string]any
			if resp.StatusCode != 200 || json.Unmarshal([]byte(body), &blog) != nil || blog["site"] != "blog" || blog["secure"] != true {
				t.Fatalf("blog: %d %s", resp.StatusCode, body)
			}
			if id, _ := blog["request_id"].(string); len(id) != 32 {
				t.Errorf("the blog got request id %q, want edged's", id)
			}
			pids["blog"][blog["pid"].(float64)] = true
		}
		for pid := range pids["shop"] {
			if pids["blog"][pid] {
				t.Errorf("process %v answered for both sites", pid)
			}
		}
	})

	t.Run("HTTP to HTTPS", func(t *testing.T) {
		resp, _ := s.do(t, "", "GET /whoami?a=1&b=%20 HTTP/1.1\nHost: shop.example\n\n")
		if want := "https://shop.example:" + httpsPort + "/whoami?a=1&b=%20"; resp.StatusCode != 301 || resp.Header.Get("Location") != want {
			t.Errorf("GET: %d %q, want 301 %q", resp.StatusCode, resp.Header.Get("Location"), want)
		}
		resp, _ = s.do(t, "", "POST /login?next=/ HTTP/1.1\nHost: blog.example\nContent-Length: 3\n\na=b")
		if want := "https://blog.example:" + httpsPort + "/login?next=/"; resp.StatusCode != 308 || resp.Header.Get("Location") != want {
			t.Errorf("POST: %d %q, want 308 %q", resp.StatusCode, resp.Header.Get("Location"), want)
		}
	})

	t.Run("canonical name", func(t *testing.T) {
		resp, _ := s.do(t, "www.shop.example", "GET /a?b HTTP/1.1\nHost: www.shop.example\n\n")
		if want := "https://shop.example/a?b"; resp.StatusCode != 301 || resp.Header.Get("Location") != want {
			t.Errorf("%d %q, want 301 %q", resp.StatusCode, resp.Header.Get("Location"), want)
		}
	})

	t.Run("site headers on app, static and error answers", func(t *testing.T) {
		for _, req := range []string{
			"GET /whoami HTTP/1.1\nHost: shop.example\n\n",
			"GET /static/hello.txt HTTP/1.1\nHost: shop.example\n\n",
			"POST / HTTP/1.1\nHost: shop.example\nContent-Length: 2000000\n\n",
		} {
			resp, _ := s.do(t, "shop.example", req)
			if resp.Header.Get("Strict-Transport-Security") != "max-age=63072000; includeSubDomains" || resp.Header.Get("X-Frame-Options") != "DENY" {
				t.Errorf("%q: %d without the site's headers: %v", strings.SplitN(req, "\n", 2)[0], resp.StatusCode, resp.Header)
			}
		}
		if resp, _ := s.do(t, "blog.example", "GET / HTTP/1.1\nHost: blog.example\n\n"); resp.Header.Get("Strict-Transport-Security") != "" {
			t.Errorf("the blog got the shop's headers: %v", resp.Header)
		}
	})

	t.Run("rate on /login only", func(t *testing.T) {
		codes := []int{}
		for i := 0; i < 7; i++ {
			resp, _ := s.do(t, "shop.example", "POST /login HTTP/1.1\nHost: shop.example\nContent-Length: 0\n\n")
			codes = append(codes, resp.StatusCode)
		}
		if codes[0] != 200 || codes[6] != 429 {
			t.Errorf("7 logins: %v, want the first through and the last 429", codes)
		}
		for i := 0; i < 10; i++ {
			if resp, _ := s.do(t, "shop.example", "GET /static/hello.txt HTTP/1.1\nHost: shop.example\n\n"); resp.StatusCode != 200 {
				t.Fatalf("a static file after /login's limit: %d", resp.StatusCode)
			}
		}
	})

	t.Run("allow", func(t *testing.T) {
		if resp, _ := s.do(t, "shop.example", "GET /admin/ HTTP/1.1\nHost: shop.example\n\n"); resp.StatusCode != 403 {
			t.Errorf("/admin/ from loopback: %d, want 403", resp.StatusCode)
		}
	})

	t.Run("basic auth", func(t *testing.T) {
		resp, _ := s.do(t, "blog.example", "GET /drafts/one HTTP/1.1\nHost: blog.example\n\n")
		if resp.StatusCode != 401 || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), `Basic realm="drafts"`) {
			t.Errorf("no credentials: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
		}
		if resp, _ := s.do(t, "blog.example", "GET /drafts/one HTTP/1.1\nHost: blog.example\nAuthorization: Basic ZWRpdG9yOnByZXZpZXc=x\n\n"); resp.StatusCode != 401 {
			t.Errorf("a broken header: %d, want 401", resp.StatusCode)
		}
		if resp, _ := s.do(t, "blog.example", "GET /drafts/one HTTP/1.1\nHost: blog.example\nAuthorization: Basic ZWRpdG9yOndyb25n\n\n"); resp.StatusCode != 401 {
			t.Errorf("editor:wrong: %d, want 401", resp.StatusCode)
		}
		resp, body := s.do(t, "blog.example", "GET /drafts/one HTTP/1.1\nHost: blog.example\nAuthorization: Basic ZWRpdG9yOnByZXZpZXc=\n\n")
		if resp.StatusCode != 200 || !strings.Contains(body, `"draft": "one"`) {
			t.Errorf("editor:preview: %d %s, want the draft", resp.StatusCode, body)
		}
	})

	t.Run("max_body per path", func(t *testing.T) {
		body := strings.Repeat("x", 2<<20)
		if resp, _ := s.do(t, "shop.example", "POST /whoami HTTP/1.1\nHost: shop.example\nContent-Length: 2097152\n\n"+body); resp.StatusCode != 413 {
			t.Errorf("2 MiB to /whoami: %d, want 413", resp.StatusCode)
		}
		resp, got := s.do(t, "shop.example", "POST /uploads HTTP/1.1\nHost: shop.example\nContent-Length: 2097152\n\n"+body)
		if resp.StatusCode != 200 || !strings.Contains(got, `"size":2097152`) {
			t.Errorf("2 MiB to /uploads: %d %s, want it through", resp.StatusCode, got)
		}
	})

	t.Run("unknown names", func(t *testing.T) {
		if resp, _ := s.do(t, "", "GET / HTTP/1.1\nHost: other.example\n\n"); resp.StatusCode != 404 {
			t.Errorf("plain HTTP: %d, want 404", resp.StatusCode)
		}
		if resp, _ := s.do(t, "shop.example", "GET / HTTP/1.1\nHost: other.example\n\n"); resp.StatusCode != 421 {
			t.Errorf("HTTPS: %d, want 421", resp.StatusCode)
		}
	})

	t.Run("access log", func(t *testing.T) {
		seen := map[string]bool{}
		for _, line := range strings.Split(s.out.String(), "\n") {
			var e map[string]any
			if json.Unmarshal([]byte(line), &e) != nil || e["log"] != "access" {
				continue
			}
			if site, _ := e["site"].(string); site != "" && e["host"] != nil && e["request_id"] != nil {
				seen[site] = true
			}
		}
		if !seen["shop"] || !seen["blog"] {
			t.Errorf("access entries with site, host and request_id for %v, want shop and blog", seen)
		}
	})
}

// The README shows the example config as it is in testdata, so what it
// shows is what the test serves.
func TestSitesExampleInReadme(t *testing.T) {
	src, err := os.ReadFile(filepath.Join(repoRoot, "testdata", "sites.toml"))
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join(repoRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	body := regexp.MustCompile(`(?m)^# .*\n(# .*\n)*\n`).ReplaceAllString(string(src), "")
	if !strings.Contains(string(readme), body) {
		t.Errorf("README.md does not show testdata/sites.toml (from its [listen] on) as it is")
	}
}
