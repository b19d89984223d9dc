package e2e

import (
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// builtPackages is what `make packages` wrote for one version.
type builtPackages struct {
	version, deb, rpm string
}

// buildPackages runs `make packages` into dir, as a user would, with the
// version given (empty: the one git describes).
func buildPackages(t *testing.T, dir, version string) builtPackages {
	t.Helper()
	args := []string{"-C", repoRoot, "packages", "BIN=" + filepath.Join(dir, "bin"), "DIST=" + dir}
	if version != "" {
		args = append(args, "VERSION="+version)
	}
	out, err := exec.Command("make", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("make packages: %v\n%s", err, out)
	}
	debs, _ := filepath.Glob(filepath.Join(dir, "edged_*_amd64.deb"))
	rpms, _ := filepath.Glob(filepath.Join(dir, "edged-*.x86_64.rpm"))
	if len(debs) != 1 || len(rpms) != 1 {
		t.Fatalf("make packages wrote %v %v, want one .deb and one .rpm", debs, rpms)
	}
	v := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(debs[0]), "edged_"), "_amd64.deb")
	return builtPackages{version: v, deb: debs[0], rpm: rpms[0]}
}

// lastRelease is the commit of the release before sites: the upgrade
// test installs its package, then this tree's.
const lastRelease = "4d5ac75"

// buildRelease builds the packages of commit in a worktree of its own,
// versioned as that commit describes itself. ok is false when the
// checkout has no such commit (a shallow clone).
func buildRelease(t *testing.T, dir, commit string) (builtPackages, bool) {
	t.Helper()
	if err := exec.Command("git", "-C", repoRoot, "cat-file", "-e", commit+"^{commit}").Run(); err != nil {
		return builtPackages{}, false
	}
	tree := filepath.Join(dir, "tree")
	if out, err := exec.Command("git", "-C", repoRoot, "worktree", "add", "--detach", tree, commit).CombinedOutput(); err != nil {
		t.Fatalf("git worktree add %s: %v\n%s", commit, err, out)
	}
	t.Cleanup(func() { exec.Command("git", "-C", repoRoot, "worktree", "remove", "--force", tree).Run() })
	args := []string{"-C", tree, "packages", "BIN=" + filepath.Join(dir, "bin"), "DIST=" + dir}
	if out, err := exec.Command("make", args...).CombinedOutput(); err != nil {
		t.Fatalf("make packages at %s: %v\n%s", commit, err, out)
	}
	debs, _ := filepath.Glob(filepath.Join(dir, "edged_*_amd64.deb"))
	rpms, _ := filepath.Glob(filepath.Join(dir, "edged-*.x86_64.rpm"))
	if len(debs) != 1 || len(rpms) != 1 {
		t.Fatalf("make packages at %s wrote %v %v", commit, debs, rpms)
	}
	v := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(debs[0]), "edged_"), "_amd64.deb")
	return builtPackages{version: v, deb: debs[0], rpm: rpms[0]}, true
}

func needTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("!!! SKIPPED: %s is not installed (`make deps` installs it) !!!", tool)
		}
	}
}

// TestPackageContents builds both packages and checks them the way a
// distribution would: lintian and rpmlint, file lists, config files and
// scriptlets.
func TestPackageContents(t *testing.T) {
	needTools(t, "lintian", "rpmlint", "rpm", "dpkg-deb")
	p := buildPackages(t, t.TempDir(), "")
	if !strings.HasPrefix(p.version, "0.") && !strings.ContainsAny(p.version[:1], "123456789") {
		t.Errorf("version %q does not come from git describe", p.version)
	}

	t.Run("lintian", func(t *testing.T) {
		out, err := exec.Command("lintian", "--fail-on", "error,warning", p.deb).CombinedOutput()
		fmt.Printf("lintian %s: %s\n", filepath.Base(p.deb), strings.TrimSpace(strings.ReplaceAll(string(out), "running with root privileges is not recommended!", "")))
		if err != nil {
			t.Errorf("lintian: %v\n%s", err, out)
		}
	})
	t.Run("rpmlint", func(t *testing.T) {
		out, err := exec.Command("rpmlint", "-r", filepath.Join(repoRoot, "packaging", "rpmlintrc"), p.rpm).CombinedOutput()
		last := lastLine(string(out))
		fmt.Printf("rpmlint %s: %s\n", filepath.Base(p.rpm), last)
		if err != nil || !strings.Contains(last, " 0 errors, 0 warnings") {
			t.Errorf("rpmlint: %v\n%s", err, out)
		}
	})

	want := []string{
		"/usr/bin/edged", "/usr/bin/workerd", "/usr/bin/edgectl",
		"/usr/lib/systemd/system/edged.socket", "/usr/lib/systemd/system/edged-https.socket",
		"/usr/lib/systemd/system/edged.service", "/usr/lib/systemd/system/workerd.socket",
		"/usr/lib/systemd/system/workerd@.service", "/usr/lib/sysusers.d/edged.conf",
		"/usr/lib/tmpfiles.d/edged.conf", "/usr/lib/sysctl.d/60-edged.conf",
		"/usr/share/polkit-1/rules.d/50-edged.rules", "/etc/edged/edged.toml",
		"/usr/share/edged/www/index.html", "/usr/share/edged/app/sample.py",
		"/usr/lib/edged/workerd-site@.service", "/usr/lib/systemd/system-generators/edged-generator",
		"/etc/logrotate.d/edged",
	}
	t.Run("rpm file list, config files, scriptlets", func(t *testing.T) {
		list := runOut(t, "rpm", "-qpl", p.rpm)
		for _, f := range append(want, "/usr/share/licenses/edged/copyright") {
			if !containsLine(list, f) {
				t.Errorf("the .rpm lacks %s", f)
			}
		}
		if cfg := runOut(t, "rpm", "-qp", "--configfiles", p.rpm); !containsLine(cfg, "/etc/edged/edged.toml") {
			t.Errorf("edged.toml is not a config file in the .rpm: %q", cfg)
		}
		if q := runOut(t, "rpm", "-qp", "--queryformat", "[%{FILEFLAGS:fflags} %{FILENAMES}\n]", p.rpm); !strings.Contains(q, "cn /etc/edged/edged.toml") {
			t.Errorf("edged.toml is not %%config(noreplace) in the .rpm:\n%s", q)
		}
		scripts := runOut(t, "rpm", "-qp", "--scripts", p.rpm)
		for _, s := range []string{"postinstall scriptlet", "preuninstall scriptlet", "postuninstall scriptlet", "systemd-sysusers edged.conf", "try-restart edged.service", "systemctl disable"} {
			if !strings.Contains(scripts, s) {
				t.Errorf("the .rpm's scriptlets lack %q:\n%s", s, scripts)
			}
		}
	})
	t.Run("deb file list and conffiles", func(t *testing.T) {
		list := runOut(t, "dpkg-deb", "-c", p.deb)
		for _, f := range append(want, "/usr/share/doc/edged/copyright", "/usr/share/doc/edged/changelog.Debian.gz") {
			if !strings.Contains(list, "."+f+"\n") && !strings.Contains(list, "."+f+" -> ") {
				t.Errorf("the .deb lacks %s", f)
			}
		}
		for _, f := range []string{"/etc/edged/edged.toml", "/etc/logrotate.d/edged"} {
			if cf := runOut(t, "dpkg-deb", "-I", p.deb, "conffiles"); !containsLine(cf, f) {
				t.Errorf("%s is not a conffile: %q", f, cf)
			}
		}
	})
}

func runOut(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func containsLine(text, line string) bool {
	for _, l := range strings.Split(text, "\n") {
		if strings.TrimSpace(l) == line {
			return true
		}
	}
	return false
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// rootPackages go into the Debian tree beside minbase: systemd as a
// Debian system has it (with the NSS module and logind that its
// recommends bring), polkit for the edgeadm rule, and the tools the tests
// run inside.
const rootPackages = "systemd,systemd-sysv,libnss-systemd,dbus,libpam-systemd,polkitd,curl,ca-certificates,python3,iproute2,procps"

// debianRoot returns a fresh Debian 12 tree with systemd, made once with
// debootstrap and kept in /var/cache/edged-test, then copied per test.
func debianRoot(t *testing.T) string {
	t.Helper()
	needTools(t, "debootstrap")
	// The cache is named after what goes into it, so a change of the
	// package list makes a new one.
	sum := sha256.Sum256([]byte(rootPackages))
	cache := fmt.Sprintf("/var/cache/edged-test/bookworm-%x.tar", sum[:4])
	if _, err := os.Stat(cache); err != nil {
		build := filepath.Join(filepath.Dir(cache), "build-root")
		os.RemoveAll(build)
		os.MkdirAll(filepath.Dir(cache), 0o755)
		start := time.Now()
		out, err := exec.Command("debootstrap", "--variant=minbase",
			"--include="+rootPackages,
			"bookworm", build).CombinedOutput()
		if err != nil {
			t.Fatalf("debootstrap: %v\n%s", err, lastLine(string(out)))
		}
		if out, err := exec.Command("tar", "-C", build, "-cf", cache+".part", ".").CombinedOutput(); err != nil {
			t.Fatalf("tar: %v\n%s", err, out)
		}
		os.Rename(cache+".part", cache)
		os.RemoveAll(build)
		t.Logf("debootstrap took %s (cached in %s)", time.Since(start).Round(time.Second), cache)
	}
	root := t.TempDir()
	if out, err := exec.Command("tar", "-C", root, "-xf", cache).CombinedOutput(); err != nil {
		t.Fatalf("untar: %v\n%s", err, out)
	}
	os.Chmod(root, 0o755)
	return root
}

// TestDebInstall installs the .deb into a throwaway Debian 12 with systemd
// booted inside, as the README says a user does, then upgrades, removes
// and purges it.
func TestDebInstall(t *testing.T) {
	if testing.Short() {
		t.Skip("boots systemd in a Debian tree")
	}
	needTools(t, "dpkg-deb", "rpm")
	dir := t.TempDir()
	// The upgrade is from the last release to this tree.
	p1, ok := buildRelease(t, filepath.Join(dir, "1"), lastRelease)
	if !ok {
		t.Logf("!!! no commit %s in this checkout (shallow?): the upgrade is from this tree to itself !!!", lastRelease)
		p1 = buildPackages(t, filepath.Join(dir, "1"), "")
	}
	p2 := buildPackages(t, filepath.Join(dir, "2"), p1.version+".1")
	p3 := buildPackages(t, filepath.Join(dir, "3"), p2.version+".1")
	m := bootMachineIn(t, debianRoot(t))
	for _, p := range []builtPackages{p1, p2, p3} {
		m.write("/root/"+filepath.Base(p.deb), mustRead(t, p.deb), 0o644)
	}
	c := m.client()

	m.mustExec("apt-get", "install", "-y", "-q", "/root/"+filepath.Base(p1.deb))
	m.mustExec("systemctl", "enable", "--now", "edged.socket")
	out, err := m.exec("edgectl", "scale", "--auto")
	if err != nil {
		j, _ := m.exec("sh", "-c", "systemctl status --no-pager -l workerd@1.service; journalctl --no-pager -u workerd@1.service -n 20")
		t.Fatalf("edgectl scale --auto: %v\n%s\n%s", err, out, j)
	}
	t.Logf("edgectl scale --auto:\n%s", out)

	t.Run("default site and sample app", func(t *testing.T) {
		if status, body := get(t, c, "http://127.0.0.1/"); status != 200 || !strings.Contains(body, "edged is serving your WSGI app") {
			t.Errorf("GET / = %d, want the sample app", status)
		}
		if status, body := get(t, c, "http://127.0.0.1/static/"); status != 200 || !strings.Contains(body, "edged is running") {
			t.Errorf("GET /static/ = %d, want the welcome page", status)
		}
	})
	t.Run("status shows (2 x cores) + 1 workers", func(t *testing.T) {
		want := 0
		for _, l := range strings.Split(out, "\n") {
			if strings.HasPrefix(l, "workers = 2 x ") {
				f := strings.Fields(l)
				want, _ = strconv.Atoi(f[len(f)-1])
			}
		}
		st := m.mustExec("edgectl", "status")
		if want == 0 || !strings.Contains(st, fmt.Sprintf("TOTAL (%d workers, %d active)", want, want)) {
			t.Errorf("edgectl status does not show %d active workers:\n%s", want, st)
		}
	})

	t.Run("edgeadm members scale and restart without root", func(t *testing.T) {
		m.mustExec("useradd", "--create-home", "--groups", "edgeadm", "ops")
		m.mustExec("useradd", "--create-home", "stranger")
		as := func(user string, args ...string) (string, error) {
			return m.exec(append([]string{"setpriv", "--reuid=" + user, "--regid=" + user, "--init-groups", "--"}, args...)...)
		}
		if out, err := as("ops", "edgectl", "scale", "3"); err != nil {
			t.Errorf("edgectl scale 3 as an edgeadm member: %v\n%s", err, out)
		}
		if out, err := as("ops", "edgectl", "restart"); err != nil {
			t.Errorf("edgectl restart as an edgeadm member: %v\n%s", err, out)
		}
		if out, err := as("stranger", "edgectl", "scale", "2"); err == nil || !strings.Contains(out, "edgeadm") {
			t.Errorf("edgectl scale as a stranger: err %v\n%s", err, out)
		}
		if out, err := m.exec("edgectl", "scale", "--auto"); err != nil {
			t.Errorf("edgectl scale --auto as root: %v\n%s", err, out)
		}
	})

	t.Run("upgrade keeps the operator's edit and fails no request", func(t *testing.T) {
		cfg := m.mustExec("cat", "/etc/edged/edged.toml")
		edited := strings.Replace(cfg, `max_age = "1h"`, `max_age = "2h"`, 1)
		if edited == cfg {
			t.Fatalf("the packaged config has no max_age to edit:\n%s", cfg)
		}
		m.write("/etc/edged/edged.toml", []byte(edited), 0o644)
		m.mustExec("systemctl", "reload", "edged.service")
		l := startLoad(c, "http://127.0.0.1/whoami", 8)
		upOut, err := m.exec("apt-get", "install", "-y", "-q", "-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold", "/root/"+filepath.Base(p2.deb))
		time.Sleep(time.Second)
		ok, bad, errs := l.finish()
		if err != nil {
			t.Fatalf("upgrade: %v\n%s", err, upOut)
		}
		t.Logf("upgrade %s -> %s under load: %d answered, %d failed", p1.version, p2.version, ok, bad)
		if bad > 0 {
			t.Errorf("%d requests failed during the upgrade: %v", bad, errs)
		}
		if got := m.mustExec("cat", "/etc/edged/edged.toml"); got != edited {
			t.Errorf("the upgrade did not keep the edited config")
		}
		if v := m.mustExec("dpkg-query", "-W", "-f", "${Version}", "edged"); !strings.HasPrefix(v, p2.version) {
			t.Errorf("installed version %q, want %s", v, p2.version)
		}
		if en, _ := m.exec("systemctl", "is-enabled", "edged.socket"); strings.TrimSpace(en) != "enabled" {
			t.Errorf("edged.socket is %q after the upgrade, want enabled as the operator left it", strings.TrimSpace(en))
		}
	})

	t.Run("two sites through an upgrade, no request failed", func(t *testing.T) {
		m.write("/etc/edged/edged.toml", []byte(`[listen]
http = ["0.0.0.0:80"]
[log]
access = false
[[site]]
name = "a"
names = ["a.test"]
[site.app]
module = "sample:app"
directory = "/usr/share/edged/app"
[[site]]
name = "b"
names = ["b.test"]
default = true
[site.app]
module = "sample:app"
directory = "/usr/share/edged/app"
`), 0o644)
		m.mustExec("systemctl", "daemon-reload")
		m.mustExec("systemctl", "stop", "workerd@*.service")
		for _, cmd := range [][]string{{"edgectl", "scale", "a", "2"}, {"edgectl", "scale", "b", "2"}, {"systemctl", "reload", "edged.service"}} {
			if out, err := m.exec(cmd...); err != nil {
				t.Fatalf("%s: %v\n%s", strings.Join(cmd, " "), err, out)
			}
		}
		// What ACME keeps (tls = "acme") lives in edged's StateDirectory=:
		// the upgrade must leave it, and its owner, as they are.
		owner := strings.TrimSpace(m.mustExec("stat", "-c", "%u", "/var/lib/private/edged"))
		m.mustExec("sh", "-c", "mkdir -p /var/lib/private/edged/acme && echo kept > /var/lib/private/edged/acme/marker && chown -R "+owner+" /var/lib/private/edged/acme")
		hc := m.hostClient()
		la, lb := startLoad(hc, "http://a.test/whoami", 4), startLoad(hc, "http://b.test/whoami", 4)
		upOut, err := m.exec("apt-get", "install", "-y", "-q", "-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold", "/root/"+filepath.Base(p3.deb))
		time.Sleep(time.Second)
		aok, abad, aerrs := la.finish()
		bok, bbad, berrs := lb.finish()
		if err != nil {
			t.Fatalf("upgrade: %v\n%s", err, upOut)
		}
		t.Logf("upgrade %s -> %s with two sites under load: a %d answered, %d failed; b %d answered, %d failed", p2.version, p3.version, aok, abad, bok, bbad)
		if abad+bbad > 0 || aok == 0 || bok == 0 {
			t.Errorf("requests failed during the upgrade: a %v, b %v", aerrs, berrs)
		}
		if st := m.mustExec("edgectl", "status"); !strings.Contains(st, "workerd-a@2.service") || !strings.Contains(st, "workerd-b@2.service") {
			t.Errorf("edgectl status after the upgrade:\n%s", st)
		}
		if got, _ := m.exec("stat", "-c", "%u %a %n", "/var/lib/private/edged", "/var/lib/private/edged/acme/marker"); !strings.HasPrefix(got, owner+" 700 ") || !strings.Contains(got, "/marker") {
			t.Errorf("edged's state directory after the upgrade: %q, want it and what it held, owned by uid %s, mode 0700", got, owner)
		}
	})

	t.Run("remove stops and disables, purge leaves nothing", func(t *testing.T) {
		m.mustExec("apt-get", "remove", "-y", "-q", "edged")
		for _, u := range []string{"edged.socket", "edged.service", "workerd@1.service", "workerd.socket", "workerd-a@1.service", "workerd-a.socket"} {
			if st, _ := m.exec("systemctl", "is-active", u); strings.TrimSpace(st) == "active" {
				t.Errorf("%s is still active after apt remove", u)
			}
		}
		if en, _ := m.exec("sh", "-c", "ls /etc/systemd/system/*.wants/ | grep -E 'edged|workerd' || true"); strings.TrimSpace(en) != "" {
			t.Errorf("enablement links left after apt remove: %s", en)
		}
		m.mustExec("apt-get", "purge", "-y", "-q", "edged")
		left, _ := m.exec("sh", "-c", "ls -d /etc/edged /usr/lib/systemd/system/edged* /usr/lib/systemd/system/workerd* /run/edged /var/lib/edged /var/lib/private/edged /usr/lib/edged /usr/bin/edged 2>/dev/null; ps -eo comm= | grep -xE 'edged|workerd|python3' || true")
		if strings.TrimSpace(left) != "" {
			t.Errorf("left behind after purge:\n%s", left)
		}
	})
}

// TestRPMInstall installs the .rpm with rpm -i (dependencies are Debian
// packages here, so --nodeps) into a throwaway tree and serves from it.
func TestRPMInstall(t *testing.T) {
	if testing.Short() {
		t.Skip("boots systemd in a Debian tree")
	}
	needTools(t, "rpm")
	p := buildPackages(t, t.TempDir(), "")
	root := debianRoot(t)
	// Installed into the tree before it boots, as an image is built: the
	// scriptlets run chrooted, without a running systemd.
	if out, err := exec.Command("rpm", "--root", root, "-i", "--nodeps", p.rpm).CombinedOutput(); err != nil {
		t.Fatalf("rpm -i: %v\n%s", err, out)
	}
	m := bootMachineIn(t, root)
	if out, err := m.exec("getent", "group", "edged-workers", "edgeadm"); err != nil {
		t.Errorf("%%post did not create the groups: %v\n%s", err, out)
	}
	m.mustExec("systemctl", "daemon-reload")
	m.mustExec("systemctl", "enable", "--now", "edged.socket")
	if out, err := m.exec("edgectl", "scale", "2"); err != nil {
		t.Fatalf("edgectl scale 2: %v\n%s", err, out)
	}
	if status, body := get(t, m.client(), "http://127.0.0.1/"); status != 200 || !strings.Contains(body, "edged is serving your WSGI app") {
		t.Errorf("GET / after rpm -i = %d", status)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
