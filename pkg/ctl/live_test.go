package ctl

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

func parsed(t *testing.T, at time.Time, text string) *scrape {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	return &scrape{at: at, fams: fams}
}

func TestQuantile(t *testing.T) {
	bs := []bucket{{0.01, 50}, {0.1, 90}, {1, 100}, {math.Inf(1), 100}}
	for _, tt := range []struct{ q, want float64 }{{0.5, 0.01}, {0.25, 0.005}, {0.7, 0.055}, {0.95, 0.55}} {
		if got := quantile(tt.q, bs); math.Abs(got-tt.want) > 1e-9 {
			t.Errorf("quantile(%v) = %v, want %v", tt.q, got, tt.want)
		}
	}
	if !math.IsNaN(quantile(0.5, []bucket{{1, 0}, {math.Inf(1), 0}})) {
		t.Errorf("the quantile of nothing is not NaN")
	}
}

// The view between two readings: rates over the time between them,
// quantiles of what came between, per-worker busy shares.
func TestBetween(t *testing.T) {
	t0 := time.Unix(1000, 0)
	a := parsed(t, t0, `# TYPE edged_request_duration_seconds histogram
edged_requests_total{class="2xx",kind="app",method="GET"} 100
edged_requests_total{class="5xx",kind="app",method="GET"} 1
edged_request_duration_seconds_bucket{kind="app",le="0.01"} 100
edged_request_duration_seconds_bucket{kind="app",le="0.1"} 101
edged_request_duration_seconds_bucket{kind="app",le="+Inf"} 101
edged_request_duration_seconds_sum{kind="app"} 1
edged_request_duration_seconds_count{kind="app"} 101
edged_worker_requests_total{worker="1"} 60
edged_worker_requests_total{worker="2"} 41
edged_worker_busy_seconds_total{worker="1"} 10
edged_worker_busy_seconds_total{worker="2"} 10
edged_rejected_total{limit="limits.rate"} 5
edged_listen_queue{socket="workers /run/q.sock"} 0
edged_listen_backlog{socket="workers /run/q.sock"} 1023
`)
	b := parsed(t, t0.Add(2*time.Second), `# TYPE edged_request_duration_seconds histogram
edged_requests_total{class="2xx",kind="app",method="GET"} 300
edged_requests_total{class="5xx",kind="app",method="GET"} 3
edged_request_duration_seconds_bucket{kind="app",le="0.01"} 100
edged_request_duration_seconds_bucket{kind="app",le="0.1"} 303
edged_request_duration_seconds_bucket{kind="app",le="+Inf"} 303
edged_request_duration_seconds_sum{kind="app"} 20
edged_request_duration_seconds_count{kind="app"} 303
edged_worker_requests_total{worker="1"} 160
edged_worker_requests_total{worker="2"} 143
edged_worker_busy_seconds_total{worker="1"} 12
edged_worker_busy_seconds_total{worker="2"} 10.5
edged_worker_rss_bytes{worker="1"} 3.145728e+07
edged_rejected_total{limit="limits.rate"} 9
edged_listen_queue{socket="workers /run/q.sock"} 7
edged_listen_backlog{socket="workers /run/q.sock"} 1023
`)
	v := between(a, b)
	check := func(what string, got, want float64) {
		t.Helper()
		if math.Abs(got-want) > 1e-6 {
			t.Errorf("%s = %v, want %v", what, got, want)
		}
	}
	check("req/s", v.RequestsPerSec, 101)
	check("5xx/s", v.ErrorsPerSec, 1)
	check("p50 ms", v.P50ms, 55) // all 202 between 10 and 100 ms
	check("queued", v.Queued, 7)
	check("rate refusals/s", v.RejectedPerSec["limits.rate"], 2)
	if len(v.Workers) != 2 {
		t.Fatalf("workers %v", v.Workers)
	}
	check("worker 1 busy", v.Workers[0].Busy, 1)
	check("worker 2 busy", v.Workers[1].Busy, 0.25)
	check("worker 1 req/s", v.Workers[0].RequestsPerSec, 50)
	check("worker 1 rss", v.Workers[0].RSSBytes, 30*1<<20)
}
