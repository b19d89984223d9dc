package config

import "testing"

func TestCheckAppSpec(t *testing.T) {
	for _, tt := range []struct {
		spec string
		ok   bool
	}{
		{"shop", true},
		{"shop.wsgi:application", true},
		{"shop:create_app()", true},
		{"shop:create_app('production', debug=False)", true},
		{"shop:app.wsgi_app", true},
		{"shop:", false},
		{":app", false},
		{"shop.py:app", false},
		{"src/shop:app", false},
		{"shop:create_app(", false},
		{"shop:1app", false},
		{"shop:app()()", true}, // the Python side refuses it, with its reason
	} {
		if err := checkAppSpec(tt.spec); (err == nil) != tt.ok {
			t.Errorf("checkAppSpec(%q) = %v, want ok %v", tt.spec, err, tt.ok)
		}
	}
}
