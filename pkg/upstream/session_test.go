package upstream

import (
	"bufio"
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/edged/edged/pkg/wire"
)

// sessionRequest is a request that opens a long-lived exchange.
func sessionRequest() *Request {
	var f wire.Request
	for range wire.RequestFields {
		f.Add("x")
	}
	f.OpenSession()
	return &Request{Frame: &f, Body: memBody(nil), Idempotent: true}
}

// A worker that accepts echoes each message back in upper case until
// the edge closes; one that refuses answers 403.
func echoWorker(t *testing.T, ln *net.UnixListener) {
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				in, err := wire.ReadRequest(r, 0)
				if err != nil {
					return
				}
				if !in.Session {
					c.Write(wire.AppendEnd(wire.AppendHead(nil, "1", "400 Bad Request")))
					return
				}
				if v, _ := in.Header("X-Refuse"); v != "" {
					c.Write(wire.AppendEnd(wire.AppendBody(wire.AppendHead(nil, "1", "403 Forbidden"), []byte("no"))))
					return
				}
				c.Write(wire.AppendAccept(nil, "1", "chat", "Set-Cookie", "s=1"))
				var m wire.Message
				for {
					if err := wire.ReadMessage(r, &m, 1<<20); err != nil {
						return
					}
					if m.Close {
						c.Write(wire.AppendMessage(nil, wire.Message{Close: true, Code: m.Code}))
						return
					}
					out := m
					out.Data = []byte(string(m.Data) + "!")
					c.Write(wire.AppendMessage(nil, out))
				}
			}()
		}
	}()
}

func TestSession(t *testing.T) {
	ln, path := listen(t, 8)
	echoWorker(t, ln)
	tr := New(path, limits)
	var resp Response
	s, err := tr.Open(context.Background(), sessionRequest(), &resp)
	if err != nil || s == nil {
		t.Fatalf("Open: %v, %v", s, err)
	}
	defer s.Close()
	if resp.Status != 101 || resp.Subprotocol != "chat" || resp.Worker != "1" {
		t.Errorf("accept: %+v", resp.Head)
	}
	if tr.Sessions() != 1 || tr.InFlight() != 0 {
		t.Errorf("Sessions %d, InFlight %d; want 1, 0", tr.Sessions(), tr.InFlight())
	}
	var m wire.Message
	for _, want := range []wire.Message{{Text: true, Data: []byte("hi")}, {Data: []byte{0, 1}}} {
		if err := s.Send(want); err != nil {
			t.Fatal(err)
		}
		if err := s.Recv(&m, 100); err != nil {
			t.Fatal(err)
		}
		if m.Text != want.Text || string(m.Data) != string(want.Data)+"!" {
			t.Errorf("echo of %+v: %+v", want, m)
		}
	}
	s.Send(wire.Message{Close: true, Code: 1000})
	if err := s.Recv(&m, 100); err != nil || !m.Close || m.Code != 1000 {
		t.Errorf("close: %+v, %v", m, err)
	}
	s.Close()
	s.Close() // harmless
	if tr.Sessions() != 0 {
		t.Errorf("Sessions %d after Close, want 0", tr.Sessions())
	}
}

// A refusal comes back as an answer to read like any other.
func TestSessionRefused(t *testing.T) {
	ln, path := listen(t, 8)
	echoWorker(t, ln)
	tr := New(path, limits)
	req := sessionRequest()
	req.Frame.AddHeader("X-Refuse", "1")
	var resp Response
	s, err := tr.Open(context.Background(), req, &resp)
	if err != nil || s != nil {
		t.Fatalf("Open: %v, %v; want a refusal", s, err)
	}
	var body []byte
	err = resp.ReadBody(false, func(b []byte) error { body = append(body, b...); return nil })
	resp.Close()
	if resp.Status != 403 || string(body) != "no" || err != nil {
		t.Errorf("refusal: %d %q %v", resp.Status, body, err)
	}
	if tr.Sessions() != 0 || tr.InFlight() != 0 {
		t.Errorf("Sessions %d, InFlight %d; want 0, 0", tr.Sessions(), tr.InFlight())
	}
}

// Close wakes a Recv that waits on a quiet worker, and a session lives
// past app.timeout: idle is not hung.
func TestSessionCloseWakesRecv(t *testing.T) {
	ln, path := listen(t, 8)
	echoWorker(t, ln)
	tr := New(path, Limits{QueueTimeout: time.Second, AppTimeout: 100 * time.Millisecond})
	var resp Response
	s, err := tr.Open(context.Background(), sessionRequest(), &resp)
	if err != nil || s == nil {
		t.Fatalf("Open: %v, %v", s, err)
	}
	done := make(chan error, 1)
	go func() {
		var m wire.Message
		done <- s.Recv(&m, 100)
	}()
	select {
	case err := <-done:
		t.Fatalf("Recv returned %v before Close, past app.timeout", err)
	case <-time.After(300 * time.Millisecond):
	}
	s.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Errorf("Recv after Close: nil error")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not wake Recv")
	}
	if err := s.Send(wire.Message{Data: []byte("x")}); err == nil || errors.Is(err, ErrTimeout) {
		t.Errorf("Send after Close: %v, want a closed error", err)
	}
}
