// Package route is edged's routing, as data: a request's host name picks
// a host's routes, and the first route whose matcher holds answers it. A
// table is built once, when a config is loaded (from what pkg/config has
// validated), and only read after: a request walks a slice, never a chain
// of ifs in the server.
//
// The handler type is the caller's: the table only finds it.
package route

import (
	"fmt"
	"net/netip"
	"strings"
)

// Table maps host names to their hosts' routes. The zero Table has no
// hosts; a Table must not change once requests use it.
type Table[H any] struct {
	hosts map[string]*Host[H] // by normalised name
	def   *Host[H]            // for a name no host claims; nil: none
}

// Host is the routes of one site, tried in order.
type Host[H any] struct {
	// Name names the host's site in logs and errors.
	Name   string
	Routes []Route[H]
}

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
	// Methods are the methods taken; none is every method.
	Methods []string
	// From are the client addresses taken; none is every address.
	From []netip.Prefix
}

// Matches says the matcher takes a request for path, with method, from
// client (the zero Addr when it is not known: then a From list does not
// hold).
func (m *Matcher) Matches(path, method string, client netip.Addr) bool {
	if m.Prefix != "" && !strings.HasPrefix(path, m.Prefix) {
		return false
	}
	if len(m.Methods) > 0 && !contains(m.Methods, method) {
		return false
	}
	if len(m.From) > 0 {
		if !client.IsValid() {
			return false
		}
		client = client.Unmap()
		for _, p := range m.From {
			if p.Contains(client) {
				return true
			}
		}
		return false
	}
	return true
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// Add gives host the names, and makes it the default (the host of any
// name no host claims) when def is set. A name another host has, or a
// second default, is an error that names both hosts.
func (t *Table[H]) Add(host *Host[H], names []string, def bool) error {
	if t.hosts == nil {
		t.hosts = map[string]*Host[H]{}
	}
	for _, n := range names {
		key := Normalize(n)
		if other := t.hosts[key]; other != nil {
			return fmt.Errorf("host name %q is %s's and %s's: give each name to one site", n, other.Name, host.Name)
		}
		t.hosts[key] = host
	}
	if def {
		if t.def != nil {
			return fmt.Errorf("%s and %s are both the default: only one site may say default = true", t.def.Name, host.Name)
		}
		t.def = host
	}
	return nil
}

// Host is the host that serves name (a Host header or an SNI name: any
// port, case or trailing dot aside), or the default; nil when neither.
func (t *Table[H]) Host(name string) *Host[H] {
	if h := t.hosts[Normalize(name)]; h != nil {
		return h
	}
	return t.def
}

// Find is the handler of the first route that takes the request; ok is
// false when none does.
func (h *Host[H]) Find(path, method string, client netip.Addr) (handler H, ok bool) {
	for i := range h.Routes {
		if h.Routes[i].Match.Matches(path, method, client) {
			return h.Routes[i].Handler, true
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
