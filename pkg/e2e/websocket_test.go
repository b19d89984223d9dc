package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// wsURL is the suite's WebSocket address for path.
func (s *suite) wsURL(path string) string {
	return "ws" + strings.TrimPrefix(s.http, "http") + path
}

// TestWebSocketASGI: the chat app on the asgi class behind edged, with
// a Go client: the subprotocol the app chose, messages both ways, the
// client edged saw, a close code the app picked, a refusal before
// accept, the limits edged keeps (1009, 1007), and a second client that
// is served throughout; the access event of a WebSocket that closed.
func TestWebSocketASGI(t *testing.T) {
	s := startSuite(t, suiteOpts{module: "asgichat:app", class: "asgi", workers: 1,
		extra: "[websocket]\nmax_message = \"4k\"\nping_interval = \"1s\""})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dial := func() *websocket.Conn {
		t.Helper()
		c, resp, err := websocket.Dial(ctx, s.wsURL("/ws"), &websocket.DialOptions{Subprotocols: []string{"other", "chat"}})
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		if resp.StatusCode != 101 || c.Subprotocol() != "chat" {
			t.Errorf("handshake: %d, subprotocol %q; want 101 and chat", resp.StatusCode, c.Subprotocol())
		}
		return c
	}
	read := func(c *websocket.Conn) string {
		t.Helper()
		_, b, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		return string(b)
	}
	bystander := dial()
	defer bystander.CloseNow()
	// The bystander reads all along (a client answers pings only while
	// it reads).
	heard := make(chan string, 16)
	go func() {
		for {
			_, b, err := bystander.Read(ctx)
			if err != nil {
				close(heard)
				return
			}
			heard <- string(b)
		}
	}()
	a := dial()
	a.Write(ctx, websocket.MessageText, []byte("hi all"))
	if got := read(a); got != "said: hi all" {
		t.Errorf("a got %q", got)
	}
	if got := <-heard; got != "said: hi all" {
		t.Errorf("the bystander got %q", got)
	}
	a.Write(ctx, websocket.MessageText, []byte("who"))
	var who map[string]string
	json.Unmarshal([]byte(read(a)), &who)
	if who["client"] != "127.0.0.1" || who["scheme"] != "ws" {
		t.Errorf("the app saw %v", who)
	}
	a.Write(ctx, websocket.MessageBinary, []byte{0, 1, 2})
	if got := read(a); got != "\x00\x01\x02" {
		t.Errorf("binary echo %q", got)
	}
	a.Write(ctx, websocket.MessageText, []byte("close 4321"))
	if _, _, err := a.Read(ctx); websocket.CloseStatus(err) != 4321 {
		t.Errorf("the app's close: %v, want 4321", err)
	}

	// Past the limits edged keeps: the app never sees the message.
	b := dial()
	b.Write(ctx, websocket.MessageText, []byte(strings.Repeat("x", 5000)))
	if _, _, err := b.Read(ctx); websocket.CloseStatus(err) != websocket.StatusMessageTooBig {
		t.Errorf("a message over websocket.max_message: %v, want 1009", err)
	}
	b = dial()
	b.Write(ctx, websocket.MessageText, []byte("caf\xe9"))
	if _, _, err := b.Read(ctx); websocket.CloseStatus(err) != websocket.StatusInvalidFramePayloadData {
		t.Errorf("invalid UTF-8: %v, want 1007", err)
	}

	// Refused before accepting: the app's close before accept is a 403.
	if _, resp, err := websocket.Dial(ctx, s.wsURL("/nowhere"), nil); err == nil || resp == nil || resp.StatusCode != 403 {
		t.Errorf("a WebSocket the app refuses: %v, %v; want 403", resp, err)
	}

	// The bystander was served all along, and pings (1 s) kept it: it
	// still hears the room after a few.
	time.Sleep(2500 * time.Millisecond)
	c := dial()
	c.Write(ctx, websocket.MessageText, []byte("still there?"))
	if got := <-heard; got != "said: still there?" {
		t.Errorf("the bystander got %q", got)
	}
	c.Close(websocket.StatusNormalClosure, "")
	bystander.Close(websocket.StatusGoingAway, "")

	var closed map[string]any
	deadline := time.Now().Add(10 * time.Second)
	for closed == nil && time.Now().Before(deadline) {
		for _, line := range strings.Split(s.out.String(), "\n") {
			var ev map[string]any
			if json.Unmarshal([]byte(line), &ev) == nil && ev["log"] == "access" && ev["close_code"] == 4321.0 {
				closed = ev
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if closed == nil || closed["status"] != 101.0 || closed["closed_by"] != "app" || closed["messages_in"] != 4.0 || closed["messages_out"] != 3.0 {
		t.Errorf("the access event of the closed WebSocket: %v", closed)
	}
}

// TestWebSocketInterop: Python's websockets client (python3-websockets)
// against edged: handshake, subprotocol, text and binary, the close.
func TestWebSocketInterop(t *testing.T) {
	needPython(t, "websockets")
	s := startSuite(t, suiteOpts{module: "asgichat:app", class: "asgi", workers: 1})
	script := fmt.Sprintf(`
import asyncio, websockets
async def main():
    async with websockets.connect(%q, subprotocols=["chat"]) as ws:
        assert ws.subprotocol == "chat", ws.subprotocol
        await ws.send("interop")
        assert await ws.recv() == "said: interop"
        await ws.send(b"\x00\xff")
        assert await ws.recv() == b"\x00\xff"
        await ws.send("close 4000")
        try:
            await ws.recv()
        except websockets.ConnectionClosed as e:
            assert e.code == 4000, e.code
            print("ok")
asyncio.run(main())
`, s.wsURL("/ws"))
	out, err := exec.Command(python, "-c", script).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "ok" {
		t.Errorf("python3-websockets: %v\n%s", err, out)
	}
}

// TestWebSocketSyncRefused: a sync site says which class to use.
func TestWebSocketSyncRefused(t *testing.T) {
	s := startSuite(t, suiteOpts{module: "flaskapp:app", class: "sync", workers: 1})
	_, resp, err := websocket.Dial(context.Background(), s.wsURL("/"), nil)
	if err == nil || resp == nil || resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("a WebSocket to a sync site: %v %v, want 400", resp, err)
	}
	// The log comes through edgectl run's relay: it may lag the answer.
	const want = `a WebSocket needs pool.class = \"asgi\" or \"gevent\"; this site's is \"sync\"`
	for end := time.Now().Add(5 * time.Second); !strings.Contains(s.out.String(), want) && time.Now().Before(end); {
		time.Sleep(50 * time.Millisecond)
	}
	if out := s.out.String(); !strings.Contains(out, want) {
		t.Errorf("no log line names the class to use:\n%s", tail(out, 10))
	}
	if status, _ := get(t, s.client(), s.http+"/hello"); status != 200 {
		t.Errorf("plain requests after: %d", status)
	}
}

// TestFlaskSocketIO: a Flask-SocketIO chat, unchanged, on three gevent
// workers with the WebSocket transport only, as the README says to run
// it: every client, whichever worker it reaches, talks Socket.IO over its
// own WebSocket (engineio's protocol by hand: open, connect, an event).
func TestFlaskSocketIO(t *testing.T) {
	needPython(t, "flask_socketio", "geventwebsocket")
	s := startSuite(t, suiteOpts{module: "socketiochat:app", class: "gevent", workers: 3})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 12)
	for i := 0; i < 12; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, _, err := websocket.Dial(ctx, s.wsURL("/socket.io/?EIO=4&transport=websocket"), nil)
			if err != nil {
				errs <- err
				return
			}
			defer c.CloseNow()
			expect := func(prefix string) error {
				for {
					_, b, err := c.Read(ctx)
					if err != nil {
						return err
					}
					if strings.HasPrefix(string(b), prefix) {
						return nil
					}
					if string(b) == "2" { // engineio's ping
						c.Write(ctx, websocket.MessageText, []byte("3"))
					}
				}
			}
			if err := expect("0{"); err != nil {
				errs <- fmt.Errorf("engineio open: %w", err)
				return
			}
			c.Write(ctx, websocket.MessageText, []byte("40"))
			if err := expect("40"); err != nil {
				errs <- fmt.Errorf("socket.io connect: %w", err)
				return
			}
			msg := fmt.Sprintf("client %d", i)
			c.Write(ctx, websocket.MessageText, []byte(`42["chat",`+fmt.Sprintf("%q", msg)+`]`))
			if err := expect(`42["chat","said: ` + msg + `"]`); err != nil {
				errs <- fmt.Errorf("the event back: %w", err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestWebSocketPerClient: an open WebSocket is one of its client's
// requests in hand (limits.connections_per_client) for as long as it is
// open.
func TestWebSocketPerClient(t *testing.T) {
	s := startSuite(t, suiteOpts{module: "asgichat:app", class: "asgi", workers: 1, limits: "connections_per_client = 2"})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var open []*websocket.Conn
	for i := 0; i < 2; i++ {
		c, _, err := websocket.Dial(ctx, s.wsURL("/ws"), nil)
		if err != nil {
			t.Fatalf("WebSocket %d: %v", i+1, err)
		}
		open = append(open, c)
	}
	if _, resp, err := websocket.Dial(ctx, s.wsURL("/ws"), nil); err == nil || resp == nil || resp.StatusCode != 503 {
		t.Errorf("a third WebSocket from the same client: %v %v, want 503", resp, err)
	}
	open[0].Close(websocket.StatusNormalClosure, "")
	time.Sleep(200 * time.Millisecond)
	c, _, err := websocket.Dial(ctx, s.wsURL("/ws"), nil)
	if err != nil {
		t.Errorf("after one closed: %v", err)
	} else {
		c.CloseNow()
	}
	open[1].CloseNow()
}

// TestWebSocketStop: stopping the suite closes an open WebSocket with a
// close frame (1001 from edged, or 1012 from its worker, whichever stops
// first), never by cutting the connection.
func TestWebSocketStop(t *testing.T) {
	s := startSuite(t, suiteOpts{module: "asgichat:app", class: "asgi", workers: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, s.wsURL("/ws"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	s.cmd.Process.Signal(syscall.SIGINT) // as Ctrl-C; the cleanup waits for the end
	_, _, err = c.Read(ctx)
	if code := websocket.CloseStatus(err); code != websocket.StatusGoingAway && code != websocket.StatusServiceRestart {
		t.Errorf("on stop the client got %v, want a close with 1001 or 1012", err)
	}
}
