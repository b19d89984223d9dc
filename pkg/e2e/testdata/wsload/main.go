// Command wsload is the WebSocket load of `make bench`: in echo mode, -c
// connections each send a message of -size bytes and wait for its echo,
// over and over, for -d; in idle mode, -c connections are opened and held
// idle for -d. Given an http:// URL, idle mode opens HTTP/1.1 keep-alive
// connections instead, each sending one GET and reading its answer
// before it is held. It prints what it did as "Name: value" lines:
// Messages/sec, the 50% and 99% round trips (echo) or handshakes (idle),
// Errors, Open.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	neturl "net/url"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

func main() {
	conns := flag.Int("c", 100, "connections")
	dur := flag.Duration("d", 10*time.Second, "how long")
	size := flag.Int("size", 1024, "message bytes (echo)")
	idle := flag.Bool("idle", false, "open the connections and hold them idle")
	flag.Parse()
	url := flag.Arg(0)
	if url == "" {
		fmt.Fprintln(os.Stderr, "usage: wsload [-c N] [-d D] [-size B] [-idle] ws://host/path")
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *dur+time.Minute)
	defer cancel()
	var (
		mu      sync.Mutex
		lat     []time.Duration
		errs    atomic.Int64
		open    atomic.Int64
		msgs    atomic.Int64
		wg      sync.WaitGroup
		held    []*websocket.Conn
		started = time.Now()
	)
	msg := []byte(strings.Repeat("m", *size))
	if strings.HasPrefix(url, "http://") {
		if !*idle {
			fmt.Fprintln(os.Stderr, "wsload: an http:// URL is for -idle")
			os.Exit(2)
		}
		var kept []net.Conn
		sem := make(chan struct{}, 200)
		for i := 0; i < *conns; i++ {
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				t := time.Now()
				c, err := keepAlive(url)
				if err != nil {
					errs.Add(1)
					return
				}
				open.Add(1)
				mu.Lock()
				lat = append(lat, time.Since(t))
				kept = append(kept, c)
				mu.Unlock()
			}()
		}
		wg.Wait()
		time.Sleep(*dur)
		report(lat, 0, errs.Load(), open.Load())
		for _, c := range kept {
			c.Close()
		}
		return
	}
	dial := func() *websocket.Conn {
		t := time.Now()
		c, _, err := websocket.Dial(ctx, url, nil)
		if err != nil {
			errs.Add(1)
			return nil
		}
		c.SetReadLimit(-1)
		open.Add(1)
		if *idle {
			mu.Lock()
			lat = append(lat, time.Since(t))
			held = append(held, c)
			mu.Unlock()
		}
		return c
	}
	if *idle {
		// Opened 200 at a time, then held for the duration; each is read
		// so that it answers pings.
		sem := make(chan struct{}, 200)
		for i := 0; i < *conns; i++ {
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				if c := dial(); c != nil {
					go func() {
						for {
							if _, _, err := c.Read(ctx); err != nil {
								return
							}
						}
					}()
				}
			}()
		}
		wg.Wait()
		time.Sleep(*dur)
	} else {
		end := started.Add(*dur)
		for i := 0; i < *conns; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c := dial()
				if c == nil {
					return
				}
				defer c.Close(websocket.StatusNormalClosure, "")
				var mine []time.Duration
				for time.Now().Before(end) {
					t := time.Now()
					if err := c.Write(ctx, websocket.MessageText, msg); err != nil {
						errs.Add(1)
						return
					}
					if _, b, err := c.Read(ctx); err != nil || len(b) != len(msg) {
						errs.Add(1)
						return
					}
					mine = append(mine, time.Since(t))
					msgs.Add(1)
				}
				mu.Lock()
				lat = append(lat, mine...)
				mu.Unlock()
			}()
		}
		wg.Wait()
	}
	elapsed := time.Since(started)
	rate := float64(msgs.Load()) / elapsed.Seconds()
	if *idle {
		rate = 0
	}
	report(lat, rate, errs.Load(), open.Load())
	for _, c := range held {
		c.CloseNow()
	}
}

func report(lat []time.Duration, rate float64, errs, open int64) {
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pct := func(p float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) / 1000
	}
	fmt.Printf("Messages/sec: %.1f\n50%%: %.3fms\n99%%: %.3fms\nErrors: %d\nOpen: %d\n", rate, pct(0.5), pct(0.99), errs, open)
}

// keepAlive opens a connection to rawURL, asks for it once with
// keep-alive, reads the whole answer, and gives the connection back open.
func keepAlive(rawURL string) (net.Conn, error) {
	u, err := neturl.Parse(rawURL)
	if err != nil {
		return nil, err
	}
	c, err := net.DialTimeout("tcp", u.Host, 10*time.Second)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", u.RequestURI(), u.Host); err != nil {
		c.Close()
		return nil, err
	}
	br := bufio.NewReaderSize(c, 4096)
	resp, err := http.ReadResponse(br, nil)
	if err == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err == nil && (resp.StatusCode != 200 || resp.Close) {
			err = fmt.Errorf("status %d, close %v", resp.StatusCode, resp.Close)
		}
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	c.SetDeadline(time.Time{})
	return c, nil
}
