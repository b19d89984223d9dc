package edge

import (
	"crypto/tls"
	"errors"
	"fmt"
	"strings"

	"github.com/edged/edged/pkg/config"
	"github.com/edged/edged/pkg/route"
)

// certSet is the certificates of one config, indexed by the names they
// are for: the client's SNI finds its certificate without a scan, the
// first one serving clients that send no name or one no certificate has.
type certSet struct {
	certs    []*tls.Certificate
	exact    map[string][]*tls.Certificate // by DNS name or IP
	wildcard map[string][]*tls.Certificate // "*.example.com" by "example.com"
}

// loadCerts reads the top-level [[tls]] pairs and every site's.
func loadCerts(cfg *config.Config) (*certSet, error) {
	cs := &certSet{exact: map[string][]*tls.Certificate{}, wildcard: map[string][]*tls.Certificate{}}
	add := func(where string, pairs []config.TLS) error {
		for _, p := range pairs {
			c, err := tls.LoadX509KeyPair(p.Cert, p.Key)
			if err != nil {
				return fmt.Errorf("%stls cert %s, key %s: %w", where, p.Cert, p.Key, err)
			}
			cs.add(&c)
		}
		return nil
	}
	if err := add("", cfg.TLS); err != nil {
		return nil, err
	}
	for _, s := range cfg.SiteBlocks {
		if err := add("site "+s.Name+": ", s.TLS); err != nil {
			return nil, err
		}
	}
	return cs, nil
}

func (cs *certSet) add(c *tls.Certificate) {
	cs.certs = append(cs.certs, c)
	if c.Leaf == nil {
		return
	}
	names := c.Leaf.DNSNames
	for _, ip := range c.Leaf.IPAddresses {
		names = append(names, ip.String())
	}
	if len(names) == 0 && c.Leaf.Subject.CommonName != "" {
		names = []string{c.Leaf.Subject.CommonName}
	}
	for _, n := range names {
		n = strings.ToLower(n)
		if parent, ok := strings.CutPrefix(n, "*."); ok {
			cs.wildcard[parent] = append(cs.wildcard[parent], c)
		} else {
			cs.exact[n] = append(cs.exact[n], c)
		}
	}
}

// candidates are the certificates for name, exact ones first.
func (cs *certSet) candidates(name string) []*tls.Certificate {
	name = route.Normalize(name)
	out := cs.exact[name]
	if i := strings.IndexByte(name, '.'); i > 0 {
		if w := cs.wildcard[name[i+1:]]; len(w) > 0 {
			out = append(out[:len(out):len(out)], w...)
		}
	}
	return out
}

func (cs *certSet) pick(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if cs == nil || len(cs.certs) == 0 {
		return nil, errors.New("no certificate configured")
	}
	cands := cs.candidates(hello.ServerName)
	// The one the client can use (an ECDSA one for a client that takes
	// it, else RSA); any for the name if none says so.
	for _, c := range cands {
		if hello.SupportsCertificate(c) == nil {
			return c, nil
		}
	}
	if len(cands) > 0 {
		return cands[0], nil
	}
	// No name, or one no certificate has: the first the client can use.
	for _, c := range cs.certs {
		if hello.SupportsCertificate(c) == nil {
			return c, nil
		}
	}
	return cs.certs[0], nil
}

// uncovered says which of a site's names no certificate is for, "" when
// every one has one (or there are no certificates at all to judge by).
func (cs *certSet) uncovered(s *config.Site) string {
	if len(cs.certs) == 0 {
		return ""
	}
	var missing []string
	for _, n := range s.Names {
		if strings.HasPrefix(n, "*.") {
			if len(cs.wildcard[n[2:]]) == 0 {
				missing = append(missing, n)
			}
			continue
		}
		if len(cs.candidates(n)) == 0 {
			missing = append(missing, n)
		}
	}
	if len(missing) == 0 {
		return ""
	}
	return fmt.Sprintf("no certificate is for %s (give the site a [[site.tls]] whose certificate names them)", strings.Join(missing, ", "))
}
