package edge

import (
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/edged/edged/pkg/certs"
	"github.com/edged/edged/pkg/config"
	"github.com/edged/edged/pkg/metric"
	"github.com/prometheus/client_golang/prometheus"
)

// newACME sets up the ACME client for cfg's sites that say tls =
// "acme"; Serve starts it once the listeners are known.
func (s *Server) newACME(cfg *config.Config) (*certs.ACME, error) {
	a := cfg.ACME
	o := certs.ACMEOptions{CA: a.CA, Email: a.Email, Storage: a.StorageDir(), RenewCheck: a.RenewCheck.D()}
	if a.CARoot != "" {
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		b, err := os.ReadFile(a.CARoot)
		if err != nil {
			return nil, fmt.Errorf("acme.ca_root: %w", err)
		}
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("acme.ca_root %s: no PEM certificate in it", a.CARoot)
		}
		o.Roots = pool
	}
	if s.metrics != nil {
		o.OnResult = s.metrics.certificateOrder
	}
	return certs.NewACME(o, s.log.With().Str("component", "acme").Logger())
}

// startACME begins the orders, answering the CA on the first HTTP and
// HTTPS listeners.
func (s *Server) startACME(ls *Listeners) error {
	if s.acme == nil {
		return nil
	}
	a := s.Config().ACME
	var httpAddr, tlsAddr string
	if len(ls.HTTP) > 0 && a.Allows(config.ChallengeHTTP01) {
		httpAddr = ls.HTTP[0].Addr().String()
	}
	if len(ls.HTTPS) > 0 && a.Allows(config.ChallengeTLSALPN01) {
		tlsAddr = ls.HTTPS[0].Addr().String()
	}
	if httpAddr == "" && tlsAddr == "" {
		return fmt.Errorf("tls = \"acme\" needs a listener the CA can reach for acme.challenges %q: an HTTP one (listen.http) for http-01, an HTTPS one for tls-alpn-01", a.Challenges)
	}
	return s.acme.Start(httpAddr, tlsAddr)
}

// reloadACME keeps the names of the new config; the CA and account
// settings are those edged started with.
func (s *Server) reloadACME(old, cfg *config.Config) {
	if s.acme == nil {
		if cfg.ACMEUsed() {
			s.log.Warn().Strs("names", cfg.ACMENames()).Msg("tls = \"acme\" is new in this config: ACME starts at the next restart of edged (systemctl restart edged drops no connection); until then TLS handshakes for these names fail, or get another site's certificate")
		}
		return
	}
	if cfg.ACME.CA != old.ACME.CA || cfg.ACME.Email != old.ACME.Email || cfg.ACME.CARoot != old.ACME.CARoot || cfg.ACME.StorageDir() != old.ACME.StorageDir() {
		s.log.Warn().Msg("[acme] changed: the new CA, account or storage is used from the next restart of edged")
	}
	if err := s.acme.Manage(cfg.ACMENames()); err != nil {
		s.log.Error().Caller().Err(err).Msg("acme: cannot take the new names")
	}
}

// answerACME answers the CA's HTTP-01 validation of a name edged keeps a
// certificate for; it says whether r was one.
func (st *state) answerACME(w http.ResponseWriter, r *http.Request, lr *logRecord) bool {
	if st.acme == nil || r.TLS != nil || !strings.HasPrefix(r.URL.Path, acmeChallenges) {
		return false
	}
	sw := &statusWriter{ResponseWriter: w}
	if !st.acme.HandleHTTP(sw, r) {
		return false
	}
	lr.status, lr.bytes, lr.kind = sw.status, sw.bytes, kindEdge
	return true
}

// serveCertificates is GET /certificates on the admin listener: every
// certificate, where it came from, when it ends and is renewed, and why
// an order failed; edgectl status and doctor read it.
func (s *Server) serveCertificates(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	infos := s.cur.Load().certs.Infos()
	if infos == nil {
		infos = []certs.Info{}
	}
	json.NewEncoder(w).Encode(struct {
		Certificates []certs.Info `json:"certificates"`
	}{infos})
}

// certificateOrder counts an ACME order's end.
func (m *metrics) certificateOrder(renewal bool, err string) {
	order, result := "new", "ok"
	if renewal {
		order = "renewal"
	}
	if err != "" {
		result = "failed"
	}
	m.renewals.WithLabelValues(result, order).Inc()
}

// certCollector reports each certificate's time left at each scrape.
type certCollector struct {
	s      *Server
	expiry *prometheus.Desc
}

func newCertCollector(s *Server) *certCollector {
	return &certCollector{s: s, expiry: prometheus.NewDesc(metric.CertificateExpirySeconds,
		"Seconds until the certificate's end (negative once it has ended), by its first name and where it came from.",
		[]string{metric.LabelName, metric.LabelSource}, nil)}
}

func (c *certCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.expiry }

func (c *certCollector) Collect(ch chan<- prometheus.Metric) {
	now := time.Now()
	seen := map[string]bool{}
	for _, in := range c.s.cur.Load().certs.Infos() {
		if in.NotAfter.IsZero() || len(in.Names) == 0 {
			continue
		}
		key := in.Names[0] + " " + in.Source
		if seen[key] {
			continue // two files for one name (RSA and ECDSA): the first
		}
		seen[key] = true
		ch <- prometheus.MustNewConstMetric(c.expiry, prometheus.GaugeValue, in.NotAfter.Sub(now).Seconds(), in.Names[0], in.Source)
	}
}
