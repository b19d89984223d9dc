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

// request writes the request as the worker gets it into f: the neutral
// facts (wire.RequestFields) and the header list, from which the worker
// builds a WSGI environ or an ASGI scope. bodyLen is the buffered body's
// length. It reports false when the request cannot be expressed (a NUL
// byte in the decoded path).
func (s *site) request(f *wire.Request, r *http.Request, c client, id string, bodyLen int64) bool {
	path := r.URL.Path
	if strings.IndexByte(path, 0) >= 0 {
		return false
	}
	f.Reset()
	f.Add(r.Method)
	f.Add(c.proto)
	f.Add(r.Proto)
	f.Add(r.RequestURI)
	f.Add(path)
	f.Add(r.URL.RawQuery)
	f.Add(s.app.ScriptName)
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
	f.Add(name)
	f.Add(port)
	f.Add(c.addr)
	f.Add(c.port)
	f.Add(id)
	if r.TLS != nil {
		f.SetTLS(r.TLS.Version, r.TLS.CipherSuite)
	}

	if r.Host != "" {
		f.AddHeader("Host", r.Host)
	}
	if ct := r.Header["Content-Type"]; len(ct) > 0 && ct[0] != "" {
		f.AddHeader("Content-Type", ct[0])
	}
	if bodyLen > 0 || r.Header.Get("Content-Length") != "" {
		// The body is buffered whole: its length is known, whatever
		// framing the client used.
		f.AddHeader("Content-Length", strconv.FormatInt(bodyLen, 10))
	}
	f.AddHeader("X-Forwarded-For", c.xff)
	f.AddHeader("X-Forwarded-Proto", c.proto)
	if c.host != "" {
		f.AddHeader("X-Forwarded-Host", c.host)
	}
	f.AddHeader("X-Request-Id", id)

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
		for _, v := range vs {
			f.AddHeader(name, v)
		}
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
