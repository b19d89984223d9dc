package edge

import (
	"encoding/hex"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"path"
	"strings"

	"github.com/edged/edged/pkg/config"
	"github.com/edged/edged/pkg/route"
)

// acmeChallenges is the path HTTP-01 challenges are answered on: plain
// HTTP must reach it whatever the site's https says.
const acmeChallenges = "/.well-known/acme-challenge/"

// redirect answers r with a redirect, or a refusal, when the site's https
// or canonical says so; it reports whether it answered.
func (si *site) redirect(w http.ResponseWriter, r *http.Request, c client, lr *logRecord) bool {
	sc := si.conf
	host, port := splitHost(r.Host)
	var target string
	switch {
	case c.proto != "https" && sc.HTTPS != config.HTTPSOff && !strings.HasPrefix(cleanPath(r.URL.Path), acmeChallenges):
		if sc.HTTPS == config.HTTPSOnly {
			si.fail(w, lr, http.StatusForbidden, limitHTTPSOnly, `this site is served over HTTPS only (https = "only")`)
			return true
		}
		name := host
		if sc.Canonical != "" && si.named(host) {
			name = sc.Canonical
		}
		if name == "" {
			return false // no name to send the client to
		}
		target = "https://" + hostPort(name, si.httpsPort())
	case sc.Canonical != "" && host != sc.Canonical && si.named(host):
		target = c.proto + "://" + hostPort(sc.Canonical, port)
	default:
		return false
	}
	target += r.URL.EscapedPath()
	if r.URL.RawQuery != "" {
		target += "?" + r.URL.RawQuery
	}
	status := http.StatusMovedPermanently
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		// 301 lets a client turn a POST into a GET; 308 does not.
		status = http.StatusPermanentRedirect
	}
	h := w.Header()
	h["Location"] = []string{target}
	h["Content-Type"] = []string{"text/plain; charset=utf-8"}
	si.addHeaders(h)
	w.WriteHeader(status)
	msg := http.StatusText(status) + "\n"
	n, _ := w.Write([]byte(msg))
	lr.status, lr.bytes, lr.kind = status, int64(n), kindEdge
	return true
}

// named says host is one of the site's names (a request for another, on
// the default site, is not the site's to send elsewhere).
func (si *site) named(host string) bool {
	for _, n := range si.conf.Names {
		if n == host {
			return true
		}
		if parent, ok := strings.CutPrefix(n, "*."); ok {
			if i := strings.IndexByte(host, '.'); i > 0 && host[i+1:] == parent {
				return true
			}
		}
	}
	return false
}

// httpsPort is the port of edged's first HTTPS listener, "" while it is
// not serving.
func (si *site) httpsPort() string {
	if si.srv == nil {
		return ""
	}
	p, _ := si.srv.httpsPort.Load().(string)
	return p
}

// splitHost splits a Host header into its normalised name and its port.
func splitHost(h string) (host, port string) {
	if hh, p, err := net.SplitHostPort(h); err == nil {
		return route.Normalize(hh), p
	}
	return route.Normalize(h), ""
}

// hostPort joins a name and a port, leaving out the scheme's default ports
// as browsers do.
func hostPort(name, port string) string {
	if strings.IndexByte(name, ':') >= 0 {
		name = "[" + name + "]" // an IPv6 literal
	}
	if port == "" || port == "443" || port == "80" {
		return name
	}
	return name + ":" + port
}

// admit applies a path rule to r: its allow and deny lists, its rate,
// then its basic authentication (after the rate, so that password guesses
// are limited too, and never cost a bcrypt past it). When it turns r away
// it has answered.
func (ru *rule) admit(w http.ResponseWriter, r *http.Request, addr netip.Addr, si *site, lr *logRecord) bool {
	p := ru.cfg
	if len(p.DenyNets) > 0 && route.In(addr, p.DenyNets) || len(p.AllowNets) > 0 && !route.In(addr, p.AllowNets) {
		si.fail(w, lr, http.StatusForbidden, limitPathAccess, "the client's address is refused on this path (allow/deny)")
		return false
	}
	if ru.limits != nil {
		release, ok := si.admit(w, ru.limits, addr, lr)
		if !ok {
			if lr.limit == limitRate {
				lr.limit, lr.reason = limitPathRate, "over the rate of this path's rule for this client"
			}
			return false
		}
		release()
	}
	if ru.users != nil {
		user, password, ok := r.BasicAuth()
		if !ok || !ru.users.Check(user, password) {
			w.Header()["Www-Authenticate"] = ru.challenge
			why := "no credentials for basic authentication"
			if ok {
				why = "wrong user or password for basic authentication"
			}
			si.fail(w, lr, http.StatusUnauthorized, limitPathAuth, why)
			return false
		}
		lr.user = user
	}
	return true
}

// cleanPath is the path a rule is matched against: with "." and ".."
// resolved and runs of "/" made one, as nginx matches its locations, so
// that "/x/../admin/" or "//admin/" meet the rule for "/admin/" whatever
// the app makes of them. A trailing "/" is kept.
func cleanPath(p string) string {
	if p == "" {
		return "/" // an absolute-form target with no path: the app serves "/"
	}
	if !strings.Contains(p, "//") && !strings.Contains(p, "/.") {
		return p // the usual case: nothing to clean, nothing allocated
	}
	c := path.Clean("/" + p)
	if strings.HasSuffix(p, "/") && c != "/" {
		c += "/"
	}
	return c
}

// maxBody is the most a request body may be: the rule's max_body where a
// rule with one took the request, else the site's.
func (si *site) maxBody(lr *logRecord) (int64, limit) {
	if lr.rule != nil && lr.rule.cfg.MaxBody > 0 {
		return int64(lr.rule.cfg.MaxBody), limitPathMaxBody
	}
	return int64(si.lim.MaxBody), limitMaxBody
}

// id is the request's id, made on first use.
func (lr *logRecord) id(r *http.Request) string {
	if lr.requestID == "" {
		lr.requestID = requestID(r, lr.trusted)
	}
	return lr.requestID
}

// requestID is a request's ID: the one a trusted proxy sent when it is
// sane, else a new random one.
func requestID(r *http.Request, trusted bool) string {
	if trusted {
		if id := r.Header.Get("X-Request-Id"); id != "" && len(id) <= 200 && printable(id) {
			return id
		}
	}
	var b [16]byte
	for i := 0; i < 16; i += 8 {
		v := rand.Uint64()
		for j := 0; j < 8; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return hex.EncodeToString(b[:])
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
