package e2e

import (
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The per-client limits under a flood from many addresses (4000, one
// request each, from 127.x.y.z): every flooding address is held to its
// own rate and the table stays bounded, so edged's memory barely moves,
// and a client that was there before keeps being served within its rate.
func TestFloodFromManyAddresses(t *testing.T) {
	s := startSuite(t, suiteOpts{module: "sample:app", workers: 2,
		limits: "rate = \"5r/s\"\nburst = 5\nconnections_per_client = 4", extra: "access = false"})
	s.writeStatic("x.txt", []byte("x\n"))
	pid := s.edgedPID(t)
	rss := func() int64 { return procKiB("/proc/"+strconv.Itoa(pid)+"/status", "VmRSS") }
	port := s.http[len("http://127.0.0.1:"):]
	get := func(src net.IP, path string) (int, error) {
		tr := &http.Transport{DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: src}, Timeout: 5 * time.Second}).DialContext,
			DisableKeepAlives: true}
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get("http://127.0.0.1:" + port + path)
		if err != nil {
			return 0, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	// Warm up, then the flood.
	for i := 0; i < 20; i++ {
		get(net.IPv4(127, 0, 0, 1), "/static/x.txt")
		time.Sleep(200 * time.Millisecond)
	}
	before := rss()

	stop := make(chan struct{})
	var regularOK, regularBad atomic.Int64
	var regular, wg sync.WaitGroup
	regular.Add(1)
	go func() { // the regular client: 4 requests a second, under its 5r/s
		defer regular.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(250 * time.Millisecond):
			}
			if code, err := get(net.IPv4(127, 0, 0, 1), "/static/x.txt"); err == nil && code == 200 {
				regularOK.Add(1)
			} else {
				regularBad.Add(1)
				t.Logf("the regular client: %d %v", code, err)
			}
		}
	}()
	var flooded, limited atomic.Int64
	sem := make(chan struct{}, 32)
	for i := 0; i < 4000; i++ {
		src := net.IPv4(127, byte(1+i>>16), byte(i>>8), byte(i))
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			// Past its burst at once: 6 requests from each address.
			for j := 0; j < 6; j++ {
				code, err := get(src, "/static/x.txt")
				if err != nil {
					continue
				}
				flooded.Add(1)
				if code == http.StatusTooManyRequests {
					limited.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	regular.Wait()
	after := rss()
	t.Logf("flood: %d answers from 4000 addresses, %d of them 429; edged RSS %d -> %d KiB; the regular client: %d ok, %d not",
		flooded.Load(), limited.Load(), before, after, regularOK.Load(), regularBad.Load())
	if limited.Load() < 3000 {
		t.Errorf("%d answers of 429, want about one per flooding address (4000): each is held to its own rate", limited.Load())
	}
	if grew := after - before; grew > 64<<10 {
		t.Errorf("edged grew by %d KiB under the flood, want it bounded (the table is at most 65536 addresses, ~13 MB)", grew)
	}
	if regularBad.Load() > 0 || regularOK.Load() == 0 {
		t.Errorf("the regular client: %d served, %d not, want all served", regularOK.Load(), regularBad.Load())
	}
}
