package edge

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// environRequest is a request as a client at 203.0.113.5 sends it to an
// edge listening on port 8080.
func environRequest(method, target string, body io.Reader) *http.Request {
	r := httptest.NewRequest(method, target, body)
	r.RemoteAddr = "203.0.113.5:4000"
	ctx := context.WithValue(r.Context(), http.LocalAddrContextKey, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8080})
	return r.WithContext(ctx)
}

// wsgiRequired are the keys PEP 3333 says every environ holds.
var wsgiRequired = []string{"REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "SERVER_NAME", "SERVER_PORT", "SERVER_PROTOCOL", "wsgi.url_scheme", "REMOTE_ADDR"}

func TestEnviron(t *testing.T) {
	trusted := []string{"proxy.trusted", `["10.0.0.0/8", "192.168.1.1"]`}
	const proxy = "10.0.0.2:5555" // within trusted
	tests := []struct {
		name   string
		config []string
		// The request is environRequest(method or GET, target or "/")
		// from peer (if set) with header added, unless req builds it.
		method, target, peer string
		header               http.Header
		req                  func() *http.Request
		want                 map[string]string
		absent               []string
		check                func(t *testing.T, env map[string]string)
	}{
		{
			name:   "method, path and query",
			target: "/caf%C3%A9/%FF/a%2Fb?q=%C3%A9&x=%00&y",
			want: map[string]string{
				"REQUEST_METHOD":  "GET",
				"SCRIPT_NAME":     "",
				"PATH_INFO":       "/caf\xc3\xa9/\xff/a/b",
				"QUERY_STRING":    "q=%C3%A9&x=%00&y",
				"REQUEST_URI":     "/caf%C3%A9/%FF/a%2Fb?q=%C3%A9&x=%00&y",
				"RAW_URI":         "/caf%C3%A9/%FF/a%2Fb?q=%C3%A9&x=%00&y",
				"SERVER_PROTOCOL": "HTTP/1.1",
			},
			absent: []string{"CONTENT_TYPE", "CONTENT_LENGTH"},
		},
		{
			name:   "script name split off",
			config: []string{"app.script_name", `"/app"`},
			target: "/app/users/%C3%A9?x=1",
			want:   map[string]string{"SCRIPT_NAME": "/app", "PATH_INFO": "/users/\xc3\xa9", "QUERY_STRING": "x=1"},
		},
		{
			name:   "script name alone",
			config: []string{"app.script_name", `"/app"`},
			target: "/app",
			want:   map[string]string{"SCRIPT_NAME": "/app", "PATH_INFO": ""},
		},
		{
			name:   "script name only as a whole segment",
			config: []string{"app.script_name", `"/app"`},
			target: "/application/x",
			want:   map[string]string{"SCRIPT_NAME": "", "PATH_INFO": "/application/x"},
		},
		{
			name:   "path outside the script name",
			config: []string{"app.script_name", `"/app"`},
			target: "/other",
			want:   map[string]string{"SCRIPT_NAME": "", "PATH_INFO": "/other"},
		},
		{
			name: "body with a content type",
			req: func() *http.Request {
				r := environRequest("POST", "/form", strings.NewReader("a=1&b=2"))
				r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				r.Header.Set("Content-Length", "7")
				return r
			},
			want: map[string]string{
				"REQUEST_METHOD": "POST",
				"CONTENT_TYPE":   "application/x-www-form-urlencoded",
				"CONTENT_LENGTH": "7",
			},
			absent: []string{"HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"},
		},
		{
			name: "chunked body gets its length",
			req: func() *http.Request {
				r := environRequest("POST", "/", strings.NewReader("12345"))
				r.ContentLength = -1
				r.TransferEncoding = []string{"chunked"}
				return r
			},
			want:   map[string]string{"CONTENT_LENGTH": "5"},
			absent: []string{"HTTP_TRANSFER_ENCODING", "CONTENT_TYPE"},
		},
		{
			name:   "empty body with Content-Length 0",
			method: "POST",
			header: http.Header{"Content-Length": {"0"}},
			want:   map[string]string{"CONTENT_LENGTH": "0"},
		},
		{
			name: "headers",
			header: http.Header{
				"X-Multi":         {"a", "b", "c"},
				"Cookie":          {"a=1", "b=2"},
				"User-Agent":      {"test/1"},
				"Accept-Language": {"fr"},
				"X-Latin":         {"caf\xe9"},
			},
			want: map[string]string{
				"HTTP_X_MULTI":         "a,b,c",
				"HTTP_COOKIE":          "a=1; b=2",
				"HTTP_USER_AGENT":      "test/1",
				"HTTP_ACCEPT_LANGUAGE": "fr",
				"HTTP_X_LATIN":         "caf\xe9",
				"HTTP_HOST":            "example.com",
			},
		},
		{
			name:   "headers spelled with underscores dropped",
			header: http.Header{"X_Trace_Id": {"6.6.6.6"}, "X-Trace-Id": {"1.1.1.1"}, "Remote_User": {"admin"}},
			want:   map[string]string{"HTTP_X_TRACE_ID": "1.1.1.1"},
			absent: []string{"HTTP_REMOTE_USER"},
		},
		{
			name:   "a client's request id replaced by edged's",
			header: http.Header{"X-Request-Id": {"forged"}},
			check: func(t *testing.T, env map[string]string) {
				if id := env["HTTP_X_REQUEST_ID"]; len(id) != 32 || strings.Trim(id, "0123456789abcdef") != "" {
					t.Errorf("HTTP_X_REQUEST_ID = %q, want 32 hex digits of edged's", id)
				}
			},
		},
		{
			name:   "a trusted proxy's request id kept",
			config: trusted,
			peer:   proxy,
			header: http.Header{"X-Request-Id": {"lb-7f3a"}},
			want:   map[string]string{"HTTP_X_REQUEST_ID": "lb-7f3a"},
		},
		{
			name:   "a trusted proxy's id with a space replaced",
			config: trusted,
			peer:   proxy,
			header: http.Header{"X-Request-Id": {"a b"}},
			check: func(t *testing.T, env map[string]string) {
				if id := env["HTTP_X_REQUEST_ID"]; len(id) != 32 {
					t.Errorf("HTTP_X_REQUEST_ID = %q, want edged's own", id)
				}
			},
		},
		{
			name:   "httpoxy: Proxy never reaches the app, nor Expect",
			header: http.Header{"Proxy": {"http://evil.example:8080"}, "Expect": {"100-continue"}},
			absent: []string{"HTTP_PROXY", "HTTP_EXPECT"},
		},
		{
			name: "claims about the client dropped from a stranger",
			header: http.Header{"X-Real-Ip": {"1.1.1.1"}, "X-Forwarded-Port": {"443"},
				"X-Forwarded-Prefix": {"/admin"}, "Forwarded": {"for=1.1.1.1"}, "X-Kept": {"yes"}},
			want:   map[string]string{"HTTP_X_KEPT": "yes"},
			absent: []string{"HTTP_X_REAL_IP", "HTTP_X_FORWARDED_PORT", "HTTP_X_FORWARDED_PREFIX", "HTTP_FORWARDED"},
		},
		{
			name:   "claims about the client kept from a trusted proxy",
			config: trusted,
			peer:   "10.1.2.3:5555",
			header: http.Header{"X-Real-Ip": {"1.1.1.1"}, "X-Forwarded-Port": {"443"},
				"X-Forwarded-Prefix": {"/app"}, "Forwarded": {"for=1.1.1.1"}},
			want: map[string]string{"HTTP_X_REAL_IP": "1.1.1.1", "HTTP_X_FORWARDED_PORT": "443",
				"HTTP_X_FORWARDED_PREFIX": "/app", "HTTP_FORWARDED": "for=1.1.1.1"},
		},
		{
			name: "hop-by-hop and Connection-listed headers dropped",
			header: http.Header{
				"Connection": {"keep-alive, x-private", "X-Other"},
				"Keep-Alive": {"v"}, "Proxy-Connection": {"v"}, "Proxy-Authorization": {"v"}, "Te": {"v"},
				"Trailer": {"v"}, "Transfer-Encoding": {"v"}, "Upgrade": {"v"}, "Http2-Settings": {"v"},
				"X-Private": {"v"}, "X-Other": {"v"},
				"X-Kept": {"yes"},
			},
			want: map[string]string{"HTTP_X_KEPT": "yes"},
			absent: []string{"HTTP_CONNECTION", "HTTP_KEEP_ALIVE", "HTTP_PROXY_CONNECTION", "HTTP_PROXY_AUTHORIZATION",
				"HTTP_TE", "HTTP_TRAILER", "HTTP_TRANSFER_ENCODING", "HTTP_UPGRADE", "HTTP_HTTP2_SETTINGS",
				"HTTP_X_PRIVATE", "HTTP_X_OTHER"},
		},
		{
			name:   "untrusted client's forwarding headers replaced",
			header: http.Header{"X-Forwarded-For": {"1.2.3.4"}, "X-Forwarded-Proto": {"https"}, "X-Forwarded-Host": {"evil.example"}},
			want: map[string]string{
				"REMOTE_ADDR":            "203.0.113.5",
				"REMOTE_PORT":            "4000",
				"HTTP_X_FORWARDED_FOR":   "203.0.113.5",
				"HTTP_X_FORWARDED_PROTO": "http",
				"HTTP_X_FORWARDED_HOST":  "example.com",
				"wsgi.url_scheme":        "http",
				"SERVER_NAME":            "example.com",
				"SERVER_PORT":            "8080",
			},
		},
		{
			name:   "untrusted client with trusted proxies configured",
			config: trusted,
			header: http.Header{"X-Forwarded-For": {"10.0.0.1"}, "X-Forwarded-Proto": {"https"}},
			want:   map[string]string{"REMOTE_ADDR": "203.0.113.5", "HTTP_X_FORWARDED_FOR": "203.0.113.5", "wsgi.url_scheme": "http"},
		},
		{
			name:   "trusted proxy without X-Forwarded-For",
			config: trusted,
			peer:   proxy,
			want:   map[string]string{"REMOTE_ADDR": "10.0.0.2", "REMOTE_PORT": "5555", "HTTP_X_FORWARDED_FOR": "10.0.0.2"},
		},
		{
			name:   "trusted proxy chain walked right to left",
			config: trusted,
			peer:   proxy,
			header: http.Header{"X-Forwarded-For": {"6.6.6.6, 198.51.100.7, 192.168.1.1, 10.9.9.9"}},
			want: map[string]string{
				"REMOTE_ADDR":          "198.51.100.7",
				"HTTP_X_FORWARDED_FOR": "6.6.6.6, 198.51.100.7, 192.168.1.1, 10.9.9.9, 10.0.0.2",
			},
			absent: []string{"REMOTE_PORT"},
		},
		{
			name:   "trusted proxy, X-Forwarded-For over several lines",
			config: trusted,
			peer:   proxy,
			header: http.Header{"X-Forwarded-For": {"6.6.6.6", "198.51.100.7"}},
			want:   map[string]string{"REMOTE_ADDR": "198.51.100.7", "HTTP_X_FORWARDED_FOR": "6.6.6.6, 198.51.100.7, 10.0.0.2"},
		},
		{
			name:   "trusted proxy, every hop trusted",
			config: trusted,
			peer:   proxy,
			header: http.Header{"X-Forwarded-For": {"10.1.1.1,10.2.2.2"}},
			want:   map[string]string{"REMOTE_ADDR": "10.1.1.1"},
		},
		{
			name:   "trusted proxy, garbage hop stops the walk",
			config: trusted,
			peer:   proxy,
			header: http.Header{"X-Forwarded-For": {"198.51.100.7, not-an-ip, 10.3.3.3"}},
			want:   map[string]string{"REMOTE_ADDR": "10.3.3.3"},
		},
		{
			name:   "trusted proxy, hops written ip:port",
			config: trusted,
			peer:   proxy,
			header: http.Header{"X-Forwarded-For": {"198.51.100.7:5123, 10.3.3.3:443"}},
			want:   map[string]string{"REMOTE_ADDR": "198.51.100.7"},
		},
		{
			name:   "trusted IPv4-mapped IPv6 peer",
			config: trusted,
			peer:   "[::ffff:10.0.0.2]:5555",
			header: http.Header{"X-Forwarded-For": {"2001:db8::7"}},
			want:   map[string]string{"REMOTE_ADDR": "2001:db8::7"},
		},
		{
			name: "IPv6 client",
			peer: "[2001:db8::1]:5555",
			want: map[string]string{"REMOTE_ADDR": "2001:db8::1", "REMOTE_PORT": "5555", "HTTP_X_FORWARDED_FOR": "2001:db8::1"},
		},
		{
			name:   "trusted proxy's proto and host",
			config: trusted,
			target: "http://backend:8080/",
			peer:   proxy,
			header: http.Header{"X-Forwarded-Proto": {"https"}, "X-Forwarded-Host": {"www.example.com"}},
			want: map[string]string{
				"wsgi.url_scheme":        "https",
				"SERVER_NAME":            "www.example.com",
				"SERVER_PORT":            "443",
				"HTTP_HOST":              "backend:8080",
				"HTTP_X_FORWARDED_PROTO": "https",
				"HTTP_X_FORWARDED_HOST":  "www.example.com",
			},
		},
		{
			name:   "trusted proxy's host with a port",
			config: trusted,
			peer:   proxy,
			header: http.Header{"X-Forwarded-Proto": {"https"}, "X-Forwarded-Host": {"www.example.com:8443"}},
			want:   map[string]string{"wsgi.url_scheme": "https", "SERVER_NAME": "www.example.com", "SERVER_PORT": "8443"},
		},
		{
			name:   "trusted proxy terminating TLS, Host passed on",
			config: trusted,
			peer:   proxy,
			header: http.Header{"X-Forwarded-Proto": {"https"}},
			want:   map[string]string{"wsgi.url_scheme": "https", "SERVER_NAME": "example.com", "SERVER_PORT": "443"},
		},
		{
			name:   "trusted proxy's plain-HTTP host",
			config: trusted,
			peer:   proxy,
			header: http.Header{"X-Forwarded-Host": {"www.example.com"}},
			want:   map[string]string{"wsgi.url_scheme": "http", "SERVER_NAME": "www.example.com", "SERVER_PORT": "80"},
		},
		{
			name:   "trusted proxy's unknown proto ignored",
			config: trusted,
			peer:   proxy,
			header: http.Header{"X-Forwarded-Proto": {"javascript"}},
			want:   map[string]string{"wsgi.url_scheme": "http", "HTTP_X_FORWARDED_PROTO": "http", "SERVER_PORT": "8080"},
		},
		{
			name: "TLS connection",
			req: func() *http.Request {
				r := environRequest("GET", "https://secure.example/x", nil)
				ctx := context.WithValue(r.Context(), http.LocalAddrContextKey, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8443})
				return r.WithContext(ctx)
			},
			want: map[string]string{"wsgi.url_scheme": "https", "SERVER_NAME": "secure.example", "SERVER_PORT": "8443", "HTTP_X_FORWARDED_PROTO": "https"},
		},
		{
			name:   "Host with a port",
			target: "http://example.com:9000/",
			want:   map[string]string{"SERVER_NAME": "example.com", "SERVER_PORT": "9000", "HTTP_HOST": "example.com:9000"},
		},
		{
			name:   "IPv6 Host",
			target: "http://[2001:db8::5]:9000/",
			want:   map[string]string{"SERVER_NAME": "2001:db8::5", "SERVER_PORT": "9000"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := socketDir(t)
			fw := startWorker(t, dir, "1", replyOK)
			s := newServer(t, dir, tt.config...)
			var r *http.Request
			if tt.req != nil {
				r = tt.req()
			} else {
				method, target := tt.method, tt.target
				if method == "" {
					method = "GET"
				}
				if target == "" {
					target = "/"
				}
				r = environRequest(method, target, nil)
				if tt.peer != "" {
					r.RemoteAddr = tt.peer
				}
				for k, v := range tt.header {
					r.Header[k] = v
				}
			}
			rec := httptest.NewRecorder()
			s.ServeHTTP(rec, r)
			if rec.Code != http.StatusOK {
				t.Fatalf("status: got %d, want 200 (body %q)", rec.Code, rec.Body.String())
			}
			req := fw.only(t)
			for _, k := range wsgiRequired {
				if _, ok := req.env[k]; !ok {
					t.Errorf("%s: missing from the environ", k)
				}
			}
			for k, want := range tt.want {
				got, ok := req.env[k]
				if !ok {
					t.Errorf("%s: missing, want %q", k, want)
				} else if got != want {
					t.Errorf("%s: got %q, want %q", k, got, want)
				}
			}
			for _, k := range tt.absent {
				if got, ok := req.env[k]; ok {
					t.Errorf("%s: got %q, want it absent", k, got)
				}
			}
			if tt.check != nil {
				tt.check(t, req.env)
			}
		})
	}
}

func TestEnvironNULInPath(t *testing.T) {
	tests := []struct {
		name   string
		config []string
		target string
	}{
		{"plain path", nil, "/a%00b"},
		{"under the script name", []string{"app.script_name", `"/app"`}, "/app/%00"},
		{"at the end", nil, "/x/%00"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := socketDir(t)
			fw := startWorker(t, dir, "1", replyOK)
			s := newServer(t, dir, tt.config...)
			rec := httptest.NewRecorder()
			s.ServeHTTP(rec, environRequest("GET", tt.target, nil))
			if rec.Code != http.StatusBadRequest {
				t.Errorf("status: got %d, want 400", rec.Code)
			}
			if n := len(fw.requests()); n != 0 {
				t.Errorf("the worker got %d requests, want 0", n)
			}
			if n := fw.conns.Load(); n != 0 {
				t.Errorf("the edge opened %d connections to the worker, want 0", n)
			}
		})
	}
}

// A NUL in the query string is not decoded, so it reaches the app as %00.
func TestEnvironNULInQuery(t *testing.T) {
	dir := socketDir(t)
	fw := startWorker(t, dir, "1", replyOK)
	s := newServer(t, dir)
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, environRequest("GET", "/q?a=%00", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("status: got %d, want 200", rec.Code)
	}
	if got, want := fw.only(t).env["QUERY_STRING"], "a=%00"; got != want {
		t.Errorf("QUERY_STRING: got %q, want %q", got, want)
	}
}
