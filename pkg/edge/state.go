package edge

import (
	"fmt"
	"net/http"
	"sort"

	"github.com/edged/edged/pkg/config"
	"github.com/edged/edged/pkg/route"
	"github.com/edged/edged/pkg/static"
	"github.com/edged/edged/pkg/upstream"
	"github.com/rs/zerolog"
)

// state is everything a request needs that a reload may change: the
// config in use and what was built from it, its certificates and its
// sites, with the routes that lead to them. A reload builds a new one and
// swaps it in whole.
type state struct {
	cfg    *config.Config
	certs  *certSet
	routes route.Table[handler]
	// def is the site of the config's top-level tables, which every
	// host name reaches.
	def *site
}

// site is one site: its app's workers, its static roots, its per-client
// limits and compression, its logs.
type site struct {
	name     string
	cfg      *config.Config
	log      zerolog.Logger
	access   zerolog.Logger
	upstream *upstream.Transport
	statics  []staticRoot
	limits   *clientLimits // nil: no per-client limits
	compress *compressor   // nil: [compress] is off
	metrics  *metrics      // nil under --check
}

type staticRoot struct {
	prefix string
	h      *static.Handler
}

// handler answers the requests a route takes, for the site the route
// belongs to.
type handler interface {
	site() *site
	serve(w http.ResponseWriter, r *http.Request, c client, lr *logRecord)
}

// staticHandler serves one of a site's static roots.
type staticHandler struct {
	s *site
	h *static.Handler
}

func (h staticHandler) site() *site { return h.s }

func (h staticHandler) serve(w http.ResponseWriter, r *http.Request, _ client, lr *logRecord) {
	sw := &statusWriter{ResponseWriter: w}
	lr.kind = kindStatic
	h.h.ServeHTTP(sw, r)
	lr.status, lr.bytes, lr.reason = sw.status, sw.bytes, sw.reason
	if sw.status == http.StatusBadRequest {
		lr.limit = limitProtocol
	}
}

// appHandler passes requests to a site's app.
type appHandler struct{ s *site }

func (h appHandler) site() *site { return h.s }

func (h appHandler) serve(w http.ResponseWriter, r *http.Request, c client, lr *logRecord) {
	h.s.serveApp(w, r, c, lr)
}

// newState opens what cfg names: certificates, static roots, and the
// directory spilled bodies go to; and builds the routes. Start, reload
// and --check all come through here.
func (s *Server) newState(cfg *config.Config) (*state, error) {
	if err := tempDirOK(cfg.Buffers.TempDir); err != nil {
		return nil, err
	}
	st := &state{cfg: cfg}
	if len(cfg.TLS) > 0 {
		cs, err := loadCerts(cfg)
		if err != nil {
			return nil, err
		}
		st.certs = cs
	}
	def, err := s.newSite("default", cfg)
	if err != nil {
		return nil, err
	}
	st.def = def
	host := &route.Host[handler]{Name: def.name}
	for _, sr := range def.statics {
		host.Routes = append(host.Routes, route.Route[handler]{Match: route.Matcher{Prefix: sr.prefix}, Handler: staticHandler{def, sr.h}})
	}
	host.Routes = append(host.Routes, route.Route[handler]{Handler: appHandler{def}})
	if err := st.routes.Add(host, nil, true); err != nil {
		st.close()
		return nil, err
	}
	return st, nil
}

// newSite opens a site's static roots and sets up its limits and
// compression.
func (s *Server) newSite(name string, cfg *config.Config) (*site, error) {
	si := &site{
		name:     name,
		cfg:      cfg,
		log:      s.log,
		access:   s.log.With().Str("log", "access").Logger(),
		upstream: s.upstream,
		limits:   newClientLimits(cfg.Limits),
		metrics:  s.metrics,
	}
	cp, err := newCompressor(cfg.Compress)
	if err != nil {
		return nil, fmt.Errorf("compress: %w", err)
	}
	si.compress = cp
	for _, sc := range cfg.Static {
		h, err := static.New(static.Options{Prefix: sc.Prefix, Root: sc.Root, MaxAge: sc.MaxAge.D(), Index: sc.Index})
		if err != nil {
			si.close()
			return nil, fmt.Errorf("static root %s: %w", sc.Prefix, err)
		}
		si.statics = append(si.statics, staticRoot{sc.Prefix, h})
	}
	// Longest prefix first: the routes are tried in this order.
	sort.Slice(si.statics, func(i, j int) bool { return len(si.statics[i].prefix) > len(si.statics[j].prefix) })
	return si, nil
}

func (si *site) close() {
	for _, r := range si.statics {
		r.h.Close()
	}
}

func (st *state) close() {
	if st.def != nil {
		st.def.close()
	}
}
