package edge

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/edged/edged/pkg/config"
)

// from is a request as sent from addr.
func from(addr string) *http.Request {
	r := environRequest("GET", "/", nil)
	r.RemoteAddr = addr + ":40000"
	return r
}

func TestRateLimit(t *testing.T) {
	dir := socketDir(t)
	startWorker(t, dir, "1", replyOK)
	s := newServer(t, dir, "limits.rate", `"1r/s"`, "limits.burst", "3")
	for i := 0; i < 3; i++ {
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, from("10.1.1.1"))
		if rec.Code != 200 {
			t.Fatalf("request %d of the burst: %d, want 200", i+1, rec.Code)
		}
	}
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, from("10.1.1.1"))
	if rec.Code != http.StatusTooManyRequests {
		t.Fatalf("past the burst: %d, want 429", rec.Code)
	}
	if ra, err := strconv.Atoi(rec.Header().Get("Retry-After")); err != nil || ra < 1 || ra > 2 {
		t.Errorf("Retry-After %q, want about a second", rec.Header().Get("Retry-After"))
	}
	// Another client is not held to the first one's rate.
	rec = httptest.NewRecorder()
	s.ServeHTTP(rec, from("10.2.2.2"))
	if rec.Code != 200 {
		t.Errorf("another client: %d, want 200", rec.Code)
	}
}

func TestConnectionsPerClient(t *testing.T) {
	dir := socketDir(t)
	hold := make(chan struct{})
	in := make(chan struct{}, 4)
	for _, w := range []string{"1", "2", "3"} {
		startWorker(t, dir, w, func(c *fconn, req *wreq) {
			in <- struct{}{}
			select {
			case <-hold:
			case <-c.done:
			}
			c.respond("200 OK", nil, []byte("ok"))
		})
	}
	s := newServer(t, dir, "limits.connections_per_client", "2")
	done := make(chan int, 2)
	for i := 0; i < 2; i++ {
		go func() {
			rec := httptest.NewRecorder()
			s.ServeHTTP(rec, from("10.1.1.1"))
			done <- rec.Code
		}()
	}
	wait(t, in, "the first request in hand")
	wait(t, in, "the second request in hand")
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, from("10.1.1.1"))
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" {
		t.Errorf("a third request in hand: %d (Retry-After %q), want 503 with Retry-After", rec.Code, rec.Header().Get("Retry-After"))
	}
	close(hold)
	for i := 0; i < 2; i++ {
		if code := wait(t, done, "a held request"); code != 200 {
			t.Errorf("held request: %d, want 200", code)
		}
	}
	// Done: the client may send again.
	rec = httptest.NewRecorder()
	s.ServeHTTP(rec, from("10.1.1.1"))
	if rec.Code != 200 {
		t.Errorf("after the others finished: %d, want 200", rec.Code)
	}
}

// A flood from many addresses keeps the table bounded, and a client that
// was there before the flood keeps being served.
func TestClientLimitsBounded(t *testing.T) {
	l := newClientLimits(config.Limits{Rate: 20, Burst: 40})
	l.max = 1000
	now := time.Now()
	regular := netip.MustParseAddr("192.0.2.1")
	if release, why, _ := l.admit(regular, now); why != "" {
		t.Fatalf("the regular client: %s", why)
	} else {
		release()
	}
	turnedAway := 0
	for i := 0; i < 200000; i++ {
		// One request from each of 127.x.y.z, 10 µs apart.
		now = now.Add(10 * time.Microsecond)
		a := netip.AddrFrom4([4]byte{127, byte(i >> 16), byte(i >> 8), byte(i)})
		if release, why, _ := l.admit(a, now); why != "" {
			turnedAway++
		} else {
			release()
		}
		// The regular client, ten requests a second, within its rate.
		if i%10000 == 0 {
			release, why, _ := l.admit(regular, now)
			if why != "" {
				t.Fatalf("the regular client during the flood (request %d): %s", i, why)
			}
			release()
		}
		if n := len(l.clients); n > l.max {
			t.Fatalf("%d clients kept, more than the %d bound", n, l.max)
		}
	}
	if turnedAway > 0 {
		t.Errorf("%d flood addresses turned away: a full table should make room by forgetting the least recent", turnedAway)
	}
}
