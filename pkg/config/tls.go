package config

import (
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"
)

// TLS is one certificate and its key. The names it serves come from the
// certificate itself; the client's SNI picks among them.
type TLS struct {
	Cert string `toml:"cert"`
	Key  string `toml:"key"`
}

// TLSList is a site's certificates: [[tls]] tables naming files, or
// tls = "acme" for certificates edged obtains and renews itself for the
// site's names.
type TLSList struct {
	ACME  bool
	Files []TLS
}

// TLSACME is the value of tls that asks for ACME.
const TLSACME = "acme"

// UnmarshalTOML takes either form, and refuses a key a [[tls]] table
// does not have (the decoder cannot tell for a type that decodes itself).
func (l *TLSList) UnmarshalTOML(v any) error {
	switch t := v.(type) {
	case string:
		if t != TLSACME {
			return fmt.Errorf("tls = %q is not a choice: write tls = \"acme\" for certificates edged obtains itself, or [[tls]] tables with cert and key", t)
		}
		*l = TLSList{ACME: true}
		return nil
	case []any: // tls = [{cert = "…", key = "…"}]
		tables := make([]map[string]any, len(t))
		for i, e := range t {
			m, ok := e.(map[string]any)
			if !ok {
				return fmt.Errorf("tls[%d] is not a table: write [[tls]] tables with cert and key, or tls = \"acme\"", i)
			}
			tables[i] = m
		}
		return l.UnmarshalTOML(tables)
	case []map[string]any:
		files := make([]TLS, 0, len(t))
		for i, tbl := range t {
			var f TLS
			for k, val := range tbl {
				s, ok := val.(string)
				switch {
				case k != "cert" && k != "key":
					return fmt.Errorf("tls[%d]: unknown key %q: a [[tls]] table has cert and key", i, k)
				case !ok:
					return fmt.Errorf("tls[%d].%s: a path is a string: %s = \"/etc/edged/tls/site.crt\"", i, k, k)
				case k == "cert":
					f.Cert = s
				default:
					f.Key = s
				}
			}
			files = append(files, f)
		}
		*l = TLSList{Files: files}
		return nil
	case map[string]any:
		return fmt.Errorf("is a list of tables: write each one under a [[tls]] header (two brackets), or tls = \"acme\"")
	default:
		return fmt.Errorf("tls = %v is not a choice: write tls = \"acme\", or [[tls]] tables with cert and key", v)
	}
}

// Any says the list gives the site a certificate, of either kind.
func (l TLSList) Any() bool { return l.ACME || len(l.Files) > 0 }

func (l *TLSList) validate(sc scope) {
	for i := range l.Files {
		t := &l.Files[i]
		e := sc.elem("tls", i)
		t.Cert = e.path([]string{"cert"}, Credential("tls", sc.v.abs(t.Cert)), true)
		t.Key = e.path([]string{"key"}, Credential("tls", sc.v.abs(t.Key)), true)
	}
}

// ACME is how edged gets certificates for the sites that say tls = "acme".
type ACME struct {
	// Email is the account's contact, where the CA writes about
	// certificates about to expire or problems with the account.
	Email string `toml:"email"`
	// CA is the directory URL of any RFC 8555 CA; Let's Encrypt's by
	// default.
	CA string `toml:"ca"`
	// CARoot is a PEM file of the roots edged trusts when it talks to the
	// CA (a private CA's own), on top of the system's.
	CARoot string `toml:"ca_root"`
	// Names are the top-level site's names: it has none of its own.
	Names []string `toml:"names"`
	// Storage is where accounts, keys and certificates are kept:
	// $STATE_DIRECTORY (StateDirectory=edged) under systemd, else
	// /var/lib/edged; "acme" below it.
	Storage string `toml:"storage"`
	// RenewCheck is how often the certificates are looked at for renewal.
	RenewCheck Duration `toml:"renew_check"`
	// Challenges are the ways the CA may validate a name: "http-01" (on
	// the HTTP listener, port 80) and "tls-alpn-01" (on the HTTPS
	// listener, port 443); both by default.
	Challenges []string `toml:"challenges"`
}

// The challenges edged answers.
const (
	ChallengeHTTP01    = "http-01"
	ChallengeTLSALPN01 = "tls-alpn-01"
)

// Allows says challenge is one the CA may use.
func (a ACME) Allows(challenge string) bool { return slices.Contains(a.Challenges, challenge) }

// Let's Encrypt's production directory, the default CA.
const LetsEncrypt = "https://acme-v02.api.letsencrypt.org/directory"

// Used says some site asks for ACME.
func (c *Config) ACMEUsed() bool {
	for _, s := range c.Sites {
		if s.TLS.ACME {
			return true
		}
	}
	return false
}

// ACMENames are the names edged gets certificates for, sorted: every
// name of every site with tls = "acme".
func (c *Config) ACMENames() []string {
	var out []string
	for _, s := range c.Sites {
		if s.TLS.ACME {
			out = append(out, s.Names...)
		}
	}
	sort.Strings(out)
	return out
}

// StorageDir is where ACME state is kept.
func (a ACME) StorageDir() string {
	if a.Storage != "" {
		return a.Storage
	}
	if d, _, _ := strings.Cut(os.Getenv("STATE_DIRECTORY"), ":"); d != "" {
		return filepath.Join(d, "acme")
	}
	return "/var/lib/edged/acme"
}

func (a *ACME) validate(v *validator, c *Config) {
	if a.CA == "" {
		a.CA = LetsEncrypt
	}
	if u, err := url.Parse(a.CA); err != nil || u.Scheme != "https" || u.Host == "" {
		v.fail([]string{"acme", "ca"}, fmt.Sprintf("%q is not a CA's directory URL: write the https:// URL of its RFC 8555 directory, such as %q", a.CA, LetsEncrypt))
	}
	if a.Email != "" && (!strings.Contains(a.Email, "@") || strings.ContainsAny(a.Email, " <>\"")) {
		v.fail([]string{"acme", "email"}, fmt.Sprintf("%q is not an email address: the CA writes there about certificates that are about to expire", a.Email))
	}
	if a.CARoot != "" {
		a.CARoot = v.path([]string{"acme", "ca_root"}, v.abs(a.CARoot), "acme.ca_root", true)
	}
	if a.Storage != "" {
		a.Storage = v.abs(a.Storage)
	}
	if a.RenewCheck == 0 {
		a.RenewCheck = Duration(10 * time.Minute)
	} else if a.RenewCheck < Duration(time.Second) {
		v.fail([]string{"acme", "renew_check"}, fmt.Sprintf("%s is too often: a second at least (the default, 10m, suits certificates that live days)", a.RenewCheck))
	}
	if a.Challenges == nil {
		a.Challenges = []string{ChallengeHTTP01, ChallengeTLSALPN01}
	}
	for _, ch := range a.Challenges {
		if ch != ChallengeHTTP01 && ch != ChallengeTLSALPN01 {
			v.failElem([]string{"acme", "challenges"}, "acme.challenges", ch, fmt.Sprintf("%q is not a challenge edged answers: \"http-01\" (port 80) or \"tls-alpn-01\" (port 443); DNS-01 is not offered", ch))
		}
	}
	if len(a.Challenges) == 0 {
		v.fail([]string{"acme", "challenges"}, "empty: give \"http-01\", \"tls-alpn-01\" or both (the default)")
	}
	for i, n := range a.Names {
		if why := hostNameProblem(n); why != "" {
			v.failElem([]string{"acme", "names"}, "acme.names", n, fmt.Sprintf("names[%d] %q %s", i, n, why))
		}
		a.Names[i] = normalizeName(n)
	}
	if len(a.Names) > 0 && !c.TLS.ACME {
		v.fail([]string{"acme", "names"}, "names for the top-level site, which does not say tls = \"acme\": add it, or give the names to the [[site]] they belong to")
	}
	if c.TLS.ACME && c.App.Module == "" && len(c.SiteBlocks) > 0 {
		v.fail([]string{"tls"}, "tls = \"acme\" at the top level is for the top-level app, and there is none: put tls = \"acme\" in each [[site]] that wants it")
	}
	if c.TLS.ACME {
		if len(c.Listen.HTTPS) == 0 {
			v.fail([]string{"tls"}, "certificates but no HTTPS listener: set listen.https = [\"0.0.0.0:443\"]")
		}
		if len(a.Names) == 0 {
			v.fail([]string{"tls"}, "tls = \"acme\" on the top-level site needs its names: list them in [acme] names = [\"example.com\", \"www.example.com\"] (a certificate is never obtained for a name a client merely asks for)")
		}
		acmeNames(scope{v: v, key: []string{"acme"}}, a.Names)
	}
}

// validateACME checks that the site's names can be validated by HTTP-01
// or TLS-ALPN-01.
func (s *Site) validateACME(sc scope) {
	if len(s.Names) == 0 {
		sc.fail([]string{"tls"}, "tls = \"acme\" needs the site's names: list them in names (a certificate is never obtained for a name a client merely asks for)")
	}
	acmeNames(sc, s.Names)
}

func acmeNames(sc scope, names []string) {
	for _, n := range names {
		switch {
		case strings.HasPrefix(n, "*."):
			sc.failElem([]string{"names"}, n, fmt.Sprintf("%q: a wildcard certificate needs the DNS-01 challenge, which edged does not answer: list each name, or give the site a [[tls]] certificate made elsewhere", n))
		case !strings.Contains(n, "."):
			if _, err := netip.ParseAddr(n); err != nil {
				sc.failElem([]string{"names"}, n, fmt.Sprintf("%q is not a public name a CA can validate: list names such as \"shop.example.com\"", n))
			}
		}
	}
}
