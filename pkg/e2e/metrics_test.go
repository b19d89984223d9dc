package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape reads edged's metrics from its Unix socket and parses them with
// Prometheus's own text parser.
func scrape(t *testing.T, sock string) map[string]*dto.MetricFamily {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	resp, err := c.Get("http://edged/metrics")
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("the metrics do not parse: %v\n%s", err, b)
	}
	return fams
}

// value sums the family's samples whose labels include want (a counter's
// value, a histogram's count, a gauge's value).
func value(fams map[string]*dto.MetricFamily, name string, want ...string) float64 {
	f := fams[name]
	if f == nil {
		return -1
	}
	var sum float64
	for _, m := range f.Metric {
		labels := map[string]string{}
		for _, l := range m.Label {
			labels[l.GetName()] = l.GetValue()
		}
		ok := true
		for i := 0; i+1 < len(want); i += 2 {
			if labels[want[i]] != want[i+1] {
				ok = false
			}
		}
		if !ok {
			continue
		}
		switch {
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Gauge != nil:
			sum += m.Gauge.GetValue()
		case m.Histogram != nil:
			sum += float64(m.Histogram.GetSampleCount())
		}
	}
	return sum
}

// TestMetrics: the metrics endpoint, scraped and parsed as Prometheus
// would, counts what the load sent.
func TestMetrics(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "metrics.sock")
	s := startSuite(t, suiteOpts{workers: 2, limits: `max_body = "1k"`, extra: fmt.Sprintf("[metrics]\nlisten = %q\n", sock)})
	s.writeStatic("a.txt", []byte("static"))
	c := s.client()
	const hellos, sleeps, statics = 40, 5, 7
	for range hellos {
		get(t, c, s.http+"/hello")
	}
	for range sleeps {
		get(t, c, s.http+"/sleep?s=0.1")
	}
	for range statics {
		get(t, c, s.http+"/static/a.txt")
	}
	resp, err := c.Post(s.http+"/echo", "application/json", strings.NewReader(strings.Repeat("x", 2000)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	// Regression: a path that is not UTF-8 panicked the handler (the
	// route label) after the app ran. The app's 404 reaches the client,
	// and the metrics still parse.
	if code, _ := get(t, c, s.http+"/a%ff"); code != 404 {
		t.Errorf("GET /a%%ff: %d, want the app's 404", code)
	}

	m := scrape(t, sock)
	check := func(what string, got, want float64) {
		t.Helper()
		if got != want {
			t.Errorf("%s = %v, want %v", what, got, want)
		}
	}
	// The suite's readiness probes count too: compare what is ours.
	check("app GETs of /hello", value(m, "edged_app_duration_seconds", "route", "/hello"), hellos)
	check("app GETs of /sleep", value(m, "edged_app_duration_seconds", "route", "/sleep"), sleeps)
	check("static 2xx", value(m, "edged_requests_total", "kind", "static", "class", "2xx"), statics)
	check("413s", value(m, "edged_rejected_total", "limit", "limits.max_body"), 1)
	if served := value(m, "edged_worker_requests_total"); served < hellos+sleeps {
		t.Errorf("workers served %v, want at least %d", served, hellos+sleeps)
	}
	wall := value(m, "edged_app_wall_seconds_total", "route", "/sleep")
	cpu := value(m, "edged_app_cpu_seconds_total", "route", "/sleep")
	if wall < 0.5 || cpu > wall/4 {
		t.Errorf("/sleep: %.3fs of wall time and %.3fs of CPU, want at least 0.5s of wall and little CPU", wall, cpu)
	}
	if value(m, "edged_worker_rss_bytes") <= 0 {
		t.Errorf("no worker RSS")
	}
	if value(m, "edged_listen_backlog", "socket", "workers "+filepath.Join(s.socket, "queue.sock")) <= 0 {
		t.Errorf("no backlog for the workers' queue socket: %v", m["edged_listen_backlog"])
	}
	if value(m, "edged_listen_backlog", "socket", "http "+strings.TrimPrefix(s.http, "http://")) <= 0 {
		t.Errorf("no backlog for the HTTP listener: %v", m["edged_listen_backlog"])
	}
	if value(m, "edged_queue_wait_seconds") < hellos+sleeps {
		t.Errorf("queue waits observed: %v, want at least %d", value(m, "edged_queue_wait_seconds"), hellos+sleeps)
	}
	if value(m, "edged_kernel_listen_overflows_total") < 0 {
		t.Errorf("no kernel listen-overflow count")
	}
}

// TestStatusLive: `edgectl status` under edgectl run (no systemd) shows
// the load from the metrics; --watch redraws it with the numbers moving.
func TestStatusLive(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "metrics.sock")
	s := startSuite(t, suiteOpts{workers: 2, extra: fmt.Sprintf("[metrics]\nlisten = %q\n", sock)})
	l := startLoad(s.client(), s.http+"/sleep?s=0.02", 6)
	defer l.finish()
	time.Sleep(500 * time.Millisecond)

	out, err := exec.Command(filepath.Join(binDir, "edgectl"), "status", "-c", s.cfg, "--json", "--interval", "1s").Output()
	if err != nil {
		t.Fatalf("edgectl status --json: %v\n%s", err, out)
	}
	var st struct {
		UnitsError string `json:"units_error"`
		Live       struct {
			RequestsPerSecond float64 `json:"requests_per_second"`
			P99ms             float64 `json:"p99_ms"`
			Workers           []struct {
				Worker string  `json:"worker"`
				Busy   float64 `json:"busy"`
			} `json:"workers"`
			Sockets []struct{ Socket string } `json:"sockets"`
		} `json:"live"`
	}
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatalf("edgectl status --json: %v\n%s", err, out)
	}
	lv := st.Live
	if lv.RequestsPerSecond < 20 || lv.P99ms < 15 || len(lv.Workers) != 2 || len(lv.Sockets) < 2 {
		t.Errorf("under load: %+v; want requests, a p99 of 20 ms or so, 2 workers and 2 sockets\n%s", lv, out)
	}
	for _, w := range lv.Workers {
		if w.Busy < 0.5 {
			t.Errorf("worker %s busy %.2f, want most of the time (6 clients on 2 sync workers)", w.Worker, w.Busy)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 3500*time.Millisecond)
	defer cancel()
	watch, _ := exec.CommandContext(ctx, filepath.Join(binDir, "edgectl"), "status", "-c", s.cfg, "--watch", "--interval", "1s").Output()
	frames := strings.Split(string(watch), "\033[H\033[2J")
	var rates []string
	for _, f := range frames {
		if m := regexp.MustCompile(`load over [0-9.]+s: ([0-9.]+) req/s`).FindStringSubmatch(f); m != nil {
			rates = append(rates, m[1])
		}
	}
	if len(rates) < 2 {
		t.Errorf("--watch drew %d frames with a load line, want 2 or more:\n%s", len(rates), watch)
	}
}

// TestDoctor: a sync pool serving a route that sleeps 100 ms, under load:
// edgectl doctor warns of an I/O-bound route, names it and suggests
// gevent, with the share it measured.
func TestDoctor(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "metrics.sock")
	s := startSuite(t, suiteOpts{workers: 2, extra: fmt.Sprintf("[metrics]\nlisten = %q\n", sock)})
	// Three kinds of load: a route that waits, one that computes, one
	// that streams (server-sent events, its worker held).
	for _, l := range []*load{startLoad(s.client(), s.http+"/sleep?s=0.1", 6), startLoad(s.client(), s.http+"/spin?ms=20", 2),
		startLoad(s.client(), s.http+"/events", 1)} {
		defer l.finish()
	}
	time.Sleep(5 * time.Second) // past the 20 requests a route needs to be judged

	cmd := exec.Command(filepath.Join(binDir, "edgectl"), "doctor", "-c", s.cfg, "--json", "--interval", "2s")
	out, err := cmd.Output()
	var findings []struct{ Check, Verdict, Evidence, Fix string }
	if jerr := json.Unmarshal(out, &findings); jerr != nil {
		t.Fatalf("edgectl doctor --json: %v, %v\n%s", err, jerr, out)
	}
	got := map[string]int{}
	for i, f := range findings {
		got[f.Check] = i
	}
	io := findings[got["io-bound"]]
	if io.Verdict != "warn" || !strings.Contains(io.Evidence, "/sleep waits") || !strings.Contains(io.Evidence, "sync pool") || !strings.Contains(io.Fix, "gevent") {
		t.Errorf("io-bound: %+v, want a warn naming /sleep and suggesting gevent", io)
	}
	if cpu := findings[got["cpu-routes"]]; cpu.Verdict != "warn" || !strings.Contains(cpu.Evidence, "/spin takes") {
		t.Errorf("cpu-routes: %+v, want a warn naming /spin", cpu)
	}
	if b := findings[got["buffering"]]; b.Verdict != "warn" || !strings.Contains(b.Evidence, "were streamed") {
		t.Errorf("buffering: %+v, want a warn counting the streamed answers", b)
	}
	root := findings[got["root"]]
	if want := map[bool]string{true: "fail", false: "ok"}[os.Geteuid() == 0]; root.Verdict != want {
		t.Errorf("root: %+v, want %s (the test runs as uid %d)", root, want, os.Geteuid())
	}
	if (err != nil) != (root.Verdict == "fail") {
		t.Errorf("exit status %v with the root check %s: non-zero exactly when a check fails", err, root.Verdict)
	}
	if h := findings[got["hardening"]]; h.Verdict != "skip" || !strings.Contains(h.Evidence, "systemd") {
		t.Errorf("hardening under edgectl run: %+v, want a skip that says it needs systemd", h)
	}
	if len(findings) != 12 {
		t.Errorf("%d checks, want 12", len(findings))
	}
	if p := findings[got["peers"]]; p.Verdict != "skip" || !strings.Contains(p.Evidence, "no --peer given") {
		t.Errorf("peers without --peer: %+v, want a skip that says how to give them", p)
	}
}
