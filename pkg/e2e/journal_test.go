package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"
)

const journalApp = `import os


def app(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    if path == "/boom":
        return [str(1 // 0).encode()]
    if path == "/die":
        os._exit(3)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok\n"]
`

const journalConfig = `[listen]
http = ["0.0.0.0:80"]

[app]
module = "journalapp:app"
directory = "/run/edged-test/app"
python = "/usr/bin/python3"

[log]
access = true
`

// journalEntries runs journalctl -o json with args and returns the
// entries.
func journalEntries(t *testing.T, m *machine, args ...string) []map[string]any {
	t.Helper()
	out, _ := m.exec(append([]string{"journalctl", "--no-pager", "-o", "json"}, args...)...)
	var es []map[string]any
	for _, line := range strings.Split(out, "\n") {
		var e map[string]any
		if json.Unmarshal([]byte(line), &e) == nil {
			es = append(es, e)
		}
	}
	return es
}

// str is an entry's field as text (journalctl gives a field holding a
// control character as an array of its bytes).
func str(e map[string]any, k string) string {
	switch v := e[k].(type) {
	case string:
		return v
	case []any:
		b := make([]byte, len(v))
		for i, x := range v {
			f, _ := x.(float64)
			b[i] = byte(f)
		}
		return string(b)
	}
	return ""
}

// TestJournal: under systemd, edged and workerd write native journal
// entries, so that `journalctl -p err` and a match on any field find
// what happened, and nothing a client sends forges a field or an entry.
func TestJournal(t *testing.T) {
	if testing.Short() {
		t.Skip("boots systemd")
	}
	m := bootMachine(t)
	m.install(journalConfig)
	m.write(testRoot+"/app/journalapp.py", []byte(journalApp), 0o644)
	m.mustExec("systemctl", "enable", "--now", "edged.socket")
	m.mustExec(testRoot+"/bin/edgectl", "scale", "2")
	c := m.client()

	if status, _ := get(t, c, "http://127.0.0.1/"); status != 200 {
		t.Fatalf("GET / = %d\n%s", status, m.journal())
	}
	if status, _ := get(t, c, "http://127.0.0.1/boom"); status != 500 {
		t.Errorf("GET /boom = %d, want 500", status)
	}
	if resp, err := c.Post("http://127.0.0.1/die", "text/plain", strings.NewReader("x")); err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 502 {
			t.Errorf("POST /die = %d, want 502", resp.StatusCode)
		}
	}
	raw := func(req string) string {
		conn, err := m.dialer()(t.Context(), "tcp", "127.0.0.1:80")
		if err != nil {
			t.Fatal(err)
		}
		return rawExchange(conn, req)
	}
	raw("GET /f%0APRIORITY=0%0AMESSAGE=forged%0ASTATUS=200 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	raw("GET /g%0D%0APRIORITY=0 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	m.write("/etc/edged/edged.toml", []byte(journalConfig+"\nbogus = 1\n"), 0o644)
	if out, err := m.exec("systemctl", "reload", "edged.service"); err == nil {
		t.Errorf("a reload with a broken config succeeded:\n%s", out)
	}
	units := []string{"-u", "edged.service", "-u", "workerd@*"}

	// -p err: the 502, the traceback, the refused reload.
	var errs []map[string]any
	want := map[string]func(e map[string]any) bool{
		"the 502":           func(e map[string]any) bool { return str(e, "STATUS") == "502" && str(e, "LOG") == "access" },
		"the app traceback": func(e map[string]any) bool { return strings.Contains(str(e, "TRACEBACK"), "ZeroDivisionError") },
		// with the place in edged's code that refused it
		"the refused reload": func(e map[string]any) bool {
			return strings.Contains(str(e, "MESSAGE"), "bogus") && strings.HasSuffix(str(e, "CODE_FILE"), "pkg/edge/main.go") && str(e, "CODE_LINE") != ""
		},
	}
	var missing []string
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		errs = journalEntries(t, m, append(units, "-p", "err")...)
		missing = missing[:0]
		for name, match := range want {
			found := false
			for _, e := range errs {
				found = found || match(e)
			}
			if !found {
				missing = append(missing, name)
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
	}
	if len(missing) > 0 {
		out, _ := m.exec("journalctl", "--no-pager", "-o", "verbose", "-u", "edged.service", "-u", "workerd@*", "-n", "40")
		t.Errorf("journalctl -p err lacks %v:\n%s", missing, tail(out, 120))
	}
	for _, e := range errs {
		if p := str(e, "PRIORITY"); p > "3" {
			t.Errorf("-p err gave an entry at priority %s: %v", p, e)
		}
	}

	// A field match: STATUS=502 finds the 502 and nothing else.
	for _, e := range journalEntries(t, m, "STATUS=502") {
		if str(e, "STATUS") != "502" || str(e, "PRIORITY") != "3" || str(e, "SYSLOG_IDENTIFIER") != "edged" || !strings.HasPrefix(str(e, "MESSAGE"), "POST /die 502 ") {
			t.Errorf("journalctl STATUS=502 gave %v", e)
		}
	}

	// One request across edged and the worker: its id.
	var id string
	for _, e := range journalEntries(t, m, "-u", "edged.service", "PATH=/boom") {
		id = str(e, "REQUEST_ID")
	}
	if id == "" {
		t.Fatalf("the access entry of /boom has no REQUEST_ID")
	}
	from := map[string]bool{}
	for _, e := range journalEntries(t, m, "REQUEST_ID="+id) {
		from[str(e, "SYSLOG_IDENTIFIER")] = true
		if str(e, "REQUEST_ID") != id {
			t.Errorf("REQUEST_ID=%s gave %v", id, e)
		}
	}
	if !from["edged"] || !from["workerd"] {
		t.Errorf("REQUEST_ID=%s found entries of %v, want edged's and workerd's", id, from)
	}
	// The same through edgectl logs, as an operator asks.
	out, err := m.exec(testRoot+"/bin/edgectl", "logs", "--request", id, "-o", "cat")
	if err != nil || !strings.Contains(out, "GET /boom 500 ") || !strings.Contains(out, "ZeroDivisionError") {
		t.Errorf("edgectl logs --request %s: %v\n%s", id, err, out)
	}
	out, _ = m.exec(testRoot+"/bin/edgectl", "logs", "--errors", "-o", "cat")
	if !strings.Contains(out, "POST /die 502 ") {
		t.Errorf("edgectl logs --errors lacks the 502:\n%s", out)
	}

	// Nothing forged: the path's lines stay in PATH.
	if es := journalEntries(t, m, "MESSAGE=forged"); len(es) > 0 {
		t.Errorf("a client's path forged an entry: %v", es)
	}
	if es := journalEntries(t, m, append(units, "-p", "crit")...); len(es) > 0 {
		t.Errorf("a client's path forged a priority: %v", es)
	}
	forged := false
	for _, e := range journalEntries(t, m, "-u", "edged.service", "LOG=access") {
		if p := str(e, "PATH"); strings.HasPrefix(p, "/f\n") {
			forged = p == "/f\nPRIORITY=0\nMESSAGE=forged\nSTATUS=200" && str(e, "PRIORITY") != "0" && !strings.Contains(str(e, "MESSAGE"), "\n")
			if !forged {
				t.Errorf("the access entry of the forging path: %v", e)
			}
		}
	}
	if !forged {
		var paths []string
		for _, e := range journalEntries(t, m, "-u", "edged.service", "LOG=access") {
			paths = append(paths, fmt.Sprintf("%q %s %s", str(e, "PATH"), str(e, "STATUS"), str(e, "MESSAGE")))
		}
		t.Errorf("no access entry kept the forging path whole in PATH: %s", strings.Join(paths, "; "))
	}
}
