package edge

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"
	"github.com/rs/zerolog"
)

// send writes b on a new connection to addr and reads one answer.
func send(t *testing.T, addr string, b []byte) (*http.Response, error) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(5 * time.Second))
	c.Write(b)
	return http.ReadResponse(bufio.NewReader(c), nil)
}

func v2To(t *testing.T, src string) []byte {
	t.Helper()
	s, _ := net.ResolveTCPAddr("tcp", src)
	h := proxyproto.HeaderProxyFromAddrs(2, s, &net.TCPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 443})
	b, err := h.Format()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// From a balancer in listen.proxy_protocol, the header's client is the
// client everywhere: REMOTE_ADDR, the per-client limits, the log.
func TestProxyProtocolTrusted(t *testing.T) {
	dir := socketDir(t)
	fw := startWorker(t, dir, "1", replyOK)
	var logs logBuffer
	s := newServerLog(t, dir, zerolog.New(&logs), "listen.proxy_protocol", `["127.0.0.0/8"]`, "limits.rate", `"1r/m"`, "limits.burst", "1")
	addr := serve(t, s)
	const req = "GET / HTTP/1.1\r\nHost: x\r\n\r\n"

	resp, err := send(t, addr, []byte("PROXY TCP4 203.0.113.7 10.0.0.1 51234 80\r\n"+req))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("v1: %v %v", resp, err)
	}
	if got := fw.requests()[0].env["REMOTE_ADDR"]; got != "203.0.113.7" {
		t.Errorf("v1: REMOTE_ADDR %q, want 203.0.113.7", got)
	}
	resp, err = send(t, addr, append(v2To(t, "[2001:db8::7]:4000"), req...))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("v2: %v %v", resp, err)
	}
	if got := fw.requests()[1].env["REMOTE_ADDR"]; got != "2001:db8::7" {
		t.Errorf("v2: REMOTE_ADDR %q, want 2001:db8::7", got)
	}
	// The rate is per real client: a second request of 203.0.113.7 is
	// over it, while another client behind the same balancer is not.
	if resp, _ := send(t, addr, []byte("PROXY TCP4 203.0.113.7 10.0.0.1 51235 80\r\n"+req)); resp == nil || resp.StatusCode != 429 {
		t.Errorf("the same client again: %v, want 429", resp)
	}
	if resp, _ := send(t, addr, []byte("PROXY TCP4 203.0.113.8 10.0.0.1 51235 80\r\n"+req)); resp == nil || resp.StatusCode != 200 {
		t.Errorf("another client: %v, want 200", resp)
	}
	if !strings.Contains(logs.String(), `"client":"203.0.113.7:51234"`) {
		t.Errorf("the access log does not name the real client:\n%s", logs.String())
	}
	// A balancer's connection with no header is refused.
	resp, err = send(t, addr, []byte(req))
	if err != nil || resp.StatusCode != 400 {
		t.Errorf("no header from the balancer: %v %v, want 400", resp, err)
	}
}

// From anyone else a PROXY header is forged: 400, a log line, and the
// request never reaches the app.
func TestProxyProtocolForged(t *testing.T) {
	dir := socketDir(t)
	fw := startWorker(t, dir, "1", replyOK)
	var logs logBuffer
	s := newServerLog(t, dir, zerolog.New(&logs), "listen.proxy_protocol", `["10.0.0.0/8"]`)
	addr := serve(t, s)
	const req = "GET / HTTP/1.1\r\nHost: x\r\n\r\n"
	for name, b := range map[string][]byte{
		"v1": []byte("PROXY TCP4 10.9.9.9 10.0.0.1 1 80\r\n" + req),
		"v2": append(v2To(t, "10.9.9.9:1"), req...),
	} {
		resp, err := send(t, addr, b)
		if err != nil || resp.StatusCode != 400 {
			t.Errorf("%s from a client: %v %v, want 400", name, resp, err)
		}
	}
	if n := len(fw.requests()); n != 0 {
		t.Errorf("the app got %d requests", n)
	}
	if strings.Count(logs.String(), "PROXY protocol header from an address not in listen.proxy_protocol") != 2 {
		t.Errorf("want a log line per forged header:\n%s", logs.String())
	}
	// A plain request from a client is served as ever.
	if resp, err := send(t, addr, []byte(req)); err != nil || resp.StatusCode != 200 {
		t.Errorf("a plain request: %v %v", resp, err)
	}
}

// Over TLS the header comes before the handshake, and static files keep
// going out.
func TestProxyProtocolTLS(t *testing.T) {
	addr, conf, fw := serveTLS(t, replyOK, "listen.proxy_protocol", `["127.0.0.1"]`)
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.Write([]byte("PROXY TCP4 198.51.100.4 10.0.0.1 7000 443\r\n"))
	c := tls.Client(raw, conf)
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("%v %v", resp, err)
	}
	if got := fw.only(t).env["REMOTE_ADDR"]; got != "198.51.100.4" {
		t.Errorf("REMOTE_ADDR %q, want 198.51.100.4", got)
	}
}
