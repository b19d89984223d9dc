// Package worker is workerd: it supervises one Python process that hosts
// the WSGI app on a Unix socket edged connects to.
//
// The Go process stays out of the data path. It owns the listening socket
// (or receives it from systemd) and hands it to the Python child, so that a
// child that dies and is restarted never closes the socket: edged's
// connections wait in the backlog instead of being refused.
package worker

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/edged/edged/pkg/config"
	"github.com/edged/edged/pkg/worker/python"
	"github.com/rs/zerolog"
)

// ImportError reports that the app could not be loaded: restarting will not
// help until the code or config changes.
type ImportError struct {
	Module    string
	Summary   string // last line of the traceback, e.g. "ModuleNotFoundError: ..."
	Traceback string
}

func (e *ImportError) Error() string {
	return fmt.Sprintf("cannot import app %q: %s", e.Module, e.Summary)
}

// Worker supervises the Python child of one workerd instance.
type Worker struct {
	cfg      *config.Config
	instance string
	log      zerolog.Logger

	// Ready is closed once the first child has imported the app.
	Ready    chan struct{}
	ready    atomic.Bool
	restarts atomic.Int64

	// What the current Python process last reported.
	pid      atomic.Int64
	loaded   atomic.Bool  // it has imported the app
	lastBeat atomic.Int64 // unix nanoseconds of its last heartbeat
	served   atomic.Int64 // by all processes of this worker
	base     atomic.Int64 // served by the processes before this one
	busy     atomic.Int64
	recycled atomic.Bool // it reached pool.max_requests and is ending

	// output is the readers of the Python process's stdout and stderr:
	// their last lines (a traceback as the process dies) are logged
	// before the process's end is.
	output sync.WaitGroup
	// checking: the process only imports the app (CheckApp).
	checking bool
	// appKey is what the Python process reported of the app's secret
	// key (nil: nothing).
	appKey atomic.Pointer[AppKey]

	// credentials is where to read app.credentials when systemd passed
	// none (CREDENTIALS_DIRECTORY unset): the check reads them where
	// workerd@.service loads them from.
	credentials string
}

// CredentialsDir is where workerd@.service loads the app's credentials
// from (LoadCredential=app:/etc/edged/credentials).
const CredentialsDir = "/etc/edged/credentials"

// New returns a worker for the instance name (the N of workerd@N).
func New(cfg *config.Config, instance string, log zerolog.Logger) *Worker {
	return &Worker{cfg: cfg, instance: instance, log: log, Ready: make(chan struct{})}
}

// Restarts is how many times the Python child has been started again.
func (w *Worker) Restarts() int64 { return w.restarts.Load() }

// Run has Python children take requests from lf, the listening socket
// every worker shares, until ctx is cancelled; then it lets the child
// finish its requests for up to the graceful timeout. It restarts a child
// that dies after it was ready, and returns an *ImportError when the app
// cannot load. lf must be blocking and unpolled (see sd.ListenUnix).
func (w *Worker) Run(ctx context.Context, lf *os.File) error {

	backoff := 100 * time.Millisecond
	for {
		started := time.Now()
		err := w.runChild(ctx, lf)
		if ctx.Err() != nil {
			return nil
		}
		var ie *ImportError
		if errors.As(err, &ie) {
			return err
		}
		w.restarts.Add(1)
		if errors.Is(err, errRecycled) {
			// Planned, and logged when it began: start the next at once.
			continue
		}
		if time.Since(started) > 10*time.Second {
			backoff = 100 * time.Millisecond
		}
		w.log.Warn().Err(err).Dur("after", backoff).Msg("python process ended, starting a new one")
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// errRecycled is how a child that ended after pool.max_requests, as
// asked, ends.
var errRecycled = errors.New("python process recycled after pool.max_requests")

// start starts a Python process with conf (the module and directory
// filled in here) and lf as its fd 3, and returns it with the read end of
// its events.
func (w *Worker) start(conf childConf, lf *os.File) (*child, error) {
	a := w.cfg.App
	conf.Module, conf.Directory = a.Module, a.Directory
	for name := range a.Credentials {
		conf.Credentials = append(conf.Credentials, name)
	}
	js, _ := json.Marshal(conf)
	env, err := w.environ(string(js))
	if err != nil {
		return nil, &ImportError{Module: a.Module, Summary: err.Error()}
	}
	srcR, srcW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	evR, evW, err := os.Pipe()
	if err != nil {
		srcR.Close()
		srcW.Close()
		return nil, err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(a.Interpreter(), "-c", python.Bootstrap)
	cmd.Dir = a.Directory
	cmd.Env = env
	cmd.Stdout = outW
	cmd.Stderr = errW
	cmd.ExtraFiles = []*os.File{lf, srcR, evW}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	err = cmd.Start()
	for _, f := range []*os.File{srcR, evW, outW, errW} {
		f.Close()
	}
	if err != nil {
		for _, f := range []*os.File{srcW, evR, outR, errR} {
			f.Close()
		}
		return nil, &ImportError{Module: a.Module, Summary: fmt.Sprintf("cannot start %s: %v (set app.python or app.virtualenv)", a.Interpreter(), err)}
	}
	log := w.log.With().Int("pid", cmd.Process.Pid).Logger()
	w.output.Add(2)
	for _, o := range []struct {
		r    *os.File
		name string
	}{{outR, "stdout"}, {errR, "stderr"}} {
		go func() {
			defer w.output.Done()
			defer o.r.Close()
			appOutput(o.r, o.name, log)
		}()
	}
	go func() {
		srcW.Write(python.Bundle())
		srcW.Close()
	}()
	c := &child{cmd: cmd, waited: make(chan error, 1), events: make(chan struct{}), evR: evR}
	go func() {
		defer close(c.events)
		w.readEvents(evR, &c.importErr)
	}()
	go func() { c.waited <- cmd.Wait() }()
	return c, nil
}

// child is one running Python process.
type child struct {
	cmd       *exec.Cmd
	waited    chan error    // its exit, once
	events    chan struct{} // closed when its event pipe ends
	evR       *os.File
	importErr atomic.Pointer[ImportError]
}

// finish, once the process has exited, waits for its last events and
// output, and returns the import failure it reported, if any.
func (w *Worker) finish(c *child) *ImportError {
	<-c.events
	c.evR.Close()
	w.waitOutput()
	return c.importErr.Load()
}

type childConf struct {
	// Check asks the process to import the app, report, and exit.
	Check       bool   `json:"check,omitempty"`
	Module      string `json:"module"`
	Directory   string `json:"directory"`
	Class       string `json:"class"`
	Threads     int    `json:"threads"`     // threads taking requests: 1 but for the threads class
	Connections int    `json:"connections"` // greenlets at once, for the gevent class
	MaxRequests int    `json:"max_requests"`
	// Timeout is how long, in seconds, a request may run before the
	// process is declared hung: one second past edged's own deadline, so
	// that the client has had its 504.
	Timeout float64 `json:"timeout"`
	// GracefulTimeout (seconds) is how long a stop may take: the asgi
	// class spreads its WebSockets' closes over part of it.
	GracefulTimeout float64 `json:"graceful_timeout"`
	// Credentials are the environment variables that hold
	// [app.credentials]: a key read from one came from a credential.
	Credentials []string `json:"credentials,omitempty"`
}

// waitOutput waits a moment for the app's last output to be logged: a
// process the Python one started may still hold the pipes open.
func (w *Worker) waitOutput() {
	done := make(chan struct{})
	go func() {
		w.output.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(time.Second):
	}
}

// maxRequests is pool.max_requests for one Python process, with its
// jitter.
func maxRequests(p config.Pool) int {
	if p.MaxRequests == 0 || p.MaxRequestsJitter == 0 {
		return p.MaxRequests
	}
	return p.MaxRequests + rand.IntN(p.MaxRequestsJitter+1)
}

// runChild starts one Python process and waits for it to end.
func (w *Worker) runChild(ctx context.Context, lf *os.File) error {
	threads := 1
	if w.cfg.Pool.Class == config.ClassThreads {
		threads = w.cfg.Pool.Threads
	}
	w.loaded.Store(false)
	w.recycled.Store(false)
	w.base.Store(w.served.Load())
	w.busy.Store(0)
	c, err := w.start(childConf{
		Class: w.cfg.Pool.Class, Threads: threads, Connections: w.cfg.Pool.Connections,
		MaxRequests:     maxRequests(w.cfg.Pool),
		Timeout:         w.cfg.App.Timeout.D().Seconds() + 1,
		GracefulTimeout: w.cfg.Pool.GracefulTimeout.D().Seconds(),
	}, lf)
	if err != nil {
		return err
	}
	cmd, waited := c.cmd, c.waited

	w.pid.Store(int64(cmd.Process.Pid))
	log := w.log.With().Int("pid", cmd.Process.Pid).Logger()
	// An interpreter that stops sending heartbeats is stuck where Python
	// cannot see it (in C, holding the GIL): faulthandler in the child
	// prints every thread's stack on SIGUSR1, then the child is replaced.
	stale := w.cfg.App.Timeout.D() + 5*time.Second
	check := time.NewTicker(time.Second)
	defer check.Stop()
	var werr error
wait:
	select {
	case werr = <-waited:
	case <-check.C:
		if w.Alive(stale) {
			goto wait
		}
		log.Error().Dur("silent", stale).Msg("python process stopped answering: its stack follows on stderr, then a new process starts")
		cmd.Process.Signal(syscall.SIGUSR1)
		select {
		case werr = <-waited:
		case <-time.After(2 * time.Second):
			cmd.Process.Kill()
			werr = <-waited
		}
	case <-ctx.Done():
		cmd.Process.Signal(syscall.SIGTERM)
		grace := w.cfg.Pool.GracefulTimeout.D()
		log.Info().Int64("busy", w.busy.Load()).Dur("graceful_timeout", grace).Msg("stopping: the python process takes no new requests and finishes its own")
		select {
		case werr = <-waited:
		case <-time.After(grace):
			log.Warn().Dur("graceful_timeout", grace).Msg("python process did not finish in time, killing it")
			cmd.Process.Kill()
			werr = <-waited
		}
	}
	if ie := w.finish(c); ie != nil {
		return ie
	}
	if werr == nil {
		if w.recycled.Load() {
			return errRecycled
		}
		return errors.New("python process exited")
	}
	return fmt.Errorf("python process: %w", werr)
}

func (w *Worker) readEvents(r *os.File, importErr *atomic.Pointer[ImportError]) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		var ev map[string]any
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			w.log.Warn().Str("line", sc.Text()).Msg("unreadable event from python process")
			continue
		}
		kind, _ := ev["event"].(string)
		delete(ev, "event")
		switch kind {
		case "stats":
			served, _ := ev["served"].(float64)
			busy, _ := ev["busy"].(float64)
			w.served.Store(w.base.Load() + int64(served))
			w.busy.Store(int64(busy))
			w.lastBeat.Store(time.Now().UnixNano())
		case "ready":
			w.loaded.Store(true)
			w.lastBeat.Store(time.Now().UnixNano())
			if !w.checking {
				w.log.Info().Interface("pid", ev["pid"]).Str("app", w.cfg.App.Module).Msg("app loaded, serving")
			}
			if w.ready.CompareAndSwap(false, true) {
				close(w.Ready)
			}
		case "app_key":
			k := appKeyOf(ev)
			w.appKey.Store(k)
			if !w.checking {
				k.log(w.log)
			}
		case "import_failed":
			ie := &ImportError{Module: w.cfg.App.Module}
			ie.Summary, _ = ev["summary"].(string)
			ie.Traceback, _ = ev["traceback"].(string)
			importErr.Store(ie)
		case "hung":
			tb, _ := ev["traceback"].(string)
			e := w.log.Error().Interface("method", ev["method"]).Interface("path", ev["path"])
			if id, _ := ev["request_id"].(string); id != "" {
				e = e.Str("request_id", id)
			}
			msg := "request hung past app.timeout: the python process stops here, and a new one starts"
			if alone, _ := ev["greenlet"].(bool); alone {
				msg = "request hung past app.timeout: it alone is ended here, the others go on"
			}
			e.Interface("seconds", ev["seconds"]).Str("traceback", tb).Msg(msg)
		case "recycle":
			w.recycled.Store(true)
			w.log.Info().Interface("served", ev["served"]).Msg("max_requests reached, recycling python process")
		case "log":
			lvl, _ := ev["level"].(string)
			msg, _ := ev["message"].(string)
			delete(ev, "level")
			delete(ev, "message")
			e := w.log.Info()
			switch lvl {
			case "error":
				e = w.log.Error()
			case "warn":
				e = w.log.Warn()
			}
			e.Fields(ev).Msg(msg)
		}
	}
}

// Alive reports whether the worker deserves a watchdog ping: its Python
// process is importing the app, or has sent a heartbeat within d.
func (w *Worker) Alive(d time.Duration) bool {
	if !w.loaded.Load() {
		return true
	}
	return time.Since(time.Unix(0, w.lastBeat.Load())) < d
}

// Status is the worker's line for systemd: class, requests served, in
// flight and the Python process's resident memory.
func (w *Worker) Status() string {
	class := w.cfg.Pool.Class
	switch class {
	case config.ClassThreads:
		class = fmt.Sprintf("threads x%d", w.cfg.Pool.Threads)
	case config.ClassGevent, config.ClassASGI:
		class = fmt.Sprintf("%s x%d", class, w.cfg.Pool.Connections)
	}
	if !w.loaded.Load() {
		return fmt.Sprintf("%s, loading %s", class, w.cfg.App.Module)
	}
	return fmt.Sprintf("%s, %d requests served, %d in flight, RSS %s, %d restarts",
		class, w.served.Load(), w.busy.Load(), rss(int(w.pid.Load())), w.restarts.Load())
}

// rss reads a process's resident set size from /proc.
func rss(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return "?"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) >= 1 {
				var kb int64
				fmt.Sscan(f[0], &kb)
				return fmt.Sprintf("%.1f MB", float64(kb)/1024)
			}
		}
	}
	return "?"
}

// environ is the child's environment: workerd's own, the app's env table,
// the credentials named in the config, and the child's settings.
func (w *Worker) environ(conf string) ([]string, error) {
	env := make([]string, 0, len(os.Environ())+len(w.cfg.App.Env)+4)
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "LISTEN_") || strings.HasPrefix(kv, "NOTIFY_SOCKET=") || strings.HasPrefix(kv, "WATCHDOG_") {
			continue
		}
		env = append(env, kv)
	}
	for k, v := range w.cfg.App.Env {
		env = append(env, k+"="+v)
	}
	if len(w.cfg.App.Credentials) > 0 {
		dir := os.Getenv("CREDENTIALS_DIRECTORY")
		if dir == "" {
			dir = w.credentials
		}
		if dir == "" {
			return nil, errors.New("app.credentials is set but CREDENTIALS_DIRECTORY is not: run under systemd with LoadCredential=, or set CREDENTIALS_DIRECTORY to a directory holding the credential files")
		}
		for name, cred := range w.cfg.App.Credentials {
			// LoadCredential=app:/etc/edged/credentials hands every file
			// there over as app_NAME; LoadCredential=NAME as NAME.
			b, err := os.ReadFile(filepath.Join(dir, "app_"+cred))
			if errors.Is(err, os.ErrNotExist) {
				b, err = os.ReadFile(filepath.Join(dir, cred))
			}
			if err != nil {
				return nil, fmt.Errorf("credential %q for %s: %v (put it in /etc/edged/credentials/%s, which workerd@.service loads)", cred, name, err, cred)
			}
			env = append(env, name+"="+strings.TrimRight(string(b), "\r\n"))
		}
	}
	if w.cfg.App.Virtualenv != "" {
		env = append(env, "VIRTUAL_ENV="+w.cfg.App.Virtualenv)
	}
	// print() reaches the log as it is called, not a pipe's buffer later.
	env = append(env, "PYTHONUNBUFFERED=1")
	return append(env, "EDGED_INSTANCE="+w.instance, "EDGED_WORKER="+conf), nil
}
