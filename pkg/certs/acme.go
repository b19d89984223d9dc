package certs

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/mholt/acmez/v3/acme"
	"github.com/rs/zerolog"
	"go.uber.org/zap"
)

// ACMEOptions say which CA to ask and where the challenges are answered.
type ACMEOptions struct {
	// CA is the directory URL; Email the account's contact ("" for none).
	CA, Email string
	// Roots, when not nil, are the roots trusted when talking to the CA
	// (a private CA's); the system's otherwise.
	Roots *x509.CertPool
	// Storage is the directory accounts, keys and certificates are kept
	// in: whatever shares it (a restart, another host) shares them.
	Storage string
	// RenewCheck is how often the certificates are looked at.
	RenewCheck time.Duration
	// OnResult, when set, is told of each order's end: renewal or first
	// certificate, and the error ("" when it was issued).
	OnResult func(renewal bool, err string)
}

// ACME gets certificates for the names it is given, and renews them,
// from an RFC 8555 CA; it lives as long as edged, across reloads.
type ACME struct {
	log    zerolog.Logger
	opts   ACMEOptions
	cache  *certmagic.Cache
	magic  *certmagic.Config
	zap    *zap.Logger
	issuer atomic.Pointer[certmagic.ACMEIssuer] // set by Start
	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	names    []string
	state    map[string]*nameState
	fallback map[string]*tls.Certificate
	// orders ends the orders of a name: the library keeps retrying an
	// order until its context ends.
	orders map[string]context.CancelFunc
}

// nameState is what the last orders for a name came to.
type nameState struct {
	LastError   string    // "" once one succeeds
	LastErrorAt time.Time //
	Failures    int       // in a row
	ObtainedAt  time.Time
}

// NewACME sets up the ACME client; Manage starts the work.
func NewACME(o ACMEOptions, log zerolog.Logger) (*ACME, error) {
	if err := os.MkdirAll(o.Storage, 0o700); err != nil {
		return nil, fmt.Errorf("acme storage %s: %w (under systemd it is StateDirectory=edged; elsewhere set [acme] storage)", o.Storage, err)
	}
	a := &ACME{log: log, opts: o, state: map[string]*nameState{}, fallback: map[string]*tls.Certificate{},
		orders: map[string]context.CancelFunc{}}
	a.ctx, a.cancel = context.WithCancel(context.Background())
	zl := zap.New(newZapCore(log))
	a.zap = zl
	a.cache = certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert:   func(certmagic.Certificate) (*certmagic.Config, error) { return a.magic, nil },
		RenewCheckInterval: o.RenewCheck,
		Logger:             zl,
	})
	a.magic = certmagic.New(a.cache, certmagic.Config{
		Storage: &certmagic.FileStorage{Path: o.Storage},
		OnEvent: a.onEvent,
		Logger:  zl,
	})
	return a, nil
}

// Start begins the orders, answering the CA's validations on the
// listeners at httpAddr (HTTP-01) and tlsAddr (TLS-ALPN-01); "" leaves
// that challenge out. Names given to Manage before are ordered now.
func (a *ACME) Start(httpAddr, tlsAddr string) error {
	o := a.opts
	tmpl := certmagic.ACMEIssuer{
		CA:                      o.CA,
		Email:                   o.Email,
		Agreed:                  true,
		TrustedRoots:            o.Roots,
		DisableHTTPChallenge:    httpAddr == "",
		DisableTLSALPNChallenge: tlsAddr == "",
		Logger:                  a.zap,
	}
	// The challenge "servers" are edged's own listeners: the library
	// finds the address in use and leaves the answering to HandleHTTP
	// and GetCertificate, through the storage they share. It has one
	// host for both: when the listeners' hosts differ, TLS-ALPN-01 is
	// left out (the CA tries HTTP-01 on port 80).
	var tlsHost string
	if err := listenerAt(tlsAddr, &tlsHost, &tmpl.AltTLSALPNPort); err != nil {
		return err
	}
	tmpl.ListenHost = tlsHost
	if httpAddr != "" {
		if err := listenerAt(httpAddr, &tmpl.ListenHost, &tmpl.AltHTTPPort); err != nil {
			return err
		}
		if tlsAddr != "" && tlsHost != tmpl.ListenHost {
			tmpl.DisableTLSALPNChallenge = true
			a.log.Info().Str("http", httpAddr).Str("https", tlsAddr).
				Msg("acme: the HTTP and HTTPS listeners have different hosts: the CA validates over HTTP-01 only")
		}
	}
	iss := certmagic.NewACMEIssuer(a.magic, tmpl)
	a.magic.Issuers = []certmagic.Issuer{iss}
	a.issuer.Store(iss)
	return a.order()
}

func listenerAt(addr string, host *string, port *int) error {
	if addr == "" {
		return nil
	}
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("acme: listener %q: %w", addr, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		return fmt.Errorf("acme: listener %q: %w", addr, err)
	}
	*host, *port = h, n
	return nil
}

// Manage makes names the ones kept: a certificate is obtained for each
// new one in the background (retried with back-off while it fails), and
// one no longer listed is no longer ordered nor renewed.
func (a *ACME) Manage(names []string) error {
	a.mu.Lock()
	var gone []certmagic.SubjectIssuer
	for _, n := range a.names {
		if !slices.Contains(names, n) {
			gone = append(gone, certmagic.SubjectIssuer{Subject: n})
			delete(a.state, n)
			delete(a.fallback, n)
			if cancel := a.orders[n]; cancel != nil {
				cancel()
				delete(a.orders, n)
			}
		}
	}
	a.names = slices.Clone(names)
	for _, n := range names {
		if a.state[n] == nil {
			a.state[n] = &nameState{}
		}
	}
	a.mu.Unlock()
	if len(gone) > 0 {
		a.cache.RemoveManaged(gone)
	}
	if a.issuer.Load() == nil {
		return nil // Start orders them
	}
	return a.order()
}

// order starts managing each name not yet managed, each under a context
// of its own that Manage ends when the name goes.
func (a *ACME) order() error {
	a.mu.Lock()
	var fresh []string
	ctxs := map[string]context.Context{}
	for _, n := range a.names {
		if a.orders[n] == nil {
			ctx, cancel := context.WithCancel(a.ctx)
			a.orders[n], ctxs[n] = cancel, ctx
			fresh = append(fresh, n)
		}
	}
	a.mu.Unlock()
	for _, n := range fresh {
		if err := a.magic.ManageAsync(ctxs[n], []string{n}); err != nil {
			return err
		}
	}
	return nil
}

// Manages says name is one of the names kept.
func (a *ACME) Manages(name string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Contains(a.names, name)
}

// Challenge says hello is a CA's TLS-ALPN-01 validation, which
// GetCertificate answers with the challenge's certificate.
func Challenge(hello *tls.ClientHelloInfo) bool {
	return len(hello.SupportedProtos) == 1 && hello.SupportedProtos[0] == ACMETLS1
}

// ACMETLS1 is the ALPN protocol of TLS-ALPN-01 (RFC 8737).
const ACMETLS1 = "acme-tls/1"

// GetCertificate answers a TLS-ALPN-01 validation, or gives the
// certificate of a name kept: the CA's once there is one, a self-signed
// one until then (with a warning, once).
func (a *ACME) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if Challenge(hello) {
		return a.magic.GetCertificate(hello)
	}
	name := strings.ToLower(hello.ServerName)
	if !a.Manages(name) {
		return nil, fmt.Errorf("no certificate for %q", hello.ServerName)
	}
	if certs := a.cache.AllMatchingCertificates(name); len(certs) > 0 {
		return a.magic.GetCertificate(hello)
	}
	return a.selfSigned(name)
}

// HandleHTTP answers an HTTP-01 validation; it says whether r was one.
func (a *ACME) HandleHTTP(w http.ResponseWriter, r *http.Request) bool {
	return a.issuer.Load().HandleHTTPChallenge(w, r)
}

// selfSigned is the stand-in for a name the CA has not certified yet.
func (a *ACME) selfSigned(name string) (*tls.Certificate, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if c := a.fallback[name]; c != nil {
		return c, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name, Organization: []string{"edged self-signed stand-in"}},
		DNSNames:     []string{name},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(7 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	leaf, _ := x509.ParseCertificate(der)
	c := &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
	a.fallback[name] = c
	why := "the first order has not finished"
	if st := a.state[name]; st != nil && st.LastError != "" {
		why = st.LastError
	}
	a.log.Warn().Str("name", name).Str("why", why).
		Msg("no certificate from the CA for this name yet: serving a self-signed one, which browsers warn about, until the CA issues one (edgectl status shows the orders)")
	return c, nil
}

// onEvent follows the orders, for status, doctor and the metrics.
func (a *ACME) onEvent(_ context.Context, event string, data map[string]any) error {
	name, _ := data["identifier"].(string)
	renewal, _ := data["renewal"].(bool)
	switch event {
	case "cert_obtained":
		a.mu.Lock()
		st := a.state[name]
		if st != nil {
			*st = nameState{ObtainedAt: time.Now()}
		}
		delete(a.fallback, name)
		a.mu.Unlock()
		if st == nil {
			// Issued for a name dropped meanwhile: not to be renewed.
			a.cache.RemoveManaged([]certmagic.SubjectIssuer{{Subject: name}})
		}
		if a.opts.OnResult != nil {
			a.opts.OnResult(renewal, "")
		}
	case "cert_failed":
		msg := "failed"
		if err, ok := data["error"].(error); ok {
			msg = caError(err)
		}
		a.mu.Lock()
		if st := a.state[name]; st != nil {
			st.LastError, st.LastErrorAt = msg, time.Now()
			st.Failures++
		}
		a.mu.Unlock()
		if a.opts.OnResult != nil {
			a.opts.OnResult(renewal, msg)
		}
	}
	return nil
}

// caError is the CA's own words when it gave some (an ACME problem
// document), the error otherwise.
func caError(err error) string {
	var p acme.Problem
	if errors.As(err, &p) {
		s := p.Type
		if p.Detail != "" {
			s += ": " + p.Detail
		}
		return s
	}
	return err.Error()
}

// Info is one certificate kept by ACME, for edgectl status and doctor.
type Info struct {
	Names     []string  `json:"names"`
	Source    string    `json:"source"` // "acme", "file" or "self-signed"
	Issuer    string    `json:"issuer,omitempty"`
	NotBefore time.Time `json:"not_before,omitzero"`
	NotAfter  time.Time `json:"not_after,omitzero"`
	// RenewAt is when renewal is due: the CA's ACME Renewal Information
	// window when it offers one (RenewBy says "ari"), else when a third
	// of the lifetime is left ("lifetime").
	RenewAt time.Time `json:"renew_at,omitzero"`
	RenewBy string    `json:"renew_by,omitempty"`
	File    string    `json:"file,omitempty"`
	// LastError is why the last order failed ("" when it did not), and
	// Failures how many in a row have.
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	Failures    int       `json:"failures,omitempty"`
}

// Infos describes the certificate of each name kept.
func (a *ACME) Infos() []Info {
	a.mu.Lock()
	names := slices.Clone(a.names)
	states := map[string]nameState{}
	for n, st := range a.state {
		states[n] = *st
	}
	a.mu.Unlock()
	var out []Info
	for _, n := range names {
		in := Info{Names: []string{n}, Source: "self-signed"}
		if cs := a.cache.AllMatchingCertificates(n); len(cs) > 0 {
			c := cs[0]
			leaf := c.Leaf
			in.Source = "acme"
			in.Names = c.Names
			if leaf != nil {
				in.Issuer, in.NotBefore, in.NotAfter = issuerName(leaf), leaf.NotBefore, leaf.NotAfter
				in.RenewAt, in.RenewBy = a.renewAt(n, leaf)
			}
		}
		st := states[n]
		in.LastError, in.LastErrorAt, in.Failures = st.LastError, st.LastErrorAt, st.Failures
		out = append(out, in)
	}
	return out
}

// renewAt is when the certificate for name is due for renewal: the time
// chosen in the CA's ARI window when there is one, else when a third of
// its lifetime is left.
func (a *ACME) renewAt(name string, leaf *x509.Certificate) (time.Time, string) {
	if iss := a.issuer.Load(); iss != nil {
		key := certmagic.StorageKeys.SiteMeta(iss.IssuerKey(), name)
		if b, err := a.magic.Storage.Load(a.ctx, key); err == nil {
			var meta struct {
				IssuerData struct {
					RenewalInfo *acme.RenewalInfo `json:"renewal_info"`
				} `json:"issuer_data"`
			}
			if json.Unmarshal(b, &meta) == nil && meta.IssuerData.RenewalInfo != nil {
				if ri := meta.IssuerData.RenewalInfo; !ri.SelectedTime.IsZero() {
					return ri.SelectedTime, "ari"
				} else if !ri.SuggestedWindow.Start.IsZero() {
					return ri.SuggestedWindow.Start, "ari"
				}
			}
		}
	}
	life := leaf.NotAfter.Sub(leaf.NotBefore)
	return leaf.NotAfter.Add(-life / 3), "lifetime"
}

func issuerName(c *x509.Certificate) string {
	if c.Issuer.CommonName != "" {
		return c.Issuer.CommonName
	}
	return c.Issuer.String()
}

// Close stops renewing.
func (a *ACME) Close() {
	if a == nil {
		return
	}
	a.cancel()
	a.cache.Stop()
}

// sortInfos orders certificates by their first name.
func sortInfos(in []Info) {
	sort.SliceStable(in, func(i, j int) bool {
		return firstName(in[i]) < firstName(in[j])
	})
}

func firstName(in Info) string {
	if len(in.Names) == 0 {
		return ""
	}
	return in.Names[0]
}
