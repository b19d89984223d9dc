package e2e

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// needPython skips when python cannot import every module; `make test`
// installs them (python3-fastapi, python3-starlette...), so in CI this
// never skips.
func needPython(t testing.TB, modules ...string) {
	t.Helper()
	for _, m := range modules {
		if err := exec.Command(python, "-c", "import "+m).Run(); err != nil {
			t.Skipf("SKIPPED: %s cannot import %s (`make deps` installs it)", python, m)
		}
	}
}

// TestFastAPI: a FastAPI app under the asgi class, as the README's ASGI
// section has it: JSON, path and query parameters, the startup event,
// the body, the client edged saw, server-sent events passed on as they
// come, a crash that is a 500 for that request only.
func TestFastAPI(t *testing.T) {
	needPython(t, "fastapi")
	s := startSuite(t, suiteOpts{module: "fastapiapp:app", class: "asgi", workers: 2, limits: `max_body = "8m"`})
	c := s.client()
	if status, body := get(t, c, s.http+"/hello"); status != 200 || body != `{"message":"hello"}` {
		t.Errorf("GET /hello = %d %q", status, body)
	}
	status, body := get(t, c, s.http+"/items/42?q=caf%C3%A9")
	var item struct {
		ItemID int    `json:"item_id"`
		Q      string `json:"q"`
		Ready  bool   `json:"ready"`
	}
	if json.Unmarshal([]byte(body), &item); status != 200 || item.ItemID != 42 || item.Q != "café" || !item.Ready {
		t.Errorf("GET /items/42 = %d %q: want item 42, q café, the startup event run", status, body)
	}
	if status, _ := get(t, c, s.http+"/items/notanumber"); status != 422 {
		t.Errorf("GET /items/notanumber = %d, want FastAPI's 422", status)
	}
	resp, err := c.Post(s.http+"/echo", "application/octet-stream", bytes.NewReader(make([]byte, 3<<20)))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var echo map[string]any
	json.Unmarshal(b, &echo)
	if resp.StatusCode != 200 || echo["len"] != float64(3<<20) || echo["client"] != "127.0.0.1" || echo["scheme"] != "http" || echo["forwarded_for"] != "127.0.0.1" {
		t.Errorf("POST /echo (3 MiB) = %d %s", resp.StatusCode, b)
	}

	// Server-sent events: each event reaches the client before the next
	// is made.
	resp, err = c.Get(s.http + "/events")
	if err != nil {
		t.Fatal(err)
	}
	first := make([]byte, 64)
	start := time.Now()
	n, _ := resp.Body.Read(first)
	rest, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if got := string(first[:n]); got != "data: 0\n\n" || time.Since(start) > 5*time.Second {
		t.Errorf("the first event read was %q", got)
	}
	if string(rest) != "data: 1\n\ndata: 2\n\n" {
		t.Errorf("the rest of the events: %q", rest)
	}

	if status, _ := get(t, c, s.http+"/boom"); status != 500 {
		t.Errorf("GET /boom = %d, want 500", status)
	}
	if status, _ := get(t, c, s.http+"/hello"); status != 200 {
		t.Errorf("GET /hello after the crash = %d", status)
	}
	if out := s.out.String(); !strings.Contains(out, `RuntimeError: boom`) {
		t.Errorf("the crash's traceback is not in the log:\n%s", tail(out, 20))
	}
}

// TestStarlette: the lifespan's state reaches every request.
func TestStarlette(t *testing.T) {
	needPython(t, "starlette")
	s := startSuite(t, suiteOpts{module: "starletteapp:app", class: "asgi", workers: 1})
	c := s.client()
	if status, body := get(t, c, s.http+"/"); status != 200 || body != "hello from the lifespan" {
		t.Errorf("GET / = %d %q", status, body)
	}
	if status, body := get(t, c, s.http+"/users/ann?x=1"); status != 200 || body != `{"user":"ann","query":{"x":"1"}}` {
		t.Errorf("GET /users/ann = %d %q", status, body)
	}
}

// TestDjangoASGI: a stock Django project's asgi.py under the asgi class:
// the admin's login page with its CSRF token.
func TestDjangoASGI(t *testing.T) {
	needPython(t, "django")
	dir := startProject(t, "\nALLOWED_HOSTS = ['127.0.0.1', 'localhost']\n")
	s := startSuite(t, suiteOpts{module: "shop.asgi", class: "asgi", appDir: filepath.Join(dir, "shop"), workers: 1,
		app: `env = { DJANGO_SETTINGS_MODULE = "shop.settings" }`})
	status, body := get(t, s.client(), s.http+"/admin/login/")
	if status != 200 || !regexp.MustCompile(`name="csrfmiddlewaretoken" value="[^"]+"`).MatchString(body) {
		t.Errorf("GET /admin/login/ = %d, want the login form:\n%.400s", status, body)
	}
}

// An ASGI app under a WSGI class, and the reverse, are refused by edged
// --check, saying what to set.
func TestASGICheck(t *testing.T) {
	needPython(t, "fastapi", "flask")
	dir := t.TempDir()
	for _, c := range []struct{ module, class, want string }{
		{"fastapiapp:app", "sync", `fastapiapp:app is an ASGI app: set pool.class = "asgi"`},
		{"flaskapp:app", "asgi", `flaskapp:app is a WSGI app (or not an async callable): set pool.class = "sync", "threads" or "gevent"`},
		{"fastapiapp:app", "asgi", "imports, ok"},
	} {
		f := filepath.Join(dir, c.class+".toml")
		os.WriteFile(f, []byte("[app]\nmodule = \""+c.module+"\"\ndirectory = \""+filepath.Join(repoRoot, "testdata", "apps")+
			"\"\npython = \""+python+"\"\n[pool]\nclass = \""+c.class+"\"\n"), 0o644)
		out, err := exec.Command(filepath.Join(binDir, "edged"), "--check", "-c", f).CombinedOutput()
		if ok := c.want == "imports, ok"; (err == nil) != ok || !strings.Contains(string(out), c.want) {
			t.Errorf("edged --check (%s under %s): %v\n%s\nwant %q", c.module, c.class, err, out, c.want)
		}
	}
}
