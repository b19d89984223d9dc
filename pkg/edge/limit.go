package edge

import (
	"container/list"
	"math"
	"net/netip"
	"sync"
	"time"

	"github.com/edged/edged/pkg/config"
	"golang.org/x/time/rate"
)

// maxClients bounds how many client addresses the per-client limits keep
// (about 200 bytes each: some 13 MB at most), however many addresses a
// flood comes from.
const maxClients = 1 << 16

// clientLimits holds limits.rate / limits.burst (a token bucket per
// client address, nginx's limit_req) and limits.connections_per_client
// (requests one address has in hand at once, nginx's limit_conn).
type clientLimits struct {
	rate  rate.Limit
	burst int
	conns int // 0: no limit
	max   int

	mu      sync.Mutex
	clients map[netip.Addr]*clientState
	// recent orders the clients by their last request, most recent
	// first: when the table is full the least recent one goes, as in
	// nginx's zones, so a flood from new addresses pushes out its own
	// and a client that keeps coming keeps its place.
	recent list.List
}

type clientState struct {
	addr   netip.Addr
	bucket *rate.Limiter // nil without a rate
	inHand int
	place  *list.Element
}

// newClientLimits returns the limits of cfg, or nil when there are none.
func newClientLimits(l config.Limits) *clientLimits {
	if l.Rate == 0 && l.ConnectionsPerClient == 0 {
		return nil
	}
	return &clientLimits{
		rate:    rate.Limit(l.Rate.PerSecond()),
		burst:   l.Burst,
		conns:   l.ConnectionsPerClient,
		max:     maxClients,
		clients: map[netip.Addr]*clientState{},
	}
}

// Why a request was turned away.
const (
	overRate  = "over limits.rate for this client"
	overConns = "over limits.connections_per_client for this client"
	overTable = "too many clients tracked by the per-client limits"
)

// admit takes a request from addr. It returns a release func to call when
// the request is done, or a reason and, for the rate, how long until the
// client may come back (zero otherwise).
func (c *clientLimits) admit(addr netip.Addr, now time.Time) (release func(), why string, retry time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.clients[addr]
	if st == nil {
		if len(c.clients) >= c.max && !c.evictLocked() {
			return nil, overTable, 0
		}
		st = &clientState{addr: addr}
		if c.rate > 0 {
			st.bucket = rate.NewLimiter(c.rate, c.burst)
		}
		st.place = c.recent.PushFront(st)
		c.clients[addr] = st
	} else {
		c.recent.MoveToFront(st.place)
	}
	if c.conns > 0 && st.inHand >= c.conns {
		return nil, overConns, 0
	}
	if st.bucket != nil {
		r := st.bucket.ReserveN(now, 1)
		if d := r.DelayFrom(now); d > 0 {
			r.CancelAt(now)
			return nil, overRate, d
		}
	}
	st.inHand++
	return func() {
		c.mu.Lock()
		st.inHand--
		c.mu.Unlock()
	}, "", 0
}

// evictLocked makes room by forgetting the least recent client, unless
// it has requests in hand (then every place is in use, and it says no).
func (c *clientLimits) evictLocked() bool {
	back := c.recent.Back()
	if back == nil {
		return true
	}
	st := back.Value.(*clientState)
	if st.inHand > 0 {
		return false
	}
	c.recent.Remove(back)
	delete(c.clients, st.addr)
	return true
}

// retryAfter is d as whole seconds for Retry-After, at least 1.
func retryAfter(d time.Duration) int {
	return max(1, int(math.Ceil(d.Seconds())))
}
