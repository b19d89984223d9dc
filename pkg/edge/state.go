package edge

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/edged/edged/pkg/certs"
	"github.com/edged/edged/pkg/config"
	"github.com/edged/edged/pkg/htpasswd"
	"github.com/edged/edged/pkg/logging"
	"github.com/edged/edged/pkg/route"
	"github.com/edged/edged/pkg/static"
	"github.com/edged/edged/pkg/upstream"
	"github.com/edged/edged/pkg/ws"
	"github.com/rs/zerolog"
)

// state is everything a request needs that a reload may change: the
// config in use and what was built from it, its certificates and its
// sites, with the table that leads to them. A reload builds a new one and
// swaps it in whole.
type state struct {
	cfg   *config.Config
	certs *certs.Store
	acme  *certs.ACME // nil when no site says tls = "acme"
	sites route.Table[*site]
	all   []*site
	// edge answers for requests no site takes (a name no site claims, a
	// malformed request): it logs them, with no site name.
	edge *site
}

// site is one site: its rules, its app's workers, its static roots, its
// per-client limits and compression, its logs.
type site struct {
	name string
	srv  *Server        // nil under --check
	cfg  *config.Config // the whole config: buffers, proxies, logs
	conf *config.Site   // the site's own part; nil for state.edge
	lim  config.Limits  // the site's limits
	app  config.App

	log      zerolog.Logger
	access   zerolog.Logger
	logged   bool // its requests go to the access log
	upstream *upstream.Transport
	routes   route.Routes[handler]
	rules    route.Routes[*rule]
	statics  []staticRoot
	limits   *clientLimits // nil: no per-client limits
	compress *compressor   // nil: [compress] is off
	metrics  *metrics      // nil under --check

	// headers are added to every answer; errorPages replace edged's own
	// plain-text error bodies, by status.
	headers    []siteHeader
	errorPages map[int][]byte

	// wsRefusedOnce logs once that the site's class takes no WebSocket.
	wsRefusedOnce sync.Once
}

// siteHeader is one of [site.headers]; override: it replaces the app's
// own header of the name.
type siteHeader struct {
	name     string
	value    []string
	override bool
}

// rule is one [[site.path]], compiled.
type rule struct {
	cfg    *config.Path
	limits *clientLimits // nil: no rate of its own
	users  *htpasswd.File
	// challenge is the WWW-Authenticate value asked with.
	challenge []string
}

type staticRoot struct {
	prefix string
	h      *static.Handler
}

// handler answers the requests a route takes, for the site the route
// belongs to.
type handler interface {
	serve(w http.ResponseWriter, r *http.Request, c client, lr *logRecord)
}

// staticHandler serves one of a site's static roots.
type staticHandler struct {
	s *site
	h *static.Handler
}

func (h staticHandler) serve(w http.ResponseWriter, r *http.Request, _ client, lr *logRecord) {
	sw := &statusWriter{ResponseWriter: w}
	lr.kind = kindStatic
	h.s.addHeaders(w.Header())
	h.h.ServeHTTP(sw, r)
	lr.status, lr.bytes, lr.reason = sw.status, sw.bytes, sw.reason
	if sw.status == http.StatusBadRequest {
		lr.limit = limitProtocol
	}
}

// appHandler passes requests to a site's app.
type appHandler struct{ s *site }

func (h appHandler) serve(w http.ResponseWriter, r *http.Request, c client, lr *logRecord) {
	if ws.Wants(r) {
		h.s.serveWebSocket(w, r, c, lr)
		return
	}
	h.s.serveApp(w, r, c, lr)
}

// newState opens what cfg names: certificates, static roots, user files,
// error pages and the directory spilled bodies go to; and builds the
// sites and the table that leads to them. Start, reload and --check all
// come through here.
func (s *Server) newState(cfg *config.Config) (*state, error) {
	if err := tempDirOK(cfg.Buffers.TempDir); err != nil {
		return nil, err
	}
	st := &state{cfg: cfg}
	done := false
	defer func() {
		if !done {
			st.close()
		}
	}()
	cs, err := certs.Load(certPairs(cfg), s.log)
	if err != nil {
		return nil, err
	}
	st.certs = cs
	if cfg.ACMEUsed() {
		// The names are covered under --check too, where nothing is
		// ordered.
		cs.UseACME(s.acme, cfg.ACMENames())
		st.acme = s.acme
	}
	access, err := s.accessLog(cfg)
	if err != nil {
		return nil, err
	}
	st.edge = &site{cfg: cfg, lim: cfg.Limits, log: s.log, access: access.With().Str("log", "access").Logger(), logged: cfg.Log.Access, metrics: s.metrics}
	for _, sc := range cfg.Sites {
		si, err := s.newSite(cfg, sc, access)
		if err != nil {
			return nil, err
		}
		st.all = append(st.all, si)
		if err := st.sites.Add(si, si.name, sc.Names, sc.Default); err != nil {
			return nil, err
		}
		if why := cs.Uncovered(sc.Names); why != "" {
			why += " (give the site a [[site.tls]] whose certificate names them)"
			if sc.HTTPS != config.HTTPSOff {
				return nil, fmt.Errorf("site %s: https = %q, but %s", sc.Name, sc.HTTPS, why)
			}
			if len(cfg.Listen.HTTPS) > 0 {
				s.log.Warn().Str("site", sc.Name).Msg(why + ": HTTPS clients of that name get a certificate for another")
			}
		}
	}
	done = true
	return st, nil
}

// accessLog is the logger access events go to: the main log, or
// log.access_file, opened (again) here, so that a reload after logrotate
// renamed it writes a new file. Under --check the file is only checked.
// A reload that drops log.access_file leaves the file open, unwritten,
// until edged stops: requests still in flight may log to it.
func (s *Server) accessLog(cfg *config.Config) (zerolog.Logger, error) {
	path := cfg.Log.AccessFile
	if path == "" {
		return s.log, nil
	}
	if s.checkOnly() {
		// The file may be written, or made in its directory; nothing
		// is made here.
		if f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0); err == nil {
			f.Close()
		} else if !errors.Is(err, os.ErrNotExist) {
			return s.log, fmt.Errorf("log.access_file: %w", err)
		} else if st, err := os.Stat(filepath.Dir(path)); err != nil || !st.IsDir() {
			return s.log, fmt.Errorf("log.access_file: no directory %s to make %s in", filepath.Dir(path), filepath.Base(path))
		}
		return s.log, nil
	}
	s.accessMu.Lock()
	defer s.accessMu.Unlock()
	if s.accessFile == nil {
		f, err := logging.OpenFile(path)
		if err != nil {
			return s.log, err
		}
		s.accessFile = f
		s.accessOut = logging.NewAsync(f, 16384)
	} else if err := s.accessFile.Reopen(path); err != nil {
		return s.log, err
	}
	return zerolog.New(s.accessOut).With().Timestamp().Logger(), nil
}

// newSite opens a site's static roots, user files and error pages, and
// sets up its routes, rules, limits and compression.
func (s *Server) newSite(cfg *config.Config, sc *config.Site, access zerolog.Logger) (*site, error) {
	log := s.log
	if len(cfg.Sites) > 1 || sc.Name != config.DefaultSite {
		log = log.With().Str("site", sc.Name).Logger()
		access = access.With().Str("site", sc.Name).Logger()
	}
	si := &site{
		name:     sc.Name,
		srv:      s,
		cfg:      cfg,
		conf:     sc,
		lim:      sc.Limits,
		app:      sc.App,
		log:      log,
		access:   access.With().Str("log", "access").Logger(),
		logged:   cfg.Log.Access && sc.Logged(),
		upstream: s.pool(sc),
		limits:   newClientLimits(sc.Limits),
		metrics:  s.metrics,
	}
	fail := func(err error) (*site, error) {
		si.close()
		return nil, fmt.Errorf("site %s: %w", sc.Name, err)
	}
	cp, err := newCompressor(cfg.Compress)
	if err != nil {
		return fail(fmt.Errorf("compress: %w", err))
	}
	si.compress = cp
	for _, st := range sc.Static {
		h, err := static.New(static.Options{Prefix: st.Prefix, Root: st.Root, MaxAge: st.MaxAge.D(), Index: st.Index})
		if err != nil {
			return fail(fmt.Errorf("static root %s: %w", st.Prefix, err))
		}
		si.statics = append(si.statics, staticRoot{st.Prefix, h})
	}
	// Longest prefix first: the routes are tried in this order.
	sort.SliceStable(si.statics, func(i, j int) bool { return len(si.statics[i].prefix) > len(si.statics[j].prefix) })
	for _, sr := range si.statics {
		si.routes = append(si.routes, route.Route[handler]{Match: route.Matcher{Prefix: sr.prefix}, Handler: staticHandler{si, sr.h}})
	}
	si.routes = append(si.routes, route.Route[handler]{Handler: appHandler{si}})

	for i := range sc.Paths {
		p := &sc.Paths[i]
		ru := &rule{cfg: p}
		if p.Rate > 0 {
			ru.limits = newClientLimits(config.Limits{Rate: p.Rate, Burst: p.Burst})
		}
		if p.AuthBasicUserFile != "" {
			users, err := htpasswd.Load(p.AuthBasicUserFile)
			if err != nil {
				return fail(fmt.Errorf("path[%d].auth_basic_user_file: %w", i, err))
			}
			ru.users = users
			ru.challenge = []string{`Basic realm="` + p.AuthBasic + `", charset="UTF-8"`}
		}
		si.rules = append(si.rules, route.Route[*rule]{Match: route.Matcher{Prefix: p.Prefix, Pattern: p.Pattern, Methods: p.Methods}, Handler: ru})
	}

	names := make([]string, 0, len(sc.Headers))
	for name := range sc.Headers {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		canon := http.CanonicalHeaderKey(name)
		over := false
		for _, o := range sc.OverrideHeaders {
			over = over || strings.EqualFold(o, name)
		}
		si.headers = append(si.headers, siteHeader{canon, []string{sc.Headers[name]}, over})
	}
	for code, file := range sc.ErrorPages {
		b, err := os.ReadFile(file)
		if err != nil {
			return fail(fmt.Errorf("errors.%d: %w", code, err))
		}
		if si.errorPages == nil {
			si.errorPages = map[int][]byte{}
		}
		si.errorPages[code] = b
	}
	return si, nil
}

// checkOnly says the server is --check's: it builds states to check a
// config and serves nothing (pools is set, or not, once, by New).
func (s *Server) checkOnly() bool { return s.pools == nil }

// pool is the transport to a site's workers: made once per site and kept
// across reloads, as the workers are.
func (s *Server) pool(sc *config.Site) *upstream.Transport {
	if s.checkOnly() {
		return nil // nothing is ever sent
	}
	s.poolsMu.Lock()
	defer s.poolsMu.Unlock()
	t := s.pools[sc.Name]
	if t == nil {
		t = upstream.New(sc.Pool.Socket(), upstreamLimits(sc))
		s.pools[sc.Name] = t
		s.poolOrder = append(s.poolOrder, sc.Name)
	}
	// A kept transport's limits change only once the new state is in use
	// (usePools): a reload refused after this leaves them as they were.
	return t
}

// usePools puts st's limits on its sites' transports and forgets the
// transports of sites st no longer has.
func (s *Server) usePools(st *state) {
	s.poolsMu.Lock()
	defer s.poolsMu.Unlock()
	keep := map[string]bool{}
	for _, si := range st.all {
		keep[si.name] = true
		if t := s.pools[si.name]; t != nil {
			t.SetLimits(upstreamLimits(si.conf))
		}
	}
	order := s.poolOrder[:0]
	for _, name := range s.poolOrder {
		if keep[name] {
			order = append(order, name)
		} else {
			delete(s.pools, name)
		}
	}
	s.poolOrder = order
}

func upstreamLimits(sc *config.Site) upstream.Limits {
	return upstream.Limits{QueueTimeout: sc.Limits.QueueTimeout.D(), AppTimeout: sc.App.Timeout.D()}
}

// addHeaders adds the site's headers to an answer edged or a static root
// makes.
func (si *site) addHeaders(h http.Header) {
	for _, sh := range si.headers {
		if _, ok := h[sh.name]; !ok || sh.override {
			h[sh.name] = sh.value
		}
	}
}

func (si *site) close() {
	for _, r := range si.statics {
		r.h.Close()
	}
}

func (st *state) close() {
	st.certs.Close()
	for _, si := range st.all {
		si.close()
	}
}

// certPairs are the top-level [[tls]] pairs and every site's.
func certPairs(cfg *config.Config) []certs.Pair {
	var pairs []certs.Pair
	for i, p := range cfg.TLS.Files {
		pairs = append(pairs, certs.Pair{Cert: p.Cert, Key: p.Key, Where: fmt.Sprintf("tls[%d]", i)})
	}
	for _, s := range cfg.SiteBlocks {
		for i, p := range s.TLS.Files {
			pairs = append(pairs, certs.Pair{Cert: p.Cert, Key: p.Key, Where: fmt.Sprintf("site %s: tls[%d]", s.Name, i)})
		}
	}
	return pairs
}
