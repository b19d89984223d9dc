package edge

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/edged/edged/pkg/config"
	"github.com/edged/edged/pkg/cores"
	"github.com/edged/edged/pkg/upstream"
)

// A host of several behind a load balancer (HAProxy, IPVS) leaves the
// pool in order: it says it drains (GET /healthz answers 503, the agent
// check "drain"), waits for the balancer to notice, stops keep-alive so
// that clients reconnect elsewhere, finishes what it has, and only then
// closes its listeners. Drain and Undrain switch the first parts;
// Serve does the rest when it stops (cluster.drain is its wait).

// Drain tells load balancers to send no more: /healthz answers 503 and
// the agent check "drain"; answers end their connections (HTTP/1.1
// "Connection: close", HTTP/2 GOAWAY once a connection's streams are
// done). It returns false when edged was draining already.
func (s *Server) Drain() bool {
	if !s.draining.CompareAndSwap(false, true) {
		return false
	}
	s.drainedAt.Store(time.Now().UnixNano())
	s.setKeepAlives(false)
	s.log.Info().Msg("draining: health says so, keep-alive is off; requests are still served")
	return true
}

// Undrain takes edged back into the pool; false when it was not draining.
func (s *Server) Undrain() bool {
	if !s.draining.CompareAndSwap(true, false) {
		return false
	}
	s.setKeepAlives(true)
	s.log.Info().Msg("undrained: health says up, keep-alive is on")
	return true
}

// drainState is "serving", or "draining for 12s".
func (s *Server) drainState() string {
	if !s.Draining() {
		return "serving"
	}
	return "draining for " + s.drainedFor().Round(time.Second).String()
}

// Draining says whether edged is draining.
func (s *Server) Draining() bool { return s.draining.Load() }

// drainedFor is how long edged has been draining.
func (s *Server) drainedFor() time.Duration {
	if !s.draining.Load() {
		return 0
	}
	return time.Since(time.Unix(0, s.drainedAt.Load()))
}

func (s *Server) setKeepAlives(on bool) {
	s.serversMu.Lock()
	defer s.serversMu.Unlock()
	for _, srv := range s.servers {
		srv.SetKeepAlivesEnabled(on) // net/http's: closes its idle ones
	}
	if !on && s.h1 != nil {
		s.h1.closeIdle()
	}
}

// drainBeforeStop is the stop's first part: with cluster.drain set, edged
// drains for that long (less what it has drained already) before its
// listeners close.
func (s *Server) drainBeforeStop() {
	wait := s.Config().Cluster.Drain.D()
	if wait <= 0 {
		return
	}
	s.Drain()
	left := wait - s.drainedFor()
	if left <= 0 {
		return
	}
	s.log.Info().Dur("cluster.drain", wait).Dur("left", left).Msg("stopping: draining first, so that the load balancer stops sending before the listeners close")
	time.Sleep(left)
}

// health is what /healthz says: ok, or why not.
func (s *Server) health() (bool, string) {
	if s.Draining() {
		return false, fmt.Sprintf("draining for %s: this host is leaving the pool", s.drainedFor().Round(time.Second))
	}
	var problems []string
	for _, name := range s.poolNames() {
		if err := s.workersTake(name); err != nil {
			problems = append(problems, fmt.Sprintf("site %q: %v", name, err))
		}
	}
	if len(problems) > 0 {
		return false, strings.Join(problems, "; ")
	}
	return true, "up: every site has a worker taking requests"
}

// recentAnswer is how recent a worker's answer must be for its site to be
// taken as served without a probe.
const recentAnswer = 2 * time.Second

// probeTimeout bounds a probe's wait for a worker; under a balancer's
// check timeout (HAProxy's default is its inter, 2s).
const probeTimeout = time.Second

// workersTake says whether site's workers take requests: a worker
// answered lately, or one takes a probe now (one probe at a time a site;
// its outcome is kept for a second).
func (s *Server) workersTake(site string) error {
	t := s.poolOf(site)
	if t == nil {
		return nil
	}
	if time.Since(t.Answered()) < recentAnswer {
		return nil
	}
	p := s.prober(site)
	p.mu.Lock()
	defer p.mu.Unlock()
	if time.Since(p.at) < time.Second {
		return p.err
	}
	err := t.Probe(probeTimeout)
	switch {
	case err == nil:
	case errors.Is(err, upstream.ErrNoWorkers):
		err = fmt.Errorf("no worker: nothing listens on %s", t.Socket())
	case errors.Is(err, upstream.ErrQueueFull):
		err = fmt.Errorf("the workers' queue is full")
	case timedOut(err):
		err = fmt.Errorf("no worker took a probe within %s (%d requests with the workers or queued)", probeTimeout, t.InFlight())
	}
	p.at, p.err = time.Now(), err
	return err
}

type prober struct {
	mu  sync.Mutex
	at  time.Time
	err error
}

func (s *Server) prober(site string) *prober {
	s.poolsMu.Lock()
	defer s.poolsMu.Unlock()
	if s.probers == nil {
		s.probers = map[string]*prober{}
	}
	p := s.probers[site]
	if p == nil {
		p = &prober{}
		s.probers[site] = p
	}
	return p
}

func (s *Server) poolOf(site string) *upstream.Transport {
	s.poolsMu.Lock()
	defer s.poolsMu.Unlock()
	return s.pools[site]
}

func (s *Server) poolNames() []string {
	s.poolsMu.Lock()
	defer s.poolsMu.Unlock()
	return append([]string(nil), s.poolOrder...)
}

// serveHealth is GET /healthz on the admin address: 200 while edged
// serves and every site has a worker taking requests, 503 while it
// drains or a site has none; the body says why, in one line.
func (s *Server) serveHealth(w http.ResponseWriter, r *http.Request) {
	ok, why := s.health()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if !ok {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	fmt.Fprintln(w, why)
}

// agentWord is the agent check's answer: "drain" while draining, "down"
// when a site has no worker, else "ready up" and a weight: the share of
// the pool's room that is free (1% at the least, so a busy host still
// gets its share once others are as busy). "ready" ends the drain an
// earlier "drain" put HAProxy's server in; "up" alone would not.
func (s *Server) agentWord() string {
	if s.Draining() {
		return "drain"
	}
	if ok, _ := s.health(); !ok {
		return "down"
	}
	room, busy := 0, int64(0)
	cfg := s.Config()
	for _, sc := range cfg.Sites {
		room += capacity(sc.Pool)
	}
	for _, t := range s.upstreams() {
		busy += t.InFlight()
	}
	if room <= 0 {
		return "ready up 100%"
	}
	free := 1 - float64(busy)/float64(room)
	return fmt.Sprintf("ready up %d%%", max(1, int(math.Round(100*max(free, 0)))))
}

// capacity is how many requests a site's workers run at once.
func capacity(p config.Pool) int {
	n := p.Workers
	if n <= 0 {
		n = cores.Count(cores.Own()).Workers()
	}
	switch p.Class {
	case config.ClassThreads:
		return n * max(p.Threads, 1)
	case config.ClassGevent, config.ClassASGI:
		return n * max(p.Connections, 1)
	}
	return n
}

// serveAgent answers HAProxy's agent check on l until ctx ends: one line
// a connection, then close.
func (s *Server) serveAgent(ctx context.Context, l net.Listener) {
	go func() {
		<-ctx.Done()
		l.Close()
	}()
	for {
		c, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		go func() {
			defer c.Close()
			c.SetDeadline(time.Now().Add(2 * probeTimeout))
			w := bufio.NewWriter(c)
			w.WriteString(s.agentWord() + "\n")
			w.Flush()
		}()
	}
}

// listenAgent opens metrics.agent, nil when it is not set.
func listenAgent(cfg *config.Config) (net.Listener, error) {
	if cfg.Metrics.Agent == "" {
		return nil, nil
	}
	l, err := net.Listen("tcp", cfg.Metrics.Agent)
	if err != nil {
		return nil, fmt.Errorf("metrics.agent: %w", err)
	}
	return l, nil
}
