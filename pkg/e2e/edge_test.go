package e2e

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestStatic(t *testing.T) {
	s := startSuite(t, suiteOpts{module: "sample:app", workers: 1})
	c := s.client()
	page := []byte("<!doctype html><p>hello static</p>\n")
	s.writeStatic("page.html", page)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(page)
	zw.Close()
	s.writeStatic("page.html.gz", gz.Bytes())
	os.WriteFile(filepath.Join(s.dir, "secret.txt"), []byte("TOP SECRET"), 0o644)
	os.Symlink(filepath.Join(s.dir, "secret.txt"), filepath.Join(s.dir, "static", "escape.txt"))

	resp, err := c.Get(s.http + "/static/page.html")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	etag := resp.Header.Get("ETag")
	if resp.StatusCode != 200 || !bytes.Equal(body, page) || etag == "" || resp.Header.Get("Last-Modified") == "" ||
		!strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET page.html = %d %q etag %q type %q", resp.StatusCode, body, etag, resp.Header.Get("Content-Type"))
	}

	t.Run("304", func(t *testing.T) {
		req, _ := http.NewRequest("GET", s.http+"/static/page.html", nil)
		req.Header.Set("If-None-Match", etag)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 304 {
			t.Errorf("If-None-Match = %d, want 304", resp.StatusCode)
		}
	})
	t.Run("206", func(t *testing.T) {
		req, _ := http.NewRequest("GET", s.http+"/static/page.html", nil)
		req.Header.Set("Range", "bytes=2-5")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		want := fmt.Sprintf("bytes 2-5/%d", len(page))
		if resp.StatusCode != 206 || string(b) != string(page[2:6]) || resp.Header.Get("Content-Range") != want {
			t.Errorf("Range = %d %q %q, want 206 %q %q", resp.StatusCode, b, resp.Header.Get("Content-Range"), page[2:6], want)
		}
	})
	t.Run("precompressed", func(t *testing.T) {
		req, _ := http.NewRequest("GET", s.http+"/static/page.html", nil)
		req.Header.Set("Accept-Encoding", "gzip")
		tr := &http.Transport{DisableCompression: true}
		resp, err := (&http.Client{Transport: tr}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.Header.Get("Content-Encoding") != "gzip" || !bytes.Equal(b, gz.Bytes()) || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
			t.Errorf("gzip variant: encoding %q, %d bytes, type %q", resp.Header.Get("Content-Encoding"), len(b), resp.Header.Get("Content-Type"))
		}
	})
	t.Run("traversal refused", func(t *testing.T) {
		for _, target := range []string{
			"/static/../secret.txt",
			"/static/%2e%2e/secret.txt",
			"/static/%2E%2E%2Fsecret.txt",
			"/static/..%2fsecret.txt",
			"/static/sub/../../secret.txt",
			"/static/escape.txt",
			"/static/.%2e/secret.txt",
		} {
			got := rawRequest(t, s.http, "GET "+target+" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
			if strings.Contains(got, "TOP SECRET") || strings.HasPrefix(got, "HTTP/1.1 200") {
				t.Errorf("GET %s escaped the root:\n%s", target, got)
			}
		}
	})
	t.Run("sample app page", func(t *testing.T) {
		status, body := get(t, c, s.http+"/")
		if status != 200 || !strings.Contains(body, "came from worker <b>1</b>") {
			t.Errorf("GET / = %d, want the sample page naming worker 1", status)
		}
	})
}

func TestLimits(t *testing.T) {
	s := startSuite(t, suiteOpts{workers: 1, limits: `max_body = "64k"
max_header = "4k"
header_timeout = "1s"
body_timeout = "1s"`})
	addr := strings.TrimPrefix(s.http, "http://")

	t.Run("413 by Content-Length", func(t *testing.T) {
		got := rawRequest(t, addr, "POST /slurp HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
		if !strings.HasPrefix(got, "HTTP/1.1 413") {
			t.Errorf("got %q, want 413", firstLine(got))
		}
	})
	t.Run("413 chunked", func(t *testing.T) {
		resp, err := s.client().Post(s.http+"/slurp", "application/octet-stream", io.MultiReader(bytes.NewReader(make([]byte, 200<<10))))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != 413 {
				t.Errorf("chunked 200 KiB = %d, want 413", resp.StatusCode)
			}
		}
	})
	t.Run("408 slow headers", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "GET /hello HTTP/1.1\r\nHost: x\r\n")
		c.SetDeadline(time.Now().Add(10 * time.Second))
		b, _ := io.ReadAll(c)
		if !strings.HasPrefix(string(b), "HTTP/1.1 408") {
			t.Errorf("stalled head got %q, want 408", firstLine(string(b)))
		}
	})
	t.Run("408 stalled body", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "POST /slurp HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nonly a little")
		c.SetDeadline(time.Now().Add(10 * time.Second))
		b, _ := io.ReadAll(c)
		if !strings.HasPrefix(string(b), "HTTP/1.1 408") {
			t.Errorf("stalled body got %q, want 408", firstLine(string(b)))
		}
	})
	t.Run("431", func(t *testing.T) {
		got := rawRequest(t, addr, "GET /hello HTTP/1.1\r\nHost: x\r\nX-Big: "+strings.Repeat("a", 16<<10)+"\r\n\r\n")
		if !strings.HasPrefix(got, "HTTP/1.1 431") {
			t.Errorf("got %q, want 431", firstLine(got))
		}
	})
	t.Run("idle keep-alive closes quietly", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
		c.SetDeadline(time.Now().Add(10 * time.Second))
		b, _ := io.ReadAll(c)
		if strings.Count(string(b), "HTTP/1.1 ") != 1 || strings.Contains(string(b), "408") {
			t.Errorf("idle connection got %q, want one 200 and a quiet close", string(b))
		}
	})
	t.Run("still serving", func(t *testing.T) {
		if status, _ := get(t, s.client(), s.http+"/hello"); status != 200 {
			t.Errorf("GET /hello = %d after the abuse, want 200", status)
		}
	})
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\r\n")
	return l
}

func TestHTTPS(t *testing.T) {
	s := startSuite(t, suiteOpts{workers: 1, tls: true})
	t.Run("HTTP/2", func(t *testing.T) {
		resp, err := s.tlsClient("localhost").Get(s.https + "/environ")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.ProtoMajor != 2 || resp.StatusCode != 200 {
			t.Fatalf("GET over TLS = %s %d, want HTTP/2 200", resp.Proto, resp.StatusCode)
		}
		if !strings.Contains(string(b), `"wsgi.url_scheme":"https"`) {
			t.Errorf("wsgi.url_scheme is not https behind TLS: %s", b)
		}
		if resp.TLS.Version < tls.VersionTLS12 {
			t.Errorf("TLS version %x, want 1.2 or newer", resp.TLS.Version)
		}
	})
	t.Run("HTTP/2: a 4xx ends its stream, not the connection", func(t *testing.T) {
		c := s.tlsClient("localhost")
		var conns []string
		trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) {
			conns = append(conns, i.Conn.LocalAddr().String())
		}}
		do := func(method, path string, body io.Reader) int {
			req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), method, s.https+path, body)
			resp, err := c.Do(req)
			if err != nil {
				t.Fatalf("%s %s: %v", method, path, err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.ProtoMajor != 2 {
				t.Fatalf("%s %s over %s, want HTTP/2", method, path, resp.Proto)
			}
			return resp.StatusCode
		}
		if st := do("GET", "/environ", nil); st != 200 {
			t.Fatalf("GET: %d", st)
		}
		if st := do("POST", "/echo", bytes.NewReader(make([]byte, 2<<20))); st != 413 {
			t.Errorf("a body over limits.max_body: %d, want 413", st)
		}
		// Time for a GOAWAY, were one sent, to reach the client.
		time.Sleep(200 * time.Millisecond)
		if st := do("GET", "/environ", nil); st != 200 {
			t.Errorf("GET after the 413: %d", st)
		}
		if len(conns) != 3 || conns[0] != conns[1] || conns[1] != conns[2] {
			t.Errorf("connections used: %v, want one for all three requests", conns)
		}
	})
	t.Run("SNI picks the certificate", func(t *testing.T) {
		for _, name := range []string{"localhost", "other.test"} {
			conn, err := tls.Dial("tcp", strings.TrimPrefix(s.https, "https://"), &tls.Config{RootCAs: s.certs, ServerName: name})
			if err != nil {
				t.Fatalf("TLS to %s: %v", name, err)
			}
			got := conn.ConnectionState().PeerCertificates[0].Subject.CommonName
			conn.Close()
			if got != name {
				t.Errorf("SNI %s got certificate %s", name, got)
			}
		}
	})
	t.Run("TLS 1.1 refused", func(t *testing.T) {
		conn, err := tls.Dial("tcp", strings.TrimPrefix(s.https, "https://"), &tls.Config{RootCAs: s.certs, ServerName: "localhost", MaxVersion: tls.VersionTLS11})
		if err == nil {
			conn.Close()
			t.Errorf("a TLS 1.1 handshake succeeded")
		}
	})
	// TLS 1.2 offers AEAD suites only (Mozilla's intermediate set): a
	// client that knows only CBC suites (LUCKY13's ground) is refused,
	// one with GCM or ChaCha20 is served.
	for _, tt := range []struct {
		name  string
		suite uint16
		ok    bool
	}{
		{"TLS 1.2 CBC refused", tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, false},
		{"TLS 1.2 CBC-SHA256 refused", tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256, false},
		{"TLS 1.2 GCM served", tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, true},
		{"TLS 1.2 ChaCha20 served", tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := tls.Dial("tcp", strings.TrimPrefix(s.https, "https://"), &tls.Config{
				RootCAs: s.certs, ServerName: "localhost", MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tt.suite}})
			if err == nil {
				conn.Close()
			}
			if (err == nil) != tt.ok {
				t.Errorf("handshake with only %s: error %v, want success %v", tls.CipherSuiteName(tt.suite), err, tt.ok)
			}
		})
	}
}

// TestKeepAliveOutlivesSendTimeout: an app answer bounds its writes by
// limits.send_timeout; the next answer on the same connection, after an
// idle pause longer than that, must not inherit the passed deadline.
func TestKeepAliveOutlivesSendTimeout(t *testing.T) {
	s := startSuite(t, suiteOpts{workers: 1, limits: `send_timeout = "1s"
idle_timeout = "30s"`})
	s.writeStatic("page.txt", bytes.Repeat([]byte("x"), 4096))
	var conns []string
	trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) {
		conns = append(conns, i.Conn.LocalAddr().String())
	}}
	c := s.client()
	for i, path := range []string{"/environ", "/static/page.txt", "/static/nothing-here", "/environ"} {
		if i > 0 {
			time.Sleep(1500 * time.Millisecond)
		}
		req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET", s.http+path, nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("GET %s after %d answers: %v", path, i, err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode >= 500 {
			t.Fatalf("GET %s after %d answers: %d, %d bytes, %v", path, i, resp.StatusCode, len(b), err)
		}
	}
	for _, c := range conns[1:] {
		if c != conns[0] {
			t.Errorf("connections used: %v, want one for every request", conns)
			break
		}
	}
}

// TestClientsGoneFromTheQueue: requests whose clients gave up while they
// waited for a worker are dropped from edged at once, not at
// queue_timeout: edged's stop (and its goroutines) do not wait on them.
func TestClientsGoneFromTheQueue(t *testing.T) {
	s := startSuite(t, suiteOpts{module: "sample:app", workers: 1})
	impatient := &http.Client{Timeout: 300 * time.Millisecond}
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if resp, err := impatient.Get(s.http + "/sleep?1"); err == nil {
				resp.Body.Close()
			}
		}()
	}
	wg.Wait()
	time.Sleep(time.Second) // past a look at the queue
	start := time.Now()
	s.stop()
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("edgectl run took %v to stop with 20 abandoned requests queued, want a few seconds at most (queue_timeout is 30s)", took)
	}
}
