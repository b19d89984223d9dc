package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// buildAttacker builds testdata/h2attack, once, into the test binaries'
// directory.
var buildAttacker = sync.OnceValue(func() error {
	cmd := exec.Command("go", "build", "-o", binDir+"/", "./pkg/e2e/testdata/h2attack")
	cmd.Dir = repoRoot
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building h2attack: %v\n%s", err, out)
	}
	return nil
})

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
	if err := buildAttacker(); err != nil {
		t.Fatal(err)
	}
	addr := strings.TrimPrefix(s.https, "https://")
	tests := []struct {
		kind string
		for_ time.Duration
	}{
		{"reset", 15 * time.Second},
		{"settings", 5 * time.Second},
		{"ping", 5 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.kind, func(t *testing.T) {
			// The attacker in a process of its own: its CPU is not the
			// regular client's.
			attack := exec.Command(filepath.Join(binDir, "h2attack"), "-addr", addr, "-kind", tt.kind,
				"-for", tt.for_.String(), "-conns", "4", "-path", "/sleep?s=0.2")
			var attackOut strings.Builder
			attack.Stdout, attack.Stderr = &attackOut, &attackOut
			if err := attack.Start(); err != nil {
				t.Fatal(err)
			}
			// The well-behaved client, one request after another, also in
			// a process of its own (curl): the test's own process takes in
			// every access-log line of the attack meanwhile, and its delays
			// are not edged's.
			lat, bad := regularClient(t, s.http+"/sleep?s=0.2", tt.for_-200*time.Millisecond)
			if err := attack.Wait(); err != nil {
				t.Fatalf("h2attack: %v\n%s", err, attackOut.String())
			}
			attackEnd := time.Now()
			slices.Sort(lat)
			p99 := lat[len(lat)*99/100]
			t.Logf("%s: %s; the regular client: %d requests, %d not 200, p50 %v, p99 %v",
				tt.kind, strings.TrimSpace(attackOut.String()), len(lat), bad, lat[len(lat)/2], p99)
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
			if m := scrape(t, sock); value(m, "edged_abandoned_requests") != 0 {
				t.Errorf("a second after the attack, %v requests given up still wait to be dropped", value(m, "edged_abandoned_requests"))
			}
			for _, q := range st.Live.Sockets {
				if strings.HasPrefix(q.Socket, "workers ") && q.Waiting > 0 {
					t.Errorf("a second after the attack, %v requests wait in %s", q.Waiting, q.Socket)
				}
			}
			if tt.kind == "reset" {
				checkNotRun(t, s, ran)
			}
		})
	}
}

// regularClient runs curl, one request after another, against url for
// about d, and returns the latency of each and how many were not 200.
func regularClient(t *testing.T, url string, d time.Duration) (lat []time.Duration, bad int) {
	t.Helper()
	script := fmt.Sprintf(`end=$(( $(date +%%s%%N) + %d )); k=0
while [ $(date +%%s%%N) -lt $end ]; do
  curl -s -o /dev/null --max-time 10 -w '%%{http_code} %%{time_total}\n' "$0&n=ok-$k"; k=$((k+1))
done`, d.Nanoseconds())
	out, err := exec.Command("sh", "-c", script, url).Output()
	if err != nil {
		t.Fatalf("the regular client (curl): %v\n%s", err, out)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		var code int
		var secs float64
		if _, err := fmt.Sscan(line, &code, &secs); err != nil {
			t.Fatalf("curl said %q: %v", line, err)
		}
		lat = append(lat, time.Duration(secs*float64(time.Second)))
		if code != 200 {
			bad++
			t.Logf("the regular client's request %d: %d after %.3fs", len(lat), code, secs)
		}
	}
	if len(lat) == 0 {
		t.Fatal("the regular client made no request")
	}
	return lat, bad
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
