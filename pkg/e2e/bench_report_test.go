package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strings"
	"time"
)

// benchReport renders the results, one table a scenario, as the markdown
// of docs/benchmarks.md.
func benchReport(load benchLoad, sides map[string]benchSide, results []map[string]*sideResult) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Benchmarks\n\nWritten by `make bench` (TestBench in pkg/e2e) on %s. Nothing here is asserted: speed depends on the machine and on what else runs on it; compare the sides within one run.\n\n", time.Now().Format("2006-01-02"))
	fmt.Fprintf(&b, "- Machine: %s\n", host())
	fmt.Fprintf(&b, "- Versions: %s\n", versions())
	fmt.Fprintf(&b, "- Workers: %[1]d a side. edged: sync (a request at a time), threads (4 threads each), gevent (%[2]d connections each); gunicorn: sync, gevent (`--worker-connections %[2]d`); uWSGI: a master and %[1]d processes. nginx: `worker_processes auto`. Access logs off everywhere; the app is testdata/apps/flaskapp.py.\n", benchWorkers, gunicornConnections)
	fmt.Fprintf(&b, "- Load: `wrk -t2` (HTTP/1.1 keep-alive), `h2load -t2` for HTTP/2, %s a run; rounds: %d, each taking the sides in turn; each figure is the median over the rounds. Latency is wrk's p50 and p99; h2load gives no percentiles, so its rows show the mean and max of its \"time for request\". Errors are non-2xx answers plus socket errors (wrk gives up on a request after 2 s); for h2load, its failed requests. Peak RSS is the highest sum of VmRSS over the stack's processes (edged, workerd and the Python workers; nginx's master and workers and the app server's), read every 200 ms during the runs.\n", load.duration, load.rounds)
	b.WriteString("- TLS: edged and nginx serve the same self-signed ECDSA P-256 certificate, TLS 1.2 with AEAD suites only and TLS 1.3, HTTP/2 by ALPN; nginx with `ssl_session_cache shared:SSL:10m` and, as edged, no cap on the requests of a connection (h2load does not reconnect after nginx's GOAWAY at its default 1000). Neither wrk nor h2load verifies the certificate.\n")
	for i, sc := range benchScenarios {
		writeScenario(&b, sc, sides, results[i])
	}
	return b.String()
}

func writeScenario(b *strings.Builder, sc benchScenario, sides map[string]benchSide, res map[string]*sideResult) {
	if sc.front {
		writeFront(b, sc, sides, res)
		return
	}
	lat := sc.tool().latency
	fmt.Fprintf(b, "\n## %s: %s\n\n| side | req/s | %s | %s | errors | peak RSS MiB |", sc.name, sc.load(), lat[0], lat[1])
	for _, inc := range sc.vs {
		fmt.Fprintf(b, " x %s |", strings.TrimPrefix(inc, "nginx+"))
	}
	b.WriteString("\n|---|" + strings.Repeat("---:|", 5+len(sc.vs)) + "\n")
	for _, name := range sc.sides {
		r := res[name]
		if r == nil {
			fmt.Fprintf(b, "| %s (%s) |%s\n", name, sides[name].why, strings.Repeat(" — |", 5+len(sc.vs)))
			continue
		}
		m := r.median()
		fmt.Fprintf(b, "| %s | %.0f | %.2f | %.2f | %.0f | %.0f |", name, m.rps, m.lat[0], m.lat[1], m.errors, float64(r.peakRSS)/(1<<20))
		for _, inc := range sc.vs {
			if sc.ws == "idle" {
				fmt.Fprintf(b, " %s |", memRatio(r, res[inc]))
				continue
			}
			fmt.Fprintf(b, " %s |", ratio(m.rps, res[inc]))
		}
		b.WriteString("\n")
	}
}

// writeFront is a front scenario's table: the front process's memory
// before and at its peak, and what each connection added.
func writeFront(b *strings.Builder, sc benchScenario, sides map[string]benchSide, res map[string]*sideResult) {
	fmt.Fprintf(b, "\n## %s: %s\n\nKiB a connection: (RSS holding them, near the end of the hold, less RSS before) / connections. The peak is while they open, before edged parks them. RSS after: once the last round's connections have closed, when it is back within 2x RSS before, or a minute after (the seconds it took in brackets).\n\n| side | KiB a connection | RSS before MiB | RSS holding MiB | peak RSS MiB | RSS after MiB | connections failed |", sc.name, sc.load())
	for _, inc := range sc.vs {
		fmt.Fprintf(b, " x %s |", strings.TrimPrefix(inc, "nginx+"))
	}
	b.WriteString("\n|---|" + strings.Repeat("---:|", 6+len(sc.vs)) + "\n")
	perConn := func(r *sideResult) float64 {
		return float64(r.holdRSS-r.baseRSS) / 1024 / float64(sc.conns)
	}
	for _, name := range sc.sides {
		r := res[name]
		if r == nil {
			fmt.Fprintf(b, "| %s (%s) |%s\n", name, sides[name].why, strings.Repeat(" — |", 6+len(sc.vs)))
			continue
		}
		fmt.Fprintf(b, "| %s | %.1f | %.0f | %.0f | %.0f | %.0f (%.0fs) | %.0f |", name, perConn(r), float64(r.baseRSS)/(1<<20), float64(r.holdRSS)/(1<<20), float64(r.peakRSS)/(1<<20),
			float64(r.afterRSS)/(1<<20), r.afterWait.Seconds(), r.median().errors)
		for _, inc := range sc.vs {
			if i := res[inc]; i != nil && perConn(r) > 0 {
				fmt.Fprintf(b, " %.2fx |", perConn(i)/perConn(r))
			} else {
				b.WriteString(" — |")
			}
		}
		b.WriteString("\n")
	}
}

// memRatio is the incumbent's peak RSS over the side's: above 1, the
// side used less memory.
func memRatio(side, inc *sideResult) string {
	if inc == nil || side.peakRSS == 0 {
		return "—"
	}
	return fmt.Sprintf("%.2fx", float64(inc.peakRSS)/float64(side.peakRSS))
}

// ratio is rps over the incumbent's median req/s.
func ratio(rps float64, inc *sideResult) string {
	if inc == nil || inc.median().rps == 0 {
		return "—"
	}
	return fmt.Sprintf("%.2fx", rps/inc.median().rps)
}

func host() string {
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	mem := float64(procKiB("/proc/meminfo", "MemTotal")) / (1 << 20)
	return fmt.Sprintf("%d CPUs (nproc), %s, Linux %s, %.1f GiB memory",
		runtime.NumCPU(), procField("/proc/cpuinfo", "model name"), strings.TrimSpace(string(kernel)), mem)
}

var versionNumber = regexp.MustCompile(`\d+\.\d+(\.\d+)*`)

// versions names what each side runs; Go is the toolchain that built this
// test, and edged with it.
func versions() string {
	pyVersion := func(module string) []string {
		return []string{python, "-c", "import importlib.metadata as m; print(m.version('" + module + "'))"}
	}
	out := []string{"Go " + versionNumber.FindString(runtime.Version())}
	for _, v := range []struct {
		name string
		argv []string
	}{
		{"Python", []string{python, "--version"}},
		{"Flask", pyVersion("flask")},
		{"gevent", pyVersion("gevent")},
		{"nginx", []string{"nginx", "-v"}},
		{"gunicorn", []string{"gunicorn", "--version"}},
		{"uWSGI", []string{"uwsgi", "--version"}},
		{"wrk", []string{"wrk", "--version"}},
		{"h2load", []string{"h2load", "--version"}},
	} {
		b, _ := exec.Command(v.argv[0], v.argv[1:]...).CombinedOutput()
		out = append(out, v.name+" "+versionNumber.FindString(string(b)))
	}
	return strings.Join(out, ", ")
}
