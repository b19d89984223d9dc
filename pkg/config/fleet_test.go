package config

import "testing"

func TestHash(t *testing.T) {
	base := "[app]\nmodule = \"shop:app\"\n[limits]\nmax_body = \"10m\"\n"
	hash := func(extra string) string {
		t.Helper()
		c, err := Parse("edged.toml", "/srv", []byte(base+extra))
		if err != nil {
			t.Fatalf("Parse: %v", err)
		}
		return c.Hash()
	}
	same := hash("")
	tests := []struct {
		name  string
		extra string
		equal bool
	}{
		{"the same file", "", true},
		{"another host's admin addresses", "[metrics]\nlisten = \"10.0.0.12:9180\"\nagent = \"10.0.0.12:9181\"\n", true},
		{"another limit", "[compress]\nenabled = true\n", false},
		{"another pool", "[pool]\nclass = \"threads\"\n", false},
	}
	for _, tt := range tests {
		if got := hash(tt.extra) == same; got != tt.equal {
			t.Errorf("%s: hash equal = %v, want %v", tt.name, got, tt.equal)
		}
	}
	c, _ := Parse("edged.toml", "/srv", []byte("[listen]\nhttp = [\"10.0.0.12:80\"]\n"+base))
	if c.Hash() != same {
		t.Errorf("another listen address changed the hash")
	}
}
