// Package fleet is what edged tells the load balancer in front of
// several hosts (HAProxy, IPVS): GET /healthz, which says whether this
// host serves (not draining, and every site has a worker taking
// requests), and HAProxy's agent check, which says "drain", "down" or
// how much of the pool's room is free. The drain itself (keep-alive off,
// the stop's order) is the server's; this package only reports it.
package fleet

import (
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

// Workers is one site's pool as the checks see it
// (*upstream.Transport).
type Workers interface {
	// Answered is when a worker last answered (zero: never).
	Answered() time.Time
	// Probe says whether a worker takes a connection within timeout.
	Probe(timeout time.Duration) error
	// InFlight is how many requests are with the workers or queued.
	InFlight() int64
	// Socket is the workers' socket, for messages.
	Socket() string
}

var _ Workers = (*upstream.Transport)(nil)

// Site is a site's name and workers.
type Site struct {
	Name    string
	Workers Workers
	// Room is how many requests its workers run at once (Capacity).
	Room int
}

// Host is the server the checks report on.
type Host interface {
	// Draining says whether the host drains, and for how long.
	Draining() (bool, time.Duration)
	// Sites are the host's sites now.
	Sites() []Site
}

// Checker answers the health and agent checks for a host.
type Checker struct {
	host Host

	mu     sync.Mutex
	probes map[string]*probe // by site
}

type probe struct {
	mu  sync.Mutex
	at  time.Time
	err error
}

// New returns the checks of h.
func New(h Host) *Checker { return &Checker{host: h, probes: map[string]*probe{}} }

// RecentAnswer is how recent a worker's answer must be for its site to
// count as served without a probe.
const RecentAnswer = 2 * time.Second

// ProbeTimeout bounds a probe's wait for a worker: under a balancer's
// check timeout (HAProxy's default is its inter, 2 s).
const ProbeTimeout = time.Second

// Health is what /healthz says: ok, or why not, in one line.
func (c *Checker) Health() (bool, string) {
	if draining, since := c.host.Draining(); draining {
		return false, fmt.Sprintf("draining for %s: this host is leaving the pool", since.Round(time.Second))
	}
	var problems []string
	for _, s := range c.host.Sites() {
		if err := c.workersTake(s); err != nil {
			problems = append(problems, fmt.Sprintf("site %q: %v", s.Name, err))
		}
	}
	if len(problems) > 0 {
		return false, strings.Join(problems, "; ")
	}
	return true, "up: every site has a worker taking requests"
}

// workersTake says whether a site's workers take requests: one answered
// lately, or one takes a probe now (one probe at a time a site; its
// outcome is kept for a second).
func (c *Checker) workersTake(s Site) error {
	w := s.Workers
	if time.Since(w.Answered()) < RecentAnswer {
		return nil
	}
	c.mu.Lock()
	p := c.probes[s.Name]
	if p == nil {
		p = &probe{}
		c.probes[s.Name] = p
	}
	c.mu.Unlock()
	p.mu.Lock()
	defer p.mu.Unlock()
	if time.Since(p.at) < time.Second {
		return p.err
	}
	err := w.Probe(ProbeTimeout)
	var ne net.Error
	switch {
	case err == nil:
	case errors.Is(err, upstream.ErrNoWorkers):
		err = fmt.Errorf("no worker: nothing listens on %s", w.Socket())
	case errors.Is(err, upstream.ErrQueueFull):
		err = fmt.Errorf("the workers' queue is full")
	case errors.As(err, &ne) && ne.Timeout():
		err = fmt.Errorf("no worker took a probe within %s (%d requests with the workers or queued)", ProbeTimeout, w.InFlight())
	}
	p.at, p.err = time.Now(), err
	return err
}

// ServeHTTP is GET /healthz: 200 while the host serves and every site
// has a worker taking requests, 503 while it drains or a site has none;
// the body says why, in one line.
func (c *Checker) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ok, why := c.Health()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if !ok {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	fmt.Fprintln(w, why)
}

// AgentWord is the agent check's answer: "drain" while draining, "down"
// when a site has no worker, else "ready up" and a weight: the share of
// the pool's room that is free (1% at the least, so a busy host still
// gets its share once others are as busy). "ready" ends the drain an
// earlier "drain" put HAProxy's server in; "up" alone would not.
func (c *Checker) AgentWord() string {
	if draining, _ := c.host.Draining(); draining {
		return "drain"
	}
	if ok, _ := c.Health(); !ok {
		return "down"
	}
	room, busy := 0, int64(0)
	for _, s := range c.host.Sites() {
		room += s.Room
		busy += s.Workers.InFlight()
	}
	if room <= 0 {
		return "ready up 100%"
	}
	free := 1 - float64(busy)/float64(room)
	return fmt.Sprintf("ready up %d%%", max(1, int(math.Round(100*max(free, 0)))))
}

// ServeAgent answers HAProxy's agent check on l until ctx ends: one line
// a connection, then close.
func (c *Checker) ServeAgent(ctx context.Context, l net.Listener) {
	go func() {
		<-ctx.Done()
		l.Close()
	}()
	for {
		conn, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		go func() {
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(2 * ProbeTimeout))
			conn.Write([]byte(c.AgentWord() + "\n"))
		}()
	}
}

// Capacity is how many requests a site's workers run at once, by its
// pool: pool.workers ((2 x cores) + 1 when 0), times threads or
// connections for the classes that run several.
func Capacity(p config.Pool) int {
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

// Listen opens metrics.agent; nil when it is not set.
func Listen(cfg *config.Config) (net.Listener, error) {
	if cfg.Metrics.Agent == "" {
		return nil, nil
	}
	l, err := net.Listen("tcp", cfg.Metrics.Agent)
	if err != nil {
		return nil, fmt.Errorf("metrics.agent: %w", err)
	}
	return l, nil
}
