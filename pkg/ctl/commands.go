package ctl

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	"github.com/edged/edged/pkg/config"
	"github.com/edged/edged/pkg/cores"
	"github.com/edged/edged/pkg/generator"
	"github.com/edged/edged/pkg/logging"
)

// scale brings the number of a site's running workers to n, or every
// site's to its share of (2 x cores) + 1.
func scale(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("edgectl scale", flag.ContinueOnError)
	auto := fs.Bool("auto", false, "(2 x cores) + 1 workers, cores counted from the CPU affinity and the cgroup cpu quota, shared among the sites by their pool.workers")
	timeout := fs.Duration("timeout", 3*time.Minute, "how long to wait for the workers to be ready")
	file := fs.String("c", config.DefaultPath, "config `file` (for its sites)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	usage := errors.New("usage: edgectl scale N | edgectl scale SITE N | edgectl scale --auto")
	cfg, cfgErr := config.LoadShape(*file)
	if cfgErr != nil && !errors.Is(cfgErr, config.ErrNotFound) {
		// Scaling by a config that does not load would miss its sites.
		return fmt.Errorf("scale: %w", cfgErr)
	}
	type job struct {
		pl pool
		n  int
	}
	var jobs []job
	switch {
	case *auto && fs.NArg() == 0:
		c := cores.Count("system.slice")
		total := c.Workers()
		fmt.Fprintf(out, "%s\nworkers = 2 x %d + 1 = %d\n", c.Explain(), c.Cores, total)
		if cfgErr != nil || len(cfg.Sites) <= 1 {
			pl := defaultPool
			if cfgErr == nil {
				pl = poolOf(cfg.Sites[0].Name)
			}
			jobs = append(jobs, job{pl, total})
			break
		}
		shares := generator.Shares(cfg, total)
		for _, site := range cfg.Sites {
			fmt.Fprintf(out, "site %s: %d (weight %d of %d)\n", site.Name, shares[site.Name], max(1, site.Pool.Workers), weights(cfg))
			jobs = append(jobs, job{poolOf(site.Name), shares[site.Name]})
		}
	case !*auto && (fs.NArg() == 1 || fs.NArg() == 2):
		n, err := count(fs.Arg(fs.NArg() - 1))
		if err != nil {
			return err
		}
		pl := defaultPool
		if fs.NArg() == 2 {
			if cfgErr != nil {
				return fmt.Errorf("scale site %s: %w", fs.Arg(0), cfgErr)
			}
			site, ok := cfg.Site(fs.Arg(0))
			if !ok {
				return fmt.Errorf("scale: no site %q in %s: its sites are %s", fs.Arg(0), *file, strings.Join(cfg.SiteNames(), ", "))
			}
			pl = poolOf(site.Name)
		} else if cfgErr == nil {
			site, ok := cfg.Site("")
			if !ok {
				return fmt.Errorf("scale: %s has several sites: say which, edgectl scale %s %d", *file, cfg.SiteNames()[0], n)
			}
			pl = poolOf(site.Name)
		}
		jobs = append(jobs, job{pl, n})
	default:
		return usage
	}
	return withSystemd(ctx, *timeout, func(ctx context.Context, m manager) error {
		var errs []error
		for _, j := range jobs {
			if err := scalePool(ctx, m, j.pl, j.n, out); err != nil {
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	})
}

// count parses a worker count.
func count(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > 1024 || strconv.Itoa(n) != s {
		return 0, fmt.Errorf("scale %q: give a worker count from 0 to 1024, or --auto", s)
	}
	return n, nil
}

func weights(cfg *config.Config) int {
	sum := 0
	for _, s := range cfg.Sites {
		sum += max(1, s.Pool.Workers)
	}
	return sum
}

// sitePools are the pools of the config's sites; the top-level one's when
// the config cannot be read.
func sitePools(cfg *config.Config) []pool {
	if cfg == nil {
		return []pool{defaultPool}
	}
	var out []pool
	for _, s := range cfg.Sites {
		out = append(out, poolOf(s.Name))
	}
	return out
}

// withSystemd connects to systemd and runs f within timeout.
func withSystemd(ctx context.Context, timeout time.Duration, f func(context.Context, manager) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	m, err := connect(ctx)
	if err != nil {
		return err
	}
	defer m.Close()
	return f(ctx, m)
}

func scaleTo(ctx context.Context, m manager, n int, out io.Writer) error {
	return scalePool(ctx, m, defaultPool, n, out)
}

// scalePool brings the number of the pool's running workers to n.
func scalePool(ctx context.Context, m manager, pl pool, n int, out io.Writer) error {
	have, err := pl.instances(ctx, m)
	if err != nil {
		return err
	}
	running := map[int]bool{}
	for _, i := range have {
		running[i] = true
	}
	var start, stop []int
	for i := 1; i <= n; i++ {
		if !running[i] {
			start = append(start, i)
		}
	}
	for _, i := range have {
		if i > n {
			stop = append(stop, i)
		}
	}
	p := newProgress(out)
	if pl.generated() {
		// What starts at the next boot: edged-generator reads it.
		if err := recordScale(pl.site, n); err != nil {
			p.done(fmt.Sprintf("note: %v; the workers run now, and `sudo edgectl scale %s %d` once makes the size stick", err, pl.site, n))
		}
	}
	if len(start) > 0 {
		if err := startWorkers(ctx, m, pl, start, p); err != nil {
			return err
		}
	}
	if len(stop) > 0 {
		if err := stopWorkers(ctx, m, pl, stop, p); err != nil {
			return err
		}
	}
	what := "workers"
	if pl.site != "" {
		what = "workers of " + pl.site
	}
	p.done(fmt.Sprintf("%d %s running (%d started, %d stopped)", n, what, len(start), len(stop)))
	return nil
}

// scaleDir is where the counts of generated pools are recorded.
var scaleDir = generator.ScaleDir

// recordScale keeps n for the site's next boot.
func recordScale(site string, n int) error {
	if err := os.MkdirAll(scaleDir, 0o755); err != nil {
		return fmt.Errorf("cannot record the count for the next boot (%v)", err)
	}
	if err := os.WriteFile(filepath.Join(scaleDir, site), []byte(strconv.Itoa(n)+"\n"), 0o644); err != nil {
		return fmt.Errorf("cannot record the count for the next boot (%v)", err)
	}
	return nil
}

// startWorkers starts instances together and waits until each is ready
// (READY=1 comes once the app is imported). They take requests from the
// one worker socket, started first.
func startWorkers(ctx context.Context, m manager, pl pool, ns []int, p *progress) error {
	if !pl.generated() {
		runtime := runtimeUnits(ctx, m)
		files := []string{pl.socket()}
		for _, i := range ns {
			files = append(files, pl.service(i))
		}
		// Enabled, so that they come back after a reboot. The polkit rule
		// lets edgeadm start and stop edged's units but not enable unit files
		// (that right cannot be limited to some units): without it, scale
		// still works, for this boot.
		if _, _, err := m.EnableUnitFilesContext(ctx, files, runtime, true); err != nil {
			if !denied(err) {
				return explain("enable workers", err)
			}
			p.done("note: not permitted to enable the new workers at boot; they run now, and `sudo edgectl scale N` once makes the size stick")
		}
	}
	if err := runJob(ctx, "start "+pl.socket(), func(ch chan<- string) (int, error) {
		return m.StartUnitContext(ctx, pl.socket(), "replace", ch)
	}); err != nil {
		return err
	}
	var wg sync.WaitGroup
	errs := make([]error, len(ns))
	ready := 0
	var mu sync.Mutex
	for k, i := range ns {
		wg.Add(1)
		go func(k, i int) {
			defer wg.Done()
			m.ResetFailedUnitContext(ctx, pl.service(i))
			err := runJob(ctx, "start "+pl.service(i), func(ch chan<- string) (int, error) {
				return m.StartUnitContext(ctx, pl.service(i), "replace", ch)
			})
			if err != nil {
				errs[k] = fmt.Errorf("%w%s", err, why(pl.service(i)))
				return
			}
			mu.Lock()
			ready++
			p.step(fmt.Sprintf("started %d/%d workers", ready, len(ns)))
			mu.Unlock()
		}(k, i)
	}
	wg.Wait()
	return errors.Join(errs...)
}

// stopWorkers stops the services: a stopping worker takes no new request
// off the shared socket and finishes the ones it holds, while the others
// go on taking from it.
func stopWorkers(ctx context.Context, m manager, pl pool, ns []int, p *progress) error {
	runtime := runtimeUnits(ctx, m)
	var errs []error
	for k, i := range ns {
		if err := runJob(ctx, "stop "+pl.service(i), func(ch chan<- string) (int, error) {
			return m.StopUnitContext(ctx, pl.service(i), "replace", ch)
		}); err != nil {
			errs = append(errs, err)
		}
		if pl.generated() {
			p.step(fmt.Sprintf("stopped %d/%d workers", k+1, len(ns)))
			continue
		}
		if _, err := m.DisableUnitFilesContext(ctx, []string{pl.service(i)}, runtime); err != nil && !denied(err) {
			errs = append(errs, explain("disable "+pl.service(i), err))
		}
		p.step(fmt.Sprintf("stopped %d/%d workers", k+1, len(ns)))
	}
	return errors.Join(errs...)
}

// why adds the last lines a failed worker logged, which usually name the
// cause (an app that does not import, a missing credential).
func why(unit string) string {
	out, err := exec.Command("journalctl", "--no-pager", "-q", "-o", "cat", "-n", "3", "-u", unit).Output()
	lines := strings.TrimSpace(string(out))
	if err != nil || lines == "" {
		return fmt.Sprintf("; see `journalctl -u %s`", unit)
	}
	return fmt.Sprintf(":\n    %s\n  (more with `journalctl -u %s`)", strings.ReplaceAll(lines, "\n", "\n    "), unit)
}

// runtimeUnits says whether the unit files live under /run, where enabling
// must be runtime-only too.
func runtimeUnits(ctx context.Context, m manager) bool {
	props, err := m.GetUnitPropertiesContext(ctx, "workerd@1.service")
	if err != nil {
		return false
	}
	path, _ := props["FragmentPath"].(string)
	return strings.HasPrefix(path, "/run/")
}

// restart replaces the workers one at a time, each ready before the next
// goes. The others keep taking requests from the shared socket meanwhile,
// which systemd keeps open: none fails.
func restart(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("edgectl restart", flag.ContinueOnError)
	timeout := fs.Duration("timeout", 10*time.Minute, "how long the whole restart may take")
	file := fs.String("c", config.DefaultPath, "config `file` (for its sites)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := config.LoadShape(*file)
	if err != nil && !errors.Is(err, config.ErrNotFound) {
		return fmt.Errorf("restart: %w", err)
	}
	if err != nil {
		cfg = nil
	}
	pools := sitePools(cfg)
	if fs.NArg() == 1 {
		if cfg == nil {
			return fmt.Errorf("restart %s: %w", fs.Arg(0), err)
		}
		site, ok := cfg.Site(fs.Arg(0))
		if !ok {
			return fmt.Errorf("restart: no site %q in %s: its sites are %s", fs.Arg(0), *file, strings.Join(cfg.SiteNames(), ", "))
		}
		pools = []pool{poolOf(site.Name)}
	} else if fs.NArg() > 1 {
		return errors.New("usage: edgectl restart [SITE]")
	}
	return withSystemd(ctx, *timeout, func(ctx context.Context, m manager) error {
		for _, pl := range pools {
			if running, err := pl.instances(ctx, m); err == nil && len(running) == 0 && len(pools) > 1 {
				continue // a site with none running has nothing to restart
			}
			preload := false
			if cfg != nil {
				if site, ok := cfg.Site(pl.name()); ok {
					preload = site.App.Preload
				}
			}
			if err := restartPool(ctx, m, pl, preload, out); err != nil {
				return err
			}
		}
		return nil
	})
}

// restartWorkers restarts every running worker in turn.
func restartWorkers(ctx context.Context, m manager, out io.Writer) error {
	return restartPool(ctx, m, defaultPool, false, out)
}

// restartPool restarts every running worker of the pool in turn; with
// canary (app.preload), only once an extra worker has imported the app.
func restartPool(ctx context.Context, m manager, pl pool, canary bool, out io.Writer) error {
	ns, err := pl.instances(ctx, m)
	if err != nil {
		return err
	}
	if len(ns) == 0 {
		return errors.New("no worker is running: start some with `edgectl scale --auto`")
	}
	p := newProgress(out)
	if canary {
		// One more worker, never enabled: if it does not get as far as
		// READY=1 (the app imported), nothing running is touched.
		extra := ns[len(ns)-1] + 1
		unit := pl.service(extra)
		p.step("app.preload: importing the app in " + unit + " first")
		m.ResetFailedUnitContext(ctx, unit)
		err := runJob(ctx, "start "+unit, func(ch chan<- string) (int, error) {
			return m.StartUnitContext(ctx, unit, "replace", ch)
		})
		if err != nil {
			runJob(ctx, "stop "+unit, func(ch chan<- string) (int, error) { return m.StopUnitContext(ctx, unit, "replace", ch) })
			return fmt.Errorf("app.preload: the app does not start in a new worker, so no running worker was restarted: %w%s", err, why(unit))
		}
		defer func() {
			if err := runJob(ctx, "stop "+unit, func(ch chan<- string) (int, error) { return m.StopUnitContext(ctx, unit, "replace", ch) }); err != nil {
				fmt.Fprintf(out, "note: %v\n", err)
			}
		}()
	}
	for k, i := range ns {
		if err := runJob(ctx, "restart "+pl.service(i), func(ch chan<- string) (int, error) {
			return m.RestartUnitContext(ctx, pl.service(i), "replace", ch)
		}); err != nil {
			return fmt.Errorf("%w; the workers after it were not restarted; see `journalctl -u %s`", err, pl.service(i))
		}
		p.step(fmt.Sprintf("restarted %d/%d workers", k+1, len(ns)))
	}
	p.done(fmt.Sprintf("restarted %d workers", len(ns)))
	return nil
}

// status prints edged and every worker as systemd sees them.
func status(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("edgectl status", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print JSON for scripts")
	file := fs.String("c", config.DefaultPath, "config `file` (for [metrics] listen)")
	watch := fs.Bool("watch", false, "refresh in place, like top, until Ctrl-C")
	every := fs.Duration("interval", 2*time.Second, "how long the load is measured over")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, cfgErr := config.Load(*file)
	for {
		// The units, from systemd; the load, from edged's metrics. Either
		// may be missing (no systemd under edgectl run, no [metrics]).
		var rep *report
		unitsErr := withSystemd(ctx, 10*time.Second, func(ctx context.Context, m manager) (err error) {
			rep, err = collect(ctx, m, sitePools(cfg)...)
			return err
		})
		var lv *liveView
		var certs []certInfo
		liveErr := cfgErr
		if cfg != nil {
			lv, liveErr = live(ctx, cfg, *every)
			certs, _ = readCertificates(ctx, cfg) // none when the load is missing: said there
		}
		if ctx.Err() != nil {
			return nil
		}
		if rep == nil && lv == nil {
			return fmt.Errorf("%v; and the load: %v", unitsErr, liveErr)
		}
		if *asJSON {
			enc := json.NewEncoder(out)
			enc.SetIndent("", "  ")
			sj := statusJSON{report: rep, Live: lv, Certificates: certs}
			if unitsErr != nil {
				sj.UnitsError = unitsErr.Error()
			}
			if liveErr != nil {
				sj.LiveError = liveErr.Error()
			}
			if err := enc.Encode(sj); err != nil {
				return err
			}
		} else {
			if *watch {
				fmt.Fprint(out, "\033[H\033[2J") // home, clear: redrawn in place
				fmt.Fprintf(out, "edgectl status, every %v (Ctrl-C ends)  %s\n\n", *every, time.Now().Format(time.TimeOnly))
			}
			if rep != nil {
				rep.print(out)
			} else {
				fmt.Fprintf(out, "units: %v\n", unitsErr)
			}
			fmt.Fprintln(out)
			if lv != nil {
				lv.print(out)
			} else {
				fmt.Fprintf(out, "load: %v\n", liveErr)
			}
			if len(certs) > 0 {
				fmt.Fprintln(out)
				printCertificates(out, certs, time.Now())
			}
		}
		if !*watch {
			return nil
		}
		if lv == nil {
			// No load to measure (its interval is the pause otherwise).
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(*every):
			}
		}
	}
}

// statusJSON is `edgectl status --json`: the units' report as before,
// and the load under "live".
type statusJSON struct {
	*report
	UnitsError string    `json:"units_error,omitempty"`
	Live       *liveView `json:"live,omitempty"`
	LiveError  string    `json:"live_error,omitempty"`
	// Certificates are edged's, as it serves them.
	Certificates []certInfo `json:"certificates,omitempty"`
}

// printCertificates is status's table of certificates: where each came
// from, when it ends and is renewed, and what the last order came to.
func printCertificates(out io.Writer, certs []certInfo, now time.Time) {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CERTIFICATE\tSOURCE\tISSUER\tEXPIRES\tRENEWS\tORDERS")
	at := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.Local().Format("2006-01-02 15:04")
	}
	for _, c := range certs {
		renews, orders := "-", "-"
		if c.Source == "acme" || c.Source == "self-signed" {
			renews, orders = at(c.RenewAt), "ok"
			if c.RenewBy == "ari" {
				renews += " (ARI)"
			}
			if c.Failures > 0 {
				orders = fmt.Sprintf("%d failed, last %s ago: %s", c.Failures, now.Sub(c.LastErrorAt).Round(time.Second), firstLine(c.LastError))
			} else if c.Source == "self-signed" {
				orders = "first order under way"
			}
		}
		name := strings.Join(c.Names, ",")
		if c.File != "" {
			name += " (" + c.File + ")"
		}
		issuer := c.Issuer
		if issuer == "" {
			issuer = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", name, c.Source, issuer, at(c.NotAfter), renews, orders)
	}
	tw.Flush()
}

// report is `edgectl status`.
type report struct {
	Edged   unitInfo   `json:"edged"`
	Workers []unitInfo `json:"workers"`
	Totals  totals     `json:"totals"`
}

type totals struct {
	Workers     int    `json:"workers"`
	Active      int    `json:"active"`
	MemoryBytes uint64 `json:"memory_bytes"`
	CPUNanos    uint64 `json:"cpu_nsec"`
	Restarts    uint32 `json:"restarts"`
}

// collect reads edged and the workers of pools (the top-level site's
// when none are given).
func collect(ctx context.Context, m manager, pools ...pool) (*report, error) {
	if len(pools) == 0 {
		pools = []pool{defaultPool}
	}
	rep := &report{Workers: []unitInfo{}}
	var err error
	if rep.Edged, err = info(ctx, m, edgedUnit); err != nil {
		return nil, err
	}
	for _, pl := range pools {
		if err := rep.addPool(ctx, m, pl, len(pools) > 1); err != nil {
			return nil, err
		}
	}
	return rep, nil
}

// addPool adds the pool's workers; named: each row says its site.
func (rep *report) addPool(ctx context.Context, m manager, pl pool, named bool) error {
	// Failed workers too: status is where an operator looks for them.
	ns, err := pl.list(ctx, m, func(u sddbus.UnitStatus) bool {
		return u.LoadState == "loaded" && u.ActiveState != "inactive"
	})
	if err != nil {
		return err
	}
	for _, n := range ns {
		u, err := info(ctx, m, pl.service(n))
		if err != nil {
			return err
		}
		if named || pl.site != "" {
			u.Site = pl.name()
		}
		rep.Workers = append(rep.Workers, u)
		rep.Totals.Workers++
		if u.State == "active" {
			rep.Totals.Active++
		}
		if u.MemoryBytes != nil {
			rep.Totals.MemoryBytes += *u.MemoryBytes
		}
		if u.CPUNanos != nil {
			rep.Totals.CPUNanos += *u.CPUNanos
		}
		rep.Totals.Restarts += u.Restarts
	}
	return nil
}

func (r *report) print(out io.Writer) {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "UNIT\tSTATE\tPID\tUPTIME\tMEMORY\tCPU\tRESTARTS\tSTATUS")
	row := func(u unitInfo) {
		name := u.Unit
		if u.Site != "" && !strings.Contains(u.Unit, "-"+u.Site+"@") {
			name += " (" + u.Site + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", name, u.State+"/"+u.SubState, pid(u.PID),
			uptime(u.Since), bytesOf(u.MemoryBytes), cpuOf(u.CPUNanos), u.Restarts, u.Status)
	}
	row(r.Edged)
	for _, u := range r.Workers {
		row(u)
	}
	t := r.Totals
	fmt.Fprintf(tw, "TOTAL (%d workers, %d active)\t\t\t\t%s\t%s\t%d\t\n", t.Workers, t.Active, bytesOf(&t.MemoryBytes), cpuOf(&t.CPUNanos), t.Restarts)
	tw.Flush()
}

func pid(p uint32) string {
	if p == 0 {
		return "-"
	}
	return fmt.Sprint(p)
}

func uptime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return time.Since(t).Round(time.Second).String()
}

func bytesOf(b *uint64) string {
	if b == nil {
		return "-"
	}
	return fmt.Sprintf("%.1fM", float64(*b)/(1<<20))
}

func cpuOf(n *uint64) string {
	if n == nil {
		return "-"
	}
	return time.Duration(*n).Round(time.Millisecond).String()
}

// progress shows steps on a terminal, one line rewritten in place, and
// only the outcome otherwise.
type progress struct {
	out io.Writer
	tty bool
}

func newProgress(out io.Writer) *progress {
	f, ok := out.(*os.File)
	return &progress{out: out, tty: ok && logging.IsTerminal(f)}
}

func (p *progress) step(msg string) {
	if p.tty {
		fmt.Fprintf(p.out, "\r\033[K%s", msg)
	}
}

// done prints a line that stays, over the progress shown by step.
func (p *progress) done(msg string) {
	if p.tty {
		fmt.Fprint(p.out, "\r\033[K")
	}
	fmt.Fprintln(p.out, msg)
}
