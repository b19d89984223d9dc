package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestSlowUploadsDoNotStarveWorkers: while 64 clients trickle 1 MB bodies
// at 100 KB/s into a pool of 5 sync workers, fast requests keep being
// answered. edged buffers each upload whole before a worker sees it, so no
// worker waits on a slow client. The test asserts the order of events, not
// a time: every fast request completes before any slow upload does.
func TestSlowUploadsDoNotStarveWorkers(t *testing.T) {
	if testing.Short() {
		t.Skip("takes about 12 s")
	}
	s := startSuite(t, suiteOpts{workers: 5, limits: `max_body = "2m"
body_timeout = "30s"`})
	addr := strings.TrimPrefix(s.http, "http://")

	const (
		uploaders = 64
		size      = 1_000_000
		rate      = 100_000 // bytes per second
		tick      = 100 * time.Millisecond
		fast      = 40
	)
	var seq atomic.Int64
	slowDone := make([]int64, uploaders)
	started := make(chan struct{}, uploaders)
	var wg sync.WaitGroup
	errs := make(chan error, uploaders+fast)
	for i := 0; i < uploaders; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			c, err := net.Dial("tcp", addr)
			if err != nil {
				errs <- err
				started <- struct{}{}
				return
			}
			defer c.Close()
			fmt.Fprintf(c, "POST /slurp HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\nConnection: close\r\n\r\n", size)
			chunk := make([]byte, rate*int(tick)/int(time.Second))
			for sent := 0; sent < size; sent += len(chunk) {
				if _, err := c.Write(chunk[:min(len(chunk), size-sent)]); err != nil {
					errs <- fmt.Errorf("uploader %d: %v", i, err)
					return
				}
				if sent == 0 {
					started <- struct{}{}
				}
				time.Sleep(tick)
			}
			b, _ := io.ReadAll(c)
			slowDone[i] = seq.Add(1)
			if !strings.HasPrefix(string(b), "HTTP/1.1 200") || !strings.Contains(string(b), fmt.Sprintf(`"size":%d`, size)) {
				errs <- fmt.Errorf("uploader %d got %q", i, firstLine(string(b)))
			}
		}(i)
	}
	for i := 0; i < uploaders; i++ {
		<-started
	}

	// Every upload is now in flight. Fast requests go through the same
	// pool of 5 workers.
	client := s.client()
	fastDone := make([]int64, fast)
	for i := 0; i < fast; i++ {
		resp, err := client.Get(s.http + "/hello")
		if err != nil {
			t.Fatalf("fast request %d: %v", i, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		fastDone[i] = seq.Add(1)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("fast request %d = %d, want 200", i, resp.StatusCode)
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	firstSlow := int64(1 << 62)
	for _, d := range slowDone {
		if d > 0 && d < firstSlow {
			firstSlow = d
		}
	}
	for i, d := range fastDone {
		if d > firstSlow {
			t.Errorf("fast request %d completed after a slow upload had finished (event %d > %d)", i, d, firstSlow)
		}
	}
}
