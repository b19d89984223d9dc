package ctl

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/edged/edged/pkg/config"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape is one reading of edged's metrics, parsed by Prometheus's own
// text parser.
type scrape struct {
	at   time.Time
	fams map[string]*dto.MetricFamily
}

// errNoMetrics says the config serves no metrics.
var errNoMetrics = fmt.Errorf("the config has no [metrics] listen: add [metrics] listen = \"127.0.0.1:9180\" (or a socket path) to edged.toml and restart edged")

// readMetrics scrapes edged at cfg's [metrics] listen.
func readMetrics(ctx context.Context, cfg *config.Config) (*scrape, error) {
	b, err := adminGet(ctx, cfg, "/metrics", "metrics")
	if err != nil {
		return nil, err
	}
	return parseScrape(b, cfg.Metrics.Listen)
}

// parseScrape parses a /metrics answer from the edged at where.
func parseScrape(b []byte, where string) (*scrape, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(string(b)))
	if err != nil {
		return nil, fmt.Errorf("edged's metrics at %s do not parse: %w", where, err)
	}
	return &scrape{at: time.Now(), fams: fams}, nil
}

// series is one sample of a family: its labels and value (a histogram's
// count, and its buckets).
type series struct {
	labels  map[string]string
	value   float64
	sum     float64
	buckets []bucket
}

type bucket struct {
	le    float64
	count float64
}

func (s *scrape) series(name string) []series {
	if s == nil || s.fams[name] == nil {
		return nil
	}
	var out []series
	for _, m := range s.fams[name].Metric {
		se := series{labels: map[string]string{}}
		for _, l := range m.Label {
			se.labels[l.GetName()] = l.GetValue()
		}
		switch {
		case m.Counter != nil:
			se.value = m.Counter.GetValue()
		case m.Gauge != nil:
			se.value = m.Gauge.GetValue()
		case m.Untyped != nil:
			se.value = m.Untyped.GetValue()
		case m.Histogram != nil:
			se.value = float64(m.Histogram.GetSampleCount())
			se.sum = m.Histogram.GetSampleSum()
			for _, b := range m.Histogram.Bucket {
				se.buckets = append(se.buckets, bucket{b.GetUpperBound(), float64(b.GetCumulativeCount())})
			}
		}
		out = append(out, se)
	}
	return out
}

// sum adds the values of name's series whose labels hold kv.
func (s *scrape) sum(name string, kv ...string) float64 {
	var t float64
	for _, se := range s.series(name) {
		if se.match(kv) {
			t += se.value
		}
	}
	return t
}

// by sums name's values grouped by one label.
func (s *scrape) by(name, label string) map[string]float64 {
	out := map[string]float64{}
	for _, se := range s.series(name) {
		out[se.labels[label]] += se.value
	}
	return out
}

func (se series) match(kv []string) bool {
	for i := 0; i+1 < len(kv); i += 2 {
		if se.labels[kv[i]] != kv[i+1] {
			return false
		}
	}
	return true
}

// histogram merges the buckets of name's series that hold kv; with a
// base, what base had is taken away, leaving what came between.
func (s *scrape) histogram(base *scrape, name string, kv ...string) []bucket {
	merged := map[float64]float64{}
	add := func(sc *scrape, sign float64) {
		for _, se := range sc.series(name) {
			if se.match(kv) {
				for _, b := range se.buckets {
					merged[b.le] += sign * b.count
				}
			}
		}
	}
	add(s, 1)
	if base != nil {
		add(base, -1)
	}
	out := make([]bucket, 0, len(merged))
	for le, c := range merged {
		out = append(out, bucket{le, c})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].le < out[j].le })
	return out
}

// quantile estimates the q quantile of cumulative buckets, as
// Prometheus's histogram_quantile does: linear within the bucket; NaN
// when there is nothing.
func quantile(q float64, bs []bucket) float64 {
	if len(bs) == 0 {
		return math.NaN()
	}
	total := bs[len(bs)-1].count
	for _, b := range bs {
		if math.IsInf(b.le, 1) {
			total = b.count
		}
	}
	if total <= 0 {
		return math.NaN()
	}
	rank := q * total
	prevLe, prevCount := 0.0, 0.0
	for _, b := range bs {
		if b.count >= rank {
			if math.IsInf(b.le, 1) {
				return prevLe
			}
			if b.count == prevCount {
				return b.le
			}
			return prevLe + (b.le-prevLe)*(rank-prevCount)/(b.count-prevCount)
		}
		prevLe, prevCount = b.le, b.count
	}
	return prevLe
}

// adminGet reads path from edged's admin listener ([metrics] listen);
// what names it in errors ("metrics").
func adminGet(ctx context.Context, cfg *config.Config, path, what string) ([]byte, error) {
	listen := cfg.Metrics.Listen
	if listen == "" {
		return nil, errNoMetrics
	}
	network := "tcp"
	if cfg.Metrics.Unix() {
		network = "unix"
	}
	return adminGetAt(ctx, network, listen, path, what, "is edged running?")
}

// adminGetAt reads path from the admin listener at addr; hint follows an
// error reaching it.
func adminGetAt(ctx context.Context, network, addr, path, what, hint string) ([]byte, error) {
	// One connection a reading, closed after it: --watch reads for hours.
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		}}}
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://edged"+path, nil)
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("edged's %s at %s: %w (%s)", what, addr, err, hint)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("edged's %s at %s: %s", what, addr, resp.Status)
	}
	return io.ReadAll(io.LimitReader(resp.Body, 32<<20))
}

// certInfo is one certificate as edged's /certificates describes it.
type certInfo struct {
	Names       []string  `json:"names"`
	Source      string    `json:"source"` // "file", "acme", "self-signed"
	Issuer      string    `json:"issuer,omitempty"`
	NotAfter    time.Time `json:"not_after,omitzero"`
	RenewAt     time.Time `json:"renew_at,omitzero"`
	RenewBy     string    `json:"renew_by,omitempty"`
	File        string    `json:"file,omitempty"`
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	Failures    int       `json:"failures,omitempty"`
}

// readCertificates asks edged for its certificates.
func readCertificates(ctx context.Context, cfg *config.Config) ([]certInfo, error) {
	b, err := adminGet(ctx, cfg, "/certificates", "certificates")
	if err != nil {
		return nil, err
	}
	var body struct {
		Certificates []certInfo `json:"certificates"`
	}
	if err := json.Unmarshal(b, &body); err != nil {
		return nil, fmt.Errorf("edged's /certificates: %w", err)
	}
	return body.Certificates, nil
}
