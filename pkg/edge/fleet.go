package edge

import (
	"runtime/debug"
	"strconv"
	"sync"

	"github.com/edged/edged/pkg/config"
	"github.com/edged/edged/pkg/metric"
	"github.com/prometheus/client_golang/prometheus"
)

// buildCollector is edged_build_info: what edgectl doctor --peer compares
// across the hosts of a fleet (the build, the config's shared part) and
// whether this one drains.
type buildCollector struct {
	s    *Server
	desc *prometheus.Desc

	mu   sync.Mutex
	cfg  *config.Config // the config hash was taken of
	hash string
}

func newBuildCollector(s *Server) *buildCollector {
	return &buildCollector{s: s, desc: prometheus.NewDesc(metric.BuildInfo,
		"Always 1: edged's build, the hash of the config's part every host of a fleet must share, and whether it drains.",
		[]string{metric.LabelVersion, metric.LabelConfigHash, metric.LabelDraining}, nil)}
}

func (c *buildCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *buildCollector) Collect(ch chan<- prometheus.Metric) {
	cfg := c.s.Config()
	c.mu.Lock()
	if c.cfg != cfg {
		c.cfg, c.hash = cfg, cfg.Hash()
	}
	hash := c.hash
	c.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, 1, version(), hash, strconv.FormatBool(c.s.Draining()))
}

// version is the build's commit (with "+dirty" when its tree had
// changes), else its module version.
var version = sync.OnceValue(func() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	rev, dirty := "", false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return bi.Main.Version
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if dirty {
		rev += "+dirty"
	}
	return rev
})
