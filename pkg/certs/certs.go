// Package certs gives the TLS handshake its certificate. A Store answers
// tls.Config.GetCertificate by the name the client asks for, from an index
// by name (never a scan), whatever holds the certificates: files, reloaded
// when they change (certbot's renewals, a secret manager), or ACME, which
// obtains and renews them for the names configured; the server is none
// the wiser about where a certificate came from.
package certs

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/edged/edged/pkg/route"
	"github.com/rs/zerolog"
)

// Pair is a certificate file and its key's, and where the config names
// them ("site shop: tls[0]"), for messages.
type Pair struct {
	Cert, Key string
	Where     string
}

// Store holds the certificates of the pairs it was given, and keeps them
// current.
type Store struct {
	log   zerolog.Logger
	pairs []Pair
	cur   atomic.Pointer[set]

	mu      sync.Mutex
	loaded  []*tls.Certificate // by pair
	stamps  []stamp            // of the files as last loaded, by pair
	refused []stamp            // of the files last refused, by pair: logged once
	stop    chan struct{}
	once    sync.Once

	// acme keeps the certificates of acmeNames (normalised names), set
	// by UseACME before the store is in use.
	acme      *ACME
	acmeNames map[string]bool
	acmeFirst string
}

// UseACME has the store answer for names with a's certificates. It is
// called before the store serves a handshake.
func (s *Store) UseACME(a *ACME, names []string) {
	s.acme = a
	s.acmeNames = map[string]bool{}
	for _, n := range names {
		s.acmeNames[strings.ToLower(n)] = true
	}
	if len(names) > 0 {
		s.acmeFirst = names[0]
	}
}

// stamp tells one state of a pair's two files from another.
type stamp struct {
	cert, key fileStamp
}

type fileStamp struct {
	ino   uint64
	size  int64
	mtime time.Time
}

func stampOf(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	fs := fileStamp{size: fi.Size(), mtime: fi.ModTime()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		fs.ino = st.Ino
	}
	return fs, nil
}

// Load reads every pair; one that cannot be used is an error that names
// it.
func Load(pairs []Pair, log zerolog.Logger) (*Store, error) {
	s := &Store{log: log, pairs: pairs, loaded: make([]*tls.Certificate, len(pairs)),
		stamps: make([]stamp, len(pairs)), refused: make([]stamp, len(pairs)), stop: make(chan struct{})}
	for i, p := range pairs {
		st, err := pairStamp(p)
		if err == nil {
			var c *tls.Certificate
			if c, err = load(p); err == nil {
				s.loaded[i], s.stamps[i] = c, st
				continue
			}
		}
		return nil, fmt.Errorf("%scert %s, key %s: %w", where(p), p.Cert, p.Key, err)
	}
	s.cur.Store(newSet(s.loaded))
	return s, nil
}

func where(p Pair) string {
	if p.Where == "" {
		return ""
	}
	return p.Where + " "
}

func pairStamp(p Pair) (stamp, error) {
	c, err := stampOf(p.Cert)
	if err != nil {
		return stamp{}, err
	}
	k, err := stampOf(p.Key)
	if err != nil {
		return stamp{}, err
	}
	return stamp{c, k}, nil
}

// load reads a pair and checks it: the key is the certificate's (the
// standard library checks that), and the certificate is in its validity.
func load(p Pair) (*tls.Certificate, error) {
	c, err := tls.LoadX509KeyPair(p.Cert, p.Key)
	if err != nil {
		return nil, err
	}
	if c.Leaf == nil {
		if c.Leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
			return nil, err
		}
	}
	return &c, nil
}

// Watch looks at the files every interval until Close, and puts a pair
// that changed in use for the next handshakes once it loads; one that
// does not (a key that is not the certificate's, a half-written file) is
// refused with a log line, and the one before keeps serving.
func (s *Store) Watch(every time.Duration) {
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-s.stop:
				return
			case <-t.C:
				s.Check()
			}
		}
	}()
}

// Check looks at the files once, as Watch does at each interval; it says
// how many pairs it put in use.
func (s *Store) Check() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	changed := 0
	for i, p := range s.pairs {
		st, err := pairStamp(p)
		if err != nil || st == s.stamps[i] || st == s.refused[i] {
			continue // gone for a moment (a rename), unchanged, or refused as it is
		}
		c, err := load(p)
		if err != nil {
			s.refused[i] = st
			s.log.Error().Caller().Str("cert", p.Cert).Str("key", p.Key).Err(err).
				Msg("a certificate file changed but cannot be used: the one before keeps serving (check that the key is the certificate's)")
			continue
		}
		if now := time.Now(); now.After(c.Leaf.NotAfter) {
			s.log.Warn().Str("cert", p.Cert).Time("not_after", c.Leaf.NotAfter).Msg("the new certificate has expired already: serving it all the same")
		}
		s.loaded[i], s.stamps[i], s.refused[i] = c, st, stamp{}
		changed++
		s.log.Info().Str("cert", p.Cert).Strs("names", c.Leaf.DNSNames).Time("not_after", c.Leaf.NotAfter).
			Msg("certificate reloaded: new handshakes get it")
	}
	if changed > 0 {
		s.cur.Store(newSet(s.loaded))
	}
	return changed
}

// Close stops the watch.
func (s *Store) Close() {
	if s == nil {
		return
	}
	s.once.Do(func() { close(s.stop) })
}

// GetCertificate is tls.Config's: the certificate for the name the client
// asked for (SNI) that the client can use, the first one for a client
// that named none or a name no certificate has.
func (s *Store) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if s == nil {
		return nil, errors.New("no certificate configured")
	}
	if s.acme != nil { // nil under --check
		if Challenge(hello) {
			return s.acme.GetCertificate(hello)
		}
		// SNI is a host name, never with a port: only its case is
		// folded, and ACME is asked for configured names alone.
		if name := strings.ToLower(hello.ServerName); s.acmeNames[name] {
			h := *hello
			h.ServerName = name
			return s.acme.GetCertificate(&h)
		}
		if len(s.cur.Load().certs) == 0 {
			// No name, or one no site has: the first ACME name's.
			h := *hello
			h.ServerName = s.acmeFirst
			return s.acme.GetCertificate(&h)
		}
	}
	return s.cur.Load().pick(hello)
}

// Infos describes every certificate: the files' and ACME's, by name.
func (s *Store) Infos() []Info {
	if s == nil {
		return nil
	}
	var out []Info
	for i, c := range s.cur.Load().certs {
		in := Info{Source: "file"}
		if i < len(s.pairs) {
			in.File = s.pairs[i].Cert
		}
		if c.Leaf != nil {
			in.Names = c.Leaf.DNSNames
			in.Issuer, in.NotBefore, in.NotAfter = issuerName(c.Leaf), c.Leaf.NotBefore, c.Leaf.NotAfter
		}
		out = append(out, in)
	}
	if s.acme != nil {
		for _, in := range s.acme.Infos() {
			if s.acmeNames[route.Normalize(firstName(in))] {
				out = append(out, in)
			}
		}
	}
	sortInfos(out)
	return out
}

// Len is how many certificates the store holds.
func (s *Store) Len() int {
	if s == nil {
		return 0
	}
	return len(s.cur.Load().certs) + len(s.acmeNames)
}

// Uncovered says which of names no certificate is for, "" when every one
// has one (or there are no certificates at all to judge by).
func (s *Store) Uncovered(names []string) string {
	if s == nil {
		return ""
	}
	if len(s.acmeNames) > 0 {
		var rest []string
		for _, n := range names {
			if !s.acmeNames[route.Normalize(n)] {
				rest = append(rest, n)
			}
		}
		names = rest
	}
	return s.cur.Load().uncovered(names)
}

// set is the certificates at one moment, indexed by the names they are
// for.
type set struct {
	certs    []*tls.Certificate
	exact    map[string][]*tls.Certificate // by DNS name or IP
	wildcard map[string][]*tls.Certificate // "*.example.com" by "example.com"
}

func newSet(certs []*tls.Certificate) *set {
	cs := &set{exact: map[string][]*tls.Certificate{}, wildcard: map[string][]*tls.Certificate{}}
	for _, c := range certs {
		cs.add(c)
	}
	return cs
}

func (cs *set) add(c *tls.Certificate) {
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
func (cs *set) candidates(name string) []*tls.Certificate {
	name = route.Normalize(name)
	out := cs.exact[name]
	if i := strings.IndexByte(name, '.'); i > 0 {
		if w := cs.wildcard[name[i+1:]]; len(w) > 0 {
			out = append(out[:len(out):len(out)], w...)
		}
	}
	return out
}

func (cs *set) pick(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if len(cs.certs) == 0 {
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

func (cs *set) uncovered(names []string) string {
	if len(cs.certs) == 0 {
		return ""
	}
	var missing []string
	for _, n := range names {
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
	return "no certificate is for " + strings.Join(missing, ", ")
}
