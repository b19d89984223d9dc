package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// machine is a real systemd booted as PID 1 in new namespaces: its own
// PIDs, mounts, hostname and network, a private /tmp, /var/tmp, /var/log,
// /var/lib/private (DynamicUser='s StateDirectory=) and a private copy of
// /etc, so that users, groups, units and configs
// installed by a test never touch the host.
type machine struct {
	t    *testing.T
	pid  int // systemd, as seen from the host
	root string
	cmd  *exec.Cmd
}

const testRoot = "/run/edged-test" // inside the machine

func bootMachine(t *testing.T) *machine {
	return bootMachineIn(t, "")
}

// bootMachineIn boots systemd with root as its root directory (a
// debootstrap'ed tree, bind-mounted onto itself so that sandboxed services
// work), or with the host's own tree when root is "".
func bootMachineIn(t *testing.T, root string) *machine {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("!!! SKIPPED: booting systemd needs root (CI runs as root) !!!")
	}
	if _, err := os.Stat(filepath.Join(root, "/lib/systemd/systemd")); err != nil {
		t.Skip("!!! SKIPPED: no /lib/systemd/systemd to boot !!!")
	}
	var cmd *exec.Cmd
	if root == "" {
		boot := `set -e
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs -o mode=1777 tmpfs /var/tmp
mount -t tmpfs -o mode=0755 tmpfs /var/log
mkdir -p /var/lib/private
mount -t tmpfs -o mode=0700 tmpfs /var/lib/private
mount -t tmpfs -o mode=0755 tmpfs /mnt
cp -a /etc/. /mnt/
mount --bind /mnt /etc
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mount --make-rshared /
exec /lib/systemd/systemd --system --unit=basic.target --log-target=null`
		cmd = exec.Command("unshare", "--pid", "--fork", "--mount", "--uts", "--net", "--mount-proc", "--propagation", "private", "--", "sh", "-c", boot)
	} else {
		// pivot_root, not chroot: a chrooted process may not create user
		// namespaces, and PrivateUsers= needs one.
		boot := `set -e
mount --bind "$ROOT" "$ROOT"
cd "$ROOT"
mkdir -p .oldroot
pivot_root . .oldroot
cd /
exec unshare --pid --fork --uts --net --mount-proc -- sh -c 'umount -l /.oldroot && rmdir /.oldroot && mount --make-rshared / && exec /lib/systemd/systemd --system --unit=basic.target --log-target=null'`
		cmd = exec.Command("unshare", "--mount", "--propagation", "private", "--", "sh", "-c", boot)
		cmd.Env = append(os.Environ(), "ROOT="+root)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Pdeathsig: syscall.SIGKILL}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("unshare: %v", err)
	}
	m := &machine{t: t, cmd: cmd}
	t.Cleanup(m.kill)
	var state string
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if m.pid == 0 {
			m.pid = systemdChild(cmd.Process.Pid)
		}
		if m.pid != 0 {
			st, _ := m.exec("systemctl", "is-system-running")
			state = strings.TrimSpace(st)
			if state == "running" || state == "degraded" {
				m.root = fmt.Sprintf("/proc/%d/root", m.pid)
				m.mustExec("ip", "link", "set", "lo", "up")
				return m
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	jobs, _ := m.exec("systemctl", "list-jobs", "--no-pager")
	tree, _ := exec.Command("ps", "-ef", "--forest").Output()
	var mine []string
	for _, l := range strings.Split(string(tree), "\n") {
		if strings.Contains(l, "systemd") || strings.Contains(l, "unshare") {
			mine = append(mine, l)
		}
	}
	// Stop the machine before reading what it printed: the copying
	// goroutines write to out until the process is gone.
	m.kill()
	t.Fatalf("systemd did not come up within 60s (pid %d, last state %q):\n%s\njobs:\n%s\n%s", m.pid, state, out.String(), jobs, strings.Join(mine, "\n"))
	return nil
}

// systemdChild returns the child of pid that runs systemd, or 0 while
// there is none yet. Until the boot script execs unshare, pid's children
// are the short-lived mount and pivot_root commands it runs; locking on
// one of those would wait for a process that is gone.
func systemdChild(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		return 0
	}
	for _, f := range strings.Fields(string(b)) {
		child, _ := strconv.Atoi(f)
		if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", child)); strings.HasSuffix(exe, "/systemd") {
			return child
		}
	}
	return 0
}

func (m *machine) kill() {
	if m.pid != 0 {
		syscall.Kill(m.pid, syscall.SIGKILL)
	}
	m.cmd.Process.Kill()
	m.cmd.Wait()
}

// exec runs a command inside the machine.
func (m *machine) exec(args ...string) (string, error) {
	full := append([]string{"-t", strconv.Itoa(m.pid), "-m", "-p", "-u", "-n", "-r", "-w", "--"}, args...)
	cmd := exec.Command("nsenter", full...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

func (m *machine) mustExec(args ...string) string {
	m.t.Helper()
	out, err := m.exec(args...)
	if err != nil {
		m.t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// write puts a file at path inside the machine.
func (m *machine) write(path string, data []byte, mode os.FileMode) {
	m.t.Helper()
	p := filepath.Join(m.root, path)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		m.t.Fatal(err)
	}
	if err := os.WriteFile(p, data, mode); err != nil {
		m.t.Fatal(err)
	}
	os.Chmod(p, mode)
}

// install puts the freshly built binaries, the units (pointed at them),
// the sysusers/tmpfiles/sysctl files, the sample app and a config into
// the machine, as the package would.
func (m *machine) install(config string) {
	m.t.Helper()
	for _, b := range []string{"edged", "workerd", "edgectl"} {
		data, err := os.ReadFile(filepath.Join(binDir, b))
		if err != nil {
			m.t.Fatal(err)
		}
		m.write(testRoot+"/bin/"+b, data, 0o755)
	}
	os.Chmod(filepath.Join(m.root, testRoot), 0o755)
	os.Chmod(filepath.Join(m.root, testRoot, "bin"), 0o755)
	units, _ := filepath.Glob(filepath.Join(repoRoot, "units", "*.s*"))
	for _, u := range units {
		data, _ := os.ReadFile(u)
		s := strings.ReplaceAll(string(data), "/usr/bin/", testRoot+"/bin/")
		m.write("/etc/systemd/system/"+filepath.Base(u), []byte(s), 0o644)
	}
	for _, d := range []string{"sysusers.d", "tmpfiles.d", "sysctl.d"} {
		files, _ := filepath.Glob(filepath.Join(repoRoot, "units", d, "*.conf"))
		for _, f := range files {
			data, _ := os.ReadFile(f)
			m.write("/etc/"+d+"/"+filepath.Base(f), data, 0o644)
		}
	}
	app, _ := os.ReadFile(filepath.Join(repoRoot, "testdata", "apps", "sample.py"))
	m.write(testRoot+"/app/sample.py", app, 0o644)
	os.Chmod(filepath.Join(m.root, testRoot, "app"), 0o755)
	m.write("/etc/edged/edged.toml", []byte(config), 0o644)
	// The sites' template, where the generator looks for it beside its
	// binary (../lib/edged), and the generator itself.
	tmpl, _ := os.ReadFile(filepath.Join(repoRoot, "units", "site", "workerd-site@.service"))
	m.write(testRoot+"/lib/edged/workerd-site@.service", []byte(strings.ReplaceAll(string(tmpl), "/usr/bin/", testRoot+"/bin/")), 0o644)
	for _, d := range []string{"/lib", "/lib/edged"} {
		os.Chmod(filepath.Join(m.root, testRoot+d), 0o755)
	}
	gen := filepath.Join(m.root, "/etc/systemd/system-generators/edged-generator")
	os.MkdirAll(filepath.Dir(gen), 0o755)
	os.Remove(gen)
	if err := os.Symlink(testRoot+"/bin/edgectl", gen); err != nil {
		m.t.Fatal(err)
	}
	m.mustExec("systemd-sysusers")
	m.mustExec("systemd-tmpfiles", "--create", "edged.conf")
	m.mustExec("sysctl", "-q", "-p", "/etc/sysctl.d/60-edged.conf")
	m.mustExec("systemctl", "daemon-reload")
}

// dialer opens TCP connections from inside the machine's network
// namespace.
func (m *machine) dialer() func(ctx context.Context, network, addr string) (net.Conn, error) {
	return dialerIn(m.t, m.pid)
}

// dialerIn opens TCP connections from inside the network namespace of
// process pid: the socket is made on an OS thread that has joined it.
func dialerIn(t *testing.T, pid int) func(ctx context.Context, network, addr string) (net.Conn, error) {
	type req struct {
		network, addr string
		reply         chan dialResult
	}
	reqs := make(chan req)
	ready := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// The thread stays in the namespace and is never unlocked: it
		// ends with this goroutine.
		f, err := os.Open(fmt.Sprintf("/proc/%d/ns/net", pid))
		if err != nil {
			ready <- err
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			ready <- err
			return
		}
		ready <- nil
		for r := range reqs {
			c, err := net.DialTimeout(r.network, r.addr, 10*time.Second)
			r.reply <- dialResult{c, err}
		}
	}()
	if err := <-ready; err != nil {
		t.Fatalf("joining the network namespace of %d: %v", pid, err)
	}
	t.Cleanup(func() { close(reqs) })
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		r := req{network, addr, make(chan dialResult, 1)}
		reqs <- r
		res := <-r.reply
		return res.c, res.err
	}
}

type dialResult struct {
	c   net.Conn
	err error
}

func (m *machine) client() *http.Client {
	return &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{DialContext: m.dialer(), MaxIdleConnsPerHost: 64},
	}
}

// load sends requests from n clients until stop is closed, counting
// answers by status and every transport error.
type load struct {
	ok, bad atomic.Int64
	last    atomic.Value // the last answer's body, a string
	mu      sync.Mutex
	errs    []string
	stop    chan struct{}
	wg      sync.WaitGroup
}

func startLoad(c *http.Client, url string, n int) *load {
	l := &load{stop: make(chan struct{})}
	for i := 0; i < n; i++ {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				resp, err := c.Get(url)
				if err != nil {
					l.fail(err.Error())
					continue
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					l.fail(fmt.Sprintf("status %d", resp.StatusCode))
					continue
				}
				l.ok.Add(1)
				l.last.Store(string(b))
			}
		}()
	}
	return l
}

func (l *load) fail(s string) {
	l.bad.Add(1)
	l.mu.Lock()
	if len(l.errs) < 10 {
		l.errs = append(l.errs, s)
	}
	l.mu.Unlock()
}

// waitAnswer waits until the last answer is want, or fails after d; it
// returns how long that took.
func (l *load) waitAnswer(t *testing.T, want string, d time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < d {
		if v, _ := l.last.Load().(string); v == want {
			return time.Since(start)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("the answer is still %q after %v, want %q", l.last.Load(), d, want)
	return 0
}

func (l *load) finish() (ok, bad int64, errs []string) {
	close(l.stop)
	l.wg.Wait()
	return l.ok.Load(), l.bad.Load(), l.errs
}

const systemdConfig = `[listen]
http = ["0.0.0.0:80"]

[[static]]
prefix = "/static/"
root = "/run/edged-test/app"

[app]
module = "sample:app"
directory = "/run/edged-test/app"
python = "/usr/bin/python3"

[app.credentials]
APP_SECRET = "app-secret"

[log]
format = "json"
# Tens of thousands of requests under load would keep journald busy for
# long after; the access log has tests of its own.
access = false

[metrics]
listen = "127.0.0.1:9180"
`

const appSecret = "s3cr3t-from-credential-7c1f"

// TestSystemd installs the units into a real systemd and checks what the
// design promises: socket activation, unprivileged processes, worker
// sockets closed to strangers, scaling without failed requests, status
// that agrees with systemd, a refused reload, hardening scores, and a
// secret that reaches the app and nothing else.
func TestSystemd(t *testing.T) {
	if testing.Short() {
		t.Skip("boots systemd")
	}
	m := bootMachine(t)
	m.install(systemdConfig)
	m.write("/etc/edged/credentials/app-secret", []byte(appSecret+"\n"), 0o600)
	m.write(testRoot+"/app/static.txt", []byte("static\n"), 0o644)
	edgectl := testRoot + "/bin/edgectl"
	c := m.client()

	m.mustExec("systemctl", "enable", "--now", "edged.socket")
	if out, _ := m.exec("systemctl", "is-active", "edged.service"); strings.TrimSpace(out) != "inactive" {
		t.Fatalf("edged.service is %q before the first request, want inactive (socket activation)", strings.TrimSpace(out))
	}
	if out, err := m.exec(edgectl, "scale", "2"); err != nil {
		t.Fatalf("edgectl scale 2: %v\n%s\n%s", err, out, m.journal())
	}

	t.Run("socket activation and unprivileged processes", func(t *testing.T) {
		status, body := get(t, c, "http://127.0.0.1/whoami")
		if status != 200 {
			t.Fatalf("first request = %d %q\n%s", status, body, m.journal())
		}
		for _, unit := range []string{"edged.service", "workerd@1.service", "workerd@2.service"} {
			pid := strings.TrimSpace(m.mustExec("systemctl", "show", "-P", "MainPID", unit))
			if pid == "0" || pid == "" {
				t.Errorf("%s has no main PID", unit)
				continue
			}
			uids := strings.Fields(m.mustExec("ps", "-o", "uid=", "--ppid", pid, "-p", pid))
			for _, u := range uids {
				if u == "0" {
					t.Errorf("%s runs a process as root", unit)
				}
			}
		}
	})

	t.Run("strangers cannot reach the worker socket", func(t *testing.T) {
		out, err := m.exec("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3", "-c",
			"import socket; s=socket.socket(socket.AF_UNIX); s.connect('/run/edged/workers/queue.sock')")
		if err == nil || !strings.Contains(out, "Permission denied") {
			t.Errorf("nobody connected to a worker socket (err %v):\n%s", err, out)
		}
	})

	t.Run("scale under load", func(t *testing.T) {
		l := startLoad(c, "http://127.0.0.1/whoami", 8)
		for _, n := range []int{5, 2, 7} {
			if out, err := m.exec(edgectl, "scale", strconv.Itoa(n)); err != nil {
				t.Fatalf("edgectl scale %d: %v\n%s", n, err, out)
			}
			time.Sleep(500 * time.Millisecond)
			var rep struct {
				Workers []struct {
					Unit  string `json:"unit"`
					State string `json:"state"`
					PID   int    `json:"pid"`
				} `json:"workers"`
				Totals struct {
					Active int `json:"active"`
				} `json:"totals"`
			}
			out := m.mustExec(edgectl, "status", "--json")
			if err := json.Unmarshal([]byte(out), &rep); err != nil {
				t.Fatalf("status --json: %v\n%s", err, out)
			}
			active := strings.Fields(m.mustExec("systemctl", "list-units", "--state=active", "--plain", "--no-legend", "workerd@*.service"))
			var units []string
			for _, f := range active {
				if strings.HasPrefix(f, "workerd@") {
					units = append(units, f)
				}
			}
			if rep.Totals.Active != n || len(units) != n {
				t.Errorf("after scale %d: edgectl status says %d active, systemd lists %d %v", n, rep.Totals.Active, len(units), units)
			}
			for _, w := range rep.Workers {
				pid := strings.TrimSpace(m.mustExec("systemctl", "show", "-P", "MainPID", w.Unit))
				if strconv.Itoa(w.PID) != pid {
					t.Errorf("%s: edgectl says PID %d, systemd says %s", w.Unit, w.PID, pid)
				}
			}
		}
		ok, bad, errs := l.finish()
		t.Logf("scale 5 -> 2 -> 7 under load: %d requests answered, %d failed", ok, bad)
		if bad > 0 || ok == 0 {
			t.Errorf("%d requests failed while scaling (%d succeeded): %v", bad, ok, errs)
		}
	})

	t.Run("SIGKILL to a worker under load", func(t *testing.T) {
		l := startLoad(c, "http://127.0.0.1/whoami", 8)
		time.Sleep(300 * time.Millisecond)
		before := strings.TrimSpace(m.mustExec("systemctl", "show", "-P", "NRestarts", "workerd@1.service"))
		m.mustExec("systemctl", "kill", "--signal=SIGKILL", "workerd@1.service")
		waitFor(t, "systemd to restart workerd@1", func() bool {
			n := strings.TrimSpace(m.mustExec("systemctl", "show", "-P", "NRestarts", "workerd@1.service"))
			st, _ := m.exec("systemctl", "is-active", "workerd@1.service")
			st = strings.TrimSpace(st)
			return n != before && st == "active"
		})
		time.Sleep(500 * time.Millisecond)
		ok, bad, errs := l.finish()
		t.Logf("SIGKILL to workerd@1 under load: %d answered, %d failed %v", ok, bad, errs)
		for _, e := range errs {
			if e != "status 502" {
				t.Errorf("a request failed with %q; only a 502 for one in flight on the killed worker is allowed", e)
			}
		}
		if bad > 1 {
			t.Errorf("%d requests failed, want at most the one in flight on the killed worker", bad)
		}
		if j := m.journal(); strings.Contains(j, "connection refused") {
			t.Errorf("edged met a refused connection:\n%s", j)
		}
	})

	t.Run("rolling restart under load", func(t *testing.T) {
		l := startLoad(c, "http://127.0.0.1/whoami", 8)
		out, err := m.exec(edgectl, "restart")
		ok, bad, errs := l.finish()
		if err != nil {
			t.Fatalf("edgectl restart: %v\n%s", err, out)
		}
		t.Logf("edgectl restart under load: %d answered, %d failed", ok, bad)
		if bad > 0 {
			t.Errorf("%d requests failed during the rolling restart: %v", bad, errs)
		}
	})

	t.Run("systemctl restart edged under load", func(t *testing.T) {
		l := startLoad(c, "http://127.0.0.1/whoami", 8)
		time.Sleep(300 * time.Millisecond)
		oldPID := m.mustExec("systemctl", "show", "-P", "MainPID", "edged.service")
		m.mustExec("systemctl", "restart", "edged.service")
		time.Sleep(500 * time.Millisecond)
		ok, bad, errs := l.finish()
		if m.mustExec("systemctl", "show", "-P", "MainPID", "edged.service") == oldPID {
			t.Fatalf("edged was not restarted")
		}
		t.Logf("systemctl restart edged under load: %d answered, %d failed", ok, bad)
		if bad > 0 {
			t.Errorf("%d requests failed while edged restarted: %v", bad, errs)
		}
	})

	t.Run("reload with a broken config is refused", func(t *testing.T) {
		m.write("/etc/edged/edged.toml", []byte(systemdConfig+"\nbogus = 1\n"), 0o644)
		out, err := m.exec("systemctl", "reload", "edged.service")
		if err == nil {
			t.Errorf("systemctl reload succeeded with a broken config:\n%s", out)
		}
		if status, _ := get(t, c, "http://127.0.0.1/static/static.txt"); status != 200 {
			t.Errorf("after the refused reload GET = %d, want 200", status)
		}
		// systemd and journald take in edged's notification and log line
		// on their own time: give them a moment.
		waitFor(t, "edgectl status to show the refused reload", func() bool {
			st := m.mustExec(edgectl, "status")
			return strings.Contains(st, "last reload refused") && strings.Contains(st, "bogus")
		})
		found := false
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline) && !found; time.Sleep(100 * time.Millisecond) {
			out, _ := m.exec("journalctl", "--no-pager", "-u", "edged.service", "--grep", "reload refused")
			found = strings.Contains(out, "bogus")
		}
		if !found {
			out, _ := m.exec("sh", "-c", "journalctl --no-pager -u edged.service | grep -v access | tail -20; journalctl --no-pager -u systemd-journald | tail")
			t.Errorf("the journal does not show the refused reload:\n%s", out)
		}
		m.write("/etc/edged/edged.toml", []byte(systemdConfig), 0o644)
		if out, err := m.exec("systemctl", "reload", "edged.service"); err != nil {
			t.Errorf("reload with the fixed config: %v\n%s", err, out)
		}
	})

	t.Run("HTTPS with keys as credentials, reloads under load", func(t *testing.T) {
		dir := t.TempDir()
		pool := x509.NewCertPool()
		certFile, keyFile := writeCert(t, dir, "localhost", pool)
		cert, _ := os.ReadFile(certFile)
		key, _ := os.ReadFile(keyFile)
		// Root-only, as an operator keeps them: edged cannot open them
		// itself, systemd hands them over.
		m.write("/etc/edged/tls/site.crt", cert, 0o600)
		m.write("/etc/edged/tls/site.key", key, 0o600)
		tlsConfig := systemdConfig + `
[[tls]]
cert = "/etc/edged/tls/site.crt"
key = "/etc/edged/tls/site.key"
`
		m.write("/etc/edged/edged.toml", []byte(strings.Replace(tlsConfig, `http = ["0.0.0.0:80"]`, `http = ["0.0.0.0:80"]
https = ["0.0.0.0:443"]`, 1)), 0o644)
		// The HTTPS socket came with edged. systemd copies credentials
		// when a service starts, so new key files take a restart, which
		// drops nothing: the sockets stay with systemd.
		m.mustExec("systemctl", "restart", "edged.service")
		hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
			DialContext:       m.dialer(),
			TLSClientConfig:   &tls.Config{RootCAs: pool, ServerName: "localhost"},
			ForceAttemptHTTP2: true,
		}}
		resp, err := hc.Get("https://127.0.0.1/whoami")
		if err != nil {
			t.Fatalf("HTTPS under systemd: %v\n%s", err, m.journal())
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.ProtoMajor != 2 {
			t.Errorf("HTTPS under systemd = %s %d, want HTTP/2 200", resp.Proto, resp.StatusCode)
		}
		l := startLoad(c, "http://127.0.0.1/whoami", 8)
		for i := 0; i < 3; i++ {
			if out, err := m.exec("systemctl", "reload", "edged.service"); err != nil {
				t.Errorf("systemctl reload: %v\n%s", err, out)
			}
			time.Sleep(200 * time.Millisecond)
		}
		ok, bad, errs := l.finish()
		t.Logf("3 reloads under load: %d answered, %d failed", ok, bad)
		if bad > 0 {
			t.Errorf("%d requests failed across reloads: %v", bad, errs)
		}
		m.write("/etc/edged/edged.toml", []byte(systemdConfig), 0o644)
		m.mustExec("systemctl", "reload", "edged.service")
	})

	t.Run("errors say what to do", func(t *testing.T) {
		out, err := m.exec("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", edgectl, "scale", "3")
		if err == nil || !strings.Contains(out, "permission denied: run as root, or join the \"edgeadm\" group") {
			t.Errorf("edgectl scale as nobody: err %v, output:\n%s", err, out)
		}
		// Reading is allowed to anyone.
		if out, err := m.exec("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", edgectl, "status"); err != nil {
			t.Errorf("edgectl status as nobody: %v\n%s", err, out)
		}
	})

	t.Run("a worker that cannot start", func(t *testing.T) {
		m.write("/etc/edged/edged.toml", []byte(strings.Replace(systemdConfig, `"sample:app"`, `"no_such_module:app"`, 1)), 0o644)
		out, err := m.exec(edgectl, "scale", "8")
		m.write("/etc/edged/edged.toml", []byte(systemdConfig), 0o644)
		if err == nil || !strings.Contains(out, "workerd@8.service") || !strings.Contains(out, "No module named 'no_such_module'") {
			t.Errorf("edgectl scale with an app that cannot import: err %v, output:\n%s", err, out)
		}
		if out, err := m.exec(edgectl, "scale", "7"); err != nil {
			t.Errorf("edgectl scale 7 after the failure: %v\n%s", err, out)
		}
	})

	t.Run("hardening scores", func(t *testing.T) {
		for _, unit := range []string{"edged.service", "workerd@1.service"} {
			out, _ := m.exec("systemd-analyze", "security", "--no-pager", unit)
			mm := regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+)`).FindStringSubmatch(out)
			if mm == nil {
				t.Errorf("no score for %s:\n%s", unit, out)
				continue
			}
			score, _ := strconv.ParseFloat(mm[1], 64)
			t.Logf("systemd-analyze security %s: %.1f", unit, score)
			fmt.Printf("systemd-analyze security %s: %.1f\n", unit, score)
			if score > 2.0 {
				t.Errorf("%s scores %.1f, want 2.0 or lower", unit, score)
			}
		}
	})

	t.Run("the app secret reaches the app and nothing else", func(t *testing.T) {
		_, body := get(t, c, "http://127.0.0.1/secret-check")
		if !strings.Contains(body, "APP_SECRET present") {
			t.Errorf("the app did not get APP_SECRET: %q", body)
		}
		edgedPID := strings.TrimSpace(m.mustExec("systemctl", "show", "-P", "MainPID", "edged.service"))
		env, _ := os.ReadFile(filepath.Join("/proc", hostPID(t, m, edgedPID), "environ"))
		for where, text := range map[string]string{
			"the config":       m.mustExec("cat", "/etc/edged/edged.toml"),
			"edged's environ":  string(env),
			"the journal":      m.journal(),
			"edgectl status":   m.mustExec(edgectl, "status", "--json"),
			"the access log":   m.mustExec("journalctl", "--no-pager", "-u", "edged.service"),
			"workers' status":  m.mustExec("systemctl", "status", "--no-pager", "workerd@1.service"),
			"edged's cmdline":  m.mustExec("ps", "-o", "args=", "-p", edgedPID),
			"the units' props": m.mustExec("systemctl", "show", "workerd@1.service"),
		} {
			if strings.Contains(text, appSecret) {
				t.Errorf("the secret appears in %s", where)
			}
		}
	})

	// edgectl doctor on the real thing: the three situations.
	doctor := func(t *testing.T) map[string]doctorFinding {
		t.Helper()
		// Its own admin address as the peer: a fleet of one agrees with
		// itself, through the same path as another host's.
		out, _ := m.exec(edgectl, "doctor", "--json", "--interval", "2s", "--peer", "127.0.0.1:9180")
		var fs []doctorFinding
		if err := json.NewDecoder(strings.NewReader(out)).Decode(&fs); err != nil {
			t.Fatalf("edgectl doctor --json: %v\n%s", err, out)
		}
		byName := map[string]doctorFinding{}
		for _, f := range fs {
			byName[f.Check] = f
			t.Logf("%-5s %-10s %s", f.Verdict, f.Check, f.Evidence)
		}
		return byName
	}
	t.Run("doctor: a clean install", func(t *testing.T) {
		if out, err := m.exec(edgectl, "scale", "--auto"); err != nil {
			t.Fatalf("edgectl scale --auto: %v\n%s", err, out)
		}
		for range 50 {
			get(t, c, "http://127.0.0.1/whoami")
		}
		for name, f := range doctor(t) {
			if f.Verdict != "ok" {
				t.Errorf("%s: %s: %s (%s)", name, f.Verdict, f.Evidence, f.Fix)
			}
		}
	})
	t.Run("doctor: a sync pool on an I/O-bound route", func(t *testing.T) {
		l := startLoad(c, "http://127.0.0.1/sleep?0.1", 24)
		time.Sleep(2 * time.Second)
		f := doctor(t)["io-bound"]
		l.finish()
		if f.Verdict != "warn" || !strings.Contains(f.Evidence, "/sleep waits") || !strings.Contains(f.Fix, "gevent") {
			t.Errorf("io-bound: %+v, want a warn naming /sleep, its share of waiting, and gevent", f)
		}
	})
	t.Run("doctor: a loosened unit, a worker near its MemoryMax", func(t *testing.T) {
		m.write("/etc/systemd/system/edged.service.d/loose.conf", []byte("[Service]\nPrivateUsers=no\nProtectSystem=no\nProtectHome=no\n"+
			"PrivateTmp=no\nPrivateDevices=no\nProtectKernelTunables=no\nProtectKernelModules=no\nProtectControlGroups=no\n"+
			"RestrictNamespaces=no\nSystemCallFilter=\nCapabilityBoundingSet=~\n"), 0o644)
		m.mustExec("systemctl", "daemon-reload")
		cur, _ := strconv.ParseUint(strings.TrimSpace(m.mustExec("systemctl", "show", "-P", "MemoryCurrent", "workerd@1.service")), 10, 64)
		m.mustExec("systemctl", "set-property", "--runtime", "workerd@1.service", fmt.Sprintf("MemoryMax=%d", cur*11/10))
		fs := doctor(t)
		if f := fs["hardening"]; f.Verdict != "warn" || !strings.Contains(f.Evidence, "edged.service") {
			t.Errorf("hardening with the sandbox loosened: %+v, want a warn naming edged.service", f)
		}
		if f := fs["memory"]; f.Verdict != "warn" || !strings.Contains(f.Evidence, "workerd@1.service uses") {
			t.Errorf("memory with workerd@1 at 90%% of MemoryMax: %+v, want a warn", f)
		}
		m.mustExec("rm", "/etc/systemd/system/edged.service.d/loose.conf")
		m.mustExec("systemctl", "set-property", "--runtime", "workerd@1.service", "MemoryMax=infinity")
		m.mustExec("systemctl", "daemon-reload")
	})
	t.Run("doctor: Backlog=8 overflowed", func(t *testing.T) {
		m.write("/etc/systemd/system/edged.socket.d/backlog.conf", []byte("[Socket]\nBacklog=8\n"), 0o644)
		m.mustExec("systemctl", "daemon-reload")
		m.mustExec("systemctl", "restart", "edged.socket", "edged.service")
		get(t, c, "http://127.0.0.1/whoami")
		// edged stopped: the queue fills, and the kernel turns the rest away.
		pid := strings.TrimSpace(m.mustExec("systemctl", "show", "-P", "MainPID", "edged.service"))
		m.mustExec("kill", "-STOP", pid)
		m.mustExec("/usr/bin/python3", "-c", `
import socket
s = []
for i in range(60):
    c = socket.socket()
    c.setblocking(False)
    c.connect_ex(("127.0.0.1", 80))
    s.append(c)
import time; time.sleep(2)
`)
		m.mustExec("kill", "-CONT", pid)
		f := doctor(t)["backlog"]
		if f.Verdict == "ok" || !strings.Contains(f.Evidence, "ListenOverflows") || !strings.Contains(f.Fix, "Backlog=") {
			t.Errorf("backlog: %+v, want the overflow reported with the fix", f)
		}
		m.mustExec("rm", "/etc/systemd/system/edged.socket.d/backlog.conf")
		m.mustExec("systemctl", "daemon-reload")
		m.mustExec("systemctl", "restart", "edged.socket", "edged.service")
	})
}

// doctorFinding is one line of edgectl doctor --json.
type doctorFinding struct{ Check, Verdict, Evidence, Fix string }

// hostPID maps a PID inside the machine to the host's, for /proc.
func hostPID(t *testing.T, m *machine, inner string) string {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "status"))
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(b), "\n") {
			if f, ok := strings.CutPrefix(l, "NSpid:"); ok {
				ids := strings.Fields(f)
				if len(ids) == 2 && ids[1] == inner {
					if ns, _ := os.Readlink(filepath.Join("/proc", e.Name(), "ns/pid")); ns != "" {
						if mine, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", m.pid)); mine == ns {
							return e.Name()
						}
					}
				}
			}
		}
	}
	t.Fatalf("no host PID for %s", inner)
	return ""
}

func (m *machine) journal() string {
	out, _ := m.exec("journalctl", "--no-pager", "-n", "300", "-u", "edged.service", "-u", "edged.socket", "-u", "workerd@*", "-u", "workerd.socket", "-u", "workerd-*")
	return out
}

// TestSystemdChild is the regression test for a boot that was never seen
// to come up: the boot script's first child, a short-lived mount command,
// was taken for systemd and waited on for 60 s.
func TestSystemdChild(t *testing.T) {
	dir := t.TempDir()
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep")
	}
	fake := filepath.Join(dir, "systemd")
	if err := os.WriteFile(fake, mustRead(t, sleep), 0o755); err != nil {
		t.Fatal(err)
	}
	// The trailing ":" keeps the shell from exec-ing the fake in its place.
	cmd := exec.Command("sh", "-c", sleep+" 1; "+fake+" 30; :")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", cmd.Process.Pid, cmd.Process.Pid))
		children := strings.Fields(string(b))
		if len(children) == 0 {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		child, _ := strconv.Atoi(children[0])
		before, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", child))
		got := systemdChild(cmd.Process.Pid)
		after, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", child))
		switch {
		case before != after || before == "":
			// The child changed or went under us; look again.
		case before == fake && got != child:
			t.Fatalf("systemdChild = %d, want %d (the child running %s)", got, child, fake)
		case before == fake:
			return
		case got != 0:
			t.Fatalf("systemdChild = %d while the only child runs %s", got, before)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("the fake systemd never started")
}
