package edge

import (
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"

	"github.com/edged/edged/pkg/wire"
)

// hopHeaders belong to one connection and are never passed on.
var hopHeaders = map[string]bool{
	"Connection":          true,
	"Keep-Alive":          true,
	"Proxy-Connection":    true,
	"Proxy-Authenticate":  true,
	"Proxy-Authorization": true,
	"Te":                  true,
	"Trailer":             true,
	"Transfer-Encoding":   true,
	"Upgrade":             true,
	"Http2-Settings":      true,
}

// client is who sent a request, after believing X-Forwarded-* only from
// trusted proxies.
type client struct {
	addr    string // REMOTE_ADDR
	port    string
	proto   string // "http" or "https"
	host    string
	xff     string // X-Forwarded-For to pass on
	trusted bool   // the peer is a trusted proxy
}

func (s *state) client(r *http.Request) client {
	host, port, _ := net.SplitHostPort(r.RemoteAddr)
	c := client{addr: host, port: port, proto: "http", host: r.Host}
	if r.TLS != nil {
		c.proto = "https"
	}
	if !s.trusted(host) {
		c.xff = host
		return c
	}
	c.trusted = true
	incoming := strings.Join(r.Header.Values("X-Forwarded-For"), ", ")
	// A trusted proxy: walk X-Forwarded-For from the right, past every
	// trusted hop, to the first address a stranger could have set.
	if incoming != "" {
		c.xff = incoming + ", " + host
		hops := strings.Split(incoming, ",")
		for i := len(hops) - 1; i >= 0; i-- {
			h := strings.TrimSpace(hops[i])
			if ap, err := netip.ParseAddrPort(h); err == nil {
				h = ap.Addr().String() // "ip:port", as some balancers write it
			} else if _, err := netip.ParseAddr(h); err != nil {
				break // not an address: as nginx's realip, the walk ends
			}
			c.addr, c.port = h, ""
			if !s.trusted(h) {
				break
			}
		}
	} else {
		c.xff = host
	}
	if p := r.Header.Get("X-Forwarded-Proto"); p == "http" || p == "https" {
		c.proto = p
	}
	if h := r.Header.Get("X-Forwarded-Host"); h != "" {
		c.host = h
	}
	return c
}

func (s *state) trusted(host string) bool {
	if len(s.cfg.Proxy.Nets) == 0 {
		return false
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	a = a.Unmap()
	for _, n := range s.cfg.Proxy.Nets {
		if n.Contains(a) {
			return true
		}
	}
	return false
}

// environ writes the WSGI environ of r into f. bodyLen is the buffered
// body's length. It reports false when the request cannot be expressed
// (a NUL byte in the decoded path).
func (s *site) environ(f *wire.Request, r *http.Request, c client, id string, bodyLen int64) bool {
	path := r.URL.Path
	if strings.IndexByte(path, 0) >= 0 {
		return false
	}
	f.Reset()
	f.Add("REQUEST_METHOD", r.Method)
	script := s.app.ScriptName
	if script != "" && (path == script || strings.HasPrefix(path, script+"/")) {
		f.Add("SCRIPT_NAME", script)
		path = path[len(script):]
	} else {
		f.Add("SCRIPT_NAME", "")
	}
	f.Add("PATH_INFO", path)
	f.Add("QUERY_STRING", r.URL.RawQuery)
	f.Add("RAW_URI", r.RequestURI)
	f.Add("REQUEST_URI", r.RequestURI)
	f.Add("SERVER_PROTOCOL", r.Proto)
	localName, localPort := localAddr(r)
	name, port := c.host, ""
	if h, p, err := net.SplitHostPort(c.host); err == nil {
		name, port = h, p
	}
	if name == "" {
		// No Host from the client (HTTP/1.0, an empty Host, HTTP/2 with
		// no :authority): SERVER_NAME may not be empty (PEP 3333), so it
		// is the address the request came in on, as gunicorn does.
		name, port = localName, ""
	}
	if port == "" {
		port = localPort
		// A trusted proxy that changed the host or the scheme took the
		// request on the scheme's default port, not on ours.
		if c.host != r.Host || (c.proto == "https") != (r.TLS != nil) {
			port = "80"
			if c.proto == "https" {
				port = "443"
			}
		}
	}
	f.Add("SERVER_NAME", name)
	f.Add("SERVER_PORT", port)
	f.Add("REMOTE_ADDR", c.addr)
	if c.port != "" {
		f.Add("REMOTE_PORT", c.port)
	}
	f.Add("wsgi.url_scheme", c.proto)
	if ct := r.Header.Get("Content-Type"); ct != "" {
		f.Add("CONTENT_TYPE", ct)
	}
	if bodyLen > 0 || r.Header.Get("Content-Length") != "" {
		f.Add("CONTENT_LENGTH", strconv.FormatInt(bodyLen, 10))
	}
	if r.Host != "" {
		f.Add("HTTP_HOST", r.Host)
	}
	f.Add("HTTP_X_FORWARDED_FOR", c.xff)
	f.Add("HTTP_X_FORWARDED_PROTO", c.proto)
	if c.host != "" {
		f.Add("HTTP_X_FORWARDED_HOST", c.host)
	}
	f.Add("HTTP_X_REQUEST_ID", id)

	conn := r.Header["Connection"]
	trusted := c.trusted
	for name, vs := range r.Header {
		switch name {
		case "Content-Type", "Content-Length", "Host", "X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "X-Request-Id":
			continue
		case "Proxy", "Expect":
			// Proxy would become HTTP_PROXY, which libraries read as the
			// proxy to use (httpoxy); Expect is edged's to answer.
			continue
		case "X-Real-Ip", "X-Forwarded-Port", "X-Forwarded-Prefix", "Forwarded":
			// Claims about the client that only a trusted proxy makes.
			if !trusted {
				continue
			}
		}
		// A header spelled with "_" would land on the same environ key as
		// one spelled with "-", letting a client forge a trusted header.
		if hopHeaders[name] || strings.IndexByte(name, '_') >= 0 || listed(conn, name) {
			continue
		}
		sep := ","
		if name == "Cookie" {
			sep = "; "
		}
		f.AddHeader(name, vs, sep)
	}
	return true
}

// listed reports whether the Connection header names h. It runs for
// every header of a request that has a Connection header, so it splits
// without allocating.
func listed(conn []string, h string) bool {
	for _, v := range conn {
		for v != "" {
			var t string
			t, v, _ = strings.Cut(v, ",")
			if strings.EqualFold(strings.TrimSpace(t), h) {
				return true
			}
		}
	}
	return false
}
