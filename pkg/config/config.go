// Package config loads the one TOML file that edged, workerd and edgectl all
// read (/etc/edged/edged.toml in production).
//
// Loading goes in phases: defaults, a strict decode (an unknown key is an
// error), then validation. Every error a user can meet names the file and
// line, the key, the bad value, and what to write instead. Relative paths in
// the file are taken relative to the file's own directory, so a config and
// the app it names can move together.
package config

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// DefaultPath is where the packaged config lives.
const DefaultPath = "/etc/edged/edged.toml"

// Config is the whole file, after defaults and validation.
type Config struct {
	Listen   Listen   `toml:"listen"`
	TLS      TLSList  `toml:"tls"`
	ACME     ACME     `toml:"acme"`
	Static   []Static `toml:"static"`
	App      App      `toml:"app"`
	Pool     Pool     `toml:"pool"`
	Limits   Limits   `toml:"limits"`
	Buffers  Buffers  `toml:"buffers"`
	Proxy    Proxy    `toml:"proxy"`
	Log      Log      `toml:"log"`
	Compress Compress `toml:"compress"`
	Metrics  Metrics  `toml:"metrics"`
	Cluster  Cluster  `toml:"cluster"`
	// WebSocket bounds the WebSockets edged ends for the apps (every
	// site's).
	WebSocket WebSocket `toml:"websocket"`
	// SiteBlocks are the [[site]] tables as written; Sites is what they
	// and the top-level tables describe.
	SiteBlocks []Site `toml:"site"`

	// Sites are the sites, after validation: the top-level one
	// (DefaultSite) first when the file has a top-level [app], then each
	// [[site]] in file order.
	Sites []*Site `toml:"-"`

	// File is the absolute path the config was read from ("" for Default).
	File string `toml:"-"`
}

// Listen holds the addresses edged binds when systemd hands it no socket.
type Listen struct {
	HTTP  []string `toml:"http"`
	HTTPS []string `toml:"https"`
	// ProxyProtocol are the addresses and CIDR prefixes of the load
	// balancers that put a PROXY protocol header (v1 or v2) before each
	// connection: required from them, refused from anyone else.
	ProxyProtocol []string       `toml:"proxy_protocol"`
	ProxyNets     []netip.Prefix `toml:"-"`
}

// Static maps a URL prefix to a directory that edged serves itself.
type Static struct {
	Prefix string   `toml:"prefix"`
	Root   string   `toml:"root"`
	MaxAge Duration `toml:"max_age"`
	Index  string   `toml:"index"`
}

// App is the WSGI application that every worker hosts.
type App struct {
	// Module names the WSGI callable as gunicorn does: "pkg.module"
	// (its "application"), "pkg.module:name", "pkg.module:obj.attr", or
	// a factory to call, "pkg.module:create_app()", with Python literals
	// as arguments. The Python side parses the call; nothing is eval'ed.
	Module string `toml:"module"`
	// Python is the interpreter; Virtualenv, when set, wins and means
	// Virtualenv/bin/python.
	Python     string `toml:"python"`
	Virtualenv string `toml:"virtualenv"`
	// Directory is the working directory and the first entry of sys.path.
	Directory string            `toml:"directory"`
	Env       map[string]string `toml:"env"`
	// Credentials maps an environment variable the app reads to the name of
	// a systemd credential (LoadCredential=) holding its value.
	Credentials map[string]string `toml:"credentials"`
	// ScriptName is the URL prefix the app is mounted under (SCRIPT_NAME).
	ScriptName string `toml:"script_name"`
	// Timeout bounds the time edged waits for a worker's whole response.
	Timeout Duration `toml:"timeout"`
	// Preload (gunicorn's preload_app) has a restart import the new code
	// in one extra worker, a canary, before any running worker is
	// replaced: an app that no longer imports is caught with every worker
	// still serving. It cannot share the imported app's memory between
	// workers, as gunicorn's forked workers do: each worker is a unit and
	// a process of its own.
	Preload bool `toml:"preload"`
}

// Worker classes.
const (
	ClassSync    = "sync"
	ClassThreads = "threads"
	// ClassGevent runs each request in a greenlet, the standard library
	// monkey-patched before the app is imported (gunicorn's gevent
	// worker): for apps that spend their time waiting on I/O.
	ClassGevent = "gevent"
	// ClassASGI runs an ASGI app (FastAPI, Starlette, Django's asgi.py)
	// on an asyncio loop, uvloop where the interpreter has it:
	// pool.connections requests at once in each worker.
	ClassASGI = "asgi"
)

// Pool is the set of workerd instances.
type Pool struct {
	Class   string `toml:"class"`
	Threads int    `toml:"threads"`
	// Connections is how many requests one gevent or asgi worker runs at
	// once (gunicorn's worker_connections, uvicorn's limit_concurrency).
	Connections int `toml:"connections"`
	// Workers is the instance count; 0 means (2 x cores) + 1.
	Workers   int    `toml:"workers"`
	SocketDir string `toml:"socket_dir"`
	// GracefulTimeout is how long a stopping worker may finish its requests.
	GracefulTimeout Duration `toml:"graceful_timeout"`
	// MaxRequests recycles a worker's Python process after this many
	// requests; 0 never.
	MaxRequests int `toml:"max_requests"`
	// MaxRequestsJitter adds to max_requests a random 0 to this many for
	// each Python process, so that workers started together are not all
	// recycled together (gunicorn's max_requests_jitter).
	MaxRequestsJitter int `toml:"max_requests_jitter"`
	// MemoryMax caps the memory of the site's workers together (the
	// MemoryMax= of its slice, edged-NAME.slice, under systemd); 0: none.
	// A [[site]]'s only: the top-level workers are in system.slice.
	MemoryMax Size `toml:"memory_max"`
	// Queue is the file name of the pool's socket in SocketDir:
	// QueueSocket for the top-level site, NAME.sock for a [[site]].
	Queue string `toml:"-"`
}

// Instance parses an instance number, the N of workerd@N. Only the one spelling of a positive number counts: systemd takes
// workerd@03 and workerd@+3 for other units than workerd@3.
func Instance(s string) (int, bool) {
	n, err := strconv.Atoi(s)
	return n, err == nil && n > 0 && strconv.Itoa(n) == s
}

// QueueSocket is the name of the socket in socket_dir that every worker
// takes requests from (workerd.socket under systemd).
const QueueSocket = "queue.sock"

// Socket is the path of the socket every worker takes requests from.
func (p Pool) Socket() string {
	q := p.Queue
	if q == "" {
		q = QueueSocket
	}
	return filepath.Join(p.SocketDir, q)
}

// Backlog is the listen backlog that lets QueueLength connections wait
// on the worker socket: the kernel admits one more than the backlog, so
// a QueueLength of 0 still lets one wait.
func (l Limits) Backlog() int {
	return max(l.QueueLength-1, 0)
}

// Limits bound what a client may send and how long it may take.
type Limits struct {
	MaxBody       Size     `toml:"max_body"`
	MaxHeader     Size     `toml:"max_header"`
	HeaderTimeout Duration `toml:"header_timeout"`
	BodyTimeout   Duration `toml:"body_timeout"`
	SendTimeout   Duration `toml:"send_timeout"`
	IdleTimeout   Duration `toml:"idle_timeout"`
	QueueLength   int      `toml:"queue_length"`
	QueueTimeout  Duration `toml:"queue_timeout"`
	// Rate and Burst limit each client's requests (nginx's limit_req):
	// Burst requests at once, then Rate; past it, 429. A zero Rate: none.
	Rate  Rate `toml:"rate"`
	Burst int  `toml:"burst"`
	// ConnectionsPerClient bounds the requests one client has in hand at
	// once (nginx's limit_conn); past it, 503. Zero: none.
	ConnectionsPerClient int `toml:"connections_per_client"`
}

// Buffers say how much of a request or response body edged keeps in memory
// before it spills the rest to a temporary file.
type Buffers struct {
	RequestMemory  Size `toml:"request_memory"`
	ResponseMemory Size `toml:"response_memory"`
	// ResponseMax bounds a buffered response, memory and temp file
	// together (nginx's proxy_max_temp_file_size): past it the rest is
	// passed to the client as it comes, the worker held meanwhile.
	ResponseMax Size   `toml:"response_max"`
	TempDir     string `toml:"temp_dir"`
}

// Proxy lists the peers whose X-Forwarded-* headers are believed.
type Proxy struct {
	Trusted []string       `toml:"trusted"`
	Nets    []netip.Prefix `toml:"-"`
}

// Metrics is where edged serves its Prometheus metrics: never on a
// public listener, nor on an address the internet may reach.
type Metrics struct {
	// Listen is "host:port", the host a loopback, private or link-local
	// address or "localhost", or the path of a Unix socket (starting with
	// "/"); "" serves none.
	Listen string `toml:"listen"`
	// Agent is "host:port" where edged answers HAProxy's agent check
	// (agent-check, agent-port): a line of "up 75%", "drain" and the like,
	// on the same kind of address as Listen (TCP only); "" serves none.
	Agent string `toml:"agent"`
}

// Cluster is how edged behaves as one host of several behind a load
// balancer.
type Cluster struct {
	// Drain is how long a stopping edged tells the balancer it drains
	// (health 503, agent "drain", keep-alive off) before it closes its
	// listeners, so that the balancer stops sending first; 0 stops at
	// once.
	Drain Duration `toml:"drain"`
}

func (c *Cluster) validate(v *validator) {
	if c.Drain.D() > 5*time.Minute {
		v.fail([]string{"cluster", "drain"}, fmt.Sprintf("%s is more than 5m: a stop waits that long before it even begins; a balancer checking every few seconds needs \"5s\" to \"30s\"", c.Drain))
	}
}

// Unix says Listen is a Unix socket path.
func (m Metrics) Unix() bool { return strings.HasPrefix(m.Listen, "/") }

func (m *Metrics) validate(v *validator, public []string) {
	if m.Listen != "" && !m.Unix() {
		adminAddr(v, []string{"metrics", "listen"}, m.Listen, "9180", "the metrics", true, public)
	}
	if m.Agent != "" {
		adminAddr(v, []string{"metrics", "agent"}, m.Agent, "9181", "the agent check's answers", false, public)
		if m.Agent == m.Listen {
			v.fail([]string{"metrics", "agent"}, fmt.Sprintf("%q is metrics.listen too: the agent check answers on a port of its own, such as %q", m.Agent, otherPort(m.Agent, "9181")))
		}
	}
}

// adminAddr checks a where an admin service is served: never a public
// listener's, nor an address the internet may reach. def is the port to
// suggest; unix says a Unix socket path would do.
func adminAddr(v *validator, key []string, a, def, what string, unix bool, public []string) {
	orSocket := ", or a Unix socket path"
	if !unix {
		orSocket = ""
	}
	if strings.HasPrefix(a, "/") && !unix {
		v.fail(key, fmt.Sprintf("%q: %s need a TCP address such as \"10.0.0.5:%s\" (the balancer connects to it)", a, what, def))
		return
	}
	if err := splitHostPort(a); err != nil && !errors.Is(err, errHostName) {
		v.fail(key, fmt.Sprintf("bad address %q: %v; write host:port such as \"127.0.0.1:%s\"%s", a, err, def, orSocket))
		return
	}
	host, port, _ := net.SplitHostPort(a)
	if why := exposed(host); why != "" {
		for _, t := range public {
			if _, p, _ := net.SplitHostPort(t); p == port {
				port = def // taken by a public listener
			}
		}
		v.fail(key, fmt.Sprintf("%q: %s: use \"127.0.0.1:%s\", a private address of this host%s", a, why, port, orSocket))
		return
	}
	for _, t := range public {
		if t == a {
			v.fail(key, fmt.Sprintf("%q is a public listener too: %s go on an address of their own, such as \"127.0.0.1:%s\"", a, what, def))
		}
	}
}

// otherPort is a with port def.
func otherPort(a, def string) string {
	host, _, err := net.SplitHostPort(a)
	if err != nil {
		return "127.0.0.1:" + def
	}
	return net.JoinHostPort(host, def)
}

// exposed says why metrics served on host could be reached from outside
// this host and its private networks, or "" when they cannot: loopback,
// private (RFC 1918, IPv6 ULA) and link-local addresses, and "localhost".
func exposed(host string) string {
	if host == "localhost" {
		return ""
	}
	if host == "" {
		return "a wildcard address serves metrics on every interface, public ones included"
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return "a host name may resolve to any address, public ones included"
	}
	a = a.Unmap()
	switch {
	case a.IsUnspecified():
		return "a wildcard address serves metrics on every interface, public ones included"
	case a.IsLoopback(), a.IsPrivate(), a.IsLinkLocalUnicast():
		return ""
	case a.IsGlobalUnicast():
		return fmt.Sprintf("%s is a public address, open to anyone who can reach it", a)
	default:
		return fmt.Sprintf("%s is not a loopback, private or link-local address of this host", a)
	}
}

// Compress configures the compression of app responses, as nginx's
// gzip module: the answer is buffered anyway, so it is compressed once,
// after the worker is free.
type Compress struct {
	Enabled bool `toml:"enabled"`
	// Types are the media types compressed: "text/html", or "text/*".
	Types []string `toml:"types"`
	// MinSize is the smallest body compressed.
	MinSize   Size `toml:"min_size"`
	GzipLevel int  `toml:"gzip_level"` // 1 (fastest) to 9
	ZstdLevel int  `toml:"zstd_level"` // 1 to 22, as zstd counts them
}

// WebSocket configures the WebSockets edged ends for the apps.
type WebSocket struct {
	// MaxMessage bounds one message either way: a client's over it is
	// closed with 1009.
	MaxMessage Size `toml:"max_message"`
	// IdleTimeout closes a WebSocket with no message either way for this
	// long (1001); 0: never (pings still find a client that is gone).
	IdleTimeout Duration `toml:"idle_timeout"`
	// PingInterval is how often edged pings each client; one that has
	// not answered by the next ping is gone. 0: no pings.
	PingInterval Duration `toml:"ping_interval"`
	// Compress offers permessage-deflate (RFC 7692) to clients that ask.
	Compress bool `toml:"compress"`
}

// Log configures the logs of every binary.
type Log struct {
	Level  string `toml:"level"`
	Format string `toml:"format"` // auto, json, console or journal
	Access bool   `toml:"access"`
	// AccessFile, when set, is where the access log goes instead of the
	// main log: JSON lines appended, the file opened again on a reload
	// (logrotate's postrotate).
	AccessFile string `toml:"access_file"`
}

// Default returns the production defaults, the values an nginx + gunicorn
// operator would expect.
func Default() *Config {
	return &Config{
		Listen: Listen{HTTP: []string{"0.0.0.0:80"}},
		App: App{
			Python:  "/usr/bin/python3",
			Timeout: Duration(30 * time.Second),
		},
		Pool: Pool{
			Class:           ClassSync,
			Threads:         4,
			Connections:     1000,
			SocketDir:       "/run/edged/workers",
			GracefulTimeout: Duration(30 * time.Second),
		},
		Limits: Limits{
			MaxBody:       1 << 20,
			MaxHeader:     8 << 10,
			HeaderTimeout: Duration(60 * time.Second),
			BodyTimeout:   Duration(60 * time.Second),
			SendTimeout:   Duration(60 * time.Second),
			IdleTimeout:   Duration(75 * time.Second),
			QueueLength:   1024,
			QueueTimeout:  Duration(30 * time.Second),
		},
		Buffers: Buffers{
			RequestMemory:  16 << 10,
			ResponseMemory: 1 << 20,
			ResponseMax:    1 << 30,
		},
		Log: Log{Level: "info", Format: "auto", Access: true},
		// uvicorn's ping interval; its message limit is 16 MiB, a
		// request body's default here is 1 MiB.
		WebSocket: WebSocket{MaxMessage: 1 << 20, PingInterval: Duration(20 * time.Second), Compress: true},
		Compress: Compress{
			Types: []string{"text/*", "application/json", "application/javascript", "application/xml",
				"application/xhtml+xml", "application/rss+xml", "application/atom+xml", "image/svg+xml"},
			MinSize:   1 << 10,
			GzipLevel: 1, // nginx's gzip_comp_level
			ZstdLevel: 3, // zstd's own default
		},
	}
}

// Python returns the interpreter to run.
func (a App) Interpreter() string {
	if a.Virtualenv != "" {
		return filepath.Join(a.Virtualenv, "bin", "python")
	}
	return a.Python
}

// Error is one problem found in a config file. Line is 0 when the problem
// has no single place in the file.
type Error struct {
	File string
	Line int
	Key  string
	Msg  string
	// Err is the cause a caller may branch on, such as a *SecretError;
	// nil for most problems. Msg already says all of it.
	Err error
}

// Unwrap returns the cause, for errors.As.
func (e *Error) Unwrap() error { return e.Err }

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in one file, in file order.
type Errors []*Error

func (es Errors) Error() string {
	parts := make([]string, len(es))
	for i, e := range es {
		parts[i] = e.Error()
	}
	return strings.Join(parts, "\n")
}

// Unwrap returns every problem, for errors.Is and errors.As.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// ErrNotFound is wrapped by Load when the file does not exist.
var ErrNotFound = errors.New("config file not found")

// validate checks each section, and the rules that tie sections together.
func (c *Config) validate(v *validator) {
	top := scope{v: v}
	c.validateListen(v)
	c.TLS.validate(top)
	c.ACME.validate(v, c)
	seen := map[string]bool{}
	for i := range c.Static {
		c.Static[i].validate(top, i, seen)
	}
	if c.App.Module != "" || len(c.SiteBlocks) == 0 {
		c.App.validate(top)
	} else if len(c.Static) > 0 {
		v.fail([]string{"static"}, "top-level [[static]] roots belong to the top-level app, and there is none: move them into the [[site]] they serve, as [[site.static]]")
	}
	c.Pool.validate(top)
	c.Limits.validate(top)
	c.Compress.validate(v)
	c.WebSocket.validate(v)
	c.Buffers.validate(v)
	c.Proxy.validate(v)
	c.Log.validate(v)
	c.Metrics.validate(v, append(append([]string{}, c.Listen.HTTP...), c.Listen.HTTPS...))
	c.Cluster.validate(v)
	c.validateSites(v)
}

func (c *Config) validateListen(v *validator) {
	for i, a := range c.Listen.HTTP {
		v.addr(fmt.Sprintf("listen.http[%d]", i), []string{"listen", "http"}, a)
	}
	for i, a := range c.Listen.HTTPS {
		v.addr(fmt.Sprintf("listen.https[%d]", i), []string{"listen", "https"}, a)
	}
	c.Listen.ProxyNets = scope{v: v}.nets([]string{"listen", "proxy_protocol"}, c.Listen.ProxyProtocol)
	if len(c.Listen.HTTP)+len(c.Listen.HTTPS) == 0 {
		v.fail([]string{"listen"}, "no address to listen on: set listen.http = [\"0.0.0.0:80\"] or listen.https")
	}
	if len(c.Listen.HTTPS) > 0 && !c.TLS.Any() && !c.siteTLS() {
		v.fail([]string{"listen", "https"}, "HTTPS addresses need at least one [[tls]] table with cert and key, or tls = \"acme\"")
	}
}

// siteTLS says some [[site]] has a certificate.
func (c *Config) siteTLS() bool {
	for _, s := range c.SiteBlocks {
		if s.TLS.Any() {
			return true
		}
	}
	return false
}

// validate checks the ith [[static]]; seen holds the prefixes before it.
func (s *Static) validate(sc scope, i int, seen map[string]bool) {
	e := sc.elem("static", i)
	key := []string{"prefix"}
	switch {
	case s.Prefix == "":
		e.fail(key, "missing: give the URL prefix, such as \"/static/\"")
	case !strings.HasPrefix(s.Prefix, "/"):
		e.fail(key, fmt.Sprintf("%q must start with \"/\"", s.Prefix))
	}
	if s.Prefix != "" && !strings.HasSuffix(s.Prefix, "/") {
		s.Prefix += "/"
	}
	if seen[s.Prefix] {
		e.fail(key, fmt.Sprintf("%q is given twice", s.Prefix))
	}
	seen[s.Prefix] = true
	s.Root = e.path([]string{"root"}, s.Root, true)
	if s.Root != "" {
		if fi, err := os.Stat(s.Root); err == nil && !fi.IsDir() {
			e.fail([]string{"root"}, fmt.Sprintf("%q is not a directory", s.Root))
		}
	}
}

func (a *App) validate(sc scope) {
	if a.Module == "" {
		sc.fail([]string{"app", "module"}, "missing: name the WSGI callable as \"module:callable\", for example module = \"myapp.wsgi:application\"")
	} else if err := checkAppSpec(a.Module); err != nil {
		sc.fail([]string{"app", "module"}, fmt.Sprintf("%q %v; write it as gunicorn takes it: \"module\" (its \"application\"), \"module:name\", \"module:factory()\" or \"module:factory('arg', key=1)\"", a.Module, err))
	}
	if a.Directory == "" {
		a.Directory = "."
	}
	a.Directory = sc.path([]string{"app", "directory"}, a.Directory, true)
	if a.Virtualenv != "" {
		a.Virtualenv = sc.path([]string{"app", "virtualenv"}, a.Virtualenv, true)
	}
	if a.Python == "" {
		sc.fail([]string{"app", "python"}, "empty: give the interpreter, such as \"/usr/bin/python3\"")
	} else if strings.Contains(a.Python, "/") {
		a.Python = sc.v.abs(a.Python)
	}
	if a.ScriptName != "" && (!strings.HasPrefix(a.ScriptName, "/") || strings.HasSuffix(a.ScriptName, "/")) {
		sc.fail([]string{"app", "script_name"}, fmt.Sprintf("%q must start with \"/\" and not end with one, such as \"/app\"", a.ScriptName))
	}
	if a.Timeout <= 0 {
		sc.fail([]string{"app", "timeout"}, "must be more than 0")
	}
	for name := range a.Env {
		if !envName(name) {
			sc.fail([]string{"app", "env", name}, fmt.Sprintf("%q is not a valid environment variable name", name))
		}
	}
	for name, cred := range a.Credentials {
		if !envName(name) {
			sc.fail([]string{"app", "credentials", name}, fmt.Sprintf("%q is not a valid environment variable name", name))
		}
		if cred == "" || strings.ContainsAny(cred, "/\x00") {
			sc.fail([]string{"app", "credentials", name}, fmt.Sprintf("%q is not a credential name (a plain file name such as \"secret-key\")", cred))
		}
	}
}

func (p *Pool) validate(sc scope) {
	switch p.Class {
	case ClassSync, ClassThreads, ClassGevent, ClassASGI:
	case "uvicorn", "uvicorn.workers.UvicornWorker":
		sc.fail([]string{"pool", "class"}, fmt.Sprintf("%q is uvicorn's: write \"asgi\" for an ASGI app (FastAPI, Starlette, Django's asgi.py)", p.Class))
	case "gthread":
		sc.fail([]string{"pool", "class"}, "\"gthread\" is gunicorn's name: write \"threads\"")
	case "eventlet":
		sc.fail([]string{"pool", "class"}, "\"eventlet\" is not available: use \"gevent\" for I/O-bound apps")
	default:
		sc.fail([]string{"pool", "class"}, fmt.Sprintf("unknown worker class %q: use \"sync\", \"threads\" or \"gevent\" for a WSGI app, \"asgi\" for an ASGI app", p.Class))
	}
	if p.Connections < 1 || p.Connections > 100000 {
		sc.fail([]string{"pool", "connections"}, fmt.Sprintf("%d is out of range: use 1 to 100000", p.Connections))
	}
	if p.Threads < 1 || p.Threads > 1024 {
		sc.fail([]string{"pool", "threads"}, fmt.Sprintf("%d is out of range: use 1 to 1024", p.Threads))
	}
	if p.Workers < 0 || p.Workers > 1024 {
		sc.fail([]string{"pool", "workers"}, fmt.Sprintf("%d is out of range: use 1 to 1024, or 0 for (2 x cores) + 1", p.Workers))
	}
	if p.MemoryMax < 0 || p.MemoryMax > 0 && p.MemoryMax < 16<<20 {
		sc.fail([]string{"pool", "memory_max"}, fmt.Sprintf("%s is too little for a Python worker: give at least \"16m\", or 0 for none", p.MemoryMax))
	}
	if p.MemoryMax > 0 && sc.display == "" {
		sc.fail([]string{"pool", "memory_max"}, "is a [[site]]'s (its slice's MemoryMax=): for the top-level workers, set MemoryMax= in a drop-in for workerd@.service")
	}
	if p.MaxRequestsJitter < 0 {
		sc.fail([]string{"pool", "max_requests_jitter"}, "must not be negative")
	}
	if p.MaxRequests < 0 {
		sc.fail([]string{"pool", "max_requests"}, "must not be negative (0 means never recycle)")
	}
	if p.SocketDir == "" {
		sc.fail([]string{"pool", "socket_dir"}, "empty: give a directory such as \"/run/edged/workers\"")
	} else {
		p.SocketDir = sc.v.abs(p.SocketDir)
	}
}

func (l *Limits) validate(sc scope) {
	if l.MaxBody <= 0 {
		sc.fail([]string{"limits", "max_body"}, "must be more than 0")
	}
	if l.MaxHeader < 1<<10 || l.MaxHeader > 1<<20 {
		sc.fail([]string{"limits", "max_header"}, fmt.Sprintf("%s is out of range: use 1k to 1m", l.MaxHeader))
	}
	for _, d := range []struct {
		name string
		val  Duration
	}{{"header_timeout", l.HeaderTimeout}, {"body_timeout", l.BodyTimeout}, {"send_timeout", l.SendTimeout}, {"idle_timeout", l.IdleTimeout}, {"queue_timeout", l.QueueTimeout}} {
		if d.val <= 0 {
			sc.fail([]string{"limits", d.name}, "must be more than 0")
		}
	}
	if l.Burst < 0 {
		sc.fail([]string{"limits", "burst"}, "must not be negative")
	}
	if l.Rate > 0 && l.Burst == 0 {
		l.Burst = int(math.Ceil(l.Rate.PerSecond()))
	}
	if l.ConnectionsPerClient < 0 {
		sc.fail([]string{"limits", "connections_per_client"}, "must not be negative (0: no limit)")
	}
	if l.QueueLength < 0 {
		sc.fail([]string{"limits", "queue_length"}, "must not be negative (0 or 1: one request waits while every worker is busy, the kernel's least)")
	}
}

func (b *Buffers) validate(v *validator) {
	if b.ResponseMax < b.ResponseMemory {
		v.fail([]string{"buffers", "response_max"}, fmt.Sprintf("%s is less than buffers.response_memory (%s): give at least that much", b.ResponseMax, b.ResponseMemory))
	}
	if b.RequestMemory < 0 || b.ResponseMemory < 0 {
		v.fail([]string{"buffers"}, "buffer sizes must not be negative")
	}
	if b.TempDir != "" {
		b.TempDir = v.path([]string{"buffers", "temp_dir"}, b.TempDir, "buffers.temp_dir", true)
	}
}

func (p *Proxy) validate(v *validator) {
	p.Nets = p.Nets[:0]
	for i, s := range p.Trusted {
		pre, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				v.failElem([]string{"proxy", "trusted"}, fmt.Sprintf("proxy.trusted[%d]", i), s, fmt.Sprintf("%q is not an address or CIDR prefix such as \"10.0.0.0/8\"", s))
				continue
			}
			pre = netip.PrefixFrom(a, a.BitLen())
		}
		p.Nets = append(p.Nets, pre.Masked())
	}
}

// logFormats names log.format's values, for an error.
const logFormats = "use auto, json, console or journal"

// logFormat says whether f is one of log.format's values.
func logFormat(f string) bool {
	switch f {
	case "auto", "json", "console", "journal":
		return true
	}
	return false
}

func (l *Log) validate(v *validator) {
	switch l.Level {
	case "debug", "info", "warn", "error":
	default:
		v.fail([]string{"log", "level"}, fmt.Sprintf("unknown level %q: use debug, info, warn or error", l.Level))
	}
	if !logFormat(l.Format) {
		v.fail([]string{"log", "format"}, fmt.Sprintf("unknown format %q: %s", l.Format, logFormats))
	}
	if l.AccessFile != "" && !filepath.IsAbs(l.AccessFile) {
		v.fail([]string{"log", "access_file"}, fmt.Sprintf("%q is not an absolute path: under systemd, use one in /var/log/edged (edged.service's LogsDirectory=)", l.AccessFile))
	}
	if l.AccessFile != "" && !l.Access {
		v.fail([]string{"log", "access_file"}, "is set while log.access = false: the access log is off, so the file would stay empty; remove one of them")
	}
}

// Credential maps a file that systemd handed over as a credential to where
// the service can read it. A unit with LoadCredential=ID:DIR gets every
// file of DIR as $CREDENTIALS_DIRECTORY/ID_NAME: so under edged.service,
// whose TLS keys come from LoadCredential=tls:/etc/edged/tls, the config
// still names /etc/edged/tls/site.key, a file the unprivileged service
// could not open itself. Outside systemd, or when there is no such
// credential, path is returned as it is.
func Credential(id, path string) string {
	dir := os.Getenv("CREDENTIALS_DIRECTORY")
	if dir == "" || path == "" || strings.Contains(path, "-----BEGIN") {
		return path
	}
	c := filepath.Join(dir, id+"_"+filepath.Base(path))
	if _, err := os.Stat(c); err == nil {
		return c
	}
	return path
}

func envName(s string) bool {
	if s == "" || (s[0] >= '0' && s[0] <= '9') {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

func splitHostPort(a string) error {
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return err
	}
	if _, err := net.LookupPort("tcp", port); err != nil {
		return fmt.Errorf("bad port %q", port)
	}
	if host != "" {
		if _, err := netip.ParseAddr(strings.Trim(host, "[]")); err != nil && host != "localhost" {
			return fmt.Errorf("host %q %w", host, errHostName)
		}
	}
	return nil
}

// errHostName is wrapped by splitHostPort for a host that is a name
// other than "localhost".
var errHostName = errors.New("is not an IP address")

func (ws *WebSocket) validate(v *validator) {
	if ws.MaxMessage < 125 || ws.MaxMessage > 1<<30 {
		v.fail([]string{"websocket", "max_message"}, fmt.Sprintf("%s is out of range: use 125 bytes to 1g", ws.MaxMessage))
	}
	if ws.IdleTimeout < 0 {
		v.fail([]string{"websocket", "idle_timeout"}, fmt.Sprintf("%s is negative: use a duration, or 0 for none", ws.IdleTimeout))
	}
	if ws.PingInterval < 0 || ws.PingInterval > 0 && ws.PingInterval.D() < time.Second {
		v.fail([]string{"websocket", "ping_interval"}, fmt.Sprintf("%s is out of range: use 1s or more, or 0 for no pings", ws.PingInterval))
	}
}

func (cp *Compress) validate(v *validator) {
	if cp.GzipLevel < 1 || cp.GzipLevel > 9 {
		v.fail([]string{"compress", "gzip_level"}, fmt.Sprintf("%d is out of range: use 1 (fastest) to 9 (smallest)", cp.GzipLevel))
	}
	if cp.ZstdLevel < 1 || cp.ZstdLevel > 22 {
		v.fail([]string{"compress", "zstd_level"}, fmt.Sprintf("%d is out of range: use 1 to 22", cp.ZstdLevel))
	}
	for i, t := range cp.Types {
		typ, sub, ok := strings.Cut(t, "/")
		if !ok || typ == "" || sub == "" || strings.ContainsAny(t, " ;,") || typ == "*" {
			v.fail([]string{"compress", fmt.Sprintf("types[%d]", i)}, fmt.Sprintf("%q is not a media type such as \"application/json\" or \"text/*\"", t))
		}
		cp.Types[i] = strings.ToLower(t)
	}
}
