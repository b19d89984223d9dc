package fleet

import (
	"context"
	"io"
	"net"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/edged/edged/pkg/upstream"
)

type fakeWorkers struct {
	answered time.Time
	probeErr error
	probes   int
	inFlight int64
}

func (f *fakeWorkers) Answered() time.Time { return f.answered }
func (f *fakeWorkers) Probe(time.Duration) error {
	f.probes++
	return f.probeErr
}
func (f *fakeWorkers) InFlight() int64 { return f.inFlight }
func (f *fakeWorkers) Socket() string  { return "/run/edged/workers/queue.sock" }

type fakeHost struct {
	draining bool
	sites    []Site
}

func (h *fakeHost) Draining() (bool, time.Duration) { return h.draining, 12 * time.Second }
func (h *fakeHost) Sites() []Site                   { return h.sites }

func TestChecks(t *testing.T) {
	timeout := &net.OpError{Op: "read", Err: os.ErrDeadlineExceeded}
	tests := []struct {
		name     string
		draining bool
		w        fakeWorkers
		room     int
		code     int
		says     string
		agent    string
	}{
		{"answered lately", false, fakeWorkers{answered: time.Now(), inFlight: 3}, 4, 200, "up", "ready up 25%"},
		{"idle, a worker takes the probe", false, fakeWorkers{}, 5, 200, "up", "ready up 100%"},
		{"all busy", false, fakeWorkers{answered: time.Now(), inFlight: 40}, 5, 200, "up", "ready up 1%"},
		{"draining", true, fakeWorkers{answered: time.Now()}, 5, 503, "draining for 12s", "drain"},
		{"nothing listens", false, fakeWorkers{probeErr: upstream.ErrNoWorkers}, 5, 503, `site "shop": no worker: nothing listens on /run/edged/workers/queue.sock`, "down"},
		{"queue full", false, fakeWorkers{probeErr: upstream.ErrQueueFull}, 5, 503, "queue is full", "down"},
		{"no worker takes", false, fakeWorkers{probeErr: timeout, inFlight: 7}, 5, 503, "no worker took a probe within 1s (7 requests", "down"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := tt.w
			c := New(&fakeHost{draining: tt.draining, sites: []Site{{Name: "shop", Workers: &w, Room: tt.room}}})
			rec := httptest.NewRecorder()
			c.ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
			if rec.Code != tt.code || !strings.Contains(rec.Body.String(), tt.says) {
				t.Errorf("healthz = %d %q, want %d saying %q", rec.Code, rec.Body.String(), tt.code, tt.says)
			}
			if got := c.AgentWord(); got != tt.agent {
				t.Errorf("agent = %q, want %q", got, tt.agent)
			}
		})
	}
}

// A probe's outcome is kept for a second: a balancer checking often
// costs the workers one connection a second at most.
func TestProbeKept(t *testing.T) {
	w := &fakeWorkers{}
	c := New(&fakeHost{sites: []Site{{Name: "shop", Workers: w, Room: 1}}})
	for range 5 {
		c.Health()
	}
	if w.probes != 1 {
		t.Errorf("%d probes for 5 checks within a second, want 1", w.probes)
	}
}

func TestServeAgent(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := New(&fakeHost{draining: true})
	go c.ServeAgent(ctx, l)
	conn, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, _ := io.ReadAll(conn)
	if string(b) != "drain\n" {
		t.Errorf("agent answered %q, want \"drain\\n\"", b)
	}
}
