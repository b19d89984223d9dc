package edge

import (
	"bufio"
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
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edged/edged/pkg/config"
	"github.com/rs/zerolog"
	"golang.org/x/crypto/bcrypt"
)

// certFor writes a self-signed certificate for names into dir, as
// NAME.crt and NAME.key after its first name, and adds it to pool.
func certFor(t *testing.T, dir string, pool *x509.CertPool, names ...string) (cert, key string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: names[0]},
		DNSNames:     names,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	base := strings.TrimPrefix(names[0], "*.")
	cert, key = filepath.Join(dir, base+".crt"), filepath.Join(dir, base+".key")
	os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	c, _ := x509.ParseCertificate(der)
	pool.AddCert(c)
	return cert, key
}

// sitesFixture is an edged with two sites, shop and blog, each with its
// own fake worker that answers with the site's name.
type sitesFixture struct {
	http, https string
	pool        *x509.CertPool
	logs        *logBuffer
	shop, blog  *fakeWorker
	dir         string
}

// replyFrom answers with body, and the headers an app might set itself.
func replyFrom(body string) serveFunc {
	return func(c *fconn, req *wreq) {
		switch req.env["PATH_INFO"] {
		case "/slow":
			select {
			case <-c.done:
			case <-time.After(3 * time.Second):
			}
		case "/broken":
			c.Write([]byte("garbage"))
			return
		}
		c.respond("200 OK", []string{"Content-Type", "text/plain", "X-Frame-Options", "SAMEORIGIN",
			"Content-Security-Policy", "app's own", "X-Request-Seen", req.env["HTTP_X_REQUEST_ID"]}, []byte(body))
	}
}

func newSitesFixture(t *testing.T) *sitesFixture {
	t.Helper()
	dir := socketDir(t)
	f := &sitesFixture{pool: x509.NewCertPool(), logs: &logBuffer{}, dir: dir}
	tlsDir := t.TempDir()
	shopCert, shopKey := certFor(t, tlsDir, f.pool, "shop.example", "www.shop.example")
	blogCert, blogKey := certFor(t, tlsDir, f.pool, "blog.example")
	apiCert, apiKey := certFor(t, tlsDir, f.pool, "api.example")
	static := filepath.Join(dir, "assets")
	os.MkdirAll(static, 0o755)
	os.WriteFile(filepath.Join(static, "a.css"), []byte("body{}"), 0o644)
	errors := filepath.Join(dir, "errors")
	os.MkdirAll(errors, 0o755)
	for _, code := range []string{"502", "503", "504", "413"} {
		os.WriteFile(filepath.Join(errors, code+".html"), []byte("<h1>shop "+code+"</h1>\n"), 0o644)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte("right"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	users := filepath.Join(dir, "staff.htpasswd")
	os.WriteFile(users, []byte("alice:"+string(hash)+"\n"), 0o600)

	src := fmt.Sprintf(`
listen.http = ["127.0.0.1:0"]
listen.https = ["127.0.0.1:0"]

[limits]
queue_timeout = "300ms"

[[site]]
name = "shop"
names = ["shop.example", "www.shop.example"]
canonical = "shop.example"
https = "redirect"
errors = { 502 = "errors/502.html", 503 = "errors/503.html", 504 = "errors/504.html", 413 = "errors/413.html" }
override_headers = ["Content-Security-Policy"]
[site.headers]
Strict-Transport-Security = "max-age=63072000"
Content-Security-Policy = "default-src 'self'"
X-Frame-Options = "DENY"
[site.app]
module = "shop:app"
timeout = "1s"
[site.pool]
socket_dir = %[1]q
[site.limits]
max_body = "64k"
[[site.static]]
prefix = "/assets/"
root = "assets"
[[site.tls]]
cert = %[2]q
key = %[3]q
[[site.path]]
prefix = "/login"
rate = "1r/m"
burst = 1
[[site.path]]
prefix = "/admin/"
allow = ["10.0.0.0/8"]
[[site.path]]
prefix = "/staff/"
auth_basic = "staff"
auth_basic_user_file = "staff.htpasswd"
[[site.path]]
prefix = "/vault/"
auth_basic = "vault"
auth_basic_user_file = "staff.htpasswd"
rate = "1r/m"
burst = 1
[[site.path]]
prefix = "/upload"
max_body = "10"
[[site.path]]
prefix = "/quiet"
access_log = false

[[site]]
name = "blog"
names = ["blog.example"]
[site.app]
module = "blog:app"
[site.pool]
socket_dir = %[1]q
[[site.tls]]
cert = %[4]q
key = %[5]q

[[site]]
name = "api"
names = ["api.example"]
https = "only"
[site.app]
module = "api:app"
[site.pool]
socket_dir = %[1]q
[[site.tls]]
cert = %[6]q
key = %[7]q
`, dir, shopCert, shopKey, blogCert, blogKey, apiCert, apiKey)
	cfg, err := config.Parse("sites.toml", dir, []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	f.shop = startWorkerAt(t, filepath.Join(dir, "shop.sock"), "shop-1", replyFrom("shop"))
	f.blog = startWorkerAt(t, filepath.Join(dir, "blog.sock"), "blog-1", replyFrom("blog"))
	s, err := New(cfg, zerolog.New(f.logs))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	ls := serveAll(t, s)
	f.http, f.https = ls.HTTP[0].Addr().String(), ls.HTTPS[0].Addr().String()
	return f
}

// raw sends request (its bytes as written, "\n" made "\r\n") to addr, over
// TLS with sni when sni is set, and reads the answer.
func (f *sitesFixture) raw(t *testing.T, sni, request string) (*http.Response, string) {
	t.Helper()
	var c net.Conn
	var err error
	if sni != "" {
		c, err = tls.Dial("tcp", f.https, &tls.Config{ServerName: sni, RootCAs: f.pool, NextProtos: []string{"http/1.1"}})
	} else {
		c, err = net.Dial("tcp", f.http)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, strings.ReplaceAll(request, "\n", "\r\n")); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("%q: %v", request, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(body)
}

func TestSitesRouting(t *testing.T) {
	f := newSitesFixture(t)
	tests := []struct {
		name, sni, req string
		status         int
		body           string
	}{
		{"shop by Host over TLS", "shop.example", "GET / HTTP/1.1\nHost: shop.example\n\n", 200, "shop"},
		{"blog by Host over TLS", "blog.example", "GET / HTTP/1.1\nHost: blog.example\n\n", 200, "blog"},
		{"blog on plain HTTP", "", "GET / HTTP/1.1\nHost: blog.example:80\n\n", 200, "blog"},
		{"name case and dot", "", "GET / HTTP/1.1\nHost: BLOG.Example.\n\n", 200, "blog"},
		{"unknown name, plain", "", "GET / HTTP/1.1\nHost: other.example\n\n", 404, "Not Found\n"},
		{"unknown name, TLS", "shop.example", "GET / HTTP/1.1\nHost: other.example\n\n", 421, "Misdirected Request\n"},
		{"no Host on HTTP/1.0", "", "GET / HTTP/1.0\n\n", 404, "Not Found\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := f.raw(t, tt.sni, tt.req)
			if resp.StatusCode != tt.status || body != tt.body {
				t.Errorf("%d %q, want %d %q\nedged's log:\n%s", resp.StatusCode, body, tt.status, tt.body, f.logs.String())
			}
		})
	}
}

// The certificate a client gets is the one for the name it asks for.
func TestSitesSNI(t *testing.T) {
	f := newSitesFixture(t)
	for _, name := range []string{"shop.example", "www.shop.example", "blog.example"} {
		c, err := tls.Dial("tcp", f.https, &tls.Config{ServerName: name, RootCAs: f.pool})
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if err := c.VerifyHostname(name); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		c.Close()
	}
}

func TestSitesRedirects(t *testing.T) {
	f := newSitesFixture(t)
	_, port, _ := net.SplitHostPort(f.https)
	_, plainPort, _ := net.SplitHostPort(f.http)
	tests := []struct {
		name, sni, req string
		status         int
		location       string
	}{
		{"HTTP GET to HTTPS, query kept", "", "GET /cart?item=7&x=%20 HTTP/1.1\nHost: shop.example\n\n", 301, "https://shop.example:" + port + "/cart?item=7&x=%20"},
		{"HTTP POST to HTTPS with 308", "", "POST /cart HTTP/1.1\nHost: shop.example\nContent-Length: 0\n\n", 308, "https://shop.example:" + port + "/cart"},
		{"HTTP to HTTPS and the canonical name at once", "", "GET /a HTTP/1.1\nHost: www.shop.example:" + plainPort + "\n\n", 301, "https://shop.example:" + port + "/a"},
		{"canonical over HTTPS", "www.shop.example", "GET /a/b?c HTTP/1.1\nHost: www.shop.example:" + port + "\n\n", 301, "https://shop.example:" + port + "/a/b?c"},
		{"canonical keeps the method with 308", "www.shop.example", "PUT /a HTTP/1.1\nHost: www.shop.example\nContent-Length: 0\n\n", 308, "https://shop.example/a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, _ := f.raw(t, tt.sni, tt.req)
			if resp.StatusCode != tt.status || resp.Header.Get("Location") != tt.location {
				t.Errorf("%d Location %q, want %d %q", resp.StatusCode, resp.Header.Get("Location"), tt.status, tt.location)
			}
			if resp.Header.Get("Strict-Transport-Security") == "" {
				t.Errorf("a redirect without the site's headers: %v", resp.Header)
			}
		})
	}
	// What stays on plain HTTP.
	resp, body := f.raw(t, "", "GET /.well-known/acme-challenge/tok HTTP/1.1\nHost: shop.example\n\n")
	if resp.StatusCode != 200 || body != "shop" {
		t.Errorf("ACME challenge over HTTP: %d %q, want the site to answer it", resp.StatusCode, body)
	}
	resp, _ = f.raw(t, "", "GET /x HTTP/1.1\nHost: api.example\n\n")
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf(`https = "only" over HTTP: %d, want 403`, resp.StatusCode)
	}
	resp, _ = f.raw(t, "api.example", "GET /x HTTP/1.1\nHost: api.example\n\n")
	if resp.StatusCode == http.StatusForbidden || resp.StatusCode == 301 {
		t.Errorf(`https = "only" over HTTPS: %d, want it served`, resp.StatusCode)
	}
}

func TestSitesHeaders(t *testing.T) {
	f := newSitesFixture(t)
	tests := []struct {
		name, req string
		status    int
		want      map[string]string
	}{
		{"app answer: the app's own wins, unless overridden", "GET / HTTP/1.1\nHost: shop.example\n\n", 200,
			map[string]string{"Strict-Transport-Security": "max-age=63072000", "X-Frame-Options": "SAMEORIGIN", "Content-Security-Policy": "default-src 'self'"}},
		{"static answer", "GET /assets/a.css HTTP/1.1\nHost: shop.example\n\n", 200,
			map[string]string{"Strict-Transport-Security": "max-age=63072000", "X-Frame-Options": "DENY"}},
		{"static 404", "GET /assets/none.css HTTP/1.1\nHost: shop.example\n\n", 404,
			map[string]string{"Strict-Transport-Security": "max-age=63072000"}},
		{"edged's own error", "POST / HTTP/1.1\nHost: shop.example\nContent-Length: 70000\n\n", 413,
			map[string]string{"Strict-Transport-Security": "max-age=63072000", "X-Frame-Options": "DENY"}},
		{"another site's answer has none", "GET / HTTP/1.1\nHost: blog.example\n\n", 200,
			map[string]string{"Strict-Transport-Security": "", "Content-Security-Policy": "app's own"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sni := "shop.example"
			if strings.Contains(tt.req, "blog") {
				sni = "blog.example"
			}
			resp, _ := f.raw(t, sni, tt.req)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.status)
			}
			for k, want := range tt.want {
				if got := resp.Header.Get(k); got != want {
					t.Errorf("%s: %q, want %q", k, got, want)
				}
				if n := len(resp.Header.Values(k)); n > 1 {
					t.Errorf("%s given %d times", k, n)
				}
			}
		})
	}
}

func TestSitesPathRules(t *testing.T) {
	f := newSitesFixture(t)
	get := func(t *testing.T, req string) (*http.Response, string) {
		t.Helper()
		return f.raw(t, "shop.example", req)
	}
	t.Run("rate on one path only", func(t *testing.T) {
		if r, _ := get(t, "POST /login HTTP/1.1\nHost: shop.example\nContent-Length: 0\n\n"); r.StatusCode != 200 {
			t.Fatalf("first login: %d", r.StatusCode)
		}
		r, _ := get(t, "POST /login HTTP/1.1\nHost: shop.example\nContent-Length: 0\n\n")
		if r.StatusCode != http.StatusTooManyRequests || r.Header.Get("Retry-After") == "" {
			t.Errorf("second login: %d Retry-After %q, want 429 with Retry-After", r.StatusCode, r.Header.Get("Retry-After"))
		}
		for i := 0; i < 5; i++ {
			if r, _ := get(t, "GET /assets/a.css HTTP/1.1\nHost: shop.example\n\n"); r.StatusCode != 200 {
				t.Fatalf("static file after the login limit: %d", r.StatusCode)
			}
			if r, _ := get(t, "GET / HTTP/1.1\nHost: shop.example\n\n"); r.StatusCode != 200 {
				t.Fatalf("app page after the login limit: %d", r.StatusCode)
			}
		}
	})
	t.Run("allow", func(t *testing.T) {
		r, _ := get(t, "GET /admin/users HTTP/1.1\nHost: shop.example\n\n")
		if r.StatusCode != http.StatusForbidden {
			t.Errorf("/admin/ from 127.0.0.1: %d, want 403", r.StatusCode)
		}
	})
	t.Run("basic auth", func(t *testing.T) {
		r, _ := get(t, "GET /staff/ HTTP/1.1\nHost: shop.example\n\n")
		if r.StatusCode != http.StatusUnauthorized || !strings.Contains(r.Header.Get("WWW-Authenticate"), `Basic realm="staff"`) {
			t.Errorf("no credentials: %d %q, want 401 asking for Basic", r.StatusCode, r.Header.Get("WWW-Authenticate"))
		}
		r, _ = get(t, "GET /staff/ HTTP/1.1\nHost: shop.example\nAuthorization: Basic YWxpY2U6d3Jvbmc=\n\n") // alice:wrong
		if r.StatusCode != http.StatusUnauthorized {
			t.Errorf("wrong password: %d, want 401", r.StatusCode)
		}
		r, body := get(t, "GET /staff/ HTTP/1.1\nHost: shop.example\nAuthorization: Basic YWxpY2U6cmlnaHQ=\n\n") // alice:right
		if r.StatusCode != 200 || body != "shop" {
			t.Errorf("right password: %d %q, want 200", r.StatusCode, body)
		}
		if strings.Contains(f.logs.String(), "right") || strings.Contains(f.logs.String(), "YWxpY2U6cmlnaHQ") {
			t.Errorf("the password reached the log")
		}
	})
	t.Run("max_body on one path", func(t *testing.T) {
		r, body := get(t, "POST /upload HTTP/1.1\nHost: shop.example\nContent-Length: 11\n\nhello world")
		if r.StatusCode != http.StatusRequestEntityTooLarge || body != "<h1>shop 413</h1>\n" {
			t.Errorf("11 bytes to /upload: %d %q, want 413 with the site's page", r.StatusCode, body)
		}
		if r, _ := get(t, "POST /other HTTP/1.1\nHost: shop.example\nContent-Length: 11\n\nhello world"); r.StatusCode != 200 {
			t.Errorf("11 bytes elsewhere: %d, want 200", r.StatusCode)
		}
	})
	t.Run("access log", func(t *testing.T) {
		get(t, "GET /quiet HTTP/1.1\nHost: shop.example\n\n")
		get(t, "GET /loud HTTP/1.1\nHost: shop.example\nReferer: https://shop.example/from\nX-Request-ID: forged\n\n")
		var loud map[string]any
		for _, e := range f.logs.access(t) {
			if e["path"] == "/quiet" {
				t.Errorf("/quiet logged: %v", e)
			}
			if e["path"] == "/loud" {
				loud = e
			}
		}
		if loud == nil {
			t.Fatal("/loud not logged")
		}
		if loud["host"] != "shop.example" || loud["site"] != "shop" || loud["referer"] != "https://shop.example/from" {
			t.Errorf("entry %v: want host, site and referer", loud)
		}
		if id, _ := loud["request_id"].(string); len(id) != 32 {
			t.Errorf("request_id %q: want edged's own", id)
		}
		for _, e := range f.logs.access(t) {
			if e["path"] == "/staff/" && e["status"] == float64(200) && e["user"] != "alice" {
				t.Errorf("basic auth entry %v: want user alice", e)
			}
		}
	})
}

func TestSitesErrorPages(t *testing.T) {
	f := newSitesFixture(t)
	tests := []struct {
		name, req string
		status    int
		body      string
	}{
		{"502", "GET /broken HTTP/1.1\nHost: shop.example\n\n", 502, "<h1>shop 502</h1>\n"},
		{"504", "GET /slow HTTP/1.1\nHost: shop.example\n\n", 504, "<h1>shop 504</h1>\n"},
		{"another site keeps plain text", "GET /broken HTTP/1.1\nHost: blog.example\n\n", 502, "Bad Gateway\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sni := "shop.example"
			if strings.Contains(tt.req, "blog") {
				sni = "blog.example"
			}
			resp, body := f.raw(t, sni, tt.req)
			if resp.StatusCode != tt.status || body != tt.body {
				t.Errorf("%d %q, want %d %q", resp.StatusCode, body, tt.status, tt.body)
			}
			if tt.status == 502 && sni == "shop.example" && !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
				t.Errorf("Content-Type %q, want text/html", resp.Header.Get("Content-Type"))
			}
		})
	}
	// 503: the one worker busy for the whole queue_timeout.
	busy := make(chan struct{})
	go func() {
		defer close(busy)
		f.raw(t, "shop.example", "GET /slow HTTP/1.1\nHost: shop.example\n\n")
	}()
	time.Sleep(200 * time.Millisecond)
	resp, body := f.raw(t, "shop.example", "GET / HTTP/1.1\nHost: shop.example\n\n")
	<-busy
	if resp.StatusCode != 503 || body != "<h1>shop 503</h1>\n" {
		t.Errorf("no worker free: %d %q, want 503 with the site's page", resp.StatusCode, body)
	}
}

// The metrics say which site took each request, and a worker's name
// says its site.
func TestSitesMetrics(t *testing.T) {
	dir := socketDir(t)
	src := fmt.Sprintf(`
listen.http = ["127.0.0.1:0"]
[metrics]
listen = "127.0.0.1:9"
[[site]]
name = "shop"
names = ["shop.example"]
[site.app]
module = "shop:app"
[site.pool]
socket_dir = %q
`, dir)
	cfg, err := config.Parse("m.toml", dir, []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	startWorkerAt(t, filepath.Join(dir, "shop.sock"), "2", replyFrom("shop"))
	var logs logBuffer
	s, err := New(cfg, zerolog.New(&logs))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	for _, host := range []string{"shop.example", "other.example"} {
		r := environRequest("GET", "/", nil)
		r.Host = host
		s.ServeHTTP(httptest.NewRecorder(), r)
	}
	rec := httptest.NewRecorder()
	s.metrics.handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{
		`edged_requests_total{class="2xx",kind="app",method="GET",site="shop"} 1`,
		`edged_requests_total{class="4xx",kind="edge",method="GET",site=""} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if e := logs.access(t); len(e) != 2 || e[0]["worker"] != "shop/2" {
		t.Errorf("access log %v: want worker shop/2 (each site numbers its workers from 1)", e)
	}
}

// A path rule holds for every spelling of its paths.
func TestSitesRuleSpellings(t *testing.T) {
	f := newSitesFixture(t)
	for _, p := range []string{"/admin/users", "//admin/users", "/x/../admin/users", "/./admin/users", "/admin//users", "/%61dmin/users", "/x/..%2Fadmin/users"} {
		r, _ := f.raw(t, "shop.example", "GET "+p+" HTTP/1.1\nHost: shop.example\n\n")
		if r.StatusCode != http.StatusForbidden {
			t.Errorf("GET %s: %d, want 403 from the /admin/ rule", p, r.StatusCode)
		}
	}
}

func TestCleanPath(t *testing.T) {
	for in, want := range map[string]string{"/": "/", "/a/b": "/a/b", "/a/b/": "/a/b/", "//a": "/a", "/a/../b/": "/b/", "/..": "/", "/a/./b": "/a/b", "/a//": "/a/"} {
		if got := cleanPath(in); got != want {
			t.Errorf("cleanPath(%q) = %q, want %q", in, got, want)
		}
	}
}

// Regression tests from a review of the sites change.
func TestSitesReviewed(t *testing.T) {
	f := newSitesFixture(t)
	t.Run("an absolute-form target with no path meets the / rules", func(t *testing.T) {
		// /staff/ is behind basic auth: the same target spelt absolute.
		if r, _ := f.raw(t, "shop.example", "GET https://shop.example/staff/ HTTP/1.1\nHost: shop.example\n\n"); r.StatusCode != 401 {
			t.Errorf("absolute-form /staff/: %d, want 401", r.StatusCode)
		}
		if got := cleanPath(""); got != "/" {
			t.Errorf("cleanPath(\"\") = %q, want \"/\"", got)
		}
	})
	t.Run("HEAD meets a rule as GET does", func(t *testing.T) {
		if r, _ := f.raw(t, "shop.example", "HEAD /staff/ HTTP/1.1\nHost: shop.example\n\n"); r.StatusCode != 401 {
			t.Errorf("HEAD /staff/: %d, want 401", r.StatusCode)
		}
	})
	t.Run("the ACME path is not a way around https", func(t *testing.T) {
		r, _ := f.raw(t, "", "GET /.well-known/acme-challenge/../../staff/ HTTP/1.1\nHost: shop.example\n\n")
		if r.StatusCode != 301 {
			t.Errorf("plain HTTP by way of the ACME path: %d, want the redirect to HTTPS", r.StatusCode)
		}
	})
	t.Run("the rate holds before the password is checked", func(t *testing.T) {
		// /vault/ allows one attempt a minute: a wrong password uses it,
		// and the next attempt is refused by the rate, right password or
		// not, without a bcrypt.
		if r, _ := f.raw(t, "shop.example", "GET /vault/ HTTP/1.1\nHost: shop.example\nAuthorization: Basic YWxpY2U6d3Jvbmc=\n\n"); r.StatusCode != 401 {
			t.Errorf("a wrong password: %d, want 401", r.StatusCode)
		}
		if r, _ := f.raw(t, "shop.example", "GET /vault/ HTTP/1.1\nHost: shop.example\nAuthorization: Basic YWxpY2U6cmlnaHQ=\n\n"); r.StatusCode != 429 {
			t.Errorf("the next attempt: %d, want 429", r.StatusCode)
		}
	})
}
