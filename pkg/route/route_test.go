package route

import (
	"net/netip"
	"strings"
	"testing"
)

func TestNormalize(t *testing.T) {
	tests := []struct{ in, want string }{
		{"shop.example", "shop.example"},
		{"Shop.Example", "shop.example"},
		{"shop.example:8080", "shop.example"},
		{"shop.example.", "shop.example"},
		{"SHOP.example.:443", "shop.example"},
		{"[::1]:8080", "::1"},
		{"[::1]", "::1"},
		{"::1", "::1"},
		{"127.0.0.1:80", "127.0.0.1"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := Normalize(tt.in); got != tt.want {
			t.Errorf("Normalize(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

type site struct {
	name   string
	routes Routes[string]
}

func TestTable(t *testing.T) {
	shop := &site{"shop", Routes[string]{
		{Match: Matcher{Prefix: "/static/"}, Handler: "shop static"},
		{Match: Matcher{Prefix: "/admin/", From: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}, Handler: "shop admin"},
		{Match: Matcher{Prefix: "/admin/"}, Handler: "shop admin refused"},
		{Match: Matcher{Prefix: "/login", Methods: []string{"POST"}}, Handler: "shop login post"},
		{Match: Matcher{Pattern: "/*.php"}, Handler: "shop php"},
		{Match: Matcher{Prefix: "/get-only", Methods: []string{"GET"}}, Handler: "shop get-only"},
		{Handler: "shop app"},
	}}
	blog := &site{"blog", Routes[string]{{Handler: "blog app"}}}
	wild := &site{"wild", Routes[string]{{Handler: "wild app"}}}
	var tab Table[*site]
	if err := tab.Add(shop, shop.name, []string{"shop.example", "WWW.shop.example"}, false); err != nil {
		t.Fatal(err)
	}
	if err := tab.Add(blog, blog.name, []string{"blog.example", "exact.wild.example"}, true); err != nil {
		t.Fatal(err)
	}
	if err := tab.Add(wild, wild.name, []string{"*.wild.example"}, false); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		host, method, path, client string
		want                       string
	}{
		{"shop.example", "GET", "/static/a.css", "", "shop static"},
		{"www.shop.example:443", "GET", "/", "", "shop app"},
		{"shop.example", "GET", "/admin/x", "10.1.2.3", "shop admin"},
		{"shop.example", "GET", "/admin/x", "::ffff:10.1.2.3", "shop admin"},
		{"shop.example", "GET", "/admin/x", "192.0.2.1", "shop admin refused"},
		{"shop.example", "GET", "/admin/x", "", "shop admin refused"},
		{"shop.example", "POST", "/login", "", "shop login post"},
		{"shop.example", "GET", "/login", "", "shop app"},
		{"shop.example", "HEAD", "/get-only", "", "shop get-only"},
		{"shop.example", "POST", "/get-only", "", "shop app"},
		{"shop.example", "GET", "/index.php", "", "shop php"},
		{"shop.example", "GET", "/a/index.php", "", "shop app"},
		{"blog.example", "GET", "/static/a.css", "", "blog app"},
		{"unknown.example", "GET", "/", "", "blog app"},
		{"a.wild.example", "GET", "/", "", "wild app"},
		{"A.Wild.Example.:80", "GET", "/", "", "wild app"},
		{"exact.wild.example", "GET", "/", "", "blog app"},
		{"wild.example", "GET", "/", "", "blog app"},
		{"b.a.wild.example", "GET", "/", "", "blog app"},
	}
	for _, tt := range tests {
		var client netip.Addr
		if tt.client != "" {
			client = netip.MustParseAddr(tt.client)
		}
		s, ok := tab.Site(tt.host)
		if !ok {
			t.Errorf("Site(%q) found none, want a site", tt.host)
			continue
		}
		got, ok := s.routes.Find(tt.path, tt.method, client)
		if !ok || got != tt.want {
			t.Errorf("%s %s%s from %q: %q (%v), want %q", tt.method, tt.host, tt.path, tt.client, got, ok, tt.want)
		}
	}
}

func TestTableRefuses(t *testing.T) {
	var tab Table[int]
	if err := tab.Add(1, "a", []string{"x.example", "*.y.example"}, true); err != nil {
		t.Fatal(err)
	}
	if err := tab.Add(2, "b", []string{"X.example."}, false); err == nil || !strings.Contains(err.Error(), "a's and b's") {
		t.Errorf("a name twice: %v, want an error naming both sites", err)
	}
	if err := tab.Add(2, "b", []string{"*.Y.example"}, false); err == nil || !strings.Contains(err.Error(), "a's and b's") {
		t.Errorf("a wildcard twice: %v, want an error naming both sites", err)
	}
	if err := tab.Add(2, "b", nil, true); err == nil || !strings.Contains(err.Error(), "both the default") {
		t.Errorf("two defaults: %v, want an error", err)
	}
	var empty Table[int]
	if s, ok := empty.Site("x"); ok {
		t.Errorf("an empty table found %v", s)
	}
	if _, ok := Routes[int](nil).Find("/", "GET", netip.Addr{}); ok {
		t.Errorf("no routes found one")
	}
}
