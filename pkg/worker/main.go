package worker

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/edged/edged/pkg/config"
	"github.com/edged/edged/pkg/logging"
	"github.com/edged/edged/pkg/sd"
)

// Main is workerd's command line.
func Main(args []string) error {
	fs := flag.NewFlagSet("workerd", flag.ContinueOnError)
	file := fs.String("c", config.DefaultPath, "config `file`")
	instance := fs.String("i", "", "instance `number` (the N of workerd@N)")
	sockDir := fs.String("socket-dir", "", "override pool.socket_dir")
	check := fs.Bool("check", false, "import the app as a worker would, report, and exit (edged --check runs this)")
	site := fs.String("site", "", "the `site` whose app to host (workerd-SITE@N); none: the default site")
	logFormat := fs.String("log-format", "", "override log.format (edgectl run passes json and renders the events itself)")
	queueFD := fs.Int("queue-fd", 0, "take requests from the listening socket on this inherited `fd` (edgectl run passes it; systemd passes it by socket activation)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *check {
		return checkApps(*file, *site)
	}
	if _, ok := config.Instance(*instance); !ok {
		return fmt.Errorf("-i %q: give the instance number, such as -i 1", *instance)
	}
	cfg, err := config.Load(*file)
	if err != nil {
		return err
	}
	if *sockDir != "" {
		cfg.SetSocketDir(*sockDir)
	}
	if cfg, err = cfg.ForSite(*site); err != nil {
		return err
	}
	if err := cfg.SetLogFormat(*logFormat); err != nil {
		return err
	}
	lc := logging.New(os.Stderr, cfg.Log.Level, cfg.Log.Format).With().Str("worker", *instance)
	if name := cfg.Sites[0].Name; name != config.DefaultSite {
		lc = lc.Str("site", name)
	}
	log := lc.Logger()

	ln, cleanup, err := listener(cfg, *queueFD)
	if err != nil {
		return err
	}
	defer cleanup()
	defer ln.Close()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	w := New(cfg, *instance, log)
	go func() {
		select {
		case <-w.Ready:
			sd.Notify("READY=1\nSTATUS=" + w.Status())
		case <-ctx.Done():
			return
		}
		keepSystemdInformed(ctx, w)
	}()
	err = w.Run(ctx, ln)
	sd.Notify("STOPPING=1")
	if ctx.Err() != nil && err == nil {
		log.Info().Msg("stopped")
	}
	var ie *ImportError
	if errors.As(err, &ie) {
		e := log.Error().Str("app", ie.Module).Str("summary", ie.Summary)
		if ie.Traceback != "" {
			e = e.Str(logging.TracebackField, ie.Traceback)
		}
		e.Msg("cannot import the app: " + ie.Summary)
		return logging.Reported{Err: ie}
	}
	return err
}

// checkApps is workerd --check: the site's app, or every site's.
func checkApps(file, site string) error {
	all, err := config.Load(file)
	if err != nil {
		return err
	}
	names := []string{site}
	if site == "" {
		names = all.SiteNames()
	}
	for _, name := range names {
		cfg, err := all.ForSite(name)
		if err != nil {
			return err
		}
		if err := checkApp(cfg); err != nil {
			if len(names) > 1 {
				return fmt.Errorf("site %s: %w", name, err)
			}
			return err
		}
	}
	return nil
}

// checkApp imports the app of cfg's one site.
func checkApp(cfg *config.Config) error {
	timeout := max(cfg.App.Timeout.D(), 30*time.Second)
	log := logging.New(os.Stderr, cfg.Log.Level, cfg.Log.Format).With().Str("worker", "check").Logger()
	key, err := CheckApp(context.Background(), cfg, timeout, log)
	if err != nil {
		var ie *ImportError
		if errors.As(err, &ie) && ie.Traceback != "" {
			fmt.Fprint(os.Stderr, ie.Traceback)
		}
		return err
	}
	where := ""
	if name := cfg.Sites[0].Name; name != config.DefaultSite {
		where = "site " + name + ": "
	}
	fmt.Printf("%sapp %s (%s): imports, ok\n", where, cfg.App.Module, cfg.App.Interpreter())
	if key == nil {
		return nil
	}
	verdict, _, fix := key.Verdict()
	fmt.Printf("%sapp secret key: %s: %s\n", where, verdict, key.Summary())
	if fix != "" {
		fmt.Printf("%s  fix: %s\n", where, fix)
	}
	if verdict == "fail" {
		return fmt.Errorf("%sthe app's secret key: %s", where, key.Summary())
	}
	return nil
}

// keepSystemdInformed refreshes the status line and pets the watchdog
// while the Python process shows signs of life: one that hangs with the
// interpreter stuck stops the pings, and systemd restarts the worker.
func keepSystemdInformed(ctx context.Context, w *Worker) {
	wd := sd.Watchdog()
	t := time.NewTicker(sd.Interval(wd))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		state := "STATUS=" + w.Status()
		if wd > 0 && w.Alive(wd/2) {
			state = "WATCHDOG=1\n" + state
		}
		sd.Notify(state)
	}
}

// listener takes the socket every worker shares: the one systemd passed,
// the one inherited on fd, or, for a worker run by hand, one it binds
// (removed again by the returned cleanup).
func listener(cfg *config.Config, fd int) (*os.File, func(), error) {
	f, err := sd.Inherited(fd)
	if err != nil || f != nil {
		return f, func() {}, err
	}
	path := cfg.Pool.Socket()
	f, err = sd.ListenUnix(path, cfg.Limits.Backlog())
	return f, func() { os.Remove(path) }, err
}
