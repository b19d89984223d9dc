package e2e

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"testing"
	"time"
)

// The sides: a whole stack each, started once and kept for every scenario.
const (
	edgedSync      = "edged sync"
	edgedThreads   = "edged threads"
	edgedGevent    = "edged gevent"
	gunicornSync   = "nginx+gunicorn sync"
	gunicornGevent = "nginx+gunicorn gevent"
	uwsgi          = "nginx+uWSGI"
	nginxAlone     = "nginx"
)

// benchWorkers is the worker (or process) count of every side.
const benchWorkers = 5

// benchScenario is one row group of the matrix: a wrk load and the sides
// that take it.
type benchScenario struct {
	name  string
	path  string
	conns int
	body  int      // bytes POSTed by a wrk script; 0 for GET
	sides []string // in the order run and shown
	vs    []string // the incumbents every side gets a ratio to
}

var benchScenarios = []benchScenario{
	{name: "Flask GET /hello (JSON)", path: "/hello", conns: 64,
		sides: []string{edgedSync, edgedThreads, gunicornSync, uwsgi}, vs: []string{gunicornSync, uwsgi}},
	{name: "Flask GET /sleep?s=0.1 (100 ms asleep; sync sides for reference)", path: "/sleep?s=0.1", conns: 200,
		sides: []string{edgedGevent, gunicornGevent, edgedSync, gunicornSync}, vs: []string{gunicornGevent}},
	{name: "Flask POST /length, a 64 KiB body", path: "/length", conns: 32, body: 64 << 10,
		sides: []string{edgedSync, gunicornSync, uwsgi}, vs: []string{gunicornSync, uwsgi}},
	{name: "static 4 KiB file", path: "/static/4k.bin", conns: 64,
		sides: []string{edgedSync, nginxAlone}, vs: []string{nginxAlone}},
	{name: "static 1 MiB file", path: "/static/1m.bin", conns: 16,
		sides: []string{edgedSync, nginxAlone}, vs: []string{nginxAlone}},
}

// benchFiles are the static scenarios' files, of fixed bytes, and an index
// that edged and nginx both answer once up.
var benchFiles = map[string]int{"index.html": 16, "4k.bin": 4 << 10, "1m.bin": 1 << 20}

// TestBench is `make bench`: the same Flask app behind edged + workerd,
// behind nginx + gunicorn and behind nginx + uWSGI, and the same files
// served by edged and by nginx alone, with the same worker count and the
// same wrk load, run in alternating rounds so that all see the same
// machine. It writes the medians, the peak memory of each stack and the
// ratios to each incumbent to docs/benchmarks.md and prints them. It is
// not a pass/fail test: speed on a shared machine is shown, never
// asserted.
func TestBench(t *testing.T) {
	if os.Getenv("EDGED_BENCH") == "" {
		t.Skip("run with `make bench`")
	}
	needFlask(t)
	for _, tool := range []string{"wrk", "nginx", "gunicorn", "uwsgi"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed: run `make bench-deps`", tool)
		}
	}
	if err := exec.Command(python, "-c", "import gevent").Run(); err != nil {
		t.Fatalf("%s cannot import gevent: run `make bench-deps`", python)
	}
	load := benchLoadFromEnv(t)
	sides := startSides(t, writeBenchFiles(t))

	results := make([]map[string]*sideResult, len(benchScenarios))
	for i, sc := range benchScenarios {
		results[i] = runScenario(t, sc, sides, load)
	}
	report := benchReport(load, sides, results)
	fmt.Print(report)
	if err := os.WriteFile(filepath.Join(repoRoot, "docs", "benchmarks.md"), []byte(report), 0o644); err != nil {
		t.Fatal(err)
	}
}

// benchLoad is how long and how often each side is run.
type benchLoad struct {
	duration string // as wrk takes it
	rounds   int
}

func benchLoadFromEnv(t *testing.T) benchLoad {
	l := benchLoad{duration: os.Getenv("BENCH_DURATION"), rounds: 3}
	if l.duration == "" {
		l.duration = "10s"
	}
	if s := os.Getenv("BENCH_ROUNDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("BENCH_ROUNDS=%q: want a count of rounds, 1 or more", s)
		}
		l.rounds = n
	}
	return l
}

func writeBenchFiles(t *testing.T) string {
	dir := t.TempDir()
	for name, size := range benchFiles {
		b := make([]byte, size)
		for i := range b {
			b[i] = 'a' + byte(i%26)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// sideResult is what one side did in one scenario.
type sideResult struct {
	runs    []wrkResult
	peakRSS int64 // bytes, the highest over the runs
}

// wrkResult is one wrk run: req/s, latency percentiles in ms, and errors
// (non-2xx answers and socket errors, timeouts included).
type wrkResult struct{ rps, p50, p99, errors float64 }

// runScenario runs each available side of sc in turn, sc's rounds times.
func runScenario(t *testing.T, sc benchScenario, sides map[string]benchSide, load benchLoad) map[string]*sideResult {
	args := []string{"-t2", fmt.Sprintf("-c%d", sc.conns), "-d" + load.duration, "--latency"}
	if sc.body > 0 {
		args = append(args, "-s", writePostScript(t, sc.body))
	}
	results := map[string]*sideResult{}
	for r := 0; r < load.rounds; r++ {
		for _, name := range sc.sides {
			side := sides[name]
			if side.base == "" {
				continue
			}
			if results[name] == nil {
				results[name] = &sideResult{}
			}
			res := results[name]
			settle(t, name, side.base+sc.path)
			var run wrkResult
			peak := peakRSS(side.procs, func() { run = runWrk(t, append(args, side.base+sc.path)...) })
			res.runs = append(res.runs, run)
			res.peakRSS = max(res.peakRSS, peak)
		}
	}
	return results
}

// settle waits for one answer from url, so that a run does not start
// behind the requests still queued from the last one: a sync server works
// through those whose clients have gone.
func settle(t *testing.T, side, url string) {
	c := &http.Client{Timeout: time.Minute}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("%s, before a run: %v", side, err)
	}
	resp.Body.Close()
}

// writePostScript writes a wrk script that POSTs size bytes, and returns
// its path.
func writePostScript(t *testing.T, size int) string {
	p := filepath.Join(t.TempDir(), "post.lua")
	lua := fmt.Sprintf("wrk.method = \"POST\"\nwrk.headers[\"Content-Type\"] = \"application/octet-stream\"\nwrk.body = string.rep(\"x\", %d)\n", size)
	if err := os.WriteFile(p, []byte(lua), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func runWrk(t *testing.T, args ...string) wrkResult {
	out, err := exec.Command("wrk", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("wrk %v: %v\n%s", args, err, out)
	}
	s := string(out)
	return wrkResult{
		rps:    wrkFloat(s, `Requests/sec:\s+([0-9.]+)`),
		p50:    wrkMillis(s, `50%\s+([0-9.]+\w+)`),
		p99:    wrkMillis(s, `99%\s+([0-9.]+\w+)`),
		errors: wrkFloat(s, `Non-2xx or 3xx responses: (\d+)`) + wrkSocketErrors(s),
	}
}

// median is the run of medians: each figure is the median of that figure
// over the runs.
func (r *sideResult) median() wrkResult {
	var m wrkResult
	fields := func(w *wrkResult) []*float64 { return []*float64{&w.rps, &w.p50, &w.p99, &w.errors} }
	for i, dst := range fields(&m) {
		xs := make([]float64, len(r.runs))
		for j := range r.runs {
			xs[j] = *fields(&r.runs[j])[i]
		}
		sort.Float64s(xs)
		*dst = (xs[(len(xs)-1)/2] + xs[len(xs)/2]) / 2
	}
	return m
}

func wrkFloat(out, re string) float64 {
	m := regexp.MustCompile(re).FindStringSubmatch(out)
	if m == nil {
		return 0
	}
	f, _ := strconv.ParseFloat(m[1], 64)
	return f
}

func wrkMillis(out, re string) float64 {
	m := regexp.MustCompile(re).FindStringSubmatch(out)
	if m == nil {
		return 0
	}
	d, err := time.ParseDuration(m[1])
	if err != nil {
		return 0
	}
	return float64(d) / float64(time.Millisecond)
}

func wrkSocketErrors(out string) float64 {
	m := regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`).FindStringSubmatch(out)
	if m == nil {
		return 0
	}
	total := 0.0
	for _, s := range m[1:] {
		f, _ := strconv.ParseFloat(s, 64)
		total += f
	}
	return total
}
