package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// A request never waits while a worker is idle: with one worker stuck in
// a 5 s request, the next 20 quick ones are all answered by the others,
// none of them behind the stuck one.
func TestFreeWorkersTakeTheQueue(t *testing.T) {
	s := startSuite(t, suiteOpts{workers: 3})
	c := s.client()
	stuck := make(chan string, 1)
	go func() {
		resp, err := c.Get(s.http + "/sleep?s=5")
		if err != nil {
			stuck <- err.Error()
			return
		}
		resp.Body.Close()
		stuck <- resp.Status
	}()
	time.Sleep(300 * time.Millisecond)
	start := time.Now()
	var slowest time.Duration
	for i := 0; i < 20; i++ {
		t0 := time.Now()
		status, _ := get(t, c, s.http+"/whoami")
		if status != 200 {
			t.Fatalf("quick request %d: status %d", i+1, status)
		}
		slowest = max(slowest, time.Since(t0))
	}
	t.Logf("20 quick requests beside a stuck one: %v, the slowest %v", time.Since(start), slowest)
	// One queued behind the stuck request would take its 5 s.
	if slowest > 2*time.Second {
		t.Errorf("a quick request took %v while two workers were free: it waited behind the stuck one", slowest)
	}
	select {
	case st := <-stuck:
		t.Errorf("the 5 s request ended during the quick ones: %s", st)
	default:
	}
	if st := <-stuck; st != "200 OK" {
		t.Errorf("the 5 s request: %s, want 200 OK", st)
	}
}

// jsonString is the string value of key in a flat JSON object.
func jsonString(body, key string) string {
	i := strings.Index(body, `"`+key+`":`)
	if i < 0 {
		return ""
	}
	rest := strings.TrimLeft(body[i+len(key)+3:], " ")
	if !strings.HasPrefix(rest, `"`) {
		return ""
	}
	rest = rest[1:]
	return rest[:strings.IndexByte(rest, '"')]
}

// The gevent class serves an app that waits on I/O: 200 requests at once
// to a route that sleeps 100 ms finish far sooner than two sync workers
// could (200 x 100 ms / 2 = 10 s).
func TestGevent(t *testing.T) {
	needGevent(t)
	s := startSuite(t, suiteOpts{class: "gevent", workers: 2})
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 200}, Timeout: 30 * time.Second}
	var wg sync.WaitGroup
	var mu sync.Mutex
	bad := 0
	start := time.Now()
	for i := 0; i < 200; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := c.Get(s.http + "/sleep?s=0.1")
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			if err != nil || resp.StatusCode != 200 {
				mu.Lock()
				bad++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	t.Logf("200 concurrent 100 ms requests on 2 gevent workers: %v", took)
	if bad > 0 {
		t.Errorf("%d of 200 requests failed", bad)
	}
	if took > 4*time.Second {
		t.Errorf("200 concurrent 100 ms requests took %v, want well under the 10 s two sync workers need", took)
	}
	if status, body := get(t, c, s.http+"/hello"); status != 200 || !strings.Contains(body, "hello") {
		t.Errorf("GET /hello on gevent: %d %q", status, body)
	}
}

// A greenlet stuck past app.timeout gets its 504 and its stack reported,
// and is ended alone: the worker's other requests go on.
func TestGeventHungGreenlet(t *testing.T) {
	needGevent(t)
	s := startSuite(t, suiteOpts{class: "gevent", workers: 1, app: `timeout = "1s"`})
	c := s.client()
	pid := s.hang(t, "/sleep?s=60", "flaskapp.py", "sleep", `"path":"/sleep"`)
	if status, body := get(t, c, s.http+"/whoami"); status != 200 || jsonInt(body, "pid") != pid {
		t.Errorf("after the stuck greenlet: %d %q, want 200 from the same process (pid %d)", status, body, pid)
	}
}

// needGevent skips when the Debian python3-gevent package is missing;
// `make test` installs it, so in CI this never skips.
func needGevent(t testing.TB) {
	t.Helper()
	needFlask(t)
	if err := execPython("import gevent"); err != nil {
		t.Skipf("SKIPPED: %s cannot import gevent (install python3-gevent: `make deps`)", python)
	}
}

// A response the app asks to stream reaches the client as it is made:
// five chunks 300 ms apart arrive as five reads, not one at the end.
func TestStreamedResponses(t *testing.T) {
	for _, class := range []string{"sync", "gevent"} {
		t.Run(class, func(t *testing.T) {
			if class == "gevent" {
				needGevent(t)
			}
			s := startSuite(t, suiteOpts{class: class, workers: 1})
			for _, tt := range []struct{ path, first string }{
				{"/drip", "drip 0\n"},
				{"/events", "data: 0\n\n"},
			} {
				arrivals, first := chunkArrivals(t, s.http[len("http://"):], tt.path)
				if first != tt.first {
					t.Errorf("%s: first arrival %q, want %q", tt.path, first, tt.first)
				}
				if len(arrivals) != 5 {
					t.Errorf("%s: %d arrivals at %v, want 5 (one per chunk)", tt.path, len(arrivals), arrivals)
					continue
				}
				// The first comes at once, the last after the app's 1.2 s.
				if arrivals[0] > time.Second || arrivals[4]-arrivals[0] < 900*time.Millisecond {
					t.Errorf("%s: chunks arrived at %v, want the first at once and the rest spread over ~1.2 s", tt.path, arrivals)
				}
			}
		})
	}
}

// chunkArrivals reads a chunked response over a raw connection and
// returns when each body chunk arrived, from the request, and the first.
func chunkArrivals(t *testing.T, addr, path string) ([]time.Duration, string) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	start := time.Now()
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", path)
	r := bufio.NewReader(conn)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("reading the head: %v", err)
		}
		if strings.HasPrefix(strings.ToLower(line), "content-length:") {
			t.Fatalf("a streamed response came with %q: it was buffered", strings.TrimSpace(line))
		}
		if line == "\r\n" {
			break
		}
	}
	var at []time.Duration
	first := ""
	for {
		var n int
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("reading a chunk size: %v", err)
		}
		if _, err := fmt.Sscanf(line, "%x", &n); err != nil {
			t.Fatalf("bad chunk size line %q", line)
		}
		if n == 0 {
			return at, first
		}
		chunk := make([]byte, n+2)
		if _, err := io.ReadFull(r, chunk); err != nil {
			t.Fatalf("reading a chunk: %v", err)
		}
		if first == "" {
			first = string(chunk[:n])
		}
		at = append(at, time.Since(start))
	}
}

// A buffered response frees its worker as soon as the app is done, not
// when a slow client has read it: with one worker, a client that reads
// nothing of a 4 MB answer does not hold up the next request.
func TestBufferedFreesWorker(t *testing.T) {
	s := startSuite(t, suiteOpts{workers: 1, limits: `send_timeout = "30s"`})
	conn, err := net.Dial("tcp", s.http[len("http://"):])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /big?n=4194304 HTTP/1.1\r\nHost: x\r\n\r\n")
	// Read nothing: the answer waits in edged, not in the worker.
	time.Sleep(500 * time.Millisecond)
	c := &http.Client{Timeout: 5 * time.Second}
	for i := 0; i < 3; i++ {
		status, _ := get(t, c, s.http+"/hello")
		if status != 200 {
			t.Fatalf("request %d behind a slow reader: %d, want 200", i+1, status)
		}
	}
}
