// Package local runs the whole suite in the foreground without systemd:
// one edged and the configured number of workerd processes, started from
// the binaries beside the running one. It is what `make run` and the tests
// use; in production systemd does this job.
package local

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/edged/edged/pkg/config"
	"github.com/edged/edged/pkg/cores"
	"github.com/edged/edged/pkg/logging"
	"github.com/edged/edged/pkg/sd"
	"github.com/rs/zerolog"
)

// Options say what to run.
type Options struct {
	Config  string // config file
	BinDir  string // where edged and workerd are; "" = beside this binary
	Workers int    // 0 = the config's count
	// SocketDir overrides pool.socket_dir; "" = a new temporary directory,
	// removed on exit, so no root is needed.
	SocketDir string
	// Reload restarts the workers, one at a time, when a .py file under
	// app.directory changes (gunicorn's --reload).
	Reload bool
	Stdout *os.File
	Stderr *os.File

	// control is edged's runtime directory, where its control socket
	// goes (edgectl drain --control).
	control string
	// events, when set, takes every child's output (edgectl run's own
	// stream); nil: the children write to Stdout and Stderr themselves.
	events *events
}

// openEvents opens the run's events file beside edged's control socket,
// its lines shown on Stderr as format says: rendered for a person on a
// terminal (auto) or when asked (console), as they are otherwise.
func (o Options) openEvents(format string) (*events, error) {
	var out io.Writer = o.Stderr
	if format == "console" || format == "auto" && logging.IsTerminal(o.Stderr) {
		out = logging.Console(o.Stderr)
	}
	return openEvents(filepath.Join(o.control, "events.log"), out, o.Stderr)
}

// childArgs are a child's arguments, with the log format the run's
// stream wants when there is one: JSON, which it renders.
func (o Options) childArgs(args ...string) []string {
	if o.events != nil {
		return append(args, "--log-format", "json")
	}
	return args
}

// childOutput is where one child writes: the ends given to it, and
// what to close once it has started.
type childOutput struct {
	stdout, stderr *os.File
	pipe           *os.File // the run's copy of the events pipe; nil without one
}

func (c *childOutput) close() {
	if c.pipe != nil {
		c.pipe.Close()
		c.pipe = nil
	}
}

// output is a new child's stdout and stderr.
func (o Options) output() (*childOutput, error) {
	if o.events == nil {
		return &childOutput{stdout: o.Stdout, stderr: o.Stderr}, nil
	}
	w, err := o.events.pipe()
	if err != nil {
		return nil, err
	}
	return &childOutput{stdout: w, stderr: w, pipe: w}, nil
}

// Run starts the suite and waits until ctx ends or edged exits. A worker
// that exits is started again, as systemd's Restart= would, unless it
// fails at once (an app that cannot import), which stops everything with
// that error. SIGHUP to this process reloads edged's config and restarts
// the workers one at a time.
func Run(ctx context.Context, o Options) error {
	cfg, err := config.Load(o.Config)
	if err != nil {
		return err
	}
	if o.BinDir == "" {
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		o.BinDir = filepath.Dir(exe)
	}
	if o.SocketDir == "" {
		d, err := os.MkdirTemp("", "edged-workers-*")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		o.SocketDir = d
	}
	if o.Stdout == nil {
		o.Stdout = os.Stdout
	}
	if o.Stderr == nil {
		o.Stderr = os.Stderr
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cfg.SetSocketDir(o.SocketDir)
	o.control = filepath.Join(o.SocketDir, "edge")
	if err := os.MkdirAll(o.control, 0o700); err != nil {
		return err
	}
	var log zerolog.Logger
	if cfg.Log.Format == "journal" {
		// Asked for by name: the events go to the journal, edgectl
		// logs reads them there.
		log = logging.New(o.Stderr, cfg.Log.Level, cfg.Log.Format).With().Str("from", "edgectl run").Logger()
	} else {
		ev, err := o.openEvents(cfg.Log.Format)
		if err != nil {
			return err
		}
		defer ev.close()
		o.events = ev
		log = logging.New(ev, cfg.Log.Level, "json").With().Str("from", "edgectl run").Logger()
		if done, err := writePointer(ev.path); err != nil {
			log.Warn().Err(err).Str("events", ev.path).Msg("edgectl logs will need --events PATH to find this run's events")
		} else {
			defer done()
		}
		log.Info().Str("events", ev.path).Msg("this run's events, for edgectl logs (--events PATH when several runs are up)")
	}
	log.Info().Str("control", filepath.Join(o.control, "control.sock")).Msg("edged's control socket: edgectl drain --control PATH")
	total := 0
	for _, site := range cfg.Sites {
		total += o.workers(cfg, site)
	}
	// Room for every worker's and edged's error: nothing that reports one
	// ever blocks.
	errc := make(chan error, total+2)
	var pools []*pool
	// The workers stop after edged, as under systemd (workerd@.service
	// is Before=edged.service): a stopping edged drains and finishes its
	// requests, which need them.
	poolCtx, stopPools := context.WithCancel(context.Background())
	defer func() {
		stopPools() // first: a pool waits for its workers, which stop on it
		for _, p := range pools {
			p.wait()
		}
	}()
	for _, site := range cfg.Sites {
		// The socket the site's workers take requests from, as
		// workerd.socket is under systemd: it outlives any one worker.
		qpath := site.Pool.Socket()
		queue, err := sd.ListenUnix(qpath, site.Limits.Backlog())
		if err != nil {
			return err
		}
		defer os.Remove(qpath)
		defer queue.Close()
		name, plog := "", log
		if site.Name != config.DefaultSite {
			name, plog = site.Name, log.With().Str("site", site.Name).Logger()
		}
		p, err := newPool(poolCtx, o, name, queue, o.workers(cfg, site), plog, errc)
		if err != nil {
			return err
		}
		pools = append(pools, p)
	}
	roll := func(why string) {
		for _, p := range pools {
			p.roll(why)
		}
	}

	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	var edged atomic.Pointer[os.Process]
	wg.Add(1)
	go func() {
		defer wg.Done()
		err := o.run(ctx, edged.Store, nil, "edged", o.childArgs("-c", o.Config, "--socket-dir", o.SocketDir)...)
		if ctx.Err() == nil {
			errc <- fmt.Errorf("edged exited: %v", err)
		}
	}()
	// SIGHUP reloads edged's config, as `systemctl reload edged` does,
	// and restarts the workers one at a time, as `edgectl restart`.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				if p := edged.Load(); p != nil {
					p.Signal(syscall.SIGHUP)
				}
				roll("SIGHUP")
			}
		}
	}()
	if o.Reload {
		for i, site := range cfg.Sites {
			p := pools[i]
			log.Info().Str("directory", site.App.Directory).Str("site", site.Name).Msg("restarting the workers when a .py file there changes")
			go watch(ctx, site.App.Directory, site.App.Virtualenv, func(file string) {
				p.roll("changed: " + file)
			})
		}
	}

	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	return err
}

// workers is how many workers a site gets: --workers, else its
// pool.workers, else (2 x cores) + 1 shared among the sites that leave it
// to edged, by the cores this process may use (the workers run in its
// cgroup, under its quota).
func (o Options) workers(cfg *config.Config, site *config.Site) int {
	if o.Workers > 0 {
		return o.Workers
	}
	if site.Pool.Workers > 0 {
		return site.Pool.Workers
	}
	auto := 0
	for _, s := range cfg.Sites {
		if s.Pool.Workers == 0 {
			auto++
		}
	}
	return max(1, cores.Count(cores.Own()).Workers()/auto)
}

// run starts one binary and waits; when ctx ends it sends SIGTERM and
// waits for a clean exit. Children die with this process (Pdeathsig), so
// even a SIGKILL to it leaves nothing behind.
// started, when set, is told the process once it runs; files are passed
// on as fd 3 and up.
func (o Options) run(ctx context.Context, started func(*os.Process), files []*os.File, name string, args ...string) error {
	cmd := exec.Command(filepath.Join(o.BinDir, name), args...)
	out, err := o.output()
	if err != nil {
		return err
	}
	defer out.close()
	cmd.Stdout, cmd.Stderr = out.stdout, out.stderr
	cmd.ExtraFiles = files
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if name == "edged" && o.control != "" {
		// Where edged puts its control socket, as systemd's
		// RuntimeDirectory= tells it.
		cmd.Env = append(os.Environ(), "RUNTIME_DIRECTORY="+o.control)
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", name, err)
	}
	out.close() // the child's copy is the one that counts
	if started != nil {
		started(cmd.Process)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-done:
			return err
		case <-time.After(40 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			return <-done
		}
	}
}
