package upstream

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edged/edged/pkg/wire"
)

// Session is a long-lived two-way exchange with one worker (a
// WebSocket), over the connection its opening request went on: it holds
// one task or greenlet of the worker, never a whole process. It has one
// reader, which calls Recv, and any number of writers, which Send through
// one lock; Close ends it, waking a Recv.
type Session struct {
	f      *os.File
	r      *bufio.Reader
	t      *Transport
	slot   Slot
	send   time.Duration // how long a Send may wait for the worker to take it
	wmu    sync.Mutex
	wbuf   []byte
	closed atomic.Bool
}

// sessionBuffer is a session's read buffer: a message larger than it is
// read straight into its own slice.
const sessionBuffer = 512

// Open sends req (its frame made with OpenSession, no body) to open a
// long-lived exchange, and waits for the worker's first answer as
// RoundTrip waits for a head, with the same queue, deadline and hang-up
// rules. An accepted exchange returns its Session, with the accept
// (worker, subprotocol, headers) in resp.Head and nothing else in resp;
// a refused one returns a nil Session and the refusal in resp, whose body
// the caller reads, then closes, as after RoundTrip.
func (t *Transport) Open(ctx context.Context, req *Request, resp *Response) (*Session, error) {
	accepted, err := t.roundTrip(ctx, req, resp, true)
	if err != nil || !accepted {
		return nil, err
	}
	c := resp.c
	s := &Session{f: c.f, t: t, slot: resp.slot, send: resp.lim.AppTimeout}
	// A session may last for hours, mostly idle: it keeps a small buffer,
	// not the 64 KiB one a request's answer is read with.
	if n := c.r.Buffered(); n > 0 {
		early, _ := c.r.Peek(n)
		s.r = bufio.NewReaderSize(io.MultiReader(bytes.NewReader(bytes.Clone(early)), c.f), sessionBuffer)
	} else {
		s.r = bufio.NewReaderSize(c.f, sessionBuffer)
	}
	c.f = nil
	c.r.Reset(nil)
	conns.Put(c)
	resp.c, resp.slot = nil, nil
	// From now on the exchange has no deadline of the app's: it lasts
	// as long as both sides keep it.
	s.f.SetReadDeadline(time.Time{})
	t.inFlight.Add(-1)
	t.sessions.Add(1)
	return s, nil
}

// Sessions is how many long-lived exchanges are open.
func (t *Transport) Sessions() int64 { return t.sessions.Load() }

// Send passes m to the worker. A worker that takes none of it for
// app.timeout fails it with ErrTimeout.
func (s *Session) Send(m wire.Message) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.closed.Load() {
		return os.ErrClosed
	}
	s.wbuf = wire.AppendMessage(s.wbuf[:0], m)
	s.f.SetWriteDeadline(time.Now().Add(s.send))
	_, err := s.f.Write(s.wbuf)
	if cap(s.wbuf) > 64<<10 {
		s.wbuf = nil // a big message's room is not kept
	}
	if err != nil && timedOut(err) {
		return &Error{Op: "send", Err: ErrTimeout, Cause: err}
	}
	return err
}

// Recv reads the worker's next message or close into m (its Data valid
// until the next Recv), of at most max bytes (wire.ErrTooBig past it).
// It returns an error once the session is closed or the worker hangs up.
func (s *Session) Recv(m *wire.Message, max int) error {
	return wire.ReadMessage(s.r, m, max)
}

// Close ends the session and frees its place; a Recv under way returns.
// It is safe to call more than once, and while Send and Recv run.
func (s *Session) Close() {
	if !s.closed.CompareAndSwap(false, true) {
		return
	}
	// Wake a Recv and a Send under way; the descriptor itself is closed
	// only when both are done with it (os.File waits for them).
	s.f.SetDeadline(aLongTimeAgo)
	s.wmu.Lock()
	s.f.Close()
	s.wmu.Unlock()
	s.t.sessions.Add(-1)
	if s.slot != nil {
		s.slot.Release()
	}
}
