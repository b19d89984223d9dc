package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// TestBrowserChat: headless Chromium (Debian's chromium) loads the chat
// page from edged; the page opens a WebSocket to the ASGI app through
// edged, says hello, and shows what the room says, including a message
// a Go client sends. The test reads the page's DOM over the DevTools
// protocol.
func TestBrowserChat(t *testing.T) {
	browser, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("SKIPPED: no chromium (install Debian's chromium: `make deps`)")
	}
	s := startSuite(t, suiteOpts{module: "asgichat:app", class: "asgi", workers: 1})
	debug := freePort(t)
	port := debug[strings.LastIndex(debug, ":")+1:]
	cmd := exec.Command(browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
		"--user-data-dir="+t.TempDir(), "--remote-debugging-address=127.0.0.1", "--remote-debugging-port="+port, s.http+"/")
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); cmd.Wait() })

	// The page's target, once the browser lists it.
	var target string
	deadline := time.Now().Add(30 * time.Second)
	for target == "" && time.Now().Before(deadline) {
		resp, err := http.Get("http://" + debug + "/json/list")
		if err == nil {
			var list []struct{ Type, URL, WebSocketDebuggerURL string }
			json.NewDecoder(resp.Body).Decode(&list)
			resp.Body.Close()
			for _, p := range list {
				if p.Type == "page" && strings.HasPrefix(p.URL, s.http) {
					target = p.WebSocketDebuggerURL
				}
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	if target == "" {
		t.Fatalf("chromium listed no page for %s in 30s:\n%s", s.http, tail(out.String(), 20))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	devtools, _, err := websocket.Dial(ctx, target, nil)
	if err != nil {
		t.Fatalf("DevTools: %v", err)
	}
	defer devtools.CloseNow()
	devtools.SetReadLimit(-1)
	id := 0
	// page is what the page shows: its WebSocket's state, then the room.
	page := func() string {
		id++
		req := fmt.Sprintf(`{"id":%d,"method":"Runtime.evaluate","params":{"expression":%q,"returnByValue":true}}`, id,
			`(document.body.dataset.state || "") + "|" + Array.from(document.querySelectorAll("li")).map(l => l.textContent).join(",")`)
		if err := devtools.Write(ctx, websocket.MessageText, []byte(req)); err != nil {
			t.Fatalf("DevTools: %v", err)
		}
		for {
			_, b, err := devtools.Read(ctx)
			if err != nil {
				t.Fatalf("DevTools: %v", err)
			}
			var r struct {
				ID     int
				Result struct{ Result struct{ Value string } }
			}
			if json.Unmarshal(b, &r) == nil && r.ID == id {
				return r.Result.Result.Value
			}
		}
	}
	wait := func(want string) string {
		t.Helper()
		var got string
		for end := time.Now().Add(20 * time.Second); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
			if got = page(); strings.Contains(got, want) {
				return got
			}
		}
		t.Fatalf("the page shows %q, want it to show %q", got, want)
		return ""
	}
	if got := wait("said: hello from the browser"); !strings.HasPrefix(got, "open:chat|") {
		t.Errorf("the page's WebSocket: %q, want open with the chat subprotocol", got)
	}
	// A message from elsewhere reaches the browser's page.
	c, _, err := websocket.Dial(ctx, s.wsURL("/ws"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	c.Write(ctx, websocket.MessageText, []byte("hello from Go"))
	wait("said: hello from Go")
}
