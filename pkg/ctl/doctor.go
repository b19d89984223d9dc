package ctl

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/edged/edged/pkg/backlog"
	"github.com/edged/edged/pkg/config"
	"github.com/edged/edged/pkg/cores"
	"github.com/edged/edged/pkg/metric"
)

// edgectl doctor looks at the suite as it runs, with numbers from its own
// traffic, for the mistakes that hurt nginx + gunicorn deployments: root
// processes, sync workers on I/O-bound routes, a worker count that does
// not fit the cores, an overflowing backlog, buffering turned off,
// secrets in the config or the environment, CPU-heavy routes, workers
// near their memory cap, certificates about to expire.

// Verdicts of a check.
const (
	verdictOK   = "ok"
	verdictWarn = "warn"
	verdictFail = "fail"
	verdictSkip = "skip"
)

// finding is one check's line.
type finding struct {
	Check    string `json:"check"`
	Verdict  string `json:"verdict"`
	Evidence string `json:"evidence"`
	Fix      string `json:"fix,omitempty"`
}

// patient is what the checks look at, gathered once.
type patient struct {
	// peers are the other hosts' admin addresses (--peer).
	peers  []string
	cfg    *config.Config
	cfgErr error
	// before and after are two readings of edged's metrics, the check's
	// interval apart (nil without [metrics], with the reason in metricsErr).
	before, after *scrape
	metricsErr    error
	// runDelay is the time the suite's Python workers spent ready to run
	// but waiting for a CPU, at the two readings (schedstat).
	runDelay [2]time.Duration
	// certs are edged's certificates as it serves them (nil without
	// [metrics], certsErr saying why).
	certs    []certInfo
	certsErr error
	view     *liveView // between before and after: see load
	// overflows are the kernel's ListenOverflows at the two readings.
	overflows [2]uint64
	somaxconn int
	// systemd is nil without it (edgectl run), systemdErr saying why.
	systemd    manager
	systemdErr error
	ctx        context.Context
	proc       string // "/proc", elsewhere in tests
	now        time.Time
}

type check struct {
	name string
	run  func(*patient) finding
}

var checks = []check{
	{"root", checkRoot},
	{"hardening", checkHardening},
	{"io-bound", checkIOBound},
	{"workers", checkWorkers},
	{"backlog", checkBacklog},
	{"buffering", checkBuffering},
	{"secrets", checkSecrets},
	{"cpu-routes", checkCPURoutes},
	{"memory", checkMemory},
	{"app-key", checkAppKey},
	{"tls", checkTLS},
	{"peers", checkPeers},
}

func doctor(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("edgectl doctor", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print JSON for scripts")
	file := fs.String("c", config.DefaultPath, "config `file`")
	every := fs.Duration("interval", 3*time.Second, "how long the load is watched for what changes (busy workers, overflows)")
	var peers []string
	fs.Func("peer", "another host's [metrics] listen (`host:port`), to compare with this one; repeat for each", func(v string) error {
		peers = append(peers, v)
		return nil
	})
	if err := fs.Parse(args); err != nil {
		return err
	}
	p := examine(ctx, *file, *every)
	p.peers = peers
	if p.systemd != nil {
		defer p.systemd.Close()
	}
	fs2 := diagnose(p)
	if *asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(fs2); err != nil {
			return err
		}
	} else {
		tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
		for _, f := range fs2 {
			line := f.Evidence
			if f.Fix != "" && f.Verdict != verdictOK {
				line += " — " + f.Fix
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\n", f.Verdict, f.Check, line)
		}
		tw.Flush()
	}
	for _, f := range fs2 {
		if f.Verdict == verdictFail {
			return errors.New("doctor: some checks failed")
		}
	}
	return nil
}

// examine gathers what the checks need.
func examine(ctx context.Context, file string, every time.Duration) *patient {
	p := &patient{ctx: ctx, proc: "/proc", now: time.Now()}
	p.cfg, p.cfgErr = config.Load(file)
	if p.cfgErr != nil {
		// Judge what can be judged: the checks that need the config say so.
		p.cfg = nil
	}
	if m, err := connect(ctx); err == nil {
		p.systemd = m
	} else {
		p.systemdErr = err
	}
	if b, err := os.ReadFile("/proc/sys/net/core/somaxconn"); err == nil {
		p.somaxconn, _ = strconv.Atoi(strings.TrimSpace(string(b)))
	}
	p.overflows[0], _, _ = backlog.Overflows()
	if p.cfg != nil {
		p.runDelay[0] = p.workersRunDelay()
		p.before, p.metricsErr = readMetrics(ctx, p.cfg)
		p.certs, p.certsErr = readCertificates(ctx, p.cfg)
	} else {
		p.metricsErr = p.cfgErr
	}
	select {
	case <-ctx.Done():
	case <-time.After(every):
	}
	if p.before != nil {
		p.after, p.metricsErr = readMetrics(ctx, p.cfg)
		p.runDelay[1] = p.workersRunDelay()
		if p.after == nil {
			p.before = nil
		}
	}
	p.overflows[1], _, _ = backlog.Overflows()
	return p
}

func diagnose(p *patient) []finding {
	out := make([]finding, 0, len(checks))
	for _, c := range checks {
		f := c.run(p)
		f.Check = c.name
		out = append(out, f)
	}
	return out
}

func ok(evidence string) finding { return finding{Verdict: verdictOK, Evidence: evidence} }
func skip(why string) finding    { return finding{Verdict: verdictSkip, Evidence: why} }

// needMetrics says why a check that reads the metrics cannot run.
func (p *patient) needMetrics() (finding, bool) {
	if p.after == nil {
		return skip(fmt.Sprintf("needs edged's metrics: %v", p.metricsErr)), false
	}
	return finding{}, true
}

// suiteProcess says whether a process is one of the suite's, by its
// name: edged, workerd, or a worker's Python process.
func suiteProcess(comm string) bool {
	return comm == "edged" || comm == "workerd" || comm == "edged-worker"
}

// processes lists the suite's processes: pid -> name. The suite is the
// config's: edged and workerd started with -c naming this config file
// (the default one when they name none), and the Python workers of
// those workerd; another suite on the host, with a config of its own, is
// not looked at. Without a config, every suite's.
func (p *patient) processes() map[int]string {
	type proc struct {
		comm   string
		ppid   int
		config string
	}
	all := map[int]proc{}
	ents, _ := os.ReadDir(p.proc)
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join(p.proc, e.Name(), "comm"))
		if err != nil {
			continue
		}
		comm := strings.TrimSpace(string(b))
		if !suiteProcess(comm) {
			continue
		}
		pr := proc{comm: comm, ppid: p.ppid(pid)}
		if comm != "edged-worker" {
			pr.config = p.configOf(pid)
		}
		all[pid] = pr
	}
	want := ""
	if p.cfg != nil && p.cfg.File != "" {
		want, _ = filepath.Abs(p.cfg.File)
	}
	out := map[int]string{}
	for pid, pr := range all {
		cfg := pr.config
		if pr.comm == "edged-worker" {
			cfg = config.DefaultPath // a worker's suite is its workerd's
			if parent, ok := all[pr.ppid]; ok && parent.comm == "workerd" {
				cfg = parent.config
			}
		}
		if want == "" || cfg == want {
			out[pid] = pr.comm
		}
	}
	return out
}

// ppid is a process's parent's pid; 0 when it cannot be read.
func (p *patient) ppid(pid int) int {
	b, err := os.ReadFile(filepath.Join(p.proc, strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0
	}
	// pid (comm) state ppid ...: comm may hold spaces and parentheses.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 2 {
		return 0
	}
	n, _ := strconv.Atoi(f[1])
	return n
}

// configOf is the absolute path of the config file a process of the
// suite was started with (-c FILE, relative to its working directory),
// the default one when it names none.
func (p *patient) configOf(pid int) string {
	b, err := os.ReadFile(filepath.Join(p.proc, strconv.Itoa(pid), "cmdline"))
	if err != nil {
		return ""
	}
	args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
	file := config.DefaultPath
	for i, a := range args {
		switch {
		case (a == "-c" || a == "--c" || a == "-config" || a == "--config") && i+1 < len(args):
			file = args[i+1]
		case strings.HasPrefix(a, "-c="):
			file = strings.TrimPrefix(a, "-c=")
		}
	}
	if !filepath.IsAbs(file) {
		cwd, err := os.Readlink(filepath.Join(p.proc, strconv.Itoa(pid), "cwd"))
		if err != nil {
			return ""
		}
		file = filepath.Join(cwd, file)
	}
	return filepath.Clean(file)
}

// uid reads a process's real user id; -1 when it cannot.
func (p *patient) uid(pid int) int {
	b, err := os.ReadFile(filepath.Join(p.proc, strconv.Itoa(pid), "status"))
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, found := strings.CutPrefix(line, "Uid:"); found {
			if f := strings.Fields(rest); len(f) > 0 {
				n, _ := strconv.Atoi(f[0])
				return n
			}
		}
	}
	return -1
}

func checkRoot(p *patient) finding {
	procs := p.processes()
	if len(procs) == 0 {
		return skip("no edged, workerd or worker process found")
	}
	var root []string
	pids := make([]int, 0, len(procs))
	for pid := range procs {
		pids = append(pids, pid)
	}
	sort.Ints(pids)
	for _, pid := range pids {
		if p.uid(pid) == 0 {
			root = append(root, fmt.Sprintf("%s (pid %d)", procs[pid], pid))
		}
	}
	if len(root) > 0 {
		return finding{Verdict: verdictFail,
			Evidence: fmt.Sprintf("%d of %d processes run as root: %s", len(root), len(procs), strings.Join(root, ", ")),
			Fix:      "run the suite as the shipped units do (DynamicUser=yes: systemctl enable --now edged.socket; edgectl scale --auto), or edgectl run as an ordinary user; nothing in it needs root"}
	}
	return ok(fmt.Sprintf("none of %d processes runs as root", len(procs)))
}

// shippedExposure is the worst systemd-analyze security score the
// shipped units may have (theirs are about 1.3).
const shippedExposure = 2.0

func checkHardening(p *patient) finding {
	if p.systemd == nil {
		return skip("needs systemd (systemd-analyze security): not under edgectl run")
	}
	var worst []string
	var scores []string
	for _, unit := range []string{"edged.service", "workerd@1.service"} {
		out, err := exec.CommandContext(p.ctx, "systemd-analyze", "security", "--no-pager", unit).CombinedOutput()
		m := regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+)`).FindSubmatch(out)
		if m == nil {
			return skip(fmt.Sprintf("systemd-analyze security %s gave no score (%v)", unit, err))
		}
		score, _ := strconv.ParseFloat(string(m[1]), 64)
		scores = append(scores, fmt.Sprintf("%s %.1f", unit, score))
		if score > shippedExposure {
			worst = append(worst, fmt.Sprintf("%s %.1f", unit, score))
		}
	}
	if len(worst) > 0 {
		return finding{Verdict: verdictWarn, Evidence: "exposure above the shipped level (" + fmt.Sprint(shippedExposure) + "): " + strings.Join(worst, ", "),
			Fix: "look for drop-ins that loosen the units: systemctl cat edged.service workerd@.service; systemd-analyze security UNIT lists each setting"}
	}
	return ok("systemd-analyze security: " + strings.Join(scores, ", "))
}

// routeUse is what the workers measured of one route, since edged
// started.
type routeUse struct {
	route     string
	count     float64
	wall, cpu float64 // seconds, summed
	cpuKnown  bool
	waitShare float64 // of the wall time, the part not on the CPU
	// cpuWaitShare is the part of the wall time spent waiting for a CPU
	// (the machine's run queue, measured over the check for every
	// worker), ioShare the rest of the waiting: I/O, sleeps, locks.
	cpuWaitShare, ioShare float64
	cpuPerRequest         float64
	wallPerRequest        float64
}

func (p *patient) routes() []routeUse {
	counts := p.after.by(metric.AppDurationSeconds, metric.LabelRoute)
	walls := p.after.by(metric.AppWallSecondsTotal, metric.LabelRoute)
	cpus := p.after.by(metric.AppCPUSecondsTotal, metric.LabelRoute)
	var out []routeUse
	for r, n := range counts {
		if n == 0 {
			continue
		}
		u := routeUse{route: r, count: n, wall: walls[r]}
		u.cpu, u.cpuKnown = cpus[r]
		u.wallPerRequest = u.wall / n
		u.cpuPerRequest = u.cpu / n
		if u.wall > 0 && u.cpuKnown {
			u.waitShare = math.Max(0, 1-u.cpu/u.wall)
		}
		u.ioShare = u.waitShare
		if share, ok := p.cpuWait(); ok {
			u.cpuWaitShare = math.Min(u.waitShare, share)
			u.ioShare = u.waitShare - u.cpuWaitShare
		}
		out = append(out, u)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].wall > out[j].wall })
	return out
}

// workersRunDelay sums the time every thread of the suite's Python
// workers spent ready to run but waiting for a CPU (the second field of
// /proc/PID/task/TID/schedstat).
func (p *patient) workersRunDelay() time.Duration {
	var total time.Duration
	for pid, comm := range p.processes() {
		if comm != "edged-worker" {
			continue
		}
		tasks, _ := filepath.Glob(filepath.Join(p.proc, strconv.Itoa(pid), "task", "*", "schedstat"))
		for _, f := range tasks {
			b, err := os.ReadFile(f)
			if err != nil {
				continue
			}
			if fs := strings.Fields(string(b)); len(fs) >= 2 {
				n, _ := strconv.ParseInt(fs[1], 10, 64)
				total += time.Duration(n)
			}
		}
	}
	return total
}

// cpuWait is the share of the app's time, over the check, that the
// workers spent waiting for a CPU; false when too little ran to tell.
func (p *patient) cpuWait() (float64, bool) {
	if p.before == nil || p.after == nil {
		return 0, false
	}
	wall := p.after.sum(metric.AppWallSecondsTotal) - p.before.sum(metric.AppWallSecondsTotal)
	delay := (p.runDelay[1] - p.runDelay[0]).Seconds()
	if wall < 0.5 || delay < 0 {
		return 0, false
	}
	return math.Min(1, delay/wall), true
}

// minRequests is how many requests a route needs before it is judged.
const minRequests = 20

func checkIOBound(p *patient) finding {
	if f, ok := p.needMetrics(); !ok {
		return f
	}
	switch p.cfg.Pool.Class {
	case config.ClassGevent:
		return ok("the gevent class: a request that waits on I/O does not hold a worker")
	case config.ClassASGI:
		return ok("the asgi class: a request that awaits I/O does not hold a worker")
	}
	var bound, cpuBound []string
	for _, u := range p.routes() {
		if u.count < minRequests || !u.cpuKnown || u.wallPerRequest < 0.01 {
			continue
		}
		switch {
		case u.ioShare >= 0.5:
			bound = append(bound, fmt.Sprintf("%s waits %.0f%% of its app time (%.0f ms a request, %.1f ms of it on the CPU, %.0f requests)",
				u.route, 100*u.ioShare, 1000*u.wallPerRequest, 1000*u.cpuPerRequest, u.count))
		case u.waitShare >= 0.5:
			// Waiting, but for a CPU: more greenlets would only wait longer.
			cpuBound = append(cpuBound, fmt.Sprintf("%s waits %.0f%% of its app time, %.0f%% of it for a CPU (the run queue)",
				u.route, 100*u.waitShare, 100*u.cpuWaitShare/u.waitShare))
		}
	}
	if len(bound) == 0 {
		if len(cpuBound) > 0 {
			return ok("no route waits on I/O: " + strings.Join(cpuBound, "; ") + " — the CPU is the bottleneck, not I/O (see cpu-routes)")
		}
		msg := fmt.Sprintf("no route of at least %d requests waits most of its time", minRequests)
		if share, ok := p.cpuWait(); ok {
			msg += fmt.Sprintf(" (over the check, the workers waited %.0f%% of their app time for a CPU)", 100*share)
		}
		return ok(msg)
	}
	starved := p.starved()
	return finding{Verdict: verdictWarn,
		Evidence: fmt.Sprintf("I/O-bound routes on a %s pool: %s%s", p.cfg.Pool.Class, strings.Join(bound, "; "), starved),
		Fix:      "set pool.class = \"gevent\" (pool.connections requests a worker at once; python3-gevent), as gunicorn's gevent worker: a waiting request then holds a greenlet, not a worker"}
}

// load is the view between the two readings, worked out once.
func (p *patient) load() *liveView {
	if p.view == nil {
		p.view = between(p.before, p.after)
	}
	return p.view
}

// meanBusy is the workers' average busy share (each counted up to 1: a
// threads or gevent worker can be busier than that), false with none.
func (v *liveView) meanBusy() (float64, bool) {
	if len(v.Workers) == 0 {
		return 0, false
	}
	var busy float64
	for _, w := range v.Workers {
		busy += math.Min(w.Busy, 1)
	}
	return busy / float64(len(v.Workers)), true
}

// starved describes workers kept busy with a queue growing behind them,
// from the two readings; "" when they are not.
func (p *patient) starved() string {
	v := p.load()
	if mean, ok := v.meanBusy(); ok && mean >= 0.9 {
		return fmt.Sprintf("; the %d workers are %.0f%% busy and requests wait %.0f ms (p50) for one", len(v.Workers), 100*mean, v.QueueWaitP50ms)
	}
	return ""
}

// workerCount is how many workers run, and where that comes from.
func (p *patient) workerCount() (int, string) {
	if p.systemd != nil {
		n := 0
		var bySite []string
		pools := sitePools(p.cfg)
		for _, pl := range pools {
			if ns, err := pl.instances(p.ctx, p.systemd); err == nil {
				n += len(ns)
				bySite = append(bySite, fmt.Sprintf("%s %d", pl.name(), len(ns)))
			}
		}
		if n > 0 && len(pools) > 1 {
			return n, "workerd units running: " + strings.Join(bySite, ", ")
		}
		if n > 0 {
			return n, "workerd units running"
		}
	}
	if p.after != nil {
		if n := len(p.after.by(metric.WorkerRequestsTotal, metric.LabelWorker)); n > 0 {
			return n, "workers answering"
		}
	}
	if p.cfg != nil && p.cfg.Pool.Workers > 0 {
		return p.cfg.Pool.Workers, "pool.workers"
	}
	return 0, ""
}

func checkWorkers(p *patient) finding {
	n, from := p.workerCount()
	if n == 0 {
		return skip("no worker found running")
	}
	cgroup := cores.Own()
	if p.systemd != nil {
		cgroup = "system.slice"
	}
	budget := cores.Count(cgroup)
	want := budget.Workers()
	ev := fmt.Sprintf("%d workers (%s); (2 x %d cores) + 1 = %d", n, from, budget.Cores, want)
	if p.after != nil {
		v := p.load()
		if mean, ok := v.meanBusy(); ok {
			var rss float64
			for _, w := range v.Workers {
				rss += w.RSSBytes
			}
			ev += fmt.Sprintf("; %.0f%% busy on average, queue wait p50 %.1f ms", 100*mean, v.QueueWaitP50ms)
			if mean >= 0.9 && v.QueueWaitP50ms >= 10 {
				return finding{Verdict: verdictWarn, Evidence: "too few: " + ev,
					Fix: fmt.Sprintf("edgectl scale %d (or --auto); if the workers wait on I/O, pool.class = \"gevent\" instead", max(want, n+1))}
			}
			if n > want && mean < 0.2 && v.RequestsPerSec > 0 {
				return finding{Verdict: verdictWarn, Evidence: fmt.Sprintf("more than needed: %s; %.0f MiB resident in all", ev, rss/(1<<20)),
					Fix: fmt.Sprintf("edgectl scale --auto (%d): the others hold memory for nothing", want)}
			}
		}
	}
	if n < want {
		return finding{Verdict: verdictWarn, Evidence: "fewer than the cores allow: " + ev, Fix: "edgectl scale --auto"}
	}
	return ok(ev)
}

func checkBacklog(p *patient) finding {
	var notes []string
	verdict := verdictOK
	fix := ""
	if rise := int64(p.overflows[1]) - int64(p.overflows[0]); rise > 0 {
		verdict = verdictFail
		notes = append(notes, fmt.Sprintf("the kernel turned away %d connections for a full accept queue during the check (ListenOverflows %d since boot)", rise, p.overflows[1]))
		fix = "raise Backlog= in edged.socket (a drop-in) and net.core.somaxconn (sysctl; the package sets 4096), and check that edged keeps up: edgectl status"
	} else if p.overflows[1] > 0 {
		verdict = verdictWarn
		notes = append(notes, fmt.Sprintf("ListenOverflows is %d since boot (none during the check): a full accept queue turned connections away before", p.overflows[1]))
		fix = "if it rises under load, raise Backlog= in edged.socket and net.core.somaxconn"
	}
	if p.after != nil {
		backlogs := p.after.by(metric.ListenBacklog, metric.LabelSocket)
		for s, w := range p.after.by(metric.ListenQueue, metric.LabelSocket) {
			max := backlogs[s]
			if max > 0 && w/max >= 0.5 {
				if verdict == verdictOK {
					verdict = verdictWarn
					fix = "the queue fills: more workers (edgectl scale), or a larger backlog"
				}
				notes = append(notes, fmt.Sprintf("%s holds %g of %g", s, w, max))
			}
			if p.somaxconn > 0 && max >= float64(p.somaxconn) && !strings.HasPrefix(s, "workers ") {
				notes = append(notes, fmt.Sprintf("%s: backlog %g is net.core.somaxconn's %d (a larger Backlog= is cut to it)", s, max, p.somaxconn))
			}
		}
		if len(notes) == 0 {
			var list []string
			for s, max := range backlogs {
				list = append(list, fmt.Sprintf("%s %g", s, max))
			}
			sort.Strings(list)
			notes = append(notes, "no overflow; backlogs: "+strings.Join(list, ", "))
		}
	} else if len(notes) == 0 {
		notes = append(notes, "no overflow since boot (the queues' fill needs edged's metrics)")
	}
	return finding{Verdict: verdict, Evidence: strings.Join(notes, "; "), Fix: fix}
}

func checkBuffering(p *patient) finding {
	if f, ok := p.needMetrics(); !ok {
		return f
	}
	streamed := p.after.sum(metric.StreamedTotal)
	held := p.after.sum(metric.StreamedSecondsTotal)
	app := p.after.sum(metric.RequestsTotal, metric.LabelKind, "app")
	busy := p.after.sum(metric.WorkerBusySecondsTotal)
	if streamed == 0 {
		return ok(fmt.Sprintf("every one of %g app answers was buffered: no slow client held a worker", app))
	}
	ev := fmt.Sprintf("%g of %g app answers were streamed (buffering off: X-Accel-Buffering: no, text/event-stream, or over buffers.response_max), holding their workers %.1fs in all", streamed, app, held)
	if app > 0 && (streamed/app > 0.1 || (busy > 0 && held/busy > 0.1)) {
		return finding{Verdict: verdictWarn, Evidence: ev,
			Fix: "stream only what must (server-sent events, long polls), with pool.class = \"gevent\" or \"threads\" so a held worker costs little; raise buffers.response_max for big answers"}
	}
	return ok(ev)
}

func checkSecrets(p *patient) finding {
	var secret *config.SecretError
	if errors.As(p.cfgErr, &secret) {
		return finding{Verdict: verdictFail, Evidence: "the config holds a secret: " + secret.Error(),
			Fix: "move it to /etc/edged/credentials/NAME and name it in [app.credentials] (edged --check says how)"}
	}
	credentials := map[string]bool{}
	if p.cfg != nil {
		for name := range p.cfg.App.Credentials {
			credentials[name] = true
		}
	}
	seen := map[string][]int{} // "NAME why" -> pids
	var unreadable int
	workers := 0
	for pid, comm := range p.processes() {
		if comm != "edged-worker" {
			continue
		}
		workers++
		b, err := os.ReadFile(filepath.Join(p.proc, strconv.Itoa(pid), "environ"))
		if err != nil {
			unreadable++
			continue
		}
		for _, kv := range bytes.Split(b, []byte{0}) {
			name, value, _ := strings.Cut(string(kv), "=")
			if name == "" || credentials[name] || strings.HasPrefix(name, "EDGED_") || systemdEnv[name] {
				continue
			}
			if why := config.SecretValue(value); why != "" {
				seen[name+" "+why] = append(seen[name+" "+why], pid)
			}
		}
	}
	var found []string
	for k, pids := range seen {
		name, why, _ := strings.Cut(k, " ")
		sort.Ints(pids)
		found = append(found, fmt.Sprintf("%s %s (in %d worker processes, pid %d first)", name, why, len(pids), pids[0]))
	}
	sort.Strings(found)
	if len(found) > 0 {
		return finding{Verdict: verdictWarn, Evidence: "the app's environment " + strings.Join(found, "; "),
			Fix: "these come from somewhere else than [app.credentials] (a drop-in's Environment=, the shell): pass them as credentials, /etc/edged/credentials/NAME and [app.credentials]"}
	}
	ev := "the config holds none"
	switch {
	case workers == 0:
		ev += "; no worker process to read the environment of"
	case unreadable == workers:
		ev += "; the workers' environments are not readable by this user (run as root to check them)"
	default:
		ev += fmt.Sprintf("; none in the environment of %d worker processes, beyond [app.credentials]", workers-unreadable)
	}
	return ok(ev)
}

// systemdEnv are the variables systemd sets for a service itself
// (systemd.exec(5)): ids and paths, never the app's secrets.
var systemdEnv = map[string]bool{
	"INVOCATION_ID": true, "JOURNAL_STREAM": true, "SYSTEMD_EXEC_PID": true, "MAINPID": true, "MANAGERPID": true,
	"CREDENTIALS_DIRECTORY": true, "RUNTIME_DIRECTORY": true, "STATE_DIRECTORY": true, "CACHE_DIRECTORY": true,
	"LOGS_DIRECTORY": true, "CONFIGURATION_DIRECTORY": true, "NOTIFY_SOCKET": true, "WATCHDOG_PID": true,
	"WATCHDOG_USEC": true, "LISTEN_FDS": true, "LISTEN_PID": true, "LISTEN_FDNAMES": true, "PIDFILE": true,
	"SERVICE_RESULT": true, "EXIT_CODE": true, "EXIT_STATUS": true,
}

func checkCPURoutes(p *patient) finding {
	if f, ok := p.needMetrics(); !ok {
		return f
	}
	routes := p.routes()
	var total float64
	for _, u := range routes {
		total += u.cpu
	}
	if total == 0 {
		return skip("no CPU time measured (the gevent and asgi classes cannot tell one request's CPU from another's)")
	}
	var heavy []string
	jsonHeavy := false
	jsons := p.after.by(metric.AppJSONSecondsTotal, metric.LabelRoute)
	for _, u := range routes {
		share := u.cpu / total
		// On the CPU most of the time it was not waiting for one.
		running := u.wall * (1 - u.cpuWaitShare)
		if u.count >= minRequests && share >= 0.4 && running > 0 && u.cpu/running >= 0.7 && u.cpuPerRequest >= 0.005 {
			h := fmt.Sprintf("%s takes %.0f%% of all worker CPU (%.1f ms of CPU a request, %.0f requests)", u.route, 100*share, 1000*u.cpuPerRequest, u.count)
			if j, ok := jsons[u.route]; ok || len(jsons) > 0 {
				// Both wall times: the JSON's, and the route's while it
				// was not waiting for a CPU.
				js := math.Min(1, j/running)
				h += fmt.Sprintf(", %.0f%% of it encoding JSON", 100*js)
				jsonHeavy = jsonHeavy || js >= 0.3
			}
			heavy = append(heavy, h)
		}
	}
	if len(heavy) > 0 {
		fix := "profile them (cProfile, py-spy): the cost is in the app's own code, a cache or less work per request are the cures"
		if jsonHeavy {
			fix = "serialising JSON is the cost: a faster encoder, orjson, encodes several times faster (Debian 12 has no package of it: pip install orjson in the app's virtualenv, and have the app use it, such as Flask's app.json provider), or send less, or cache the encoded answer"
		}
		return finding{Verdict: verdictWarn, Evidence: "CPU-bound routes: " + strings.Join(heavy, "; "), Fix: fix}
	}
	top := routes[0]
	for _, u := range routes {
		if u.cpu > top.cpu {
			top = u
		}
	}
	return ok(fmt.Sprintf("no CPU-bound route (the most CPU: %s, %.0f%% of it, %.1f ms a request of %.0f ms)", top.route, 100*top.cpu/total, 1000*top.cpuPerRequest, 1000*top.wallPerRequest))
}

func checkMemory(p *patient) finding {
	if p.systemd == nil {
		if p.after != nil {
			var big float64
			for _, v := range p.after.by(metric.WorkerRSSBytes, metric.LabelWorker) {
				big = math.Max(big, v)
			}
			return skip(fmt.Sprintf("memory caps and OOM kills need systemd; the largest worker holds %.0f MiB", big/(1<<20)))
		}
		return skip("memory caps and OOM kills need systemd")
	}
	var units []string
	for _, pl := range sitePools(p.cfg) {
		ns, err := pl.instances(p.ctx, p.systemd)
		if err != nil {
			return skip(err.Error())
		}
		for _, n := range ns {
			units = append(units, pl.service(n))
		}
	}
	var warn []string
	for _, unit := range units {
		sp, err := p.systemd.GetUnitTypePropertiesContext(p.ctx, unit, "Service")
		if err != nil {
			continue
		}
		cur, _ := sp["MemoryCurrent"].(uint64)
		max, _ := sp["MemoryMax"].(uint64)
		if max > 0 && max != unset && cur != unset && float64(cur) >= 0.8*float64(max) {
			warn = append(warn, fmt.Sprintf("%s uses %.0f of its %.0f MiB (MemoryMax)", unit, float64(cur)/(1<<20), float64(max)/(1<<20)))
		}
		if res, _ := sp["Result"].(string); res == "oom-kill" || res == "watchdog" {
			restarts, _ := sp["NRestarts"].(uint32)
			warn = append(warn, fmt.Sprintf("%s was last ended by %s (%d restarts since boot)", unit, res, restarts))
		}
	}
	if len(warn) > 0 {
		return finding{Verdict: verdictWarn, Evidence: strings.Join(warn, "; "),
			Fix: "journalctl -b -u 'workerd@*' -u 'workerd-*' shows why; raise MemoryMax= (systemctl set-property, or a site's pool.memory_max), recycle with pool.max_requests, or find the leak"}
	}
	return ok(fmt.Sprintf("%d workers, none near a memory cap, none ended by the OOM killer or the watchdog", len(units)))
}

// certWarn is how close to its end a certificate is reported.
const certWarn = 21 * 24 * time.Hour

func checkTLS(p *patient) finding {
	if p.cfg == nil {
		return skip("needs the config: " + firstLine(fmt.Sprint(p.cfgErr)))
	}
	infos := p.certs
	verdict := verdictOK
	var notes, fixes []string
	if infos == nil {
		// edged's own view needs [metrics]: the files, as on disk.
		var bad []string
		infos, bad, verdict = fileCerts(p.cfg)
		notes = append(notes, bad...)
		if p.cfg.ACMEUsed() {
			verdict = worst(verdict, verdictWarn)
			notes = append(notes, "the ACME certificates (tls = \"acme\") cannot be judged without edged's admin listener: "+firstLine(fmt.Sprint(p.certsErr)))
			fixes = append(fixes, "set [metrics] listen = \"127.0.0.1:9180\" and restart edged, so doctor can ask edged for its certificates")
		}
	}
	if len(infos) == 0 && len(notes) == 0 {
		return ok("no certificate configured")
	}
	for _, c := range infos {
		name := strings.Join(c.Names, ", ")
		if c.File != "" {
			name += " (" + c.File + ")"
		}
		left := c.NotAfter.Sub(p.now)
		switch {
		case c.Failures > 0:
			verdict = worst(verdict, verdictWarn)
			notes = append(notes, fmt.Sprintf("%s: %d orders in a row failed, the last %s ago: the CA said %q", name, c.Failures,
				p.now.Sub(c.LastErrorAt).Round(time.Second), c.LastError))
			fixes = append(fixes, "the CA must reach this host on port 80 (http-01) or 443 (tls-alpn-01) for each name, and each name's DNS must point here; edged retries with back-off and serves the certificate it has meanwhile")
		case c.Source == "self-signed":
			verdict = worst(verdict, verdictWarn)
			notes = append(notes, name+": no certificate from the CA yet, a self-signed one serves (the first order is under way)")
			fixes = append(fixes, "wait for the first order (edgectl status shows it); it needs the name's DNS pointing here and port 80 or 443 open")
		}
		switch {
		case c.NotAfter.IsZero():
		case left <= 0:
			verdict = worst(verdict, verdictFail)
			notes = append(notes, fmt.Sprintf("%s expired on %s", name, c.NotAfter.Format(time.DateOnly)))
			if c.Source == "acme" {
				fixes = append(fixes, "the renewals failed (journalctl -u edged shows why): the CA must reach this host for each name")
			}
		case left < certWarn && c.Source != "acme":
			verdict = worst(verdict, verdictWarn)
			notes = append(notes, fmt.Sprintf("%s expires in %d days, on %s", name, int(left.Hours()/24), c.NotAfter.Format(time.DateOnly)))
			fixes = append(fixes, "renew the certificate file: edged notices the new one within seconds (no restart)")
		case c.Source == "acme" && c.Failures == 0:
			notes = append(notes, fmt.Sprintf("%s valid %s, renewed from %s (%s)", name, days(left), c.RenewAt.Format(time.DateTime), renewBy(c.RenewBy)))
		case c.Failures == 0:
			notes = append(notes, fmt.Sprintf("%s valid %s", name, days(left)))
		}
	}
	f := finding{Verdict: verdict, Evidence: strings.Join(notes, "; ")}
	if verdict != verdictOK {
		if len(fixes) == 0 {
			fixes = append(fixes, "renew the certificate file: edged notices the new one within seconds (no restart)")
		}
		f.Fix = strings.Join(uniq(fixes), "; ")
	}
	return f
}

// days is a time left in days, or hours under two days.
func days(d time.Duration) string {
	if d < 48*time.Hour {
		return fmt.Sprintf("%d more hours", int(d.Hours()))
	}
	return fmt.Sprintf("%d more days", int(d.Hours()/24))
}

// renewBy says where a renewal time came from.
func renewBy(by string) string {
	if by == "ari" {
		return "the CA's renewal window, ARI"
	}
	return "a third of its life left"
}

// fileCerts reads the certificate files cfg names, as they are on disk;
// bad lists the ones that cannot be read, verdict judges those.
func fileCerts(cfg *config.Config) (infos []certInfo, bad []string, verdict string) {
	verdict = verdictOK
	pairs := append([]config.TLS{}, cfg.TLS.Files...)
	for _, s := range cfg.SiteBlocks {
		pairs = append(pairs, s.TLS.Files...)
	}
	for _, t := range pairs {
		b, err := os.ReadFile(t.Cert)
		if err != nil {
			bad = append(bad, fmt.Sprintf("%s: %v", t.Cert, err))
			verdict = worst(verdict, verdictWarn)
			continue
		}
		blk, _ := pem.Decode(b)
		if blk == nil {
			bad = append(bad, t.Cert+": no PEM certificate")
			verdict = worst(verdict, verdictFail)
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			bad = append(bad, fmt.Sprintf("%s: %v", t.Cert, err))
			verdict = worst(verdict, verdictFail)
			continue
		}
		names := c.DNSNames
		if len(names) == 0 {
			names = []string{c.Subject.CommonName}
		}
		infos = append(infos, certInfo{Names: names[:1], Source: "file", File: t.Cert, NotAfter: c.NotAfter})
	}
	return infos, bad, verdict
}

// uniq is xs without repeats, in order (a fix given for several findings
// is said once).
func uniq(xs []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, x := range xs {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}

func worst(a, b string) string {
	rank := map[string]int{verdictOK: 0, verdictSkip: 0, verdictWarn: 1, verdictFail: 2}
	if rank[b] > rank[a] {
		return b
	}
	return a
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}
