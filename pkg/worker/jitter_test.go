package worker

import (
	"testing"

	"github.com/edged/edged/pkg/config"
)

func TestMaxRequestsJitter(t *testing.T) {
	if got := maxRequests(config.Pool{MaxRequests: 0, MaxRequestsJitter: 50}); got != 0 {
		t.Errorf("max_requests 0 with jitter = %d, want 0 (never recycle)", got)
	}
	if got := maxRequests(config.Pool{MaxRequests: 100}); got != 100 {
		t.Errorf("max_requests 100 without jitter = %d, want 100", got)
	}
	seen := map[int]bool{}
	for range 500 {
		n := maxRequests(config.Pool{MaxRequests: 100, MaxRequestsJitter: 10})
		if n < 100 || n > 110 {
			t.Fatalf("max_requests 100 jitter 10 = %d, want 100 to 110", n)
		}
		seen[n] = true
	}
	if len(seen) < 8 {
		t.Errorf("500 draws gave only %d distinct values: %v", len(seen), seen)
	}
}
