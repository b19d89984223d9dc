package ctl

import (
	"context"
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/edged/edged/pkg/config"
	"github.com/edged/edged/pkg/metric"
)

// liveView is the load on the suite between two readings of edged's
// metrics: what `edgectl status` shows under its units.
type liveView struct {
	Seconds         float64            `json:"seconds"`
	RequestsPerSec  float64            `json:"requests_per_second"`
	ErrorsPerSec    float64            `json:"errors_per_second"` // 5xx
	P50ms           float64            `json:"p50_ms"`
	P99ms           float64            `json:"p99_ms"`
	InFlight        float64            `json:"in_flight"`
	Queued          float64            `json:"queued"` // waiting for a worker now
	QueueWaitP50ms  float64            `json:"queue_wait_p50_ms"`
	QueueWaitP99ms  float64            `json:"queue_wait_p99_ms"`
	SpillsPerSec    float64            `json:"spills_per_second"`
	StreamedPerSec  float64            `json:"streamed_per_second"`
	RejectedPerSec  map[string]float64 `json:"rejected_per_second"`
	Workers         []liveWorker       `json:"workers"`
	Sockets         []liveSocket       `json:"sockets"`
	Overflows       float64            `json:"kernel_listen_overflows"`
	OverflowsPerSec float64            `json:"kernel_listen_overflows_per_second"`
}

type liveWorker struct {
	Worker         string  `json:"worker"`
	RequestsPerSec float64 `json:"requests_per_second"`
	Busy           float64 `json:"busy"` // share of the time in the app (per thread or greenlet)
	RSSBytes       float64 `json:"rss_bytes"`
	Restarts       float64 `json:"restarts"`
}

type liveSocket struct {
	Socket  string  `json:"socket"`
	Waiting float64 `json:"waiting"`
	Backlog float64 `json:"backlog"`
}

// live reads the metrics twice, every apart, and works out the view.
func live(ctx context.Context, cfg *config.Config, every time.Duration) (*liveView, error) {
	a, err := readMetrics(ctx, cfg)
	if err != nil {
		return nil, err
	}
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(every):
	}
	b, err := readMetrics(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return between(a, b), nil
}

// between is the view from reading a to reading b.
func between(a, b *scrape) *liveView {
	secs := b.at.Sub(a.at).Seconds()
	rate := func(name string, kv ...string) float64 {
		return math.Max(b.sum(name, kv...)-a.sum(name, kv...), 0) / secs
	}
	ms := func(v float64) float64 {
		if math.IsNaN(v) {
			return 0
		}
		return math.Round(v*1e4) / 10
	}
	v := &liveView{
		Seconds:         secs,
		RequestsPerSec:  rate(metric.RequestsTotal),
		ErrorsPerSec:    rate(metric.RequestsTotal, metric.LabelClass, "5xx"),
		P50ms:           ms(quantile(0.5, b.histogram(a, metric.RequestDurationSeconds))),
		P99ms:           ms(quantile(0.99, b.histogram(a, metric.RequestDurationSeconds))),
		InFlight:        b.sum(metric.InFlightRequests),
		QueueWaitP50ms:  ms(quantile(0.5, b.histogram(a, metric.QueueWaitSeconds))),
		QueueWaitP99ms:  ms(quantile(0.99, b.histogram(a, metric.QueueWaitSeconds))),
		SpillsPerSec:    rate(metric.SpillsTotal),
		StreamedPerSec:  rate(metric.StreamedTotal),
		RejectedPerSec:  map[string]float64{},
		Overflows:       b.sum(metric.KernelListenOverflowsTotal),
		OverflowsPerSec: rate(metric.KernelListenOverflowsTotal),
	}
	before := a.by(metric.RejectedTotal, metric.LabelLimit)
	for l, n := range b.by(metric.RejectedTotal, metric.LabelLimit) {
		if d := n - before[l]; d > 0 {
			v.RejectedPerSec[l] = d / secs
		}
	}
	served0, busy0 := a.by(metric.WorkerRequestsTotal, metric.LabelWorker), a.by(metric.WorkerBusySecondsTotal, metric.LabelWorker)
	rss, restarts := b.by(metric.WorkerRSSBytes, metric.LabelWorker), b.by(metric.WorkerRestartsTotal, metric.LabelWorker)
	busy := b.by(metric.WorkerBusySecondsTotal, metric.LabelWorker)
	for w, n := range b.by(metric.WorkerRequestsTotal, metric.LabelWorker) {
		v.Workers = append(v.Workers, liveWorker{Worker: w, RequestsPerSec: math.Max(n-served0[w], 0) / secs,
			Busy: math.Max(busy[w]-busy0[w], 0) / secs, RSSBytes: rss[w], Restarts: restarts[w]})
	}
	sort.Slice(v.Workers, func(i, j int) bool { return workerLess(v.Workers[i].Worker, v.Workers[j].Worker) })
	backlog := b.by(metric.ListenBacklog, metric.LabelSocket)
	for s, n := range b.by(metric.ListenQueue, metric.LabelSocket) {
		v.Sockets = append(v.Sockets, liveSocket{Socket: s, Waiting: n, Backlog: backlog[s]})
		if strings.HasPrefix(s, "workers ") {
			v.Queued = n
		}
	}
	sort.Slice(v.Sockets, func(i, j int) bool { return v.Sockets[i].Socket < v.Sockets[j].Socket })
	return v
}

func workerLess(a, b string) bool {
	if len(a) != len(b) {
		return len(a) < len(b)
	}
	return a < b
}

func (v *liveView) print(out io.Writer) {
	fmt.Fprintf(out, "load over %.1fs: %.1f req/s, %.1f 5xx/s, p50 %.1f ms, p99 %.1f ms; %g in flight\n",
		v.Seconds, v.RequestsPerSec, v.ErrorsPerSec, v.P50ms, v.P99ms, v.InFlight)
	fmt.Fprintf(out, "worker queue: %g waiting, wait p50 %.1f ms, p99 %.1f ms; %.1f spills/s, %.1f streamed/s",
		v.Queued, v.QueueWaitP50ms, v.QueueWaitP99ms, v.SpillsPerSec, v.StreamedPerSec)
	var rej []string
	for l, n := range v.RejectedPerSec {
		rej = append(rej, fmt.Sprintf("%s %.1f/s", l, n))
	}
	sort.Strings(rej)
	if len(rej) > 0 {
		fmt.Fprintf(out, "; turned away: %s", strings.Join(rej, ", "))
	}
	fmt.Fprintln(out)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "WORKER\tREQ/S\tBUSY\tRSS\tRESTARTS")
	for _, w := range v.Workers {
		fmt.Fprintf(tw, "%s\t%.1f\t%.0f%%\t%.1fM\t%g\n", w.Worker, w.RequestsPerSec, 100*w.Busy, w.RSSBytes/(1<<20), w.Restarts)
	}
	tw.Flush()
	tw = tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SOCKET\tWAITING\tBACKLOG")
	for _, s := range v.Sockets {
		fmt.Fprintf(tw, "%s\t%g\t%g\n", s.Socket, s.Waiting, s.Backlog)
	}
	tw.Flush()
	fmt.Fprintf(out, "kernel listen overflows: %g since boot, %.1f/s now\n", v.Overflows, v.OverflowsPerSec)
}
