package edge

import (
	"crypto/tls"
	"errors"
	"github.com/edged/edged/pkg/certs"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/edged/edged/pkg/config"
	"github.com/edged/edged/pkg/proxied"
	"github.com/rs/zerolog"
)

// pipeline takes the connections of one listener and readies each in a
// goroutine of its own, so that nothing slow happens in the accept loop:
// on an HTTPS listener the TLS handshake, bounded by
// limits.header_timeout and parted by the protocol the client chose;
// then the wrapping for that protocol. HTTP/1.x, plain or over TLS, goes
// on as a trackedConn, served alike: the same 408 for a stalled head, the
// same head checks, the same gathered writes (net/http could not give
// HTTP/1.1 over TLS those if it did the handshake, because it serves TLS
// only on a bare *tls.Conn). HTTP/2 goes on as an h2Conn, which net/http
// serves as HTTP/2 with prior knowledge.
//
// Each stage reads the live limits, so a reload applies to the next
// connection.
type pipeline struct {
	raw     net.Listener
	tls     *tls.Config          // nil: plain HTTP
	limits  func() config.Limits // the live ones
	live    func() *config.Config
	log     zerolog.Logger
	metrics *metrics

	http1, http2 chan net.Conn
	done         chan struct{} // closed when raw is
	closeOnce    sync.Once

	// park holds plain HTTP/1.1 connections while they wait long for
	// their client (nil over TLS, or without epoll).
	park *parker
}

// newPipeline readies the connections of raw: over TLS with conf, or
// plain HTTP/1.x when conf is nil. live is the config in use.
func newPipeline(raw net.Listener, conf *tls.Config, live func() *config.Config, log zerolog.Logger, m *metrics) *pipeline {
	l := &pipeline{
		raw: raw, tls: conf, live: live, limits: func() config.Limits { return live().Limits }, log: log, metrics: m,
		http1: make(chan net.Conn), http2: make(chan net.Conn),
		done: make(chan struct{}),
	}
	if conf == nil {
		l.park = newParker(l.unpark)
	}
	go l.accept()
	return l
}

// unpark hands back a parked connection whose client spoke again: to
// net/http, as a connection of its own.
func (l *pipeline) unpark(c net.Conn) {
	next := newTrackedConn(c, nil, l.limits, l.metrics)
	next.park = l.park
	select {
	case l.http1 <- next:
	case <-l.done:
		c.Close()
	}
}

func (l *pipeline) accept() {
	var delay time.Duration
	for {
		c, err := l.raw.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				l.close()
				return
			}
			// Out of file descriptors, of memory and the like: wait and
			// try again, as net/http does; the listener must not end
			// over it.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			l.log.Warn().Err(err).Dur("retry_in", delay).Msg("accepting a connection failed")
			time.Sleep(delay)
			continue
		}
		delay = 0
		go l.ready(c)
	}
}

// ready takes c through the stages and hands it to the server of its
// protocol, or closes it.
func (l *pipeline) ready(c net.Conn) {
	if nets := l.live().Listen.ProxyNets; len(nets) > 0 {
		// Behind a load balancer: who the client is comes first.
		pc, err := proxied.Accept(c, nets, l.limits().HeaderTimeout.D())
		if err != nil {
			l.refuseProxied(c, err)
			return
		}
		c = pc
	}
	var next net.Conn
	ch := l.http1
	if l.tls == nil {
		tc := newTrackedConn(c, nil, l.limits, l.metrics)
		if _, ok := c.(syscall.Conn); ok {
			tc.park = l.park // not behind a PROXY header's wrapper
		}
		next = tc
	} else {
		tc := tls.Server(c, l.tls)
		if timeout := l.limits().HeaderTimeout.D(); timeout > 0 {
			c.SetDeadline(time.Now().Add(timeout))
		}
		err := tc.Handshake()
		l.metrics.handshake(err == nil)
		if err != nil {
			l.log.Debug().Str("from", "tls").Str("client", c.RemoteAddr().String()).Err(err).Msg("TLS handshake failed")
			c.Close()
			return
		}
		c.SetDeadline(time.Time{})
		state := tc.ConnectionState()
		if state.NegotiatedProtocol == certs.ACMETLS1 {
			tc.Close() // a CA's validation: the handshake was all of it
			return
		}
		if state.NegotiatedProtocol == "h2" {
			next, ch = newH2Conn(tc, &state, l.limits, l.log, l.metrics), l.http2
		} else {
			next = newTrackedConn(tc, &state, l.limits, l.metrics)
		}
	}
	select {
	case ch <- next:
	case <-l.done:
		c.Close()
	}
}

// refuseProxied ends a connection whose PROXY header was refused (one
// from a client, none from a balancer): a 400 on plain HTTP, whose client
// may read it, and a log line either way.
func (l *pipeline) refuseProxied(c net.Conn, err error) {
	defer c.Close()
	e := l.log.Debug()
	refused := errors.Is(err, proxied.ErrForged) || errors.Is(err, proxied.ErrMissing)
	if refused {
		e = l.log.Warn()
		l.metrics.rejectedBy(limitProxyProtocol)
	}
	// Logged before the answer: whoever reads the answer finds the line.
	e.Str("client", c.RemoteAddr().String()).Str("listener", c.LocalAddr().String()).Err(err).Msg("connection refused: PROXY protocol")
	if refused && l.tls == nil {
		c.SetWriteDeadline(time.Now().Add(time.Second))
		c.Write([]byte(response400))
	}
}

const response400 = "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 12\r\nConnection: close\r\n\r\nBad Request\n"

func (l *pipeline) close() error {
	var err error
	l.closeOnce.Do(func() {
		err = l.raw.Close()
		close(l.done)
		l.park.close()
	})
	return err
}

// HTTP1 and HTTP2 are the connections of each protocol, as listeners for
// an http.Server; closing either closes both.
func (l *pipeline) HTTP1() net.Listener { return pipelineView{l, l.http1} }
func (l *pipeline) HTTP2() net.Listener { return pipelineView{l, l.http2} }

type pipelineView struct {
	l  *pipeline
	ch chan net.Conn
}

func (v pipelineView) Accept() (net.Conn, error) {
	select {
	case c := <-v.ch:
		return c, nil
	case <-v.l.done:
		return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: v.l.raw.Addr(), Err: net.ErrClosed}
	}
}

func (v pipelineView) Close() error   { return v.l.close() }
func (v pipelineView) Addr() net.Addr { return v.l.raw.Addr() }
