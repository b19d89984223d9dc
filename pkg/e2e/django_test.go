package e2e

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestDjango: a stock Django project (python3-django, startproject), as
// the README's Django section sets it up: module = "shop.wsgi", the
// static files collectstatic gathers served by edged, the admin's login
// with its CSRF token and session cookie.
func TestDjango(t *testing.T) {
	if err := exec.Command(python, "-c", "import django").Run(); err != nil {
		t.Skipf("SKIPPED: %s cannot import django (install python3-django: `make deps`)", python)
	}
	dir := t.TempDir()
	manage := func(args ...string) {
		t.Helper()
		cmd := exec.Command(python, append([]string{"manage.py"}, args...)...)
		cmd.Dir = filepath.Join(dir, "shop")
		cmd.Env = append(os.Environ(), "DJANGO_SUPERUSER_PASSWORD=a-long-test-password")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("manage.py %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	// What the README says to add to settings.py.
	static := filepath.Join(dir, "static")
	startProjectIn(t, dir, "\nALLOWED_HOSTS = ['127.0.0.1', 'localhost']\nSTATIC_ROOT = "+pyString(static)+"\n")
	manage("migrate", "--noinput")
	manage("createsuperuser", "--noinput", "--username", "admin", "--email", "admin@example.com")
	manage("collectstatic", "--noinput")

	s := startSuite(t, suiteOpts{module: "shop.wsgi", appDir: filepath.Join(dir, "shop"), static: static, workers: 2,
		app: `env = { DJANGO_SETTINGS_MODULE = "shop.settings" }`})
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	status, body := get(t, c, s.http+"/admin/login/")
	m := regexp.MustCompile(`name="csrfmiddlewaretoken" value="([^"]+)"`).FindStringSubmatch(body)
	if status != 200 || m == nil {
		t.Fatalf("GET /admin/login/ = %d, no CSRF token in the form:\n%.500s", status, body)
	}
	resp, err := c.PostForm(s.http+"/admin/login/?next=/admin/", url.Values{
		"csrfmiddlewaretoken": {m[1]}, "username": {"admin"}, "password": {"a-long-test-password"}, "next": {"/admin/"},
	})
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 302 || resp.Header.Get("Location") != "/admin/" {
		t.Fatalf("the login = %d to %q, want 302 to /admin/", resp.StatusCode, resp.Header.Get("Location"))
	}
	if status, body := get(t, c, s.http+"/admin/"); status != 200 || !strings.Contains(body, "Site administration") {
		t.Errorf("GET /admin/ with the session = %d, want the admin's index:\n%.300s", status, body)
	}
	// Without the token, the login is refused: CSRF works behind edged.
	resp, err = http.PostForm(s.http+"/admin/login/", url.Values{"username": {"admin"}, "password": {"a-long-test-password"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 403 {
		t.Errorf("a login without the CSRF token = %d, want 403", resp.StatusCode)
	}
	// The admin's CSS, from STATIC_ROOT, by edged: no worker names itself.
	resp, err = http.Get(s.http + "/static/admin/css/base.css")
	if err != nil {
		t.Fatal(err)
	}
	css, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || len(css) < 1000 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/css") {
		t.Errorf("GET /static/admin/css/base.css = %d, %d bytes, %q", resp.StatusCode, len(css), resp.Header.Get("Content-Type"))
	}
}

// pyString writes s as a Python string literal.
func pyString(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

// startProject makes a stock Django project "shop" (django-admin
// startproject) in a directory of its own, with settings appended to its
// settings.py, and returns the directory.
func startProject(t *testing.T, settings string) string {
	t.Helper()
	dir := t.TempDir()
	startProjectIn(t, dir, settings)
	return dir
}

func startProjectIn(t *testing.T, dir, settings string) {
	t.Helper()
	cmd := exec.Command(python, "-m", "django", "startproject", "shop")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("startproject: %v\n%s", err, out)
	}
	f, err := os.OpenFile(filepath.Join(dir, "shop", "shop", "settings.py"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(settings); err != nil {
		t.Fatal(err)
	}
}
