package e2e

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestCheck runs `edged --check` on good and bad configs: a bad one is
// refused with file:line and advice before anything starts.
func TestCheck(t *testing.T) {
	dir := t.TempDir()
	apps := filepath.Join(repoRoot, "testdata", "apps")
	cases := []struct {
		name, toml string
		ok         bool
		want       []string
	}{
		{"good", "[listen]\nhttp = [\"127.0.0.1:0\"]\n[app]\nmodule = \"sample:app\"\ndirectory = \"" + apps + "\"\n", true, []string{"ok"}},
		{"unknown key", "[listen]\nhttp = [\"127.0.0.1:0\"]\n[app]\nmodule = \"sample:app\"\ndirectory = \"" + apps + "\"\nworker = 3\n", false,
			[]string{"unknown key.toml:6", "app.worker", "unknown key"}},
		{"bad duration", "[listen]\nhttp = [\"127.0.0.1:0\"]\n[app]\nmodule = \"sample:app\"\ndirectory = \"" + apps + "\"\n[limits]\nheader_timeout = \"ten\"\n", false,
			[]string{"bad duration.toml:7", "limits.header_timeout", `"ten"`, "30s"}},
		{"secret", "[listen]\nhttp = [\"127.0.0.1:0\"]\n[app]\nmodule = \"sample:app\"\ndirectory = \"" + apps + "\"\n[app.env]\nSECRET_KEY = \"hunter2\"\n", false,
			[]string{"secret.toml:7", "app.env.SECRET_KEY", "LoadCredential=", "[app.credentials]"}},
	}
	closed := filepath.Join(dir, "closed")
	os.Mkdir(closed, 0o755)
	os.Chmod(closed, 0)
	app := func(module string) string {
		return "[listen]\nhttp = [\"127.0.0.1:0\"]\n[app]\nmodule = \"" + module + "\"\ndirectory = \"" + apps + "\"\n"
	}
	cases = append(cases, []struct {
		name, toml string
		ok         bool
		want       []string
	}{
		{"factory", app("factory:create_app('hi', )"), true, []string{"imports, ok"}},
		{"module alone", app("factory"), true, []string{"imports, ok"}},
		{"missing module", app("nosuchmodule:app"), false, []string{"ModuleNotFoundError", "nosuchmodule"}},
		{"missing callable", app("factory:make_app()"), false, []string{"module factory has no make_app"}},
		{"factory raises", app("factory:broken()"), false, []string{"RuntimeError: DATABASE_URL is not set", "Traceback"}},
		{"factory with a name", app("factory:create_app(os.environ)"), false, []string{"Python literals"}},
		{"unreadable static root", app("factory") + "[[static]]\nprefix = \"/s/\"\nroot = \"" + closed + "\"\n", false,
			[]string{"static[0].root", "cannot"}},
	}...)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := filepath.Join(dir, c.name+".toml")
			os.WriteFile(f, []byte(c.toml), 0o644)
			cmd := exec.Command(filepath.Join(binDir, "edged"), "--check", "-c", f)
			cmd.Dir = dir
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			err := cmd.Run()
			if (err == nil) != c.ok {
				t.Errorf("edged --check: err = %v, want ok = %v\n%s", err, c.ok, out.String())
			}
			for _, w := range c.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("edged --check output lacks %q:\n%s", w, out.String())
				}
			}
			if strings.Contains(out.String(), "hunter2") {
				t.Errorf("the secret value is echoed back: %s", out.String())
			}
		})
	}
}

// TestImportFailure: an app that cannot be imported makes workerd exit
// non-zero, reporting it once, with the traceback and a one-line summary.
func TestImportFailure(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "broken.py"), []byte("import no_such_module_here\n"), 0o644)
	cfg := filepath.Join(dir, "edged.toml")
	os.WriteFile(cfg, []byte("[app]\nmodule = \"broken:app\"\npython = \""+python+"\"\n[log]\nformat = \"json\"\n"), 0o644)
	cmd := exec.Command(filepath.Join(binDir, "workerd"), "-c", cfg, "-i", "1", "--socket-dir", filepath.Join(dir, "s"))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err == nil {
		t.Fatalf("workerd exited 0 for an app that cannot import:\n%s", out.String())
	}
	// One JSON event, not a traceback on stderr, an event and a line of
	// text: the output stays one stream a log shipper can read.
	const summary = "ModuleNotFoundError: No module named 'no_such_module_here'"
	var reports int
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var ev map[string]any
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Errorf("a line of workerd's output is not JSON: %q", line)
			continue
		}
		if !strings.Contains(line, "no_such_module_here") {
			continue
		}
		reports++
		tb, _ := ev["traceback"].(string)
		if ev["level"] != "error" || ev["summary"] != summary || !strings.Contains(tb, `broken.py", line 1`) {
			t.Errorf("the report: %s; want an error with the summary %q and the traceback", line, summary)
		}
	}
	if reports != 1 {
		t.Errorf("the failed import is reported %d times, want once:\n%s", reports, out.String())
	}
}

// TestPythonCrash: when a worker's Python process dies, workerd starts a
// new one, and requests keep being answered.
func TestPythonCrash(t *testing.T) {
	s := startSuite(t, suiteOpts{module: "sample:app", workers: 1})
	c := s.client()
	_, body := get(t, c, s.http+"/whoami")
	pid := jsonInt(body, "pid")
	if pid == 0 {
		t.Fatalf("no pid in %q", body)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// The worker was idle: the very next request must be answered by the
	// new process, never refused, although edged's kept-alive connection
	// to the old one is dead.
	for i := 0; i < 3; i++ {
		status, body := get(t, c, s.http+"/whoami")
		if p := jsonInt(body, "pid"); status != 200 || p == pid || p == 0 {
			t.Fatalf("request %d after the kill = %d %q, want 200 from a new process", i, status, body)
		}
	}
}

func jsonInt(s, key string) int {
	i := strings.Index(s, `"`+key+`": `)
	if i < 0 {
		return 0
	}
	n := 0
	for _, c := range s[i+len(key)+4:] {
		if c < '0' || c > '9' {
			break
		}
		n = n*10 + int(c-'0')
	}
	return n
}

// TestReload: SIGHUP re-reads the config while serving; a broken config
// is refused and the old one keeps serving.
func TestReload(t *testing.T) {
	s := startSuite(t, suiteOpts{module: "sample:app", workers: 1})
	c := s.client()
	extra := filepath.Join(s.dir, "extra")
	os.MkdirAll(extra, 0o755)
	os.WriteFile(filepath.Join(extra, "new.txt"), []byte("new root\n"), 0o644)
	orig, err := os.ReadFile(s.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if status, _ := get(t, c, s.http+"/extra/new.txt"); status == 200 {
		t.Fatalf("/extra/ is served before the reload")
	}

	good := strings.Replace(string(orig), "[app]", "[[static]]\nprefix = \"/extra/\"\nroot = \""+extra+"\"\n[app]", 1)
	os.WriteFile(s.cfg, []byte(good), 0o644)
	s.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "the new static root after SIGHUP", func() bool {
		status, body := get(t, c, s.http+"/extra/new.txt")
		return status == 200 && body == "new root\n"
	})

	os.WriteFile(s.cfg, []byte(good+"\nbogus_key = 1\n"), 0o644)
	s.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "the refusal in the log", func() bool {
		return strings.Contains(s.out.String(), "reload refused")
	})
	if !strings.Contains(s.out.String(), "bogus_key") {
		t.Errorf("the log does not name the bad key")
	}
	if status, _ := get(t, c, s.http+"/extra/new.txt"); status != 200 {
		t.Errorf("after a refused reload /extra/new.txt = %d, want 200 from the old config", status)
	}
	if status, _ := get(t, c, s.http+"/whoami"); status != 200 {
		t.Errorf("after a refused reload the app = %d, want 200", status)
	}
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if ok() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

// TestHungRequest: a request that outlives app.timeout gets a 504 from
// edged; the worker then logs where the app is stuck, with the Python
// stack, and a new process takes over.
func TestHungRequest(t *testing.T) {
	s := startSuite(t, suiteOpts{module: "sample:app", workers: 1, app: `timeout = "1s"`})
	c := s.client()
	pid := s.hang(t, "/sleep?60", "sample.py", "time.sleep", `"path":"/sleep"`)
	waitFor(t, "a new Python process", func() bool {
		status, body := get(t, c, s.http+"/whoami")
		return status == 200 && jsonInt(body, "pid") != pid
	})
}

// hang sends a request to path that runs past app.timeout (a suite of
// one worker, its app.timeout short), checks its 504, and waits for the
// log to report it hung, naming each of wants (its stack, its path). It
// returns the pid of the Python process that served the suite before.
func (s *suite) hang(t *testing.T, path string, wants ...string) (pid int) {
	t.Helper()
	c := s.client()
	_, body := get(t, c, s.http+"/whoami")
	pid = jsonInt(body, "pid")
	if status, _ := get(t, c, s.http+path); status != 504 {
		t.Errorf("GET %s, past app.timeout: %d, want 504", path, status)
	}
	waitFor(t, "the hung-request report", func() bool {
		return strings.Contains(s.out.String(), "request hung past app.timeout")
	})
	out := s.out.String()
	for _, want := range wants {
		if !strings.Contains(out, want) {
			t.Errorf("the report lacks %q", want)
		}
	}
	return pid
}

// TestMaxRequests: a worker's Python process is replaced after
// pool.max_requests, once, and no request fails across the change.
func TestMaxRequests(t *testing.T) {
	const recycled = "max_requests reached"
	t.Run("sync", func(t *testing.T) {
		s := startSuite(t, suiteOpts{module: "sample:app", workers: 1, pool: "max_requests = 3"})
		c := s.client()
		var pids []int
		for i := 0; i < 7; i++ {
			status, body := get(t, c, s.http+"/whoami")
			if status != 200 {
				t.Fatalf("request %d = %d, want 200", i+1, status)
			}
			pids = append(pids, jsonInt(body, "pid"))
		}
		for i, pid := range pids {
			if same := pid == pids[i/3*3]; !same {
				t.Errorf("pids %v: want a new process after every 3 requests", pids)
				break
			}
			if i%3 == 0 && i > 0 && pid == pids[i-1] {
				t.Errorf("pids %v: want a new process after every 3 requests", pids)
				break
			}
		}
		if n := strings.Count(s.out.String(), recycled); n != 2 {
			t.Errorf("%q logged %d times, want 2 (once per process that reached it)", recycled, n)
		}
		if strings.Contains(s.out.String(), "python process ended") {
			t.Errorf("a planned recycle was logged as a process that ended:\n%s", s.out.String())
		}
	})
	t.Run("threads, reached with requests in flight", func(t *testing.T) {
		s := startSuite(t, suiteOpts{module: "sample:app", workers: 1, class: "threads", pool: "max_requests = 2"})
		c := s.client()
		_, body := get(t, c, s.http+"/whoami")
		first := jsonInt(body, "pid")
		// Three requests in the process at once: the first to end reaches
		// the limit, the last to end lets the process go.
		var wg sync.WaitGroup
		for i := 0; i < 3; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp, err := c.Get(s.http + "/sleep?0.5")
				if err != nil {
					t.Errorf("sleep %d: %v", i, err)
					return
				}
				resp.Body.Close()
				if resp.StatusCode != 200 {
					t.Errorf("sleep %d = %d, want 200", i, resp.StatusCode)
				}
			}()
		}
		wg.Wait()
		status, body := get(t, c, s.http+"/whoami")
		if status != 200 || jsonInt(body, "pid") == first {
			t.Errorf("after max_requests: %d from pid %d, want 200 from a new process (was %d)", status, jsonInt(body, "pid"), first)
		}
		if n := strings.Count(s.out.String(), recycled); n != 1 {
			t.Errorf("%q logged %d times, want once", recycled, n)
		}
		if strings.Contains(s.out.String(), "python process ended") {
			t.Errorf("a planned recycle was logged as a process that ended:\n%s", s.out.String())
		}
	})
}

// TestStuckInterpreter: an app stuck in C with the GIL held stops the
// worker's heartbeats; workerd has the stack of every thread printed and
// starts a new process.
func TestStuckInterpreter(t *testing.T) {
	s := startSuite(t, suiteOpts{module: "hang:app", workers: 1, app: `timeout = "1s"`})
	c := s.client()
	if status, _ := get(t, c, s.http+"/gil"); status != 504 {
		t.Errorf("GET /gil = %d, want 504", status)
	}
	// The stack comes on stderr after workerd's line that says it
	// follows: wait for all of it, not for the first line alone.
	wants := []string{"python process stopped answering", "Current thread", "hang.py"}
	all := func(out string) bool {
		for _, w := range wants {
			if !strings.Contains(out, w) {
				return false
			}
		}
		return true
	}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) && !all(s.out.String()) {
		time.Sleep(100 * time.Millisecond)
	}
	out := s.out.String()
	for _, want := range wants {
		if !strings.Contains(out, want) {
			t.Errorf("the output lacks %q:\n%s", want, tail(out, 30))
		}
	}
	waitFor(t, "a new Python process to answer", func() bool {
		status, _ := get(t, c, s.http+"/")
		return status == 200
	})
}
