package e2e

import (
	"context"
	"fmt"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// benchSide is one stack under test.
type benchSide struct {
	base      string                // URL; "" when the side is not available
	https     string                // URL over TLS, on the sides that serve it
	cert, key string                // the files of its certificate, on edged's sides
	why       string                // why it is not available
	procs     func(procTable) []int // the stack's processes, for its memory
	// netns, when set, is a process whose network namespace the load
	// runs in (the fleet's client), and dial opens connections there.
	netns int
	dial  func(ctx context.Context, network, addr string) (net.Conn, error)
}

// gunicornConnections is gunicorn's default for an async worker, given
// to both gevent sides.
const gunicornConnections = 1000

// startSides starts every stack of the matrix; static is the directory
// the static scenarios serve. nginx serves TLS with edged sync's
// certificate.
func startSides(t *testing.T, static string) map[string]benchSide {
	sync := startEdged(t, "sync", static)
	sides := map[string]benchSide{
		edgedSync:      sync,
		edgedThreads:   startEdged(t, "threads", static),
		edgedGevent:    startEdged(t, "gevent", static),
		gunicornSync:   startGunicorn(t, "sync"),
		gunicornGevent: startGunicorn(t, "gevent", "--worker-connections", strconv.Itoa(gunicornConnections)),
		uwsgi:          startUWSGI(t),
		nginxAlone:     startStaticNginx(t, static, sync),
		edgedSites:     startEdgedSites(t),
		gunicornSites:  startGunicornSites(t),
		edgedASGI:      startEdgedASGI(t),
		uvicorn:        startUvicorn(t),
	}
	sides[fleetBalanced], sides[fleetOne] = startFleetSides(t)
	for name, log := range map[string]string{logJournal: "format = \"journal\"\naccess = true",
		logJSON: "format = \"json\"\naccess = true", logOff: "format = \"journal\"\naccess = false"} {
		sides[name] = startSystemdSide(t, log)
	}
	return sides
}

// startSystemdSide runs the Flask app under a systemd of its own, booted
// over this machine's tree, with the [log] table given: the access log's
// cost with journald, which only systemd gives, taking it. The load runs
// in the machine's network namespace.
func startSystemdSide(t *testing.T, log string) benchSide {
	if os.Getuid() != 0 {
		return benchSide{why: "boots systemd: needs root"}
	}
	m := bootMachine(t)
	m.install(fmt.Sprintf(`[listen]
http = ["0.0.0.0:80"]
[app]
module = "flaskapp:app"
directory = %q
python = %q
[pool]
workers = %d
[log]
%s
`, testRoot+"/app", python, benchWorkers, log))
	app, err := os.ReadFile(filepath.Join(repoRoot, "testdata", "apps", "flaskapp.py"))
	if err != nil {
		t.Fatal(err)
	}
	m.write(testRoot+"/app/flaskapp.py", app, 0o644)
	m.mustExec("systemctl", "enable", "--now", "edged.socket", "edged.service")
	m.mustExec(testRoot+"/bin/edgectl", "scale", strconv.Itoa(benchWorkers))
	return benchSide{base: "http://127.0.0.1", netns: m.pid, dial: m.dialer(), procs: func(p procTable) []int { return p.tree(m.pid) }}
}

// startFleetSides starts TestFleet's three hosts behind HAProxy: the load
// goes from the fleet's client to HAProxy, and to one of the hosts
// straight. Both sides are unavailable where the fleet cannot run.
func startFleetSides(t *testing.T) (balanced, one benchSide) {
	why := ""
	if os.Getuid() != 0 {
		why = "the fleet boots systemd: needs root"
	}
	for _, tool := range []string{"debootstrap", "dpkg-deb", "haproxy"} {
		if _, err := exec.LookPath(tool); err != nil && why == "" {
			why = tool + " is not installed (make test installs it)"
		}
	}
	if why != "" {
		return benchSide{why: why}, benchSide{why: why}
	}
	haproxy, _ := exec.LookPath("haproxy")
	p := buildPackages(t, filepath.Join(t.TempDir(), "1"), "")
	f := startFleet(t, haproxy, p)
	dial := dialerIn(t, f.client.pid)
	hp := f.hp.Process.Pid
	balanced = benchSide{base: "http://10.0.0.2", netns: f.client.pid, dial: dial, procs: func(pt procTable) []int {
		var out []int
		for _, m := range f.hosts {
			out = append(out, pt.tree(m.pid)...)
		}
		return append(out, pt.tree(hp)...)
	}}
	web1 := f.hosts[0].pid
	one = benchSide{base: "http://10.0.0.11", netns: f.client.pid, dial: dial, procs: func(pt procTable) []int { return pt.tree(web1) }}
	return balanced, one
}

// asgiConnections is what each ASGI worker may hold at once on both
// ASGI sides (pool.connections, uvicorn's --limit-concurrency): enough for
// the idle WebSockets scenario's 10,000 over 5 workers.
const asgiConnections = 4000

// startEdgedASGI runs the FastAPI app on edged's asgi class.
func startEdgedASGI(t *testing.T) benchSide {
	s, err := trySuite(t, suiteOpts{module: "fastapiapp:app", workers: benchWorkers, class: "asgi",
		pool: fmt.Sprintf("connections = %d", asgiConnections), extra: "access = false"})
	if err != nil {
		t.Fatal(err)
	}
	pid := s.cmd.Process.Pid
	return benchSide{base: s.http, procs: func(p procTable) []int { return p.tree(pid)[1:] }}
}

// startUvicorn runs the FastAPI app on uvicorn (uvloop and httptools, as
// its "standard" install has them) on a Unix socket behind nginx, with
// the location uvicorn's deployment guide gives, which also carries
// WebSockets.
func startUvicorn(t *testing.T) benchSide {
	dir := t.TempDir()
	sock := filepath.Join(dir, "uvicorn.sock")
	uv := append([]string{python}, "-m", "uvicorn", "--uds", sock, "--workers", strconv.Itoa(benchWorkers),
		"--loop", "uvloop", "--http", "httptools", "--app-dir", filepath.Join(repoRoot, "testdata", "apps"),
		"--limit-concurrency", strconv.Itoa(asgiConnections), "--log-level", "warning", "--no-access-log", "fastapiapp:app")
	backend := startBackend(t, dir, uv[0], uv[1:]...)
	return startNginxWith(t, dir, "", "worker_connections 19000;", fmt.Sprintf(`
        map $http_upgrade $connection_upgrade { default upgrade; '' close; }
        upstream app { server unix:%s fail_timeout=0; }
        server {
            listen %%s;
            location / {
                proxy_set_header Host $http_host;
                proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
                proxy_set_header X-Forwarded-Proto $scheme;
                proxy_set_header Upgrade $http_upgrade;
                proxy_set_header Connection $connection_upgrade;
                proxy_http_version 1.1;
                proxy_redirect off;
                proxy_pass http://app;
            }
        }`, sock), "/hello", backend)
}

// startEdgedSites runs edged with two [[site]]s, each the Flask app with
// its share of the workers, its access log off as on the other sides.
func startEdgedSites(t *testing.T) benchSide {
	dir := t.TempDir()
	addr := freePort(t)
	var b strings.Builder
	fmt.Fprintf(&b, "[listen]\nhttp = [%q]\n[log]\nformat = \"json\"\naccess = false\n", addr)
	workers := 0
	for _, site := range benchSites {
		name := strings.TrimSuffix(site.host, ".bench")
		fmt.Fprintf(&b, "[[site]]\nname = %q\nnames = [%q]\n[site.app]\nmodule = \"flaskapp:app\"\ndirectory = %q\npython = %q\n[site.pool]\nworkers = %d\n",
			name, site.host, filepath.Join(repoRoot, "testdata", "apps"), python, site.workers)
		workers += site.workers
	}
	s := &suite{t: t, dir: dir, out: &syncBuffer{}, done: make(chan error, 1), socket: filepath.Join(dir, "workers"), http: "http://" + addr}
	s.cfg = filepath.Join(dir, "edged.toml")
	os.WriteFile(s.cfg, []byte(b.String()), 0o644)
	s.cmd = exec.Command(filepath.Join(binDir, "edgectl"), "run", "-c", s.cfg, "--socket-dir", s.socket)
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.done <- s.cmd.Wait() }()
	t.Cleanup(s.stop)
	deadline := time.Now().Add(60 * time.Second)
	for strings.Count(s.out.String(), "app loaded, serving") < workers {
		if time.Now().After(deadline) {
			t.Fatalf("edged two sites not ready:\n%s", s.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	pid := s.cmd.Process.Pid
	return benchSide{base: s.http, procs: func(p procTable) []int { return p.tree(pid)[1:] }}
}

// startGunicornSites runs one gunicorn per site, with its share of the
// workers, behind nginx's two server blocks.
func startGunicornSites(t *testing.T) benchSide {
	dir := t.TempDir()
	var servers strings.Builder
	var backends []int
	for i, site := range benchSites {
		sub := filepath.Join(dir, strconv.Itoa(i))
		os.MkdirAll(sub, 0o755)
		sock := filepath.Join(sub, "gunicorn.sock")
		backends = append(backends, startBackend(t, sub, "gunicorn", "--workers", strconv.Itoa(site.workers), "--worker-class", "sync",
			"--bind", "unix:"+sock, "--chdir", filepath.Join(repoRoot, "testdata", "apps"), "--log-level", "warning", "flaskapp:app"))
		fmt.Fprintf(&servers, `
        upstream app%[1]d { server unix:%[2]s fail_timeout=0; }
        server {
            listen %%[1]s;
            server_name %[3]s;
            location / {
                proxy_set_header Host $http_host;
                proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
                proxy_set_header X-Forwarded-Proto $scheme;
                proxy_redirect off;
                proxy_pass http://app%[1]d;
            }
        }`, i, sock, site.host)
	}
	// The first server block is nginx's default: the probe reaches it.
	return startNginx(t, dir, servers.String(), "/hello", backends...)
}

// startEdged runs edged with workers of class, its access log off as on
// the other sides, over HTTP and HTTPS (the harness's self-signed ECDSA
// P-256 certificates, localhost's the first). When edgectl run refuses
// the class (one not written yet), the side is not available; any other
// failure ends the test.
func startEdged(t *testing.T, class, static string) benchSide {
	pool := ""
	if class == "gevent" {
		pool = fmt.Sprintf("connections = %d", gunicornConnections)
	}
	s, err := trySuite(t, suiteOpts{workers: benchWorkers, class: class, pool: pool, static: static, tls: true, extra: "access = false"})
	if err != nil && strings.Contains(err.Error(), fmt.Sprintf("pool.class: %q", class)) {
		t.Logf("edged %s is not available: %v", class, err)
		return benchSide{why: fmt.Sprintf("not available: the config refuses pool.class %q", class)}
	}
	if err != nil {
		t.Fatal(err)
	}
	// edgectl run stands in for systemd: what runs below it is the stack.
	pid := s.cmd.Process.Pid
	return benchSide{base: s.http, https: s.https,
		cert: filepath.Join(s.dir, "localhost.crt"), key: filepath.Join(s.dir, "localhost.key"),
		procs: func(p procTable) []int { return p.tree(pid)[1:] }}
}

// startGunicorn runs gunicorn with workers of class behind nginx,
// configured as the usual deployment guides do.
func startGunicorn(t *testing.T, class string, more ...string) benchSide {
	dir := t.TempDir()
	sock := filepath.Join(dir, "gunicorn.sock")
	args := append([]string{"--workers", strconv.Itoa(benchWorkers), "--worker-class", class,
		"--bind", "unix:" + sock, "--chdir", filepath.Join(repoRoot, "testdata", "apps"), "--log-level", "warning"}, more...)
	backend := startBackend(t, dir, "gunicorn", append(args, "flaskapp:app")...)
	return startNginx(t, dir, fmt.Sprintf(`
        upstream app { server unix:%s fail_timeout=0; }
        server {
            listen %%s;
            location / {
                proxy_set_header Host $http_host;
                proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
                proxy_set_header X-Forwarded-Proto $scheme;
                proxy_redirect off;
                proxy_pass http://app;
            }
        }`, sock), "/hello", backend)
}

// startUWSGI runs uWSGI (a master and prefork processes, the Debian
// python3 plugin) behind nginx's uwsgi_pass.
func startUWSGI(t *testing.T) benchSide {
	dir := t.TempDir()
	sock := filepath.Join(dir, "uwsgi.sock")
	backend := startBackend(t, dir, "uwsgi", "--plugin", "python3", "--master", "--processes", strconv.Itoa(benchWorkers),
		"--uwsgi-socket", sock, "--chdir", filepath.Join(repoRoot, "testdata", "apps"),
		"--module", "flaskapp:app", "--need-app", "--die-on-term", "--disable-logging")
	return startNginx(t, dir, fmt.Sprintf(`
        upstream app { server unix:%s fail_timeout=0; }
        server {
            listen %%s;
            location / {
                include /etc/nginx/uwsgi_params;
                uwsgi_pass app;
            }
        }`, sock), "/hello", backend)
}

// startStaticNginx runs nginx alone serving static under /static/, with
// sendfile as Debian's nginx.conf has it, over HTTP and over HTTPS (with
// HTTP/2) with the certificate of edged and its TLS settings: 1.2 with
// AEAD suites only, and 1.3. Over HTTPS a connection is not closed after
// nginx's default of 1000 requests: edged sets no such cap, and h2load
// does not reconnect after the GOAWAY, so its connections would idle out
// the rest of the run.
func startStaticNginx(t *testing.T, static string, edged benchSide) benchSide {
	tlsAddr := freePort(t)
	side := startNginx(t, t.TempDir(), fmt.Sprintf(`
        sendfile on;
        tcp_nopush on;
        server {
            listen %%s;
            location /static/ { alias %[4]s/; }
        }
        server {
            listen %[1]s ssl http2;
            ssl_certificate %[2]s;
            ssl_certificate_key %[3]s;
            ssl_protocols TLSv1.2 TLSv1.3;
            ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305;
            ssl_session_cache shared:SSL:10m;
            keepalive_requests %[5]d;
            location /static/ { alias %[4]s/; }
        }`, tlsAddr, edged.cert, edged.key, static, math.MaxInt32), "/static/")
	side.https = "https://" + tlsAddr
	return side
}

// startBackend starts an app server that ends with the test, and returns
// its pid. What it prints goes to dir/backend.log, shown if nginx cannot
// reach it.
func startBackend(t *testing.T, dir, name string, args ...string) int {
	t.Helper()
	log, err := os.Create(filepath.Join(dir, "backend.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	t.Cleanup(func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() })
	return cmd.Process.Pid
}

// startNginx runs nginx with server (a format with one %s for the listen
// address) in its http block, and waits until probe answers 200 through
// it. The side's processes are nginx's and those of backends (pids).
func startNginx(t *testing.T, dir, server, probe string, backends ...int) benchSide {
	t.Helper()
	return startNginxWith(t, dir, "", "worker_connections 4096;", server, probe, backends...)
}

// startNginxWith is startNginx with more main-context directives (main)
// and its own events block body (events).
func startNginxWith(t *testing.T, dir, main, events, server, probe string, backends ...int) benchSide {
	t.Helper()
	addr := freePort(t)
	user := ""
	if os.Getuid() == 0 {
		user = "user root;"
	}
	conf := fmt.Sprintf(`%s
worker_processes auto;
daemon off;
pid %[2]s/nginx.pid;
error_log %[2]s/error.log warn;
%[4]s
events { %[5]s }
http {
    access_log off;
    client_body_temp_path %[2]s/body;
    proxy_temp_path %[2]s/proxy;
    fastcgi_temp_path %[2]s/fastcgi;
    uwsgi_temp_path %[2]s/uwsgi;
    scgi_temp_path %[2]s/scgi;
%[3]s
}
`, user, dir, fmt.Sprintf(server, addr), main, events)
	cf := filepath.Join(dir, "nginx.conf")
	os.WriteFile(cf, []byte(conf), 0o644)
	n := exec.Command("nginx", "-c", cf, "-p", dir)
	// Its output to a file, not the test's: a worker that outlives its
	// master (Pdeathsig fires when the thread that started it ends)
	// would hold the test's output open, and go test waits for it.
	out, err := os.Create(filepath.Join(dir, "nginx.out"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	n.Stdout, n.Stderr = out, out
	n.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		n.Process.Signal(syscall.SIGQUIT)
		n.Wait()
		syscall.Kill(-n.Process.Pid, syscall.SIGKILL) // a worker left behind
	})

	base := "http://" + addr
	roots := append([]int{n.Process.Pid}, backends...)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(base + probe); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return benchSide{base: base, procs: func(p procTable) []int { return p.trees(roots) }}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	backend, _ := os.ReadFile(filepath.Join(dir, "backend.log"))
	t.Fatalf("nginx on %s did not answer %s with 200 (its app server's output follows):\n%s", addr, probe, backend)
	return benchSide{}
}
