package e2e

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// siteApp answers with its site and the user it runs as.
const siteApp = `import os

def app(environ, start_response):
    body = ("%s uid=%d" % (os.environ["SITE"], os.getuid())).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
`

const sitesSystemdConfig = `[listen]
http = ["0.0.0.0:80"]

[log]
format = "json"
access = false

[[site]]
name = "shop"
names = ["shop.test"]
[site.app]
module = "siteapp:app"
directory = "/run/edged-test/app"
python = "/usr/bin/python3"
env = { SITE = "shop" }
[site.pool]
workers = 2

[[site]]
name = "blog"
names = ["blog.test"]
[site.app]
module = "siteapp:app"
directory = "/run/edged-test/app"
python = "/usr/bin/python3"
env = { SITE = "blog" }
`

// hostClient sends every request to edged's port 80 in the machine,
// whatever host its URL names, so that the URL's host is the Host header.
func (m *machine) hostClient() *http.Client {
	dial := m.dialer()
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: 64, DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return dial(ctx, network, "127.0.0.1:80")
		}},
	}
}

// TestSystemdSites runs two sites under a real systemd: the generator
// writes their units, their workers run as different users, scaling and
// restarting one fails no request of either, and a broken config at
// daemon-reload leaves both serving.
func TestSystemdSites(t *testing.T) {
	if testing.Short() {
		t.Skip("boots systemd")
	}
	m := bootMachine(t)
	m.write(testRoot+"/app/siteapp.py", []byte(siteApp), 0o644)
	m.install(sitesSystemdConfig)
	edgectl := testRoot + "/bin/edgectl"
	c := m.hostClient()

	for _, u := range []string{"workerd-shop.socket", "workerd-blog.socket", "workerd-shop@.service", "edged-shop.slice"} {
		if out, err := m.exec("systemctl", "cat", u); err != nil || !strings.Contains(out, "edged-generator") && !strings.Contains(out, "site %j") {
			t.Fatalf("%s was not generated: %v\n%s", u, err, out)
		}
	}
	m.mustExec("systemctl", "enable", "--now", "edged.socket")
	for _, cmd := range [][]string{{edgectl, "scale", "shop", "2"}, {edgectl, "scale", "blog", "1"}} {
		if out, err := m.exec(cmd...); err != nil {
			t.Fatalf("%s: %v\n%s\n%s", strings.Join(cmd, " "), err, out, m.journal())
		}
	}

	var uids = map[string]string{}
	for _, site := range []string{"shop", "blog"} {
		status, body := get(t, c, "http://"+site+".test/")
		if status != 200 || !strings.HasPrefix(body, site+" uid=") {
			t.Fatalf("%s: %d %q\n%s", site, status, body, m.journal())
		}
		uids[site] = strings.TrimPrefix(body, site+" uid=")
	}
	t.Run("each site its own user", func(t *testing.T) {
		if uids["shop"] == uids["blog"] || uids["shop"] == "0" || uids["blog"] == "0" {
			t.Errorf("uids %v: want two different, unprivileged users", uids)
		}
		for _, n := range []string{"1", "2"} {
			pid := strings.TrimSpace(m.mustExec("systemctl", "show", "-P", "MainPID", "workerd-shop@"+n+".service"))
			status := m.mustExec("cat", "/proc/"+pid+"/status")
			if !strings.Contains(status, "Uid:\t"+uids["shop"]) {
				t.Errorf("workerd-shop@%s runs as another user than shop's %s", n, uids["shop"])
			}
			cg := m.mustExec("cat", "/proc/"+pid+"/cgroup")
			if !strings.Contains(cg, "edged-shop.slice") {
				t.Errorf("workerd-shop@%s is not in edged-shop.slice: %s", n, cg)
			}
		}
	})

	t.Run("scale one site while the other serves", func(t *testing.T) {
		blog := startLoad(c, "http://blog.test/", 4)
		shop := startLoad(c, "http://shop.test/", 2)
		time.Sleep(500 * time.Millisecond)
		out, err := m.exec(edgectl, "scale", "shop", "4")
		if err != nil {
			t.Fatalf("edgectl scale shop 4: %v\n%s", err, out)
		}
		time.Sleep(500 * time.Millisecond)
		bok, bbad, berrs := blog.finish()
		sok, sbad, serrs := shop.finish()
		if bbad != 0 || sbad != 0 || bok == 0 || sok == 0 {
			t.Errorf("blog %d ok %d failed %v; shop %d ok %d failed %v", bok, bbad, berrs, sok, sbad, serrs)
		}
		running := m.mustExec("systemctl", "list-units", "--no-legend", "--state=active", "workerd-*@*.service")
		if n := strings.Count(running, "workerd-shop@"); n != 4 {
			t.Errorf("%d shop workers running, want 4:\n%s", n, running)
		}
		if n := strings.Count(running, "workerd-blog@"); n != 1 {
			t.Errorf("%d blog workers running, want 1 (scaling shop touched blog):\n%s", n, running)
		}
		if b := m.mustExec("cat", "/etc/edged/scale/shop"); strings.TrimSpace(b) != "4" {
			t.Errorf("recorded for the next boot: %q, want 4", b)
		}
		st := m.mustExec(edgectl, "status")
		if !strings.Contains(st, "workerd-shop@4.service") || !strings.Contains(st, "workerd-blog@1.service") {
			t.Errorf("edgectl status does not list both sites' workers:\n%s", st)
		}
	})

	t.Run("restart one site under load", func(t *testing.T) {
		shop := startLoad(c, "http://shop.test/", 4)
		time.Sleep(300 * time.Millisecond)
		if out, err := m.exec(edgectl, "restart", "shop"); err != nil {
			t.Fatalf("edgectl restart shop: %v\n%s", err, out)
		}
		ok, bad, errs := shop.finish()
		if bad != 0 || ok == 0 {
			t.Errorf("%d ok, %d failed: %v", ok, bad, errs)
		}
	})

	t.Run("SIGKILL to a worker of one site under load of both", func(t *testing.T) {
		shop := startLoad(c, "http://shop.test/", 4)
		blog := startLoad(c, "http://blog.test/", 4)
		time.Sleep(300 * time.Millisecond)
		before := strings.TrimSpace(m.mustExec("systemctl", "show", "-P", "NRestarts", "workerd-shop@1.service"))
		m.mustExec("systemctl", "kill", "--signal=SIGKILL", "workerd-shop@1.service")
		waitFor(t, "systemd to restart workerd-shop@1", func() bool {
			n := strings.TrimSpace(m.mustExec("systemctl", "show", "-P", "NRestarts", "workerd-shop@1.service"))
			st, _ := m.exec("systemctl", "is-active", "workerd-shop@1.service")
			return n != before && strings.TrimSpace(st) == "active"
		})
		time.Sleep(300 * time.Millisecond)
		sok, sbad, serrs := shop.finish()
		bok, bbad, berrs := blog.finish()
		if sbad > 1 || bbad != 0 || sok == 0 || bok == 0 {
			t.Errorf("shop %d ok %d failed %v (one in flight on the killed worker may); blog %d ok %d failed %v", sok, sbad, serrs, bok, bbad, berrs)
		}
	})

	t.Run("restart and reload edged under load of both", func(t *testing.T) {
		shop := startLoad(c, "http://shop.test/", 4)
		blog := startLoad(c, "http://blog.test/", 4)
		time.Sleep(300 * time.Millisecond)
		m.mustExec("systemctl", "reload", "edged.service")
		time.Sleep(300 * time.Millisecond)
		m.mustExec("systemctl", "restart", "edged.service")
		time.Sleep(500 * time.Millisecond)
		sok, sbad, serrs := shop.finish()
		bok, bbad, berrs := blog.finish()
		if sbad != 0 || bbad != 0 || sok == 0 || bok == 0 {
			t.Errorf("shop %d ok %d failed %v; blog %d ok %d failed %v", sok, sbad, serrs, bok, bbad, berrs)
		}
	})

	t.Run("a broken config at daemon-reload leaves both sites serving", func(t *testing.T) {
		m.write("/etc/edged/edged.toml", []byte(sitesSystemdConfig+"\n[[site]]\nname = \"no-dash\"\n"), 0o644)
		m.mustExec("systemctl", "daemon-reload")
		for _, site := range []string{"shop", "blog"} {
			if status, body := get(t, c, "http://"+site+".test/"); status != 200 || !strings.HasPrefix(body, site) {
				t.Errorf("%s after a broken config: %d %q", site, status, body)
			}
		}
		if out, err := m.exec("systemctl", "cat", "workerd-shop.socket"); err != nil {
			t.Errorf("workerd-shop.socket gone after a broken config: %v\n%s", err, out)
		}
		// What the generator says (to the kernel log, under systemd).
		out, err := m.exec("/etc/systemd/system-generators/edged-generator", "/tmp/generator-by-hand")
		if err != nil || !strings.Contains(out, "does not load, so the sites' units stay as they were") || !strings.Contains(out, "no-dash") {
			t.Errorf("the generator run by hand: %v\n%s", err, out)
		}
		m.write("/etc/edged/edged.toml", []byte(sitesSystemdConfig), 0o644)
		m.mustExec("systemctl", "daemon-reload")
	})

	t.Run("app.preload catches a broken deploy before any worker restarts", func(t *testing.T) {
		m.write("/etc/edged/edged.toml", []byte(strings.Replace(sitesSystemdConfig, `env = { SITE = "shop" }`, "env = { SITE = \"shop\" }\npreload = true", 1)), 0o644)
		before := m.mustExec("systemctl", "show", "-P", "MainPID", "workerd-shop@1.service", "workerd-shop@2.service")
		m.write(testRoot+"/app/siteapp.py", []byte("raise RuntimeError('a broken deploy')\n"), 0o644)
		out, err := m.exec(edgectl, "restart", "shop")
		m.write(testRoot+"/app/siteapp.py", []byte(siteApp), 0o644)
		if err == nil || !strings.Contains(out, "no running worker was restarted") {
			t.Errorf("edgectl restart shop with a broken app: %v\n%s", err, out)
		}
		if after := m.mustExec("systemctl", "show", "-P", "MainPID", "workerd-shop@1.service", "workerd-shop@2.service"); after != before {
			t.Errorf("workers restarted: %q -> %q", before, after)
		}
		if status, body := get(t, c, "http://shop.test/"); status != 200 || !strings.HasPrefix(body, "shop") {
			t.Errorf("shop after the refused restart: %d %q", status, body)
		}
		m.write("/etc/edged/edged.toml", []byte(sitesSystemdConfig), 0o644)
	})

	t.Run("an unknown name", func(t *testing.T) {
		resp, err := c.Get("http://other.test/")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 404 {
			t.Errorf("%d, want 404", resp.StatusCode)
		}
	})
}
