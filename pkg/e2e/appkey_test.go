package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// keySuite runs keyapp's create_app(how) on workers workers, with
// metrics, and the credentials in creds (CREDENTIALS_DIRECTORY).
func keySuite(t *testing.T, how string, workers int, app string) (*suite, string) {
	t.Helper()
	metricsAddr := freePort(t)
	creds := t.TempDir()
	os.WriteFile(filepath.Join(creds, "app-secret"), []byte(testKey+"\n"), 0o600)
	t.Setenv("CREDENTIALS_DIRECTORY", creds)
	s := startSuite(t, suiteOpts{module: fmt.Sprintf("keyapp:create_app(%q)", how), workers: workers, app: app,
		extra: fmt.Sprintf("[metrics]\nlisten = %q\n", metricsAddr)})
	return s, metricsAddr
}

// testKey is the credential's key: it must appear in no output.
const testKey = "Zq3v7Yh0LkX2pW9sR4tU6bN8mC1eF5gJ0aD3oI7uQ2yT9wE4rS6"

// doctorOf runs edgectl doctor --json on the suite.
func doctorOf(t *testing.T, s *suite) (map[string]doctorFinding, string) {
	t.Helper()
	return doctorOf2(t, s, "500ms")
}

// doctorOf2 is doctorOf watching the load for interval.
func doctorOf2(t *testing.T, s *suite, interval string) (map[string]doctorFinding, string) {
	t.Helper()
	out, _ := exec.Command(filepath.Join(binDir, "edgectl"), "doctor", "--json", "--interval", interval, "-c", s.cfg).Output()
	var fs []doctorFinding
	if err := json.Unmarshal(out, &fs); err != nil {
		t.Fatalf("doctor --json: %v\n%s", err, out)
	}
	m := map[string]doctorFinding{}
	for _, f := range fs {
		m[f.Check] = f
	}
	return m, string(out)
}

// edgedCheck runs edged --check on the suite's config.
func edgedCheck(t *testing.T, s *suite) (string, error) {
	// As root, --check also judges the files for the service's user: the
	// test's directories must be theirs to enter.
	for d := s.dir; d != "/" && d != os.TempDir(); d = filepath.Dir(d) {
		os.Chmod(d, 0o755)
	}
	out, err := exec.Command(filepath.Join(binDir, "edged"), "--check", "-c", s.cfg).CombinedOutput()
	return string(out), err
}

// TestAppKeyDefault: a tutorial's key in the code ("dev-key") lets anyone
// forge a session as admin; edged --check stops a deploy on it, naming
// the file and line, and doctor fails.
func TestAppKeyDefault(t *testing.T) {
	s, _ := keySuite(t, "dev", 2, "")
	// The forgery, with Flask's own signer and the known key.
	forged, err := exec.Command(python, "-c", `
import sys; sys.path.insert(0, "`+filepath.Join(repoRoot, "testdata", "apps")+`")
from flask import Flask
app = Flask("forger"); app.secret_key = "dev-key"
print(app.session_interface.get_signing_serializer(app).dumps({"user": "admin"}))`).Output()
	if err != nil {
		t.Fatalf("forging: %v", err)
	}
	req, _ := http.NewRequest("GET", s.http+"/whoami", nil)
	req.AddCookie(&http.Cookie{Name: "session", Value: strings.TrimSpace(string(forged))})
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "admin\n" {
		t.Fatalf("a cookie forged with dev-key: %q, want admin (the danger this check is for)", b)
	}

	fs, out := doctorOf(t, s)
	if f := fs["app-key"]; f.Verdict != "fail" || !strings.Contains(f.Evidence, "known default") || !strings.Contains(f.Fix, "[app.credentials]") {
		t.Errorf("app-key: %+v, want a fail for the known default with the credential fix", f)
	}
	chk, err := edgedCheck(t, s)
	if err == nil || !strings.Contains(chk, "known default (keyapp.py:15)") {
		t.Errorf("edged --check: %v\n%s\nwant a refusal naming keyapp.py:15", err, chk)
	}
	for what, text := range map[string]string{"doctor": out, "edged --check": chk, "the log": s.out.String()} {
		if strings.Contains(text, "dev-key") {
			t.Errorf("the key's value is in %s", what)
		}
	}
}

// TestAppKeyPerProcess: os.urandom(24) in the app gives each of 5 workers
// its own key: after logging in, requests that reach another worker are
// anonymous. Doctor fails with the count of keys; edged --check catches
// it at import by importing twice.
func TestAppKeyPerProcess(t *testing.T) {
	s, _ := keySuite(t, "random", 5, "")
	jar, _ := cookiejar.New(nil)
	// No keep-alive: each request may go to any worker.
	c := &http.Client{Jar: jar, Transport: &http.Transport{DisableKeepAlives: true}}
	get(t, c, s.http+"/login")
	anonymous := 0
	for range 20 {
		if _, body := get(t, c, s.http+"/whoami"); body == "anonymous\n" {
			anonymous++
		}
	}
	t.Logf("after logging in, %d of 20 requests were anonymous", anonymous)
	if anonymous == 0 {
		t.Errorf("every request kept the session: the workers share a key after all?")
	}
	fs, _ := doctorOf(t, s)
	if f := fs["app-key"]; f.Verdict != "fail" || !strings.Contains(f.Evidence, "different keys among 5 workers") {
		t.Errorf("app-key: %+v, want a fail counting the keys", f)
	}
	if chk, err := edgedCheck(t, s); err == nil || !strings.Contains(chk, "made anew by each process") {
		t.Errorf("edged --check: %v\n%s", err, chk)
	}
}

// TestAppKeyCredential: the key from a credential, the same in every
// worker: sessions hold, doctor says ok, and the key's value appears in
// no output, log or metric.
func TestAppKeyCredential(t *testing.T) {
	s, metricsAddr := keySuite(t, "env", 3, "[app.credentials]\nSECRET_KEY = \"app-secret\"\n")
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Transport: &http.Transport{DisableKeepAlives: true}}
	get(t, c, s.http+"/login")
	for range 10 {
		if _, body := get(t, c, s.http+"/whoami"); body != "admin\n" {
			t.Fatalf("a request lost the session: %q", body)
		}
	}
	fs, out := doctorOf(t, s)
	if f := fs["app-key"]; f.Verdict != "ok" || !strings.Contains(f.Evidence, "credential, the same in all 3 workers") {
		t.Errorf("app-key: %+v, want ok", f)
	}
	chk, err := edgedCheck(t, s)
	if err != nil || !strings.Contains(chk, "SECRET_KEY from the credential (SECRET_KEY)") {
		t.Errorf("edged --check: %v\n%s", err, chk)
	}
	metrics := metricsText(t, metricsAddr)
	if !strings.Contains(metrics, `edged_worker_app_key_info{`) {
		t.Errorf("no edged_worker_app_key_info in the metrics")
	}
	for what, text := range map[string]string{"doctor": out, "edged --check": chk, "the log": s.out.String(), "the metrics": metrics} {
		if strings.Contains(text, testKey) {
			t.Errorf("the key's value is in %s", what)
		}
	}
}

// TestAppKeyDjangoDefaults: a project as startproject leaves it (the
// django-insecure- key, DEBUG on): doctor fails, edged --check refuses it
// naming settings.py, and the metrics carry DEBUG for doctor's listener
// judgement.
func TestAppKeyDjangoDefaults(t *testing.T) {
	needPython(t, "django")
	metricsAddr := freePort(t)
	s := startSuite(t, suiteOpts{module: "starter.wsgi:application", workers: 2,
		extra: fmt.Sprintf("[metrics]\nlisten = %q\n", metricsAddr)})
	// DEBUG's page for an unknown path, with the settings in it.
	if status, body := get(t, http.DefaultClient, s.http+"/nowhere"); status != 404 || !strings.Contains(body, "DEBUG = True") {
		t.Errorf("/nowhere: %d, want Django's debug 404 page", status)
	}
	fs, out := doctorOf(t, s)
	if f := fs["app-key"]; f.Verdict != "fail" || !strings.Contains(f.Evidence, "known default") {
		t.Errorf("app-key: %+v, want a fail for django-insecure-", f)
	}
	chk, err := edgedCheck(t, s)
	if err == nil || !strings.Contains(chk, "known default (starter/settings.py:5)") || !strings.Contains(chk, "DEBUG = True") {
		t.Errorf("edged --check: %v\n%s", err, chk)
	}
	metrics := metricsText(t, metricsAddr)
	if !strings.Contains(metrics, `django_unsafe="true"`) {
		t.Errorf("the metrics do not say DEBUG is on:\n%s", grepLines(metrics, "app_key"))
	}
	for what, text := range map[string]string{"doctor": out, "edged --check": chk, "the log": s.out.String(), "the metrics": metrics} {
		if strings.Contains(text, "3u@k!h0c9") {
			t.Errorf("the key's value is in %s", what)
		}
	}
}

// TestDoctorOneSuite: two suites on one host, each with its own config:
// each doctor counts its own suite's processes and workers, never the
// other's.
func TestDoctorOneSuite(t *testing.T) {
	a := startSuite(t, suiteOpts{module: "sample:app", workers: 1})
	b := startSuite(t, suiteOpts{module: "sample:app", workers: 3})
	for _, tt := range []struct {
		s       *suite
		procs   int // edged, workerd per worker, a Python process per worker
		workers int
	}{{a, 3, 1}, {b, 7, 3}} {
		fs, out := doctorOf(t, tt.s)
		root := fs["root"].Evidence
		if !strings.Contains(root, fmt.Sprintf(" %d processes", tt.procs)) && !strings.Contains(root, fmt.Sprintf("of %d processes", tt.procs)) {
			t.Errorf("root: %q, want this suite's %d processes\n%s", root, tt.procs, out)
		}
		if sec := fs["secrets"].Evidence; !strings.Contains(sec, fmt.Sprintf("%d worker processes", tt.workers)) {
			t.Errorf("secrets: %q, want this suite's %d workers", sec, tt.workers)
		}
	}
}

// TestDoctorCPUWaitIsNotIO: a route that serialises 5 MB of JSON and one
// that computes as long, four clients at once on this machine's cores:
// most of their time waits, but for a CPU. Doctor once called them
// I/O-bound and advised gevent; the run-queue delay now tells the two
// apart, and cpu-routes names them, with the share of each one's CPU
// spent encoding JSON (measured in the worker), and orjson for the one
// where it is large.
func TestDoctorCPUWaitIsNotIO(t *testing.T) {
	metricsAddr := freePort(t)
	s := startSuite(t, suiteOpts{module: "export:app", workers: 5, extra: fmt.Sprintf("[metrics]\nlisten = %q\n", metricsAddr)})
	stop := make(chan struct{})
	done := make(chan struct{})
	for i := range 4 {
		go func() {
			defer func() { done <- struct{}{} }()
			c := &http.Client{}
			for n := i; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				path := "/export.json"
				if n%2 == 1 {
					path = "/compute" // as much CPU, no JSON
				}
				if resp, err := c.Get(s.http + path); err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
		}()
	}
	time.Sleep(4 * time.Second) // past the first requests: each route seen 20 times
	fs, out := doctorOf2(t, s, "3s")
	close(stop)
	for range 4 {
		<-done
	}
	t.Logf("io-bound: %s\ncpu-routes: %s", fs["io-bound"].Evidence, fs["cpu-routes"].Evidence)
	if f := fs["io-bound"]; f.Verdict != "ok" || !strings.Contains(f.Evidence, "for a CPU") {
		t.Errorf("io-bound: %+v, want ok, the waiting told as waiting for a CPU\n%s", f, out)
	}
	f := fs["cpu-routes"]
	if f.Verdict != "warn" || !strings.Contains(f.Evidence, "/export.json") || !strings.Contains(f.Fix, "orjson") {
		t.Errorf("cpu-routes: %+v, want a warn naming /export.json and orjson", f)
	}
	// The JSON share, measured: most of the export's CPU, none of the
	// computation's.
	shares := regexp.MustCompile(`(/export\.json|/compute) takes [^;]*?, (\d+)% of it encoding JSON`).FindAllStringSubmatch(f.Evidence, -1)
	got := map[string]int{}
	for _, m := range shares {
		var n int
		fmt.Sscan(m[2], &n)
		got[m[1]] = n
	}
	if c, listed := got["/compute"]; got["/export.json"] < 50 || !listed || c > 5 {
		t.Errorf("JSON shares %v, want most of /export.json's CPU and none of /compute's: %s", got, f.Evidence)
	}
}

// metricsText is edged's /metrics at addr.
func metricsText(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
