package edge

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/edged/edged/pkg/config"
	"github.com/edged/edged/pkg/logging"
	"github.com/edged/edged/pkg/sd"
	"github.com/rs/zerolog"
)

// Main is edged's command line.
func Main(args []string) error {
	fs := flag.NewFlagSet("edged", flag.ContinueOnError)
	file := fs.String("c", config.DefaultPath, "config `file`")
	check := fs.Bool("check", false, "validate the config, open the certificates and static roots, import the app as a worker would, and exit")
	configOnly := fs.Bool("config-only", false, "with --check: leave the app out (edged.service's ExecStartPre; the workers import it themselves)")
	reload := fs.Bool("reload", false, "ask the running edged to re-read its config, and wait for the outcome (systemctl reload runs this)")
	sockDir := fs.String("socket-dir", "", "override pool.socket_dir")
	logFormat := fs.String("log-format", "", "override log.format (edgectl run passes json and renders the events itself)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *reload {
		return requestReload()
	}
	cfg, err := load(*file, *sockDir)
	if err != nil {
		return err
	}
	if *check {
		if err := Check(cfg); err != nil {
			return err
		}
		if !*configOnly {
			if err := checkApp(*file); err != nil {
				return err
			}
		}
		fmt.Printf("%s: ok\n", cfg.File)
		return nil
	}
	if err := cfg.SetLogFormat(*logFormat); err != nil {
		return err
	}
	// Logged through a queue: a reader of the log that falls behind (the
	// journal, a busy pipe) costs log lines, counted, never a request's
	// time.
	out := logging.NewAsync(os.Stderr, 16384)
	defer out.Close()
	log := logging.New(out, cfg.Log.Level, cfg.Log.Format)
	out.OnDrop = func(n uint64) {
		log.Warn().Uint64("dropped", n).Msg("log lines dropped: the log's reader (the journal, or edgectl run's output) did not keep up")
	}
	s, err := New(cfg, log)
	if err != nil {
		return err
	}
	defer s.Close()
	ls, err := listeners(cfg)
	if err != nil {
		return err
	}
	defer ls.Close()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	reloads := make(chan chan error)
	go s.handleReloads(ctx, *file, *sockDir, reloads)
	if err := listenControl(ctx, reloads, s, log); err != nil {
		return err
	}
	go s.keepSystemdInformed(ctx)
	sd.Notify("READY=1\nSTATUS=" + s.status())
	err = s.Serve(ctx, ls)
	sd.Notify("STOPPING=1\nSTATUS=stopping")
	return err
}

func load(file, sockDir string) (*config.Config, error) {
	cfg, err := config.Load(file)
	if err != nil {
		return nil, err
	}
	if sockDir != "" {
		cfg.SetSocketDir(sockDir)
	}
	return cfg, nil
}

// handleReloads re-reads the config on SIGHUP or a request on the control
// socket. A config that fails is logged and reported, and the old one
// keeps serving.
func (s *Server) handleReloads(ctx context.Context, file, sockDir string, reqs chan chan error) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		var reply chan error
		select {
		case <-ctx.Done():
			return
		case <-hup:
		case reply = <-reqs:
		}
		sd.Notify("RELOADING=1\nSTATUS=reloading " + file)
		err := s.reload(file, sockDir)
		if err != nil {
			s.lastReloadErr.Store(oneLine(err.Error()))
			s.log.Error().Caller().Err(err).Str("config", file).Msg("reload refused, the old config keeps serving")
		} else {
			s.lastReloadErr.Store("")
			s.log.Info().Str("config", file).Msg("reloaded")
		}
		sd.Notify("READY=1\nSTATUS=" + s.status())
		if reply != nil {
			reply <- err
		}
	}
}

func (s *Server) reload(file, sockDir string) error {
	cfg, err := load(file, sockDir)
	if err != nil {
		return err
	}
	return s.Reload(cfg)
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", "; ")
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}

// controlPath is where edged listens for `edged --reload`: its runtime
// directory under systemd (RuntimeDirectory=edged/edge), none otherwise.
func controlPath() string {
	dir := os.Getenv("RUNTIME_DIRECTORY")
	if dir == "" {
		return ""
	}
	return filepath.Join(strings.Split(dir, ":")[0], "control.sock")
}

// listenControl serves requests of one line each: "reload", answered
// with "ok" or "error: ..." once the reload is done; "drain", "undrain"
// and "state", answered with the state ("draining" or "serving") and
// since when.
func listenControl(ctx context.Context, reqs chan chan error, s *Server, log zerolog.Logger) error {
	path := controlPath()
	if path == "" {
		return nil
	}
	os.Remove(path)
	l, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	go func() {
		<-ctx.Done()
		l.Close()
	}()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(2 * time.Minute))
				line, err := bufio.NewReader(c).ReadString('\n')
				if err != nil {
					return
				}
				switch strings.TrimSpace(line) {
				case "reload":
				case "drain":
					s.Drain()
					fmt.Fprintln(c, "ok "+s.drainState())
					return
				case "undrain":
					s.Undrain()
					fmt.Fprintln(c, "ok "+s.drainState())
					return
				case "state":
					fmt.Fprintln(c, "ok "+s.drainState())
					return
				default:
					fmt.Fprintln(c, "error: unknown request (reload, drain, undrain, state)")
					return
				}
				reply := make(chan error, 1)
				select {
				case reqs <- reply:
				case <-ctx.Done():
					return
				}
				if err := <-reply; err != nil {
					fmt.Fprintf(c, "error: %s\n", oneLine(err.Error()))
					return
				}
				fmt.Fprintln(c, "ok")
			}()
		}
	}()
	log.Debug().Str("path", path).Msg("control socket")
	return nil
}

// requestReload is `edged --reload`: it asks the running edged to reload
// and exits non-zero, with the reason, if the new config was refused.
func requestReload() error {
	path := controlPath()
	if path == "" {
		return errors.New("--reload talks to the edged of edged.service (RUNTIME_DIRECTORY is not set): run `systemctl reload edged`, or send SIGHUP to edged")
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		return fmt.Errorf("cannot reach edged at %s: %w", path, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Minute))
	fmt.Fprintln(c, "reload")
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return fmt.Errorf("no answer from edged: %w", err)
	}
	line = strings.TrimSpace(line)
	if line != "ok" {
		return fmt.Errorf("reload refused, the old config keeps serving: %s", strings.TrimPrefix(line, "error: "))
	}
	return nil
}

// keepSystemdInformed refreshes the status line and pets the watchdog.
func (s *Server) keepSystemdInformed(ctx context.Context) {
	t := time.NewTicker(sd.Interval(sd.Watchdog()))
	defer t.Stop()
	last, lastAt := s.requests.Load(), time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			n := s.requests.Load()
			s.rate.Store(int64(float64(n-last) / now.Sub(lastAt).Seconds()))
			last, lastAt = n, now
			sd.Notify("WATCHDOG=1\nSTATUS=" + s.status())
		}
	}
}

// status is the one line `systemctl status` and `edgectl status` show.
func (s *Server) status() string {
	with, _ := s.withWorkers()
	line := fmt.Sprintf("%d in flight (%d with the workers or queued for them), %d req/s, %d requests, %d errors",
		s.inFlight.Load(), with, s.rate.Load(), s.requests.Load(), s.errors.Load())
	if s.Draining() {
		line = s.drainState() + "; " + line
	}
	if e, _ := s.lastReloadErr.Load().(string); e != "" {
		line += "; last reload refused: " + e
	}
	return line
}

// Check does what loading a config cannot: it opens everything the config
// names (certificates, static roots, the temporary directory) the way
// edged will, and closes it again.
func Check(cfg *config.Config) error {
	st, err := (&Server{}).newState(cfg)
	if err != nil {
		return err
	}
	st.close()
	// Opened above as whoever runs the check: root opens anything, so
	// also judge for the user edged will serve as.
	for _, site := range cfg.Sites {
		where := ""
		if len(cfg.Sites) > 1 || site.Name != config.DefaultSite {
			where = "site " + site.Name + ": "
		}
		for i, sc := range site.Static {
			if why := unreadable(sc.Root); why != "" {
				return fmt.Errorf("%sstatic[%d].root %s: %s", where, i, sc.Root, why)
			}
		}
		for i, t := range site.TLS.Files {
			for _, f := range []struct{ key, path string }{{"cert", t.Cert}, {"key", t.Key}} {
				if strings.Contains(f.path, "-----BEGIN") || os.Geteuid() == 0 && filepath.Dir(f.path) == TLSCredentials {
					continue // systemd reads it, as root (LoadCredential=)
				}
				if why := unreadable(config.Credential("tls", f.path)); why != "" {
					return fmt.Errorf("%stls[%d].%s %s: %s", where, i, f.key, f.path, why)
				}
			}
		}
		if site.Pool.Class == config.ClassGevent {
			if err := gevent(site.App.Interpreter()); err != nil {
				return fmt.Errorf("%s%w", where, err)
			}
		}
	}
	return nil
}

// TLSCredentials is the directory edged.service loads TLS files from
// (LoadCredential=tls:/etc/edged/tls): systemd reads them as root.
const TLSCredentials = "/etc/edged/tls"

// checkApp has workerd import the app as a worker would (workerd
// --check): edged itself never runs the app's code.
func checkApp(file string) error {
	workerd := "workerd"
	if exe, err := os.Executable(); err == nil {
		if p := filepath.Join(filepath.Dir(exe), "workerd"); fileExists(p) {
			workerd = p
		}
	}
	if _, err := exec.LookPath(workerd); err != nil {
		return fmt.Errorf("cannot check that the app imports: no workerd beside edged or on PATH (--config-only checks the rest alone)")
	}
	cmd := exec.Command(workerd, "--check", "-c", file)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("the app is refused (workerd --check: %v): what it printed above says why", err)
	}
	return nil
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// gevent checks that python can import gevent, which the gevent class
// needs before anything else.
func gevent(python string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, python, "-c", "import gevent").CombinedOutput()
	if err != nil {
		last := strings.TrimSpace(string(out))
		if i := strings.LastIndexByte(last, '\n'); i >= 0 {
			last = last[i+1:]
		}
		if last == "" {
			last = err.Error()
		}
		return fmt.Errorf("pool.class = \"gevent\" needs gevent, and %s cannot import it (%s): install it (Debian: apt install python3-gevent; in a virtualenv: pip install gevent)", python, last)
	}
	return nil
}

// listeners takes the sockets systemd passed, named "http" and "https",
// or binds the configured addresses itself.
func listeners(cfg *config.Config) (*Listeners, error) {
	named, err := sd.Listeners()
	if err != nil {
		return nil, err
	}
	if len(named) == 0 {
		return Listen(cfg)
	}
	ls := &Listeners{HTTP: named["http"], HTTPS: named["https"]}
	for name := range named {
		if name != "http" && name != "https" {
			return nil, fmt.Errorf("socket activation passed a socket named %q: name them FileDescriptorName=http or https in edged.socket", name)
		}
	}
	return ls, nil
}
