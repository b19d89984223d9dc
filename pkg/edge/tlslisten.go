package edge

import (
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/edged/edged/pkg/config"
	"github.com/rs/zerolog"
)

// tlsListener takes HTTPS connections and does the TLS handshake itself,
// then parts them by the protocol the client chose. HTTP/1.1 over TLS goes
// on as a trackedConn, served like plain HTTP/1.1: the same 408 for a
// stalled head, the same head checks, the same gathered writes. net/http
// cannot give it those if it does the handshake, because it serves TLS
// only on a bare *tls.Conn. HTTP/2 goes on as an h2Conn, which net/http
// serves as HTTP/2 with prior knowledge.
type tlsListener struct {
	raw     net.Listener
	conf    *tls.Config
	limits  func() config.Limits // the live ones
	log     zerolog.Logger
	metrics *metrics

	http1, http2 chan net.Conn
	done         chan struct{} // closed when raw is
	closeOnce    sync.Once
}

func newTLSListener(raw net.Listener, conf *tls.Config, limits func() config.Limits, log zerolog.Logger, m *metrics) *tlsListener {
	l := &tlsListener{
		raw: raw, conf: conf, limits: limits, log: log, metrics: m,
		http1: make(chan net.Conn), http2: make(chan net.Conn),
		done: make(chan struct{}),
	}
	go l.accept()
	return l
}

func (l *tlsListener) accept() {
	var delay time.Duration
	for {
		c, err := l.raw.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				l.close()
				return
			}
			// Out of file descriptors, of memory and the like: wait and
			// try again, as net/http does; HTTPS must not end over it.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			l.log.Warn().Err(err).Dur("retry_in", delay).Msg("accepting an HTTPS connection failed")
			time.Sleep(delay)
			continue
		}
		delay = 0
		go l.handshake(c)
	}
}

// handshake hands c on once its handshake is done, or closes it.
func (l *tlsListener) handshake(c net.Conn) {
	tc := tls.Server(c, l.conf)
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
	var next net.Conn = newH2Conn(tc, &state, l.limits, l.log, l.metrics)
	ch := l.http2
	if state.NegotiatedProtocol != "h2" {
		next, ch = newTrackedConn(tc, &state, l.limits, l.metrics), l.http1
	}
	select {
	case ch <- next:
	case <-l.done:
		c.Close()
	}
}

func (l *tlsListener) close() error {
	var err error
	l.closeOnce.Do(func() {
		err = l.raw.Close()
		close(l.done)
	})
	return err
}

// HTTP1 and HTTP2 are the connections of each protocol, as listeners for
// an http.Server; closing either closes both.
func (l *tlsListener) HTTP1() net.Listener { return tlsView{l, l.http1} }
func (l *tlsListener) HTTP2() net.Listener { return tlsView{l, l.http2} }

type tlsView struct {
	l  *tlsListener
	ch chan net.Conn
}

func (v tlsView) Accept() (net.Conn, error) {
	select {
	case c := <-v.ch:
		return c, nil
	case <-v.l.done:
		return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: v.l.raw.Addr(), Err: net.ErrClosed}
	}
}

func (v tlsView) Close() error   { return v.l.close() }
func (v tlsView) Addr() net.Addr { return v.l.raw.Addr() }
