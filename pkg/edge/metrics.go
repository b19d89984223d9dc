package edge

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/edged/edged/pkg/backlog"
	"github.com/edged/edged/pkg/config"
	"github.com/edged/edged/pkg/metric"
	"github.com/edged/edged/pkg/wire"
	"github.com/edged/edged/pkg/ws"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are edged's Prometheus metrics, served on [metrics] listen
// only, never on a public listener. What the workers measure (the app's
// wall and CPU time, when they took a request, their pid and memory)
// comes back with each answer (wire.Stats), so the edge aggregates it by
// route and by worker without asking anyone.
type metrics struct {
	reg *prometheus.Registry

	requests  *prometheus.CounterVec   // by class, method, kind
	duration  *prometheus.HistogramVec // edge total, by kind
	queueWait prometheus.Histogram
	appTime   *prometheus.HistogramVec // by route
	appWall   *prometheus.CounterVec   // by route
	appCPU    *prometheus.CounterVec   // by route
	appJSON   *prometheus.CounterVec   // by route
	rejected  *prometheus.CounterVec   // by limit
	bytesIn   prometheus.Counter
	bytesOut  prometheus.Counter
	spills    *prometheus.CounterVec // by what
	streamed  prometheus.Counter
	streamFor prometheus.Counter
	tls       *prometheus.CounterVec // by result

	served   *prometheus.CounterVec // by worker
	busy     *prometheus.CounterVec // by worker
	rss      *prometheus.GaugeVec   // by worker
	restarts *prometheus.CounterVec // by worker

	webSockets *prometheus.GaugeVec   // by site
	wsMessages *prometheus.CounterVec // by site, direction
	wsBytes    *prometheus.CounterVec // by site, direction
	wsClosed   *prometheus.CounterVec // by site, code

	renewals *prometheus.CounterVec // ACME orders, by result, order

	mu     sync.Mutex
	pids   map[string]uint32  // worker -> its Python process's pid
	keys   map[string]keySeen // worker -> its report on the app's key
	routes routeTable
}

// Kinds of request, for the "kind" label.
const (
	kindStatic = "static"
	kindApp    = "app"
	kindEdge   = "edge" // answered by edged itself: an error, OPTIONS *
	// kindWebSocket: a WebSocket's opening (counted when it closes).
	kindWebSocket = "websocket"
)

// latencyBuckets span 1 ms to 30 s (app.timeout's default).
var latencyBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

func newMetrics() *metrics {
	m := &metrics{
		reg:  prometheus.NewRegistry(),
		pids: map[string]uint32{},
		keys: map[string]keySeen{},
	}
	m.routes.max = maxRoutes
	f := func(c prometheus.Collector) { m.reg.MustRegister(c) }
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: metric.RequestsTotal,
		Help: "Requests answered, by status class (2xx...), method, kind (static, app, edge) and site (empty: no site took it)."}, []string{metric.LabelClass, metric.LabelMethod, metric.LabelKind, metric.LabelSite})
	m.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: metric.RequestDurationSeconds,
		Help: "Time from a request's head to the end of its answer, at the edge.", Buckets: latencyBuckets}, []string{metric.LabelKind, metric.LabelSite})
	m.queueWait = prometheus.NewHistogram(prometheus.HistogramOpts{Name: metric.QueueWaitSeconds,
		Help: "Time a request waited in the worker queue before a worker took it.", Buckets: latencyBuckets})
	m.appTime = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: metric.AppDurationSeconds,
		Help: "The app's wall time per request, as the worker measured it, by route.", Buckets: latencyBuckets}, []string{metric.LabelRoute})
	m.appWall = prometheus.NewCounterVec(prometheus.CounterOpts{Name: metric.AppWallSecondsTotal,
		Help: "The app's wall time, summed, by route."}, []string{metric.LabelRoute})
	m.appCPU = prometheus.NewCounterVec(prometheus.CounterOpts{Name: metric.AppCPUSecondsTotal,
		Help: "The CPU time of the thread that ran the app, summed, by route (sync and threads classes: gevent's greenlets share a thread)."}, []string{metric.LabelRoute})
	m.appJSON = prometheus.NewCounterVec(prometheus.CounterOpts{Name: metric.AppJSONSecondsTotal,
		Help: "The time the app spent encoding JSON (json.dumps, as Flask's and Django's JSON answers call it), summed, by route (WSGI classes)."}, []string{metric.LabelRoute})
	m.rejected = prometheus.NewCounterVec(prometheus.CounterOpts{Name: metric.RejectedTotal,
		Help: "Requests turned away, by the limit that did it (limits.max_body: 413, limits.header_timeout and body_timeout: 408, limits.max_header: 431, limits.rate: 429, limits.connections_per_client, queue_length, queue_timeout: 503, app.timeout: 504; protocol: a malformed request)."}, []string{metric.LabelLimit})
	m.bytesIn = prometheus.NewCounter(prometheus.CounterOpts{Name: metric.ReceivedBodyBytesTotal, Help: "Request body bytes received."})
	m.bytesOut = prometheus.NewCounter(prometheus.CounterOpts{Name: metric.SentBodyBytesTotal, Help: "Response body bytes sent."})
	m.spills = prometheus.NewCounterVec(prometheus.CounterOpts{Name: metric.SpillsTotal,
		Help: "Bodies that outgrew their memory buffer and went to a temporary file, by what (request, response)."}, []string{metric.LabelWhat})
	m.streamed = prometheus.NewCounter(prometheus.CounterOpts{Name: metric.StreamedTotal,
		Help: "Answers passed on as the app sent them, their worker held (X-Accel-Buffering: no, text/event-stream, or over buffers.response_max)."})
	m.streamFor = prometheus.NewCounter(prometheus.CounterOpts{Name: metric.StreamedSecondsTotal,
		Help: "Time streamed answers held their workers, summed."})
	m.renewals = prometheus.NewCounterVec(prometheus.CounterOpts{Name: metric.CertificateRenewalsTotal,
		Help: "ACME orders that ended, by result (ok, failed) and order (new: a first certificate, renewal)."}, []string{metric.LabelResult, metric.LabelOrder})
	m.tls = prometheus.NewCounterVec(prometheus.CounterOpts{Name: metric.TLSHandshakesTotal,
		Help: "TLS handshakes, by result (ok, failed)."}, []string{metric.LabelResult})
	m.served = prometheus.NewCounterVec(prometheus.CounterOpts{Name: metric.WorkerRequestsTotal,
		Help: "Requests each worker answered."}, []string{metric.LabelWorker})
	m.busy = prometheus.NewCounterVec(prometheus.CounterOpts{Name: metric.WorkerBusySecondsTotal,
		Help: "Time each worker spent in the app; its rate is the worker's busy ratio (per thread or greenlet: over 1 with threads or gevent)."}, []string{metric.LabelWorker})
	m.rss = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: metric.WorkerRSSBytes,
		Help: "Resident memory of each worker's Python process, as of its last answer."}, []string{metric.LabelWorker})
	m.restarts = prometheus.NewCounterVec(prometheus.CounterOpts{Name: metric.WorkerRestartsTotal,
		Help: "New Python processes seen answering for each worker, after its first."}, []string{metric.LabelWorker})
	m.webSockets = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: metric.Websockets,
		Help: "WebSockets open, by site."}, []string{metric.LabelSite})
	m.wsMessages = prometheus.NewCounterVec(prometheus.CounterOpts{Name: metric.WebsocketMessagesTotal,
		Help: "WebSocket messages, by site and direction (in: from clients, out: to them), counted when each WebSocket closes."}, []string{metric.LabelSite, metric.LabelDirection})
	m.wsBytes = prometheus.NewCounterVec(prometheus.CounterOpts{Name: metric.WebsocketBytesTotal,
		Help: "WebSocket message bytes, by site and direction, counted when each WebSocket closes."}, []string{metric.LabelSite, metric.LabelDirection})
	m.wsClosed = prometheus.NewCounterVec(prometheus.CounterOpts{Name: metric.WebsocketsClosedTotal,
		Help: "Websockets closed, by site and close code (1000 normal, 1001 going away or idle, 1006 no close frame, 1007 invalid UTF-8, 1009 too big, 1011 the worker went away, 1012 restart)."}, []string{metric.LabelSite, metric.LabelCode})
	f(&keyCollector{m: m, desc: prometheus.NewDesc(metric.WorkerAppKeyInfo,
		"1 for each worker's report on the app's secret key (as judged at import; the key itself never leaves the worker): its source (environment, credential, literal, default, process, none), weak (under 256 bits), django_unsafe (DEBUG or ALLOWED_HOSTS = ['*']) and a 10-bit fingerprint that tells two workers' keys apart.",
		[]string{metric.LabelWorker, metric.LabelSource, metric.LabelWeak, metric.LabelDjangoUnsafe, metric.LabelFingerprint}, nil)})
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.queueWait, m.appTime, m.appWall, m.appCPU, m.appJSON, m.rejected,
		m.bytesIn, m.bytesOut, m.spills, m.streamed, m.streamFor, m.tls, m.served, m.busy, m.rss, m.restarts,
		m.webSockets, m.wsMessages, m.wsBytes, m.wsClosed, m.renewals,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})} {
		f(c)
	}
	// Every limit from the start, at zero: a rate over nothing is 0, not
	// an absent series.
	for _, l := range limits {
		m.rejected.WithLabelValues(string(l))
	}
	m.spills.WithLabelValues("request")
	m.spills.WithLabelValues("response")
	return m
}

// handler serves the metrics in the Prometheus text format.
func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// observe counts one request, once answered.
func (m *metrics) observe(r *http.Request, lr *logRecord, took time.Duration) {
	if m == nil {
		return
	}
	kind := lr.kind
	if kind == "" {
		kind = kindEdge
	}
	site := ""
	if lr.site != nil {
		site = lr.site.name
	}
	m.requests.WithLabelValues(statusClass(lr.status), methodLabel(r.Method), kind, site).Inc()
	m.duration.WithLabelValues(kind, site).Observe(took.Seconds())
	m.bytesOut.Add(float64(lr.bytes))
	m.bytesIn.Add(float64(lr.bodyIn))
	if lr.limit != "" {
		m.rejected.WithLabelValues(string(lr.limit)).Inc()
	}
	for _, what := range lr.spilled {
		m.spills.WithLabelValues(what).Inc()
	}
	if lr.streamedFor > 0 {
		m.streamed.Inc()
		m.streamFor.Add(lr.streamedFor.Seconds())
	}
	if lr.stats.Taken != 0 {
		m.worker(lr.worker, r.URL.Path, lr.sent, lr.stats, lr.json)
	}
}

// worker takes in what a worker measured of one request.
func (m *metrics) worker(worker, path string, sent time.Time, st wire.Stats, json time.Duration) {
	if !sent.IsZero() {
		if wait := time.Unix(0, st.Taken).Sub(sent); wait >= 0 {
			m.queueWait.Observe(wait.Seconds())
		}
	}
	route := m.routes.name(path)
	m.appTime.WithLabelValues(route).Observe(st.Wall.Seconds())
	m.appWall.WithLabelValues(route).Add(st.Wall.Seconds())
	if st.CPU >= 0 {
		m.appCPU.WithLabelValues(route).Add(st.CPU.Seconds())
	}
	if json > 0 {
		m.appJSON.WithLabelValues(route).Add(json.Seconds())
	}
	if worker == "" {
		return
	}
	m.served.WithLabelValues(worker).Inc()
	m.busy.WithLabelValues(worker).Add(st.Wall.Seconds())
	m.rss.WithLabelValues(worker).Set(float64(st.RSS) * 1024)
	m.mu.Lock()
	last, seen := m.pids[worker]
	m.pids[worker] = st.PID
	if st.Key&wire.KeyPresent != 0 {
		m.keys[worker] = keySeen{st.Key, time.Now()}
	}
	m.mu.Unlock()
	if seen && last != st.PID {
		m.restarts.WithLabelValues(worker).Inc()
	} else if !seen {
		m.restarts.WithLabelValues(worker)
	}
}

// handshake counts a TLS handshake.
func (m *metrics) handshake(ok bool) {
	if m == nil {
		return
	}
	if ok {
		m.tls.WithLabelValues("ok").Inc()
	} else {
		m.tls.WithLabelValues("failed").Inc()
	}
}

// rejectedBy counts a refusal that is no request's: a 408 written for a
// stalled head, a connection closed for a flood.
func (m *metrics) rejectedBy(l limit) {
	if m != nil {
		m.rejected.WithLabelValues(string(l)).Inc()
	}
}

func statusClass(code int) string {
	if code < 100 || code > 599 {
		return "other"
	}
	return strconv.Itoa(code/100) + "xx"
}

// methodLabel keeps the label's values few: a method of no importance
// is "other".
func methodLabel(m string) string {
	switch m {
	case "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS":
		return m
	}
	return "other"
}

// maxRoutes bounds the route label: past it, new paths count as "other".
const maxRoutes = 200

// routeTable names the route of a path for the metrics: the path with
// each segment that looks like an id (digits in it, or long) written
// ":id", so /orders/1234 and /orders/1235 are one route, and at most max
// distinct routes, so a scan of random paths cannot grow it without end.
type routeTable struct {
	mu    sync.Mutex
	max   int
	known map[string]bool
}

func (t *routeTable) name(path string) string {
	r := routeOf(path)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.known == nil {
		t.known = map[string]bool{}
	}
	if t.known[r] {
		return r
	}
	if len(t.known) >= t.max {
		return "other"
	}
	t.known[r] = true
	return r
}

// routeOf folds path into its route. A label must be valid UTF-8 (the
// Prometheus client panics otherwise) and a client may send any bytes in
// a path: a segment that is not UTF-8, or holds a control character, is
// an ":id" too.
func routeOf(path string) string {
	segs := strings.Split(path, "/")
	if len(segs) > 5 {
		segs = append(segs[:5], "...")
	}
	for i, s := range segs {
		if len(s) > 24 || strings.ContainsAny(s, "0123456789") || !plainText(s) {
			segs[i] = ":id"
		}
	}
	return strings.Join(segs, "/")
}

// plainText says s is UTF-8 with no control characters.
func plainText(s string) bool {
	for _, r := range s {
		if r == utf8.RuneError || r < ' ' || r == 0x7f {
			return false
		}
	}
	return true
}

// queueCollector reports, at each scrape, how full the accept queues are:
// of each public listener, and of the socket the workers take requests
// from; the kernel's listen-overflow count; requests in flight.
type queueCollector struct {
	listeners map[string]net.Listener // by name: "http 0.0.0.0:80"
	s         *Server

	waiting, max, overflows, drops, inFlight, upstream, abandoned *prometheus.Desc
}

func newQueueCollector(s *Server, ls *Listeners) *queueCollector {
	c := &queueCollector{listeners: map[string]net.Listener{}, s: s,
		waiting:   prometheus.NewDesc(metric.ListenQueue, "Connections waiting in a listening socket's accept queue.", []string{metric.LabelSocket}, nil),
		max:       prometheus.NewDesc(metric.ListenBacklog, "The most connections a listening socket's accept queue holds (its backlog).", []string{metric.LabelSocket}, nil),
		overflows: prometheus.NewDesc(metric.KernelListenOverflowsTotal, "Connections the kernel turned away because an accept queue was full (ListenOverflows), in edged's network namespace, since boot.", nil, nil),
		drops:     prometheus.NewDesc(metric.KernelListenDropsTotal, "Connections the kernel dropped at listen, overflows included (ListenDrops).", nil, nil),
		inFlight:  prometheus.NewDesc(metric.InFlightRequests, "Requests edged is handling.", nil, nil),
		upstream:  prometheus.NewDesc(metric.WorkerInFlightRequests, "Requests with the workers: queued or being run.", nil, nil),
		abandoned: prometheus.NewDesc(metric.AbandonedRequests, "Requests whose client went away before a worker took them, still in the workers' queue until a worker drops them unrun.", nil, nil),
	}
	for _, l := range ls.HTTP {
		c.listeners["http "+l.Addr().String()] = l
	}
	for _, l := range ls.HTTPS {
		c.listeners["https "+l.Addr().String()] = l
	}
	return c
}

func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.waiting, c.max, c.overflows, c.drops, c.inFlight, c.upstream, c.abandoned} {
		ch <- d
	}
}

func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	for name, l := range c.listeners {
		sc, ok := l.(syscall.Conn)
		if !ok {
			continue
		}
		if q, err := backlog.TCP(sc); err == nil {
			ch <- prometheus.MustNewConstMetric(c.waiting, prometheus.GaugeValue, float64(q.Waiting), name)
			ch <- prometheus.MustNewConstMetric(c.max, prometheus.GaugeValue, float64(q.Max), name)
		}
	}
	if qs, err := backlog.Unix(); err == nil {
		for _, t := range c.s.upstreams() {
			if q, ok := qs[t.Socket()]; ok {
				ch <- prometheus.MustNewConstMetric(c.waiting, prometheus.GaugeValue, float64(q.Waiting), "workers "+t.Socket())
				ch <- prometheus.MustNewConstMetric(c.max, prometheus.GaugeValue, float64(q.Max), "workers "+t.Socket())
			}
		}
	}
	if o, d, err := backlog.Overflows(); err == nil {
		ch <- prometheus.MustNewConstMetric(c.overflows, prometheus.CounterValue, float64(o))
		ch <- prometheus.MustNewConstMetric(c.drops, prometheus.CounterValue, float64(d))
	}
	ch <- prometheus.MustNewConstMetric(c.inFlight, prometheus.GaugeValue, float64(c.s.inFlight.Load()))
	with, abandoned := c.s.withWorkers()
	ch <- prometheus.MustNewConstMetric(c.upstream, prometheus.GaugeValue, float64(with))
	ch <- prometheus.MustNewConstMetric(c.abandoned, prometheus.GaugeValue, float64(abandoned))
}

// listenMetrics opens [metrics] listen: an address, or a Unix socket
// (mode 0660) in place of any stale one. nil when there is none.
func listenMetrics(cfg *config.Config) (net.Listener, error) {
	m := cfg.Metrics
	if m.Listen == "" {
		return nil, nil
	}
	if !m.Unix() {
		l, err := net.Listen("tcp", m.Listen)
		if err != nil {
			return nil, fmt.Errorf("metrics.listen: %w", err)
		}
		return l, nil
	}
	os.Remove(m.Listen)
	l, err := net.Listen("unix", m.Listen)
	if err != nil {
		return nil, fmt.Errorf("metrics.listen: %w", err)
	}
	os.Chmod(m.Listen, 0o660)
	return l, nil
}

// webSocketOpened counts a WebSocket open on site.
func (m *metrics) webSocketOpened(site string) {
	if m == nil {
		return
	}
	m.webSockets.WithLabelValues(site).Inc()
}

// webSocketClosed counts a WebSocket gone, with what it carried.
func (m *metrics) webSocketClosed(site string, st ws.Stats) {
	if m == nil {
		return
	}
	m.webSockets.WithLabelValues(site).Dec()
	m.wsMessages.WithLabelValues(site, "in").Add(float64(st.MessagesIn))
	m.wsMessages.WithLabelValues(site, "out").Add(float64(st.MessagesOut))
	m.wsBytes.WithLabelValues(site, "in").Add(float64(st.BytesIn))
	m.wsBytes.WithLabelValues(site, "out").Add(float64(st.BytesOut))
	m.wsClosed.WithLabelValues(site, strconv.Itoa(st.Code)).Inc()
}

// keySeen is a worker's last report on the app's key, and when it came.
type keySeen struct {
	key  wire.KeyReport
	seen time.Time
}

// keyAge is how long a worker's report counts after its last answer: a
// worker scaled away drops out of the comparison.
const keyAge = 15 * time.Minute

// keyCollector reports each worker's app key report.
type keyCollector struct {
	m    *metrics
	desc *prometheus.Desc
}

func (c *keyCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *keyCollector) Collect(ch chan<- prometheus.Metric) {
	c.m.mu.Lock()
	defer c.m.mu.Unlock()
	for w, k := range c.m.keys {
		if time.Since(k.seen) > keyAge {
			delete(c.m.keys, w)
			continue
		}
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, 1, w, k.key.Source().String(),
			strconv.FormatBool(k.key&wire.KeyWeak != 0), strconv.FormatBool(k.key&wire.KeyDjangoUnsafe != 0),
			fmt.Sprintf("%03x", k.key.Print()))
	}
}
