package e2e

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// procTable is one reading of /proc: the children of each process.
type procTable map[int][]int

func readProcs() procTable {
	p := procTable{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // gone since the listing
		}
		// The command name, in parentheses, may hold anything; the parent
		// is the second field after it.
		f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		if len(f) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		p[ppid] = append(p[ppid], pid)
	}
	return p
}

// tree returns pid, then every process below it.
func (p procTable) tree(pid int) []int {
	out := []int{pid}
	for i := 0; i < len(out); i++ {
		out = append(out, p[out[i]]...)
	}
	return out
}

// trees returns the trees of all of roots.
func (p procTable) trees(roots []int) []int {
	var out []int
	for _, r := range roots {
		out = append(out, p.tree(r)...)
	}
	return out
}

// peakRSS calls f and returns the highest sum of VmRSS, in bytes, over the
// processes procs picks, read every 200 ms while f runs.
func peakRSS(procs func(procTable) []int, f func()) int64 {
	done, peak := make(chan struct{}), make(chan int64, 1)
	go func() {
		var high int64
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			var sum int64
			for _, pid := range procs(readProcs()) {
				sum += procKiB(fmt.Sprintf("/proc/%d/status", pid), "VmRSS") << 10
			}
			high = max(high, sum)
			select {
			case <-done:
				peak <- high
				return
			case <-tick.C:
			}
		}
	}()
	func() {
		defer close(done) // also when f ends the test
		f()
	}()
	return <-peak
}

// procField returns the value of the first "key: value" line of a /proc
// file, "" when there is none (or the process has gone).
func procField(path, key string) string {
	b, _ := os.ReadFile(path)
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// procKiB reads a "key: N kB" field, 0 when there is none.
func procKiB(path, key string) int64 {
	n, _ := strconv.ParseInt(strings.TrimSuffix(procField(path, key), " kB"), 10, 64)
	return n
}
