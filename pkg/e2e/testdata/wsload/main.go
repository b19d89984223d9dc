// Command wsload is the WebSocket load of `make bench`: in echo mode, -c
// connections each send a message of -size bytes and wait for its echo,
// over and over, for -d; in idle mode, -c connections are opened and held
// idle for -d. It prints what it did as "Name: value" lines: Messages/sec,
// the 50% and 99% round trips (echo) or handshakes (idle), Errors, Open.
package main

import (
	"context"
	"flag"
	"fmt"
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
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pct := func(p float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Microseconds()) / 1000
	}
	rate := float64(msgs.Load()) / elapsed.Seconds()
	if *idle {
		rate = 0
	}
	fmt.Printf("Messages/sec: %.1f\n50%%: %.3fms\n99%%: %.3fms\nErrors: %d\nOpen: %d\n", rate, pct(0.5), pct(0.99), errs.Load(), open.Load())
	for _, c := range held {
		c.CloseNow()
	}
}
