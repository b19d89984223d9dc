// Package route is edged's routing, as data: a request's host name picks
// a site from a Table, and the first of the site's Routes whose matcher
// holds answers it. Tables and routes are built once, when a config is
// loaded (from what pkg/config has validated), and only read after: a
// request walks a slice, never a chain of ifs in the server.
//
// The site and handler types are the caller's: the package only finds
// them.
package route

import (
	"fmt"
	"net/netip"
	"path"
	"slices"
	"strings"
)

// Table maps host names to sites. The zero Table has none; a Table must
// not change once requests use it.
type Table[S comparable] struct {
	exact    map[string]S // by normalised name
	wildcard map[string]S // "*.example.com" by "example.com"
	owner    map[string]string
	def      S // for a name no site claims; the zero S: none
	defName  string
}

// Add gives site (called name in errors) the host names, and makes it the
// default (the site of any name no site claims) when def is set. A name
// "*.example.com" is every name one label under example.com; an exact
// name wins over it. A name another site has, or a second default, is an
// error that names both sites.
func (t *Table[S]) Add(site S, name string, hosts []string, def bool) error {
	if t.exact == nil {
		t.exact, t.wildcard, t.owner = map[string]S{}, map[string]S{}, map[string]string{}
	}
	for _, h := range hosts {
		key := Normalize(h)
		if other, ok := t.owner[key]; ok {
			return fmt.Errorf("host name %q is %s's and %s's: give each name to one site", h, other, name)
		}
		t.owner[key] = name
		if parent, ok := strings.CutPrefix(key, "*."); ok {
			t.wildcard[parent] = site
		} else {
			t.exact[key] = site
		}
	}
	if def {
		var zero S
		if t.def != zero {
			return fmt.Errorf("%s and %s are both the default: only one site may say default = true", t.defName, name)
		}
		t.def, t.defName = site, name
	}
	return nil
}

// Site is the site that serves host (a Host header or an SNI name: any
// port, case or trailing dot aside), or the default; ok is false when
// neither.
func (t *Table[S]) Site(host string) (site S, ok bool) {
	key := Normalize(host)
	if s, ok := t.exact[key]; ok {
		return s, true
	}
	if len(t.wildcard) > 0 {
		if i := strings.IndexByte(key, '.'); i > 0 {
			if s, ok := t.wildcard[key[i+1:]]; ok {
				return s, true
			}
		}
	}
	var zero S
	return t.def, t.def != zero
}

// Routes are a site's routes, tried in order.
type Routes[H any] []Route[H]

// Route is a matcher and what answers the requests it matches.
type Route[H any] struct {
	Match   Matcher
	Handler H
}

// Matcher says which requests a route takes; each field that is set must
// hold. The zero Matcher takes every request.
type Matcher struct {
	// Prefix is what the path starts with ("/static/"); "" is any path.
	Prefix string
	// Pattern is the whole path as path.Match takes it ("/api/*/upload");
	// "" is any path.
	Pattern string
	// Methods are the methods taken; none is every method. GET takes
	// HEAD too.
	Methods []string
	// From are the client addresses taken; none is every address.
	From []netip.Prefix
}

// Matches says the matcher takes a request for path, with method, from
// client (the zero Addr when it is not known: then a From list does not
// hold).
func (m *Matcher) Matches(p, method string, client netip.Addr) bool {
	if m.Prefix != "" && !strings.HasPrefix(p, m.Prefix) {
		return false
	}
	if m.Pattern != "" {
		if ok, _ := path.Match(m.Pattern, p); !ok {
			return false
		}
	}
	if len(m.Methods) > 0 && !slices.Contains(m.Methods, method) &&
		!(method == "HEAD" && slices.Contains(m.Methods, "GET")) { // HEAD is a GET without its body
		return false
	}
	if len(m.From) > 0 {
		return In(client, m.From)
	}
	return true
}

// In says client is in one of the prefixes; an invalid address is in
// none.
func In(client netip.Addr, prefixes []netip.Prefix) bool {
	if !client.IsValid() {
		return false
	}
	client = client.Unmap()
	for _, p := range prefixes {
		if p.Contains(client) {
			return true
		}
	}
	return false
}

// Find is the handler of the first route that takes the request; ok is
// false when none does.
func (rs Routes[H]) Find(path, method string, client netip.Addr) (handler H, ok bool) {
	for i := range rs {
		if rs[i].Match.Matches(path, method, client) {
			return rs[i].Handler, true
		}
	}
	return handler, false
}

// Normalize is a host name as the table keys it: lower case, without a
// port or a trailing dot; an IPv6 literal without its brackets.
func Normalize(host string) string {
	if strings.HasPrefix(host, "[") {
		if i := strings.IndexByte(host, ']'); i > 0 {
			host = host[1:i]
		}
	} else if i := strings.LastIndexByte(host, ':'); i >= 0 && strings.Count(host, ":") == 1 {
		host = host[:i]
	}
	host = strings.TrimSuffix(host, ".")
	for i := 0; i < len(host); i++ {
		if c := host[i]; c >= 'A' && c <= 'Z' {
			return strings.ToLower(host)
		}
	}
	return host
}
