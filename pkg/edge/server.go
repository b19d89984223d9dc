// Package edge is edged's HTTP server: it terminates TLS, speaks HTTP/1.1
// and HTTP/2, serves static roots itself, and passes every other request,
// fully buffered, to the queue the workers take from.
package edge

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edged/edged/pkg/certs"
	"github.com/edged/edged/pkg/config"
	"github.com/edged/edged/pkg/fleet"
	"github.com/edged/edged/pkg/logging"
	"github.com/edged/edged/pkg/upstream"
	"github.com/edged/edged/pkg/ws"
	"github.com/rs/zerolog"
)

// Server is edged. Its config can be replaced while it serves (Reload);
// the pool and the listeners stay.
type Server struct {
	log zerolog.Logger
	cur atomic.Pointer[state]

	// accessFile is log.access_file, opened again at every reload, and
	// accessOut the queue its lines go through; nil without one.
	accessMu   sync.Mutex
	accessFile *logging.File
	accessOut  *logging.Async

	// pools are the transports to each site's workers, by site name:
	// made when a site is first seen, kept across reloads.
	poolsMu   sync.Mutex
	pools     map[string]*upstream.Transport
	poolOrder []string

	// Counters for the status line.
	metrics  *metrics
	requests atomic.Int64
	errors   atomic.Int64 // answers of 500 and above
	inFlight atomic.Int64
	rate     atomic.Int64 // requests per second, over the last status period

	lastReloadErr atomic.Value // string: why the last reload was refused
	// httpsPort is the port of the first HTTPS listener ("" when none),
	// where plain HTTP is redirected to.
	httpsPort atomic.Value

	// webSockets are those open, closed with 1001 when edged stops.
	webSockets webSockets

	// parkers hold the idle keep-alive connections of the HTTP
	// listeners ([]*parker).
	parkers atomic.Value

	// acme obtains and renews the certificates of the sites that say
	// tls = "acme" (nil when none does at start); it outlives reloads.
	acme *certs.ACME

	// draining: see Drain; drainedAt is since when (Unix ns).
	draining  atomic.Bool
	drainedAt atomic.Int64
	// servers are the servers of the listeners (net/http's, edged's
	// HTTP/1.1 loop), whose keep-alive a drain turns off.
	serversMu sync.Mutex
	servers   []keepAliver
	// fleet answers the load balancer's health and agent checks.
	fleet *fleet.Checker
}

var _ http.Handler = (*Server)(nil)

// New builds a server for cfg: it opens the static roots and sets up the
// pool, but binds nothing yet.
func New(cfg *config.Config, log zerolog.Logger) (*Server, error) {
	s := &Server{log: log, pools: map[string]*upstream.Transport{}}
	s.fleet = fleet.New(fleetHost{s})
	s.parkers.Store([]*parker{})
	if cfg.Metrics.Listen != "" {
		// Counted only when someone can read them: nothing is spent on
		// metrics otherwise.
		s.metrics = newMetrics()
	}
	if cfg.ACMEUsed() {
		a, err := s.newACME(cfg)
		if err != nil {
			return nil, err
		}
		s.acme = a
	}
	st, err := s.newState(cfg)
	if err != nil {
		s.acme.Close()
		return nil, err
	}
	s.cur.Store(st)
	st.certs.Watch(certWatch)
	if s.acme != nil {
		s.acme.Manage(cfg.ACMENames()) // ordered once Serve starts it
	}
	return s, nil
}

// certWatch is how often the certificate files are looked at: a renewed
// one (certbot's, a secret manager's) serves new handshakes within it.
const certWatch = 5 * time.Second

// Reload replaces the config: static roots, certificates, limits, buffers,
// proxies and the app's timeout take effect for the next request. It
// returns an error, and changes nothing, when cfg cannot be put to use.
// Listen addresses and the pool's shape stay as they were started.
func (s *Server) Reload(cfg *config.Config) error {
	st, err := s.newState(cfg)
	if err != nil {
		return err
	}
	old := s.cur.Swap(st)
	// The new certificates are watched from now on, the old ones no more.
	old.certs.Close()
	st.certs.Watch(certWatch)
	s.reloadACME(old.cfg, cfg)
	s.usePools(st)
	if cfg.Metrics.Listen != old.cfg.Metrics.Listen {
		s.log.Warn().Str("metrics.listen", cfg.Metrics.Listen).Msg("metrics.listen changed: it takes effect at the next restart of edged")
	}
	// Requests already routed may still read from the old roots.
	time.AfterFunc(time.Minute, old.close)
	return nil
}

// Config is the config in use.
func (s *Server) Config() *config.Config { return s.cur.Load().cfg }

// limits are the limits in use: connections read them as they need them,
// so that a reload applies to the next connection or request.
func (s *Server) limits() config.Limits { return s.cur.Load().cfg.Limits }

// maxHeaderCeiling is the most limits.max_header may be (pkg/config).
const maxHeaderCeiling = 1 << 20

// maxStreams is the most streams one HTTP/2 connection may have open,
// nginx's default.
const maxStreams = 128

// upstreams are the transports to every site's workers.
func (s *Server) upstreams() []*upstream.Transport {
	s.poolsMu.Lock()
	defer s.poolsMu.Unlock()
	out := make([]*upstream.Transport, 0, len(s.poolOrder))
	for _, name := range s.poolOrder {
		out = append(out, s.pools[name])
	}
	return out
}

// withWorkers is how many requests are with the workers of every site,
// queued or being run, and how many of them their clients abandoned.
func (s *Server) withWorkers() (inFlight, abandoned int64) {
	for _, t := range s.upstreams() {
		inFlight += t.InFlight()
		abandoned += t.Abandoned()
	}
	return inFlight, abandoned
}

// Close releases the static roots.
func (s *Server) Close() {
	s.cur.Load().close()
	s.accessMu.Lock()
	if s.accessOut != nil {
		s.accessOut.Close()
		s.accessFile.Close()
	}
	s.accessMu.Unlock()
	s.acme.Close()
}

// ServeHTTP routes a request to a static root or to the app.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	leave, v, tc, h2 := enterHandler(r)
	s.inFlight.Add(1)
	// HTTP/2 is what came as such, not what an HTTP/1 request line says.
	lr := logRecord{start: time.Now(), conn: tc, h2: h2, multiplexed: r.ProtoMajor == 2 && tc == nil}
	st := s.cur.Load()
	lr.site = st.edge // until a site takes it
	defer s.account(w, r, &lr, leave)
	if v.status != 0 {
		lr.site.fail(w, &lr, v.status, v.limit, v.reason)
	} else {
		st.serve(w, r, &lr)
	}
}

// account is where every request ends, whichever way its handler did: it
// logs, counts and releases. A panic is recovered here: the client gets
// a 500 when nothing of the answer was sent yet, else the answer is cut
// short; either way the request is logged and counted as it ended. A
// request whose client went away before its answer was done is logged
// as 499, whatever edged had begun to send.
func (s *Server) account(w http.ResponseWriter, r *http.Request, lr *logRecord, leave func()) {
	st := lr.site
	p := recover()
	if p != nil && p != http.ErrAbortHandler {
		st.log.Error().Caller().Str("panic", fmt.Sprint(p)).Str("stack", string(debug.Stack())).
			Str("method", r.Method).Str("path", r.URL.Path).Msg("edged failed on a request: a bug, please report it with this stack")
		if lr.status == 0 && lr.kind != kindStatic {
			st.fail(w, lr, http.StatusInternalServerError, "", "edged failed on this request (its log has the stack)")
			p = nil
		} else {
			lr.err = fmt.Errorf("panic: %v", p)
			p = http.ErrAbortHandler
		}
	}
	if lr.status != 499 && !lr.finished && r.Context().Err() != nil {
		if lr.reason == "" {
			lr.reason = goneTaken
		}
		lr.status, lr.limit = 499, ""
	}
	st.logAccess(r, lr)
	st.metrics.observe(r, lr, time.Since(lr.start))
	s.inFlight.Add(-1)
	s.requests.Add(1)
	if lr.status >= 500 {
		s.errors.Add(1)
	}
	leave()
	if p != nil {
		// Cuts the answer short: net/http closes the connection (or
		// resets the stream) and logs nothing.
		panic(p)
	}
}

// serve checks what no site may let through, finds the site r's host
// leads to, and hands r to it.
func (st *state) serve(w http.ResponseWriter, r *http.Request, lr *logRecord) {
	if !st.wellFormed(w, r, lr) {
		return
	}
	if st.answerACME(w, r, lr) {
		return
	}
	if r.Method == http.MethodOptions && r.RequestURI == "*" {
		// The server as a whole, not a resource of the app: answered
		// here, as net/http would, but as a request of ours, so that the
		// connection goes on as after any other.
		w.Header()["Content-Length"] = []string{"0"}
		w.WriteHeader(http.StatusOK)
		lr.status = http.StatusOK
		return
	}
	// Who sent it, after proxy.trusted: the rules, the limits and the
	// environ all need it, so it is worked out once.
	c := st.client(r)
	if c.trusted {
		lr.client = c.addr // the real client; the proxy is r.RemoteAddr
	}
	lr.trusted = c.trusted
	si, ok := st.sites.Site(r.Host)
	if !ok {
		if r.TLS != nil {
			// The connection's certificate may cover the name, and the
			// client reuse it for a site this host does not have.
			lr.site.fail(w, lr, http.StatusMisdirectedRequest, "", "no site serves this host name")
		} else {
			lr.site.fail(w, lr, http.StatusNotFound, "", "no site serves this host name")
		}
		return
	}
	lr.site = si
	si.serve(w, r, c, lr)
}

// serve applies the site's own rules to r, then its limits, and hands it
// to the route its path leads to.
func (si *site) serve(w http.ResponseWriter, r *http.Request, c client, lr *logRecord) {
	if sc := si.conf; sc.HTTPS != config.HTTPSOff || sc.Canonical != "" {
		if si.redirect(w, r, c, lr) {
			return
		}
	}
	addr, _ := netip.ParseAddr(c.addr)
	// The site's limits first, then the path's rule: a client over the
	// site's rate costs no more than that.
	if si.limits != nil {
		release, ok := si.admit(w, si.limits, addr, lr)
		if !ok {
			return
		}
		defer release()
	}
	if len(si.rules) > 0 {
		if ru, ok := si.rules.Find(cleanPath(r.URL.Path), r.Method, addr); ok {
			lr.rule = ru
			if !ru.admit(w, r, addr, si, lr) {
				return
			}
		}
	}
	h, ok := si.routes.Find(r.URL.Path, r.Method, addr)
	if !ok {
		si.fail(w, lr, http.StatusNotFound, "", "no route of the site takes this path")
		return
	}
	h.serve(w, r, c, lr)
}

// wellFormed turns away, with its answer, a request no route may see.
func (st *state) wellFormed(w http.ResponseWriter, r *http.Request, lr *logRecord) bool {
	si := lr.site
	if !config.Method(r.Method) {
		si.fail(w, lr, http.StatusBadRequest, limitProtocol, "method is not a token of upper-case letters")
		return false
	}
	if r.Method == "PRI" || r.ProtoMajor != 1 && !lr.multiplexed {
		// HTTP/2's preface on an HTTP/1 connection: edged serves HTTP/2
		// over TLS only, as nginx does by default.
		si.fail(w, lr, http.StatusBadRequest, limitProtocol, "HTTP/2 on an HTTP/1 connection (HTTP/2 is served over TLS only)")
		return false
	}
	if strings.IndexByte(r.RequestURI, '#') >= 0 {
		// A fragment is the client's own business and never part of a
		// request target (RFC 9112 3.2).
		si.fail(w, lr, http.StatusBadRequest, limitProtocol, "a fragment (#) in the request target")
		return false
	}
	if lr.multiplexed && headerSize(r) > int(st.cfg.Limits.MaxHeader) {
		// HTTP/1 heads are measured as they arrive (headScanner).
		si.fail(w, lr, http.StatusRequestHeaderFieldsTooLarge, limitMaxHeader, "request head over limits.max_header")
		return false
	}
	if r.Method == http.MethodConnect {
		// edged is no forward proxy.
		w.Header()["Allow"] = []string{"GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"}
		si.fail(w, lr, http.StatusMethodNotAllowed, limitProtocol, "CONNECT is not served")
		return false
	}
	return true
}

// admit applies per-client limits to r, keyed by the real client address
// (after proxy.trusted). When it turns r away it has answered: 429 with
// Retry-After over the rate, 503 over the requests in hand.
func (st *site) admit(w http.ResponseWriter, limits *clientLimits, addr netip.Addr, lr *logRecord) (release func(), ok bool) {
	if !addr.IsValid() {
		return func() {}, true
	}
	release, why, retry := limits.admit(addr.Unmap(), time.Now())
	switch why {
	case "":
		return release, true
	case overRate:
		w.Header()["Retry-After"] = []string{strconv.Itoa(retryAfter(retry))}
		st.fail(w, lr, http.StatusTooManyRequests, limitRate, why)
	case overConns:
		st.fail(w, lr, http.StatusServiceUnavailable, limitConnsPerClient, why)
	default:
		st.fail(w, lr, http.StatusServiceUnavailable, "", why)
	}
	return nil, false
}

// headerSize is the size of an HTTP/2 request's header list as HTTP/2
// counts it (RFC 9113 6.5.2: each field's name and value, plus 32).
func headerSize(r *http.Request) int {
	n := len(r.Method) + len(r.RequestURI) + len(r.Host) + 3*32
	for name, vs := range r.Header {
		for _, v := range vs {
			n += len(name) + len(v) + 32
		}
	}
	return n
}

// fail answers with an error page edged writes itself; lim is the limit
// that turned the request away, if one did.
func (s *site) fail(w http.ResponseWriter, lr *logRecord, status int, lim limit, why string) {
	lr.status = status
	lr.limit = lim
	lr.reason = why
	if status == 499 {
		return // the client went away; nobody to answer
	}
	h := w.Header()
	h["Content-Type"] = []string{"text/plain; charset=utf-8"}
	h["X-Content-Type-Options"] = []string{"nosniff"}
	page, custom := s.errorPages[status]
	if custom {
		h["Content-Type"] = []string{"text/html; charset=utf-8"}
	}
	s.addHeaders(h)
	switch status {
	case http.StatusServiceUnavailable:
		h["Retry-After"] = []string{"1"}
	case http.StatusRequestEntityTooLarge, http.StatusRequestTimeout, http.StatusBadRequest, http.StatusMethodNotAllowed,
		http.StatusRequestHeaderFieldsTooLarge:
		if lr.multiplexed {
			// Over HTTP/2 the stream ends with its answer; Connection:
			// close there would end the other streams too.
			break
		}
		h["Connection"] = []string{"close"}
		// net/http reads what is left of the body before it closes: bound
		// that, or a client that stalls holds the connection for ever.
		http.NewResponseController(w).SetReadDeadline(time.Now().Add(s.lim.BodyTimeout.D()))
	}
	w.WriteHeader(status)
	if !custom {
		page = []byte(http.StatusText(status) + "\n")
	}
	n, _ := w.Write(page)
	lr.bytes = int64(n)
}

// Listeners are the sockets edged serves, by kind.
type Listeners struct {
	HTTP  []net.Listener
	HTTPS []net.Listener
}

// Listen binds the configured addresses.
func Listen(cfg *config.Config) (*Listeners, error) {
	ls := &Listeners{}
	for _, a := range cfg.Listen.HTTP {
		l, err := net.Listen("tcp", a)
		if err != nil {
			ls.Close()
			return nil, fmt.Errorf("listen.http %q: %w", a, err)
		}
		ls.HTTP = append(ls.HTTP, l)
	}
	for _, a := range cfg.Listen.HTTPS {
		l, err := net.Listen("tcp", a)
		if err != nil {
			ls.Close()
			return nil, fmt.Errorf("listen.https %q: %w", a, err)
		}
		ls.HTTPS = append(ls.HTTPS, l)
	}
	return ls, nil
}

// Close closes every listener.
func (ls *Listeners) Close() {
	for _, l := range append(ls.HTTP, ls.HTTPS...) {
		l.Close()
	}
}

// tlsConfig asks the current config for a certificate at each handshake,
// so a reload brings new certificates in without a restart.
func (s *Server) tlsConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		// TLS 1.2 with AEAD suites only, Mozilla's intermediate set as
		// far as Go has it: no CBC (LUCKY13), no RSA key exchange. TLS
		// 1.3's suites are not configurable, and all are AEAD.
		CipherSuites: []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
			tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		},
		NextProtos: []string{"h2", "http/1.1"},
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			return s.cur.Load().certs.GetCertificate(hello)
		},
		GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			if s.acme != nil && certs.Challenge(hello) {
				// A CA's TLS-ALPN-01 validation: the handshake is the
				// whole of it (the pipeline closes the connection).
				return &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: []string{certs.ACMETLS1},
					GetCertificate: s.acme.GetCertificate}, nil
			}
			return nil, nil
		},
	}
}

// Serve runs until ctx ends, then stops accepting, finishes the requests
// in flight (up to the graceful timeout), and returns.
func (s *Server) Serve(ctx context.Context, ls *Listeners) error {
	cfg := s.Config()
	if err := s.startACME(ls); err != nil {
		return err
	}
	if len(ls.HTTPS) > 0 && s.cur.Load().certs.Len() == 0 {
		// Handshakes fail until a reload brings a certificate in: HTTPS
		// can be turned on without a restart.
		s.log.Warn().Msg("HTTPS socket but no [[tls]] certificate in the config: TLS handshakes fail until one is added and edged reloaded")
	}
	errLog := newErrorLog(s.log)
	newSrv := func() *http.Server {
		return &http.Server{
			Handler:     s,
			ConnContext: connContext,
			ErrorLog:    errLog,
			// OPTIONS * comes to ServeHTTP like any request: answered
			// inside net/http, it went round the connection's phases and
			// a 408 followed it.
			DisableGeneralOptionsHandler: true,
			// The most limits.max_header may be: the live value is
			// applied by the head scanner (HTTP/1) and the handler
			// (HTTP/2).
			MaxHeaderBytes: maxHeaderCeiling,
			Protocols:      new(http.Protocols),
		}
	}
	// HTTP/1.1, plain and over TLS (see pipeline). Its timeouts are
	// marks the connection replaces with the live limits.
	plain := newSrv()
	plain.Protocols.SetHTTP1(true)
	plain.ReadHeaderTimeout = markHeaderTimeout
	plain.IdleTimeout = markIdleTimeout
	// HTTP/2 over TLS: the pipeline does the handshake and hands on
	// h2Conns, served as HTTP/2 with prior knowledge; the h2Conn keeps
	// limits.idle_timeout. Plain HTTP/2 (h2c) is not served.
	secure := newSrv()
	secure.Protocols.SetUnencryptedHTTP2(true)
	// Frames up to HTTP/2's default size, as nginx reads them.
	secure.HTTP2 = &http.HTTP2Config{MaxConcurrentStreams: maxStreams, MaxReadFrameSize: 16 << 10}
	s.serversMu.Lock()
	s.servers = []keepAliver{plain, secure}
	s.serversMu.Unlock()
	tlsConf := s.tlsConfig()
	if len(ls.HTTPS) > 0 {
		if _, port, err := net.SplitHostPort(ls.HTTPS[0].Addr().String()); err == nil {
			s.httpsPort.Store(port)
		}
	}

	// The metrics listener first: when it cannot open, nothing else has
	// started serving.
	ml, err := listenMetrics(cfg)
	if err != nil {
		return err
	}
	al, err := fleet.Listen(cfg)
	if err != nil {
		if ml != nil {
			ml.Close()
		}
		return err
	}
	// The admin side (metrics, health, the agent check) outlives the
	// public listeners: it says "drain" while they still serve.
	adminCtx, adminDone := context.WithCancel(context.Background())
	defer adminDone()
	if al != nil {
		s.log.Info().Str("addr", al.Addr().String()).Msg("serving HAProxy's agent check")
		go s.serveAgent(adminCtx, al)
	}
	errs := make(chan error, len(ls.HTTP)+2*len(ls.HTTPS)+2)
	var wg sync.WaitGroup
	// HTTP/1.1 goes to edged's own loop, which hands net/http what it
	// does not take (see h1Server).
	var h1 *h1Server
	var h1Views []net.Listener
	if ownHTTP1 && len(ls.HTTP)+len(ls.HTTPS) > 0 {
		first := append(append([]net.Listener{}, ls.HTTP...), ls.HTTPS...)[0]
		h1 = newH1Server(s, s.log, first.Addr())
		s.serversMu.Lock()
		s.servers = append(s.servers, h1)
		s.serversMu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := plain.Serve(h1.handoff); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
				errs <- err
			}
		}()
	}
	if s.Draining() {
		s.setKeepAlives(false) // drained before it served
	}
	serveWith := func(serveOn func(net.Listener) error, l net.Listener, what string) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.log.Info().Str("addr", l.Addr().String()).Msg("serving " + what)
			err := serveOn(l)
			// Either view of an HTTPS listener closes both: the other
			// server's shutdown is not an error.
			if err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
				errs <- err
			}
		}()
	}
	serve := func(srv *http.Server, l net.Listener, what string) { serveWith(srv.Serve, l, what) }
	// HTTP/1.1, plain or over TLS: edged's loop, or net/http's server
	// when the loop is off.
	serveHTTP1 := func(l net.Listener, what string) {
		if h1 == nil {
			serve(plain, l, what)
			return
		}
		h1Views = append(h1Views, l)
		serveWith(h1.serve, l, what)
	}
	for _, l := range ls.HTTP {
		pl := newPipeline(l, nil, s.Config, s.log, s.metrics)
		s.parkers.Store(append(s.parkers.Load().([]*parker), pl.park))
		serveHTTP1(pl.HTTP1(), "http")
	}
	var metricsSrv *http.Server
	if ml != nil && s.metrics != nil {
		s.metrics.reg.MustRegister(newQueueCollector(s, ls))
		mux := http.NewServeMux()
		mux.Handle("/metrics", s.metrics.handler())
		mux.HandleFunc("GET /healthz", s.serveHealth)
		mux.HandleFunc("GET /certificates", s.serveCertificates)
		// Go's profiles (heap, goroutines, CPU), for finding where edged's
		// memory and time go: the admin address only, like the metrics.
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		s.metrics.reg.MustRegister(newCertCollector(s))
		s.metrics.reg.MustRegister(newBuildCollector(s))
		metricsSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 30 * time.Second, ErrorLog: errLog}
		serve(metricsSrv, ml, "metrics")
	}

	for _, l := range ls.HTTPS {
		// HTTP/1.1 over TLS is served as plain HTTP/1.1 is (see
		// pipeline); HTTP/2 by net/http's own server.
		tl := newPipeline(l, tlsConf, s.Config, s.log, s.metrics)
		serveHTTP1(tl.HTTP1(), "https")
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := secure.Serve(tl.HTTP2()); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
				errs <- err
			}
		}()
	}

	select {
	case <-ctx.Done():
		s.drainBeforeStop()
	case err = <-errs:
	}
	timeout := s.Config().Pool.GracefulTimeout.D()
	s.log.Info().Int64("in_flight", s.inFlight.Load()).Dur("graceful_timeout", timeout).Msg("stopping: no new connections; finishing the requests in flight")
	grace, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var unfinished error
	// net/http's Shutdown does not wait for a WebSocket (its connection
	// is no longer net/http's): they are closed meanwhile, with 1001,
	// spread over a few seconds so that their clients do not all
	// reconnect at once to wherever they go next.
	wsDone := make(chan int, 1)
	go func() {
		wsDone <- s.webSockets.closeAll(ws.GoingAway, min(3*time.Second, timeout/2), deadlineOf(grace))
	}()
	for _, l := range h1Views {
		l.Close()
	}
	// All at once: each waits for its own requests, and HTTP/2's
	// GOAWAY must not wait for HTTP/1.1's stragglers.
	var shut sync.WaitGroup
	var unfinishedMu sync.Mutex
	shutdown := func(f func(context.Context) error) {
		shut.Add(1)
		go func() {
			defer shut.Done()
			if e := f(grace); e != nil {
				unfinishedMu.Lock()
				unfinished = e
				unfinishedMu.Unlock()
			}
		}()
	}
	if h1 != nil {
		shutdown(h1.Shutdown)
	}
	shutdown(plain.Shutdown)
	shutdown(secure.Shutdown)
	shut.Wait()
	if n := <-wsDone; n > 0 {
		s.log.Info().Int("websockets", n).Msg("stopping: WebSockets closed with 1001 (going away)")
	}
	if metricsSrv != nil {
		metricsSrv.Close()
	}
	wg.Wait()
	if unfinished != nil {
		s.log.Warn().Int64("in_flight", s.inFlight.Load()).Msg("stopped: pool.graceful_timeout passed with requests unfinished")
	} else {
		s.log.Info().Int64("requests", s.requests.Load()).Msg("stopped")
	}
	return err
}

// ownHTTP1 serves HTTP/1.1 with edged's own loop; EDGED_HTTP1=net/http
// serves it all with net/http's server instead, for measuring one
// against the other (docs/performance.md).
var ownHTTP1 = os.Getenv("EDGED_HTTP1") != "net/http"

// deadlineOf is ctx's deadline, or now.
func deadlineOf(ctx context.Context) time.Time {
	if d, ok := ctx.Deadline(); ok {
		return d
	}
	return time.Now()
}

// tempDirOK checks that spilled bodies have somewhere to go.
func tempDirOK(dir string) error {
	if dir == "" {
		dir = os.TempDir()
	}
	f, err := os.CreateTemp(dir, "edged-check-*")
	if err != nil {
		return fmt.Errorf("buffers.temp_dir %s is not writable: %w", dir, err)
	}
	f.Close()
	return os.Remove(f.Name())
}

// parked is how many idle keep-alive connections are parked (see parker).
func (s *Server) parked() int {
	n := 0
	for _, p := range s.parkers.Load().([]*parker) {
		n += p.Len()
	}
	return n
}
