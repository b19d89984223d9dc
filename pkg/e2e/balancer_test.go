package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The shipped load balancer examples, loaded by the real programs.
func TestShippedBalancerConfigs(t *testing.T) {
	for _, tt := range []struct {
		tool string
		args []string
	}{
		{"haproxy", []string{"-c", "-f", "packaging/examples/haproxy.cfg"}},
		{"keepalived", []string{"-t", "-f", "packaging/examples/keepalived.conf"}},
	} {
		path := needTool(t, tt.tool)
		cmd := exec.Command(path, tt.args...)
		cmd.Dir = repoRoot
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("%s %s: %v\n%s", tt.tool, strings.Join(tt.args, " "), err, out)
		}
	}
	// The agent's weight is a percentage of the server's: of HAProxy's
	// default 1, anything under 100% rounds down to 0 and takes the host
	// out (found by TestFleet).
	cfg, _ := os.ReadFile(filepath.Join(repoRoot, "packaging/examples/haproxy.cfg"))
	for _, line := range strings.Split(string(cfg), "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[0] == "default-server" && !strings.Contains(line, " weight 100 ") {
			t.Errorf("haproxy.cfg's default-server has no weight 100, so the agent's percentages round to 0:\n%s", line)
		}
	}
}

// needTool finds a program from Debian's packages; `make test` installs
// them, so in CI this never skips.
func needTool(t *testing.T, name string) string {
	t.Helper()
	for _, dir := range []string{"/usr/sbin", "/usr/bin", "/sbin"} {
		if p := filepath.Join(dir, name); fileExists(p) {
			return p
		}
	}
	t.Skipf("SKIPPED: %s is not installed (`make deps` installs it)", name)
	return ""
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// TestHAProxy runs the shipped haproxy.cfg, its hosts pointed at one
// edged: the client's own address reaches the app through PROXY v2 from
// both frontends (HTTP balanced per request, TLS passed through); a PROXY
// header from anyone else is refused; HAProxy sees a drain through the
// health and agent checks, and the host come back.
func TestHAProxy(t *testing.T) {
	haproxy := needTool(t, "haproxy")
	metrics, agent := freePort(t), freePort(t)
	s := startSuite(t, suiteOpts{
		listen: `proxy_protocol = ["127.0.0.1"]`,
		// A client's own rate: all come through HAProxy's one address.
		limits: "rate = \"1r/m\"\nburst = 5",
		extra:  fmt.Sprintf("[metrics]\nlisten = %q\nagent = %q\n", metrics, agent),
	})
	edgedAddr := strings.TrimPrefix(s.http, "http://")
	front, frontTLS := freePort(t), freePort(t)
	dir := t.TempDir()
	stats := filepath.Join(dir, "admin.sock")
	_, metricsPort, _ := net.SplitHostPort(metrics)
	_, agentPort, _ := net.SplitHostPort(agent)

	cfg := haproxyConfig(t, stats, [][2]string{
		{"port 9180 inter 2s", "port " + metricsPort + " inter 200ms"},
		{"agent-port 9181 agent-inter 2s", "agent-port " + agentPort + " agent-inter 200ms"},
		{"bind *:80\n", "bind " + front + "\n"},
		{"bind *:443\n", "bind " + frontTLS + "\n"},
		{"server web1 10.0.0.11:80\n", "server web1 " + edgedAddr + "\n"},
		// The TLS frontend passes bytes through: plain HTTP to edged's
		// HTTP port shows the same PROXY header.
		{"server web1 10.0.0.11:443\n", "server web1 " + edgedAddr + "\n"},
		{"    server web2 10.0.0.12:80\n    server web3 10.0.0.13:80\n", ""},
		{"    server web2 10.0.0.12:443\n    server web3 10.0.0.13:443\n", ""},
	})
	cfgFile := filepath.Join(dir, "haproxy.cfg")
	os.WriteFile(cfgFile, []byte(cfg), 0o644)
	var out syncBuffer
	hp := exec.Command(haproxy, "-f", cfgFile, "-db")
	hp.Stdout, hp.Stderr = &out, &out
	if err := hp.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hp.Process.Kill(); hp.Wait() })

	status := func() string { return serverStatus(t, stats, "edged_http", "web1") }
	waitStatus := func(want string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			if strings.HasPrefix(status(), want) {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("HAProxy's status of web1 is %q, want %s; haproxy said:\n%s", status(), want, tail(out.String(), 20))
	}
	waitStatus("UP")

	// The client's own address, through either frontend.
	for _, addr := range []string{front, frontTLS} {
		env := environFrom(t, "127.0.0.2", addr)
		if got := env["REMOTE_ADDR"]; got != "127.0.0.2" {
			t.Errorf("through %s the app saw REMOTE_ADDR %q, want the client's 127.0.0.2", addr, got)
		}
	}
	// A PROXY header straight from a client is forged.
	raw := rawRequestFrom(t, "127.0.0.3", edgedAddr, "PROXY TCP4 1.2.3.4 127.0.0.1 1111 80\r\nGET /environ HTTP/1.1\r\nHost: x\r\n\r\n")
	if !strings.HasPrefix(raw, "HTTP/1.1 400 ") {
		t.Errorf("a PROXY header from a client got %.60q, want a 400", raw)
	}

	// Drained, the host leaves HAProxy's pool; undrained, it comes back.
	control := filepath.Join(s.socket, "edge", "control.sock")
	ctl := func(args ...string) {
		t.Helper()
		cmd := exec.Command(filepath.Join(binDir, "edgectl"), args...)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("edgectl %s: %v\n%s", strings.Join(args, " "), err, b)
		}
	}
	ctl("drain", "--control", control)
	waitStatus("DOWN")
	if resp, err := http.Get("http://" + front + "/hello"); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("with its only host drained HAProxy answered %s, want 503", resp.Status)
		}
	}
	ctl("undrain", "--control", control)
	waitStatus("UP")
	env := environFrom(t, "127.0.0.2", front)
	if env["REMOTE_ADDR"] != "127.0.0.2" {
		t.Errorf("after undrain the app saw REMOTE_ADDR %q", env["REMOTE_ADDR"])
	}

	// The per-client rate counts each client by its own address: one
	// that goes over it is refused, another is not, though both come
	// from HAProxy's.
	code := func(from string) string {
		f := strings.Fields(rawRequestFrom(t, from, front, "GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
		if len(f) < 2 {
			return "no answer"
		}
		return f[1]
	}
	var codes []string
	for range 7 {
		codes = append(codes, code("127.0.0.4"))
	}
	if codes[0] != "200" || codes[6] != "429" {
		t.Errorf("one client over limits.rate through HAProxy got %v, want 200 first and 429 at last", codes)
	}
	if got := code("127.0.0.5"); got != "200" {
		t.Errorf("another client through HAProxy got %s, want 200: the limit counted HAProxy's address", got)
	}
}

// haproxyConfig is the shipped haproxy.cfg as a test runs it: as root,
// without chroot or syslog, its stats socket at stats, with the
// replacements given. Each replaced text must be found, so that a change
// of the example's shape fails a test rather than make it test less.
func haproxyConfig(t *testing.T, stats string, repl [][2]string) string {
	t.Helper()
	shipped, err := os.ReadFile(filepath.Join(repoRoot, "packaging/examples/haproxy.cfg"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := string(shipped)
	for _, r := range append([][2]string{
		{"    chroot /var/lib/haproxy\n", ""},
		{"    user haproxy\n", ""},
		{"    group haproxy\n", ""},
		{"    log /dev/log local0\n", ""},
		{"/run/haproxy/admin.sock", stats},
		{"maxconn 50000", "maxconn 1000"}, // this machine's file limit
	}, repl...) {
		if !strings.Contains(cfg, r[0]) {
			t.Fatalf("packaging/examples/haproxy.cfg has no %q any more: update this test", r[0])
		}
		cfg = strings.ReplaceAll(cfg, r[0], r[1])
	}
	return cfg
}

// serverStatus is HAProxy's status of a server ("UP", "DOWN", "DRAIN",
// "UP 1/2" ...), from its stats socket.
func serverStatus(t *testing.T, socket, backend, server string) string {
	t.Helper()
	c, err := net.Dial("unix", socket)
	if err != nil {
		return "unreachable: " + err.Error()
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "show stat\n")
	b, _ := io.ReadAll(c)
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Split(line, ",")
		if len(f) > 17 && f[0] == backend && f[1] == server {
			return f[17]
		}
	}
	return "not found"
}

// environFrom asks addr for /environ from the local address from.
func environFrom(t *testing.T, from, addr string) map[string]string {
	t.Helper()
	raw := rawRequestFrom(t, from, addr, "GET /environ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	_, body, ok := strings.Cut(raw, "\r\n\r\n")
	if !ok || !strings.HasPrefix(raw, "HTTP/1.1 200 ") {
		t.Fatalf("/environ through %s: %.200q", addr, raw)
	}
	env := map[string]string{}
	if err := json.Unmarshal([]byte(body), &env); err != nil {
		t.Fatalf("/environ through %s: %v: %.200q", addr, err, body)
	}
	return env
}
