package edge

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edged/edged/pkg/config"
	"github.com/rs/zerolog"
)

// testCert writes a self-signed certificate for localhost into dir and
// returns its files and a pool that trusts it.
func testCert(t *testing.T, dir string) (cert, key string, pool *x509.CertPool) {
	t.Helper()
	pool = x509.NewCertPool()
	cert, key = certFor(t, dir, pool, "localhost")
	return cert, key, pool
}

// serveTLS serves s (built with kv) over HTTPS in front of a worker
// answering with fn; it returns the HTTPS address, a client config that
// trusts it, and the worker.
func serveTLS(t *testing.T, fn serveFunc, kv ...string) (string, *tls.Config, *fakeWorker) {
	t.Helper()
	dir := socketDir(t)
	fw := startWorker(t, dir, "1", fn)
	cert, key, pool := testCert(t, t.TempDir())
	kv = append(kv, "listen.https", `["127.0.0.1:0"]`,
		"tls", fmt.Sprintf("[{cert = %q, key = %q}]", cert, key))
	ls := serveAll(t, newServer(t, dir, kv...))
	return ls.HTTPS[0].Addr().String(), &tls.Config{RootCAs: pool, ServerName: "localhost"}, fw
}

// dialTLS opens an HTTPS connection that speaks proto ("http/1.1", "h2").
func dialTLS(t *testing.T, addr string, conf *tls.Config, proto string) *tls.Conn {
	t.Helper()
	conf = conf.Clone()
	conf.NextProtos = []string{proto}
	c, err := tls.Dial("tcp", addr, conf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// HTTP/1.1 over TLS gets what plain HTTP/1.1 gets: the 408 on a stalled
// head and the raw head checks.
func TestHTTPSLikeHTTP(t *testing.T) {
	tests := []struct {
		name, send, want string
		reqs             int
	}{
		{"stalled head", "GET / HTTP/1.1\r\nHost: exa", response408, 0},
		{"stalled request line", "GE", response408, 0},
		{"Content-Length and Transfer-Encoding",
			"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "HTTP/1.1 400 ", 0},
		{"obs-fold", "GET / HTTP/1.1\r\nHost: x\r\nX-Long: one\r\n two\r\n\r\n", "HTTP/1.1 400 ", 0},
		{"a head over limits.max_header", "GET / HTTP/1.1\r\nHost: x\r\nX-Pad: " + strings.Repeat("a", 1100) + "\r\n\r\n", "HTTP/1.1 431 ", 0},
		{"a good request", "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "HTTP/1.1 200 ", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, conf, fw := serveTLS(t, replyOK,
				"limits.header_timeout", `"300ms"`, "limits.max_header", `"1k"`)
			c := dialTLS(t, addr, conf, "http/1.1")
			if _, err := io.WriteString(c, tt.send); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			b, _ := io.ReadAll(c)
			got := string(b)
			if tt.want == response408 && got != tt.want || !strings.HasPrefix(got, tt.want) {
				t.Fatalf("got %.120q, want %q", got, tt.want)
			}
			if took := time.Since(start); took > 3*time.Second {
				t.Errorf("closed after %v", took)
			}
			if n := len(fw.requests()); n != tt.reqs {
				t.Errorf("the app saw %d requests, want %d", n, tt.reqs)
			}
		})
	}
}

// Both protocols over TLS reach the app as HTTPS.
func TestHTTPSProtocols(t *testing.T) {
	addr, conf, fw := serveTLS(t, replyOK)
	for _, proto := range []string{"http/1.1", "h2"} {
		tr := &http.Transport{TLSClientConfig: conf.Clone(), ForceAttemptHTTP2: proto == "h2"}
		if proto == "http/1.1" {
			tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
		}
		resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get("https://" + addr + "/x")
		if err != nil {
			t.Fatalf("%s: %v", proto, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		tr.CloseIdleConnections()
		if want := map[string]int{"http/1.1": 1, "h2": 2}[proto]; resp.StatusCode != 200 || resp.ProtoMajor != want {
			t.Errorf("%s: %s %d, want HTTP/%d 200", proto, resp.Proto, resp.StatusCode, want)
		}
	}
	reqs := fw.requests()
	if len(reqs) != 2 {
		t.Fatalf("the app saw %d requests, want 2", len(reqs))
	}
	for _, r := range reqs {
		if r.env["wsgi.url_scheme"] != "https" {
			t.Errorf("%s: wsgi.url_scheme %q, want https", r.env["SERVER_PROTOCOL"], r.env["wsgi.url_scheme"])
		}
	}
}

// A handshake that stalls is ended after limits.header_timeout.
func TestHTTPSStalledHandshake(t *testing.T) {
	addr, _, _ := serveTLS(t, replyOK, "limits.header_timeout", `"300ms"`)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte{0x16, 0x03, 0x01}) // the start of a ClientHello
	start := time.Now()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	io.ReadAll(bufio.NewReader(c))
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("a stalled handshake held the connection %v, want about 300ms", took)
	}
}

// flakyListener fails its first Accept as a process out of file
// descriptors does.
type flakyListener struct {
	net.Listener
	failed bool
}

func (l *flakyListener) Accept() (net.Conn, error) {
	if !l.failed {
		l.failed = true
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: syscall.EMFILE}
	}
	return l.Listener.Accept()
}

// Regression: one failed accept (EMFILE) closed the HTTPS listener for
// good, and silently.
func TestTLSListenerOutlivesAcceptErrors(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cert, key, pool := testCert(t, t.TempDir())
	kp, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	tl := newPipeline(&flakyListener{Listener: raw}, &tls.Config{Certificates: []tls.Certificate{kp}, NextProtos: []string{"http/1.1"}},
		func() *config.Config {
			return &config.Config{Limits: config.Limits{HeaderTimeout: config.Duration(time.Second), MaxHeader: 8192}}
		}, zerolog.Nop(), nil)
	defer tl.close()
	go func() {
		c, err := tls.Dial("tcp", raw.Addr().String(), &tls.Config{RootCAs: pool, ServerName: "localhost"})
		if err == nil {
			c.Close()
		}
	}()
	accepted := make(chan error, 1)
	go func() {
		c, err := tl.HTTP1().Accept()
		if c != nil {
			c.Close()
		}
		accepted <- err
	}()
	select {
	case err := <-accepted:
		if err != nil {
			t.Errorf("Accept after a failed accept: %v, want a connection", err)
		}
	case <-time.After(5 * time.Second):
		t.Errorf("no connection after a failed accept")
	}
}
