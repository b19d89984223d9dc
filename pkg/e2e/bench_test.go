package e2e

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestBench is `make bench`: the same Flask app behind edged + workerd,
// behind nginx + gunicorn and behind nginx + uWSGI, same worker count,
// same wrk load, run one after the other in rounds so that all see the
// same machine. It prints each figure and its ratio to each incumbent. It
// is not a pass/fail test: speed on a shared machine is shown, never
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
	const workers = 5
	dur := os.Getenv("BENCH_DURATION")
	if dur == "" {
		dur = "10s"
	}
	rounds := 2

	type scenario struct {
		name, path string
		conns      int
	}
	scenarios := []scenario{{"Flask GET /hello", "/hello", 64}}

	e := startSuite(t, suiteOpts{workers: workers, extra: "access = false"})
	sides := []struct{ name, base string }{
		{"edged", e.http},
		{"nginx+gunicorn", startGunicorn(t, workers)},
		{"nginx+uWSGI", startUWSGI(t, workers)},
	}

	type result struct{ rps, p50, p99, errors float64 }
	best := map[string]map[string]result{}
	for _, sc := range scenarios {
		best[sc.name] = map[string]result{}
		for r := 0; r < rounds; r++ {
			for _, side := range sides {
				out, err := exec.Command("wrk", "-t2", fmt.Sprintf("-c%d", sc.conns), "-d"+dur, "--latency", side.base+sc.path).CombinedOutput()
				if err != nil {
					t.Fatalf("wrk: %v\n%s", err, out)
				}
				res := result{
					rps:    wrkFloat(string(out), `Requests/sec:\s+([0-9.]+)`),
					p50:    wrkMillis(string(out), `50%\s+([0-9.]+\w+)`),
					p99:    wrkMillis(string(out), `99%\s+([0-9.]+\w+)`),
					errors: wrkFloat(string(out), `Non-2xx or 3xx responses: (\d+)`) + wrkSocketErrors(string(out)),
				}
				if b, ok := best[sc.name][side.name]; !ok || res.rps > b.rps {
					best[sc.name][side.name] = res
				}
			}
		}
	}

	var b strings.Builder
	fmt.Fprintf(&b, "\nbench: %d sync workers each, wrk -t2 %s, best of %d alternating rounds, access logs off everywhere\n", workers, dur, rounds)
	fmt.Fprintf(&b, "%-18s %-16s %10s %9s %9s %7s %12s %12s\n", "scenario", "server", "req/s", "p50 ms", "p99 ms", "errors", "x gunicorn", "x uWSGI")
	for _, sc := range scenarios {
		g, u := best[sc.name]["nginx+gunicorn"], best[sc.name]["nginx+uWSGI"]
		for _, side := range sides {
			r := best[sc.name][side.name]
			fmt.Fprintf(&b, "%-18s %-16s %10.0f %9.2f %9.2f %7.0f %11.2fx %11.2fx\n", sc.name, side.name, r.rps, r.p50, r.p99, r.errors, r.rps/g.rps, r.rps/u.rps)
		}
	}
	fmt.Print(b.String())
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

// startGunicorn runs gunicorn (sync workers) behind nginx, configured as
// the usual deployment guides do, and returns nginx's base URL.
func startGunicorn(t *testing.T, workers int) string {
	dir := t.TempDir()
	sock := filepath.Join(dir, "gunicorn.sock")
	startBackend(t, dir, "gunicorn", "--workers", strconv.Itoa(workers), "--worker-class", "sync",
		"--bind", "unix:"+sock, "--chdir", filepath.Join(repoRoot, "testdata", "apps"), "--log-level", "warning", "flaskapp:app")
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
        }`, sock))
}

// startUWSGI runs uWSGI (a master and prefork processes, the Debian
// python3 plugin) behind nginx's uwsgi_pass, and returns nginx's base URL.
func startUWSGI(t *testing.T, workers int) string {
	dir := t.TempDir()
	sock := filepath.Join(dir, "uwsgi.sock")
	startBackend(t, dir, "uwsgi", "--plugin", "python3", "--master", "--processes", strconv.Itoa(workers),
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
        }`, sock))
}

// startBackend starts an app server that ends with the test. What it
// prints goes to dir/backend.log, shown if nginx cannot reach it.
func startBackend(t *testing.T, dir, name string, args ...string) {
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
}

// startNginx runs nginx with server (a format with one %s for the listen
// address) in its http block, and waits until /hello answers through it.
func startNginx(t *testing.T, dir, server string) string {
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
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path %[2]s/body;
    proxy_temp_path %[2]s/proxy;
    fastcgi_temp_path %[2]s/fastcgi;
    uwsgi_temp_path %[2]s/uwsgi;
    scgi_temp_path %[2]s/scgi;
%[3]s
}
`, user, dir, fmt.Sprintf(server, addr))
	cf := filepath.Join(dir, "nginx.conf")
	os.WriteFile(cf, []byte(conf), 0o644)
	n := exec.Command("nginx", "-c", cf, "-p", dir)
	n.Stdout, n.Stderr = os.Stderr, os.Stderr
	n.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Process.Signal(syscall.SIGQUIT); n.Wait() })

	base := "http://" + addr
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(base + "/hello"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return base
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	backend, _ := os.ReadFile(filepath.Join(dir, "backend.log"))
	t.Fatalf("nginx on %s did not come up behind its app server:\n%s", addr, backend)
	return ""
}
