package edge

import (
	"context"
	"net"
	"net/http"
	"time"

	"github.com/edged/edged/pkg/fleet"
)

// A host of several behind a load balancer (HAProxy, IPVS) leaves the
// pool in order: it says it drains (GET /healthz answers 503, the agent
// check "drain": pkg/fleet), waits for the balancer to notice, stops
// keep-alive so that clients reconnect elsewhere, finishes what it has,
// and only then closes its listeners. Drain and Undrain switch the
// first parts; Serve does the rest when it stops (cluster.drain is its
// wait).

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
		srv.SetKeepAlivesEnabled(on) // off, each closes its idle connections
	}
}

// keepAliver is a server whose keep-alive can be turned off: net/http's,
// edged's HTTP/1.1 loop.
type keepAliver interface{ SetKeepAlivesEnabled(bool) }

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

// Draining and Sites make the server the fleet checks' Host.
type fleetHost struct{ s *Server }

func (h fleetHost) Draining() (bool, time.Duration) { return h.s.Draining(), h.s.drainedFor() }

func (h fleetHost) Sites() []fleet.Site {
	cfg := h.s.Config()
	room := map[string]int{}
	for _, sc := range cfg.Sites {
		room[sc.Name] = fleet.Capacity(sc.Pool)
	}
	s := h.s
	s.poolsMu.Lock()
	defer s.poolsMu.Unlock()
	out := make([]fleet.Site, 0, len(s.poolOrder))
	for _, name := range s.poolOrder {
		out = append(out, fleet.Site{Name: name, Workers: s.pools[name], Room: room[name]})
	}
	return out
}

// The checks, as the admin listener and the tests ask them.
func (s *Server) health() (bool, string) { return s.fleet.Health() }
func (s *Server) agentWord() string      { return s.fleet.AgentWord() }
func (s *Server) serveHealth(w http.ResponseWriter, r *http.Request) {
	s.fleet.ServeHTTP(w, r)
}
func (s *Server) serveAgent(ctx context.Context, l net.Listener) { s.fleet.ServeAgent(ctx, l) }
