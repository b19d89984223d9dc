package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// netns is a network namespace of its own, held by a sleeping process
// (bounded: it ends by itself after the test's longest run).
type netns struct {
	t   *testing.T
	cmd *exec.Cmd
	pid int
}

func newNetns(t *testing.T) *netns {
	t.Helper()
	cmd := exec.Command("unshare", "--net", "--", "sleep", "1800")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("unshare --net: %v", err)
	}
	n := &netns{t: t, cmd: cmd, pid: cmd.Process.Pid}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	// unshare execs sleep once the namespace is made.
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", n.pid)); strings.HasSuffix(exe, "/sleep") {
			n.must("ip", "link", "set", "lo", "up")
			return n
		}
	}
	t.Fatal("unshare --net did not start sleep")
	return nil
}

func (n *netns) command(args ...string) *exec.Cmd {
	return exec.Command("nsenter", append([]string{"-t", strconv.Itoa(n.pid), "-n", "--"}, args...)...)
}

func (n *netns) must(args ...string) string {
	n.t.Helper()
	out, err := n.command(args...).CombinedOutput()
	if err != nil {
		n.t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// fleetLoad is the load client of the fleet: keep-alive GETs and POSTs on
// new connections at a steady pace, every failure kept with its cause and
// the phase of the test it came in.
type fleetLoad struct {
	phase  atomic.Value // string
	mu     sync.Mutex
	ok     map[string]int
	failed map[string][]fleetFailure
	stop   chan struct{}
	once   sync.Once
	wg     sync.WaitGroup
	hosts  sync.Map // host name -> *atomic.Int64, answers from it
}

type fleetFailure struct {
	method, cause string
	at            time.Time
}

func startFleetLoad(dial func() http.RoundTripper, url string, getters, posters int) *fleetLoad {
	l := &fleetLoad{ok: map[string]int{}, failed: map[string][]fleetFailure{}, stop: make(chan struct{})}
	l.phase.Store("start")
	run := func(method string, rt http.RoundTripper) {
		defer l.wg.Done()
		c := &http.Client{Transport: rt, Timeout: 30 * time.Second}
		for {
			select {
			case <-l.stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
			phase := l.phase.Load().(string)
			var body io.Reader
			if method == "POST" {
				body = strings.NewReader(strings.Repeat("p", 2048))
			}
			req, _ := http.NewRequest(method, url, body)
			resp, err := c.Do(req)
			var cause string
			var who struct{ Host, Client string }
			if err != nil {
				cause = err.Error()
			} else {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					cause = fmt.Sprintf("status %d: %.80q", resp.StatusCode, b)
				} else if err := json.Unmarshal(b, &who); err != nil {
					cause = fmt.Sprintf("answer %.80q: %v", b, err)
				}
			}
			l.mu.Lock()
			if cause != "" {
				l.failed[phase] = append(l.failed[phase], fleetFailure{method, cause, time.Now()})
			} else {
				l.ok[phase]++
				if who.Client != "10.0.0.100" {
					l.failed[phase] = append(l.failed[phase], fleetFailure{method, "the app saw client " + who.Client + ", not 10.0.0.100", time.Now()})
				}
			}
			l.mu.Unlock()
			if cause == "" {
				n, _ := l.hosts.LoadOrStore(who.Host, new(atomic.Int64))
				n.(*atomic.Int64).Add(1)
			}
		}
	}
	for i := 0; i < getters; i++ {
		l.wg.Add(1)
		go run("GET", dial())
	}
	for i := 0; i < posters; i++ {
		l.wg.Add(1)
		rt := dial().(*http.Transport)
		rt.DisableKeepAlives = true
		go run("POST", rt)
	}
	return l
}

// answers is how many answers came from host.
func (l *fleetLoad) answers(host string) int64 {
	if n, ok := l.hosts.Load(host); ok {
		return n.(*atomic.Int64).Load()
	}
	return 0
}

func (l *fleetLoad) finish() {
	l.once.Do(func() { close(l.stop) })
	l.wg.Wait()
}

// fleet is three hosts, each a Debian root under its own systemd with
// the suite installed from a .deb, joined by veth pairs to a bridge in a
// namespace of its own where HAProxy runs with the shipped config; and a
// client namespace on the same bridge.
//
//	client 10.0.0.100 ─┐
//	                   br0 (HAProxy 10.0.0.2) ── web1 10.0.0.11, web2 .12, web3 .13
type fleet struct {
	sw, client *netns
	hosts      []*machine
	stats      string // HAProxy's stats socket
	hpOut      *syncBuffer
	hp         *exec.Cmd
}

// startFleet starts the fleet with p1 installed on every host (and
// later, the files of more packages left in /root for an upgrade).
func startFleet(t *testing.T, haproxy string, p1 builtPackages, more ...builtPackages) *fleet {
	t.Helper()
	f := &fleet{sw: newNetns(t), hpOut: &syncBuffer{}}
	sw := f.sw
	sw.must("ip", "link", "add", "br0", "type", "bridge")
	sw.must("ip", "addr", "add", "10.0.0.2/24", "dev", "br0")
	sw.must("ip", "link", "set", "br0", "up")
	// plug joins the namespace of pid to the bridge as addr, through
	// a veth named link on the switch's side.
	plug := func(link string, pid int, in func(args ...string) string, addr string) {
		sw.must("ip", "link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", strconv.Itoa(pid))
		sw.must("ip", "link", "set", link, "master", "br0", "up")
		in("ip", "addr", "add", addr+"/24", "dev", "eth0")
		in("ip", "link", "set", "eth0", "up")
	}
	f.client = newNetns(t)
	plug("client", f.client.pid, f.client.must, "10.0.0.100")

	f.hosts = make([]*machine, 3)
	for i := range f.hosts {
		name, addr := fmt.Sprintf("web%d", i+1), fmt.Sprintf("10.0.0.1%d", i+1)
		m := bootMachineIn(t, debianRoot(t))
		f.hosts[i] = m
		m.mustExec("hostname", name)
		plug(name, m.pid, m.mustExec, addr)
		for _, p := range append([]builtPackages{p1}, more...) {
			m.write("/root/"+filepath.Base(p.deb), mustRead(t, p.deb), 0o644)
		}
		m.mustExec("apt-get", "install", "-y", "-q", "/root/"+filepath.Base(p1.deb))
		m.write("/etc/edged/edged.toml", []byte(fmt.Sprintf(`[listen]
http = ["0.0.0.0:80"]
proxy_protocol = ["10.0.0.2"]
[app]
module = "sample:app"
directory = "/usr/share/edged/app"
[pool]
workers = 2
[metrics]
listen = "%[1]s:9180"
agent = "%[1]s:9181"
[cluster]
drain = "2s"
[log]
access = false
`, addr)), 0o644)
		m.mustExec("systemctl", "enable", "--now", "edged.socket", "edged.service")
		m.mustExec("edgectl", "scale", "2")
	}

	dir := t.TempDir()
	f.stats = filepath.Join(dir, "admin.sock")
	cfg := haproxyConfig(t, f.stats, [][2]string{
		{"port 9180 inter 2s", "port 9180 inter 200ms"},
		{"agent-inter 2s", "agent-inter 200ms"},
		// A host gone mid-answer is given up on within seconds here.
		{"timeout connect 5s", "timeout connect 1s"},
		{"timeout server 75s", "timeout server 5s"},
	})
	cfgFile := filepath.Join(dir, "haproxy.cfg")
	os.WriteFile(cfgFile, []byte(cfg), 0o644)
	f.hp = sw.command(haproxy, "-f", cfgFile, "-db")
	f.hp.Stdout, f.hp.Stderr = f.hpOut, f.hpOut
	f.hp.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := f.hp.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.hp.Process.Kill(); f.hp.Wait() })
	for _, h := range []string{"web1", "web2", "web3"} {
		f.waitStatus(h, "UP")
	}
	return f
}

// status is HAProxy's status of host in the plain HTTP backend.
func (f *fleet) status(host string) string { return serverStatus(f.sw.t, f.stats, "edged_http", host) }

// waitStatus waits up to 30 s for HAProxy to give host one of want.
func (f *fleet) waitStatus(host string, want ...string) {
	t := f.sw.t
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		st := f.status(host)
		for _, w := range want {
			if strings.HasPrefix(st, w) {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("HAProxy's status of %s is %q, want %v; haproxy said:\n%s", host, f.status(host), want, tail(f.hpOut.String(), 20))
}

// TestFleet runs three hosts, each a whole suite installed from the .deb
// under its own systemd, behind HAProxy with the shipped config, under a
// steady load, through the operations a fleet lives with: planned ones
// fail no request; crashes fail only requests that may not go twice and
// were in flight on the host lost.
func TestFleet(t *testing.T) {
	if testing.Short() {
		t.Skip("boots three systemds")
	}
	needTools(t, "dpkg-deb", "rpm", "debootstrap")
	haproxy := needTool(t, "haproxy")
	if os.Getuid() != 0 {
		t.Skip("!!! SKIPPED: booting systemd needs root (CI runs as root) !!!")
	}
	dir := t.TempDir()
	p1 := buildPackages(t, filepath.Join(dir, "1"), "")
	p2 := buildPackages(t, filepath.Join(dir, "2"), p1.version+".1")
	f := startFleet(t, haproxy, p1, p2)
	sw, client, hosts, waitStatus := f.sw, f.client, f.hosts, f.waitStatus

	dial := func() http.RoundTripper {
		return &http.Transport{DialContext: dialerIn(t, client.pid), MaxIdleConnsPerHost: 8}
	}
	const posters = 2
	l := startFleetLoad(dial, "http://10.0.0.2/whoami", 3, posters)
	defer l.finish()
	phase := func(name string) { l.phase.Store(name) }
	settle := func() { time.Sleep(1500 * time.Millisecond) }

	phase("steady")
	time.Sleep(2 * time.Second)
	for _, h := range []string{"web1", "web2", "web3"} {
		if l.answers(h) == 0 {
			t.Errorf("no answer from %s while all three are up", h)
		}
	}

	// A PROXY header sent straight to a host by a client is refused.
	raw := func() string {
		c, err := dialerIn(t, client.pid)(context.Background(), "tcp", "10.0.0.11:80")
		if err != nil {
			return err.Error()
		}
		return rawExchange(c, "PROXY TCP4 1.2.3.4 10.0.0.11 1111 80\r\nGET /whoami HTTP/1.1\r\nHost: x\r\n\r\n")
	}()
	if !strings.HasPrefix(raw, "HTTP/1.1 400 ") {
		t.Errorf("a PROXY header straight from a client got %.80q, want a 400", raw)
	}

	web1, web2, web3 := hosts[0], hosts[1], hosts[2]
	phase("drain and stop web1")
	web1.mustExec("edgectl", "drain")
	waitStatus("web1", "DRAIN", "DOWN", "NOLB")
	web1.mustExec("systemctl", "stop", "edged.socket", "edged.service")
	waitStatus("web1", "DOWN")
	settle()
	phase("web1 back")
	web1.mustExec("systemctl", "start", "edged.socket", "edged.service")
	waitStatus("web1", "UP")
	settle()

	phase("restart edged on web2")
	web2.mustExec("systemctl", "restart", "edged.service")
	waitStatus("web2", "UP")
	settle()

	phase("upgrade web3")
	if out, err := web3.exec("apt-get", "install", "-y", "-q", "-o", "Dpkg::Options::=--force-confold", "/root/"+filepath.Base(p2.deb)); err != nil {
		t.Fatalf("upgrade of web3: %v\n%s", err, out)
	}
	waitStatus("web3", "UP")
	settle()
	planned := []string{"steady", "drain and stop web1", "web1 back", "restart edged on web2", "upgrade web3"}
	l.mu.Lock()
	for _, p := range planned {
		t.Logf("%-24s %5d answered, %d failed", p, l.ok[p], len(l.failed[p]))
		for _, f := range l.failed[p] {
			t.Errorf("%s: %s %s failed: %s", p, f.at.Format("15:04:05.000"), f.method, f.cause)
		}
		if l.ok[p] == 0 {
			t.Errorf("%s: no request answered", p)
		}
	}
	l.mu.Unlock()

	phase("kill -9 edged on web1")
	web1.mustExec("systemctl", "kill", "--kill-whom=main", "--signal=SIGKILL", "edged.service")
	settle()
	waitStatus("web1", "UP")
	settle()

	phase("veth of web2 down")
	sw.must("ip", "link", "set", "web2", "down")
	waitStatus("web2", "DOWN")
	time.Sleep(6 * time.Second) // HAProxy's timeout server passes for what was in flight
	sw.must("ip", "link", "set", "web2", "up")
	waitStatus("web2", "UP")
	settle()

	phase("systemd of web3 killed")
	web3.kill()
	waitStatus("web3", "DOWN")
	time.Sleep(6 * time.Second)
	crashes := []string{"kill -9 edged on web1", "veth of web2 down", "systemd of web3 killed"}
	phase("end")
	l.finish()

	l.mu.Lock()
	defer l.mu.Unlock()
	for _, p := range crashes {
		posts := 0
		for _, f := range l.failed[p] {
			if f.method == "POST" {
				posts++
				t.Logf("%s: %s POST failed (may not go twice): %s", p, f.at.Format("15:04:05.000"), f.cause)
			} else {
				t.Errorf("%s: %s %s failed, HAProxy should have sent it again: %s", p, f.at.Format("15:04:05.000"), f.method, f.cause)
			}
		}
		t.Logf("%-24s %5d answered, %d POSTs failed", p, l.ok[p], posts)
		if posts > posters {
			t.Errorf("%s: %d POSTs failed, more than the %d that can be in flight at once", p, posts, posters)
		}
	}
	var seen []string
	l.hosts.Range(func(k, v any) bool {
		seen = append(seen, fmt.Sprintf("%s %d", k, v.(*atomic.Int64).Load()))
		return true
	})
	sort.Strings(seen)
	t.Logf("answers by host: %s", strings.Join(seen, ", "))
}
