// Package edge is edged's HTTP server: it terminates TLS, speaks HTTP/1.1
// and HTTP/2, serves static roots itself, and passes every other request,
// fully buffered, to the least busy worker.
package edge

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/edged/edged/pkg/config"
	"github.com/edged/edged/pkg/pool"
	"github.com/edged/edged/pkg/static"
	"github.com/edged/edged/pkg/wire"
	"github.com/rs/zerolog"
)

// Server is edged.
type Server struct {
	cfg     *config.Config
	log     zerolog.Logger
	access  zerolog.Logger
	pool    *pool.Pool
	statics []route
}

type route struct {
	prefix string
	h      *static.Handler
}

var _ http.Handler = (*Server)(nil)

// New builds a server for cfg: it opens the static roots and sets up the
// pool, but binds nothing yet.
func New(cfg *config.Config, log zerolog.Logger) (*Server, error) {
	s := &Server{
		cfg:    cfg,
		log:    log,
		access: log.With().Str("log", "access").Logger(),
		pool: pool.New(pool.Options{
			Dir:          cfg.Pool.SocketDir,
			Capacity:     cfg.Pool.Capacity(),
			QueueLength:  cfg.Limits.QueueLength,
			QueueTimeout: cfg.Limits.QueueTimeout.D(),
			Probe:        probe,
		}),
	}
	for _, st := range cfg.Static {
		h, err := static.New(static.Options{Prefix: st.Prefix, Root: st.Root, MaxAge: st.MaxAge.D(), Index: st.Index})
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("static root %s: %w", st.Prefix, err)
		}
		s.statics = append(s.statics, route{st.Prefix, h})
	}
	// Longest prefix first.
	sort.Slice(s.statics, func(i, j int) bool { return len(s.statics[i].prefix) > len(s.statics[j].prefix) })
	return s, nil
}

// probe pings a newly found worker; it answers once its app is imported.
func probe(path string) error {
	c, err := net.DialTimeout("unix", path, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	return wire.Ping(c)
}

// Pool is the server's worker pool.
func (s *Server) Pool() *pool.Pool { return s.pool }

// Close releases the static roots.
func (s *Server) Close() {
	for _, r := range s.statics {
		r.h.Close()
	}
}

// ServeHTTP routes a request to a static root or to the app.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	defer enterHandler(r.Context())()
	lr := logRecord{start: time.Now()}
	for _, rt := range s.statics {
		if strings.HasPrefix(r.URL.Path, rt.prefix) {
			sw := &statusWriter{ResponseWriter: w}
			rt.h.ServeHTTP(sw, r)
			lr.status, lr.bytes = sw.status, sw.bytes
			s.logAccess(r, &lr)
			return
		}
	}
	s.serveApp(w, r, &lr)
	s.logAccess(r, &lr)
}

// fail answers with an error page edged writes itself.
func (s *Server) fail(w http.ResponseWriter, lr *logRecord, status int, why string) {
	lr.status = status
	lr.reason = why
	if status == 499 {
		return // the client went away; nobody to answer
	}
	h := w.Header()
	h["Content-Type"] = []string{"text/plain; charset=utf-8"}
	h["X-Content-Type-Options"] = []string{"nosniff"}
	switch status {
	case http.StatusServiceUnavailable:
		h["Retry-After"] = []string{"1"}
	case http.StatusRequestEntityTooLarge, http.StatusRequestTimeout, http.StatusBadRequest:
		h["Connection"] = []string{"close"}
	}
	w.WriteHeader(status)
	msg := http.StatusText(status) + "\n"
	w.Write([]byte(msg))
	lr.bytes = int64(len(msg))
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

// TLSConfig loads every certificate pair; the client's SNI picks among
// them, the first serving clients that send none.
func TLSConfig(cfg *config.Config) (*tls.Config, error) {
	tc := &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"h2", "http/1.1"},
	}
	for _, p := range cfg.TLS {
		c, err := tls.LoadX509KeyPair(p.Cert, p.Key)
		if err != nil {
			return nil, fmt.Errorf("tls cert %s, key %s: %w", p.Cert, p.Key, err)
		}
		tc.Certificates = append(tc.Certificates, c)
	}
	return tc, nil
}

// Serve runs until ctx ends, then stops accepting, finishes the requests
// in flight (up to the graceful timeout), and returns.
func (s *Server) Serve(ctx context.Context, ls *Listeners) error {
	var tc *tls.Config
	if len(ls.HTTPS) > 0 {
		var err error
		if tc, err = TLSConfig(s.cfg); err != nil {
			return err
		}
	}
	lim := s.cfg.Limits
	errLog := newErrorLog(s.log)
	newSrv := func() *http.Server {
		srv := &http.Server{
			Handler:           s,
			ReadHeaderTimeout: lim.HeaderTimeout.D(),
			IdleTimeout:       lim.IdleTimeout.D(),
			MaxHeaderBytes:    int(s.cfg.Limits.MaxHeader),
			ConnContext:       connContext,
			ErrorLog:          errLog,
		}
		srv.Protocols = new(http.Protocols)
		srv.Protocols.SetHTTP1(true)
		srv.Protocols.SetHTTP2(true)
		return srv
	}
	plain, secure := newSrv(), newSrv()
	secure.TLSConfig = tc

	pctx, stopWatch := context.WithCancel(context.Background())
	defer stopWatch()
	go s.pool.Watch(pctx, 250*time.Millisecond, func(err error) {
		s.log.Error().Err(err).Str("dir", s.cfg.Pool.SocketDir).Msg("cannot read the worker socket directory")
	})

	errs := make(chan error, len(ls.HTTP)+len(ls.HTTPS))
	var wg sync.WaitGroup
	for _, l := range ls.HTTP {
		wg.Add(1)
		go func(l net.Listener) {
			defer wg.Done()
			s.log.Info().Str("addr", l.Addr().String()).Msg("serving http")
			if err := plain.Serve(trackedListener{l}); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errs <- err
			}
		}(l)
	}
	for _, l := range ls.HTTPS {
		wg.Add(1)
		go func(l net.Listener) {
			defer wg.Done()
			s.log.Info().Str("addr", l.Addr().String()).Msg("serving https")
			if err := secure.ServeTLS(l, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errs <- err
			}
		}(l)
	}

	var err error
	select {
	case <-ctx.Done():
	case err = <-errs:
	}
	grace, cancel := context.WithTimeout(context.Background(), s.cfg.Pool.GracefulTimeout.D())
	defer cancel()
	plain.Shutdown(grace)
	secure.Shutdown(grace)
	wg.Wait()
	return err
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
