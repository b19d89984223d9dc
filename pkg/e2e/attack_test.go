package e2e

import (
	"bufio"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// h2 frames, written by hand: enough of HTTP/2 for an attacker.
func h2Frame(typ, flags byte, stream uint32, payload []byte) []byte {
	b := []byte{byte(len(payload) >> 16), byte(len(payload) >> 8), byte(len(payload)), typ, flags}
	b = binary.BigEndian.AppendUint32(b, stream)
	return append(b, payload...)
}

// hpackGET is GET https://localhost<path> in HPACK, with no table and no
// Huffman coding.
func hpackGET(path string) []byte {
	b := []byte{0x82, 0x87, 0x01, 9}
	b = append(b, "localhost"...)
	b = append(b, 0x04, byte(len(path))) // paths under 127 bytes
	return append(b, path...)
}

const h2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// attacker sends frames on HTTP/2 connections until stop closes, opening
// a new connection whenever edged closes one; next gives the frames to
// send for the i-th time on a connection.
type attacker struct {
	addr  string
	conf  *tls.Config
	next  func(conn, i int) []byte
	sent  atomic.Int64 // batches written
	conns atomic.Int64 // connections opened
}

func (a *attacker) run(stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		default:
		}
		c, err := tls.Dial("tcp", a.addr, a.conf)
		if err != nil {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		n := int(a.conns.Add(1))
		go io.Copy(io.Discard, c)
		bw := bufio.NewWriterSize(c, 32<<10)
		bw.WriteString(h2Preface)
		bw.Write(h2Frame(4, 0, 0, nil))
		for i := 0; ; i++ {
			select {
			case <-stop:
				c.Close()
				return
			default:
			}
			bw.Write(a.next(n, i))
			c.SetWriteDeadline(time.Now().Add(2 * time.Second))
			if bw.Flush() != nil {
				break
			}
			a.sent.Add(1)
		}
		c.Close()
	}
}

// TestHTTP2Attacks: HTTP/2 rapid reset, SETTINGS and PING floods from
// four connections at once, with the default limits and three sync
// workers behind a 200 ms route, while a well-behaved client goes on:
// it is served, the queue is empty within a second of the attack's end,
// and the app runs no request whose client reset it before a worker took
// it.
func TestHTTP2Attacks(t *testing.T) {
	dir := t.TempDir()
	ran := filepath.Join(dir, "ran.log")
	sock := filepath.Join(dir, "metrics.sock")
	s := startSuite(t, suiteOpts{module: "counted:app", workers: 3, tls: true,
		app:   fmt.Sprintf("env = { COUNTED_LOG = %q }", ran),
		extra: fmt.Sprintf("access = true\n[metrics]\nlisten = %q\n", sock)})
	conf := &tls.Config{RootCAs: s.certs, ServerName: "localhost", NextProtos: []string{"h2"}}
	addr := strings.TrimPrefix(s.https, "https://")

	reset := func(conn, i int) []byte {
		id := uint32(2*i + 1)
		path := fmt.Sprintf("/sleep?s=0.2&n=a%d-%d", conn, i)
		return append(h2Frame(1, 0x5, id, hpackGET(path)), h2Frame(3, 0, id, []byte{0, 0, 0, 8})...)
	}
	settings := func(int, int) []byte { return h2Frame(4, 0, 0, nil) }
	ping := func(int, int) []byte { return h2Frame(6, 0, 0, make([]byte, 8)) }
	tests := []struct {
		name string
		next func(conn, i int) []byte
		for_ time.Duration
	}{
		{"rapid reset", reset, 15 * time.Second},
		{"SETTINGS flood", settings, 5 * time.Second},
		{"PING flood", ping, 5 * time.Second},
	}
	client := s.client()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := &attacker{addr: addr, conf: conf, next: tt.next}
			stop := make(chan struct{})
			var wg sync.WaitGroup
			for i := 0; i < 4; i++ {
				wg.Add(1)
				go func() { defer wg.Done(); a.run(stop) }()
			}
			// The well-behaved client, one request after another.
			var lat []time.Duration
			bad := 0
			end := time.Now().Add(tt.for_)
			for k := 0; time.Now().Before(end); k++ {
				start := time.Now()
				code, _ := get(t, client, fmt.Sprintf("%s/sleep?s=0.2&n=ok-%d", s.http, k))
				lat = append(lat, time.Since(start))
				if code != 200 {
					bad++
					t.Logf("the regular client's request %d: %d after %v", k, code, time.Since(start))
				}
			}
			close(stop)
			wg.Wait()
			attackEnd := time.Now()
			slices.Sort(lat)
			p99 := lat[len(lat)*99/100]
			t.Logf("%s: %d batches on %d connections; the regular client: %d requests, %d not 200, p50 %v, p99 %v",
				tt.name, a.sent.Load(), a.conns.Load(), len(lat), bad, lat[len(lat)/2], p99)
			if float64(bad) > 0.01*float64(len(lat)) {
				t.Errorf("%d of %d regular requests failed, want at most 1%%", bad, len(lat))
			}
			if p99 > time.Second {
				t.Errorf("the regular client's p99 %v, want at most 1s", p99)
			}
			// Within a second of the attack's end, nothing waits.
			time.Sleep(time.Until(attackEnd.Add(time.Second)))
			out, err := exec.Command(filepath.Join(binDir, "edgectl"), "status", "-c", s.cfg, "--json", "--interval", "200ms").Output()
			if err != nil {
				t.Fatalf("edgectl status: %v\n%s", err, out)
			}
			var st struct {
				Live struct {
					Queued  float64 `json:"queued"`
					Sockets []struct {
						Socket  string  `json:"socket"`
						Waiting float64 `json:"waiting"`
					} `json:"sockets"`
				} `json:"live"`
			}
			if err := json.Unmarshal(out, &st); err != nil {
				t.Fatalf("edgectl status --json: %v\n%s", err, out)
			}
			for _, q := range st.Live.Sockets {
				if strings.HasPrefix(q.Socket, "workers ") && q.Waiting > 0 {
					t.Errorf("a second after the attack, %v requests wait in %s", q.Waiting, q.Socket)
				}
			}
			if tt.name == "rapid reset" {
				checkNotRun(t, s, ran)
			}
		})
	}
}

// checkNotRun compares what the app ran with what edged logged as given
// up before a worker took it: none of those may have run.
func checkNotRun(t *testing.T, s *suite, ran string) {
	t.Helper()
	time.Sleep(500 * time.Millisecond) // the last runs noted
	b, err := os.ReadFile(ran)
	if err != nil {
		t.Fatal(err)
	}
	run := map[string]bool{}
	for _, id := range strings.Fields(string(b)) {
		run[id] = true
	}
	var gone, goneRan, reset499, attackRan int
	for _, line := range strings.Split(s.out.String(), "\n") {
		var e struct {
			Log    string `json:"log"`
			Status int    `json:"status"`
			Query  string `json:"query"`
			Reason string `json:"reason"`
		}
		if json.Unmarshal([]byte(line), &e) != nil || e.Log != "access" {
			continue
		}
		_, id, _ := strings.Cut(e.Query, "n=")
		if !strings.HasPrefix(id, "a") {
			continue
		}
		if e.Status == 499 {
			reset499++
		}
		if strings.Contains(e.Reason, "before a worker took the request") {
			gone++
			if run[id] {
				goneRan++
				if goneRan <= 5 {
					t.Errorf("request %s was logged as given up before a worker took it, yet the app ran it", id)
				}
			}
		}
	}
	for id := range run {
		if strings.HasPrefix(id, "a") {
			attackRan++
		}
	}
	t.Logf("reset requests: %d logged 499, %d of them given up before a worker took them; the app ran %d reset requests (taken before their reset)",
		reset499, gone, attackRan)
	if goneRan > 0 {
		t.Errorf("the app ran %d requests given up before a worker took them, want none", goneRan)
	}
	if reset499 == 0 {
		t.Errorf("no reset request was logged as 499")
	}
}
