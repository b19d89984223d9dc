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

func TestTable(t *testing.T) {
	shop := &Host[string]{Name: "shop", Routes: []Route[string]{
		{Match: Matcher{Prefix: "/static/"}, Handler: "shop static"},
		{Match: Matcher{Prefix: "/admin/", From: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}, Handler: "shop admin"},
		{Match: Matcher{Prefix: "/admin/"}, Handler: "shop admin refused"},
		{Match: Matcher{Prefix: "/login", Methods: []string{"POST"}}, Handler: "shop login post"},
		{Handler: "shop app"},
	}}
	blog := &Host[string]{Name: "blog", Routes: []Route[string]{{Handler: "blog app"}}}
	var tab Table[string]
	if err := tab.Add(shop, []string{"shop.example", "WWW.shop.example"}, false); err != nil {
		t.Fatal(err)
	}
	if err := tab.Add(blog, []string{"blog.example"}, true); err != nil {
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
		{"blog.example", "GET", "/static/a.css", "", "blog app"},
		{"unknown.example", "GET", "/", "", "blog app"},
	}
	for _, tt := range tests {
		var client netip.Addr
		if tt.client != "" {
			client = netip.MustParseAddr(tt.client)
		}
		h := tab.Host(tt.host)
		if h == nil {
			t.Errorf("Host(%q) = nil, want a host", tt.host)
			continue
		}
		got, ok := h.Find(tt.path, tt.method, client)
		if !ok || got != tt.want {
			t.Errorf("%s %s%s from %q: %q (%v), want %q", tt.method, tt.host, tt.path, tt.client, got, ok, tt.want)
		}
	}
}

func TestTableRefuses(t *testing.T) {
	a := &Host[int]{Name: "a"}
	b := &Host[int]{Name: "b"}
	var tab Table[int]
	if err := tab.Add(a, []string{"x.example"}, true); err != nil {
		t.Fatal(err)
	}
	if err := tab.Add(b, []string{"X.example."}, false); err == nil || !strings.Contains(err.Error(), "a's and b's") {
		t.Errorf("a name twice: %v, want an error naming both sites", err)
	}
	if err := tab.Add(b, nil, true); err == nil || !strings.Contains(err.Error(), "both the default") {
		t.Errorf("two defaults: %v, want an error", err)
	}
	var empty Table[int]
	if h := empty.Host("x"); h != nil {
		t.Errorf("an empty table found %v", h)
	}
	if _, ok := (&Host[int]{}).Find("/", "GET", netip.Addr{}); ok {
		t.Errorf("a host with no routes found one")
	}
}
