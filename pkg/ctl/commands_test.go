package ctl

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestScaleUp(t *testing.T) {
	tests := []struct {
		name      string
		have      int
		n         int
		fragment  string
		wantStart []int
		wantOut   string
		wantRT    bool
	}{
		{
			name: "0 to 3", have: 0, n: 3, wantStart: []int{1, 2, 3},
			wantOut: "3 workers running (3 started, 0 stopped)\n",
		},
		{
			name: "1 to 3", have: 1, n: 3, wantStart: []int{2, 3},
			wantOut: "3 workers running (2 started, 0 stopped)\n",
		},
		{
			name: "3 to 3 does nothing", have: 3, n: 3, wantStart: nil,
			wantOut: "3 workers running (0 started, 0 stopped)\n",
		},
		{
			name: "0 to 0 does nothing", have: 0, n: 0, wantStart: nil,
			wantOut: "0 workers running (0 started, 0 stopped)\n",
		},
		{
			name: "runtime units are enabled at runtime", have: 0, n: 2, wantStart: []int{1, 2},
			fragment: "/run/systemd/system/workerd@.service", wantRT: true,
			wantOut: "2 workers running (2 started, 0 stopped)\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := running(tt.have)
			if tt.fragment != "" {
				f.fragment = tt.fragment
			}
			var out bytes.Buffer
			if err := scaleTo(testCtx(t), f, tt.n, &out); err != nil {
				t.Fatalf("scaleTo(%d) = %v", tt.n, err)
			}
			if got := out.String(); got != tt.wantOut {
				t.Errorf("output = %q, want %q", got, tt.wantOut)
			}
			if got := f.Calls("stop", "disable"); len(got) != 0 {
				t.Errorf("scaling up made calls %q, want none", got)
			}

			var wantStarts, gotStarts []string
			if len(tt.wantStart) > 0 {
				wantStarts = append(wantStarts, "start "+queueSocket)
			}
			for _, i := range tt.wantStart {
				wantStarts = append(wantStarts, "start "+workerService(i))
			}
			gotStarts = f.Calls("start")
			if !sameSet(gotStarts, wantStarts) {
				t.Errorf("start calls = %q, want %q (in any order)", gotStarts, wantStarts)
			}
			// The shared socket is up before any service.
			if len(gotStarts) > 0 && gotStarts[0] != "start "+queueSocket {
				t.Errorf("first start = %q, want %s", gotStarts[0], queueSocket)
			}
			for i := 1; i <= tt.n; i++ {
				for _, u := range []string{queueSocket, workerService(i)} {
					if got := f.state(u); got != "active" {
						t.Errorf("%s is %s, want active", u, got)
					}
					if !f.enabled[u] {
						t.Errorf("%s not enabled", u)
					}
				}
			}

			enables := f.Calls("enable")
			if len(tt.wantStart) == 0 {
				if len(enables) != 0 {
					t.Errorf("enable calls = %q, want none", enables)
				}
				return
			}
			if len(enables) != 1 {
				t.Fatalf("enable calls = %q, want one", enables)
			}
			wantFiles := []string{queueSocket}
			for _, i := range tt.wantStart {
				wantFiles = append(wantFiles, workerService(i))
			}
			if got, want := enables[0], "enable "+strings.Join(wantFiles, " "); got != want {
				t.Errorf("enable call = %q, want %q", got, want)
			}
			if !slices.Equal(f.runtime, []bool{tt.wantRT}) {
				t.Errorf("enable runtime flags = %v, want [%v]", f.runtime, tt.wantRT)
			}
			// Enabling comes before any start, so a reboot in between
			// still brings the workers back.
			if first := f.calls[slices.IndexFunc(f.calls, func(c string) bool {
				return strings.HasPrefix(c, "enable ") || strings.HasPrefix(c, "start ")
			})]; !strings.HasPrefix(first, "enable ") {
				t.Errorf("first call = %q, want the enable", first)
			}
			var wantResets []string
			for _, i := range tt.wantStart {
				wantResets = append(wantResets, "reset-failed "+workerService(i))
			}
			if got := f.Calls("reset-failed"); !sameSet(got, wantResets) {
				t.Errorf("reset-failed calls = %q, want %q", got, wantResets)
			}
		})
	}
}

func TestScaleUpFills(t *testing.T) {
	// 1 and 3 run, 2 died: scale 3 starts just 2.
	f := running(3)
	f.units[workerService(2)].active = "failed"
	if err := scaleTo(testCtx(t), f, 3, &bytes.Buffer{}); err != nil {
		t.Fatalf("scaleTo(3) = %v", err)
	}
	want := []string{"start " + queueSocket, "start " + workerService(2)}
	if got := f.Calls("start"); !slices.Equal(got, want) {
		t.Errorf("start calls = %q, want %q", got, want)
	}
}

func TestScaleDown(t *testing.T) {
	tests := []struct {
		name     string
		have, n  int
		fragment string
		wantRT   bool
	}{
		{name: "3 to 1", have: 3, n: 1},
		{name: "2 to 0", have: 2, n: 0},
		{name: "runtime units are disabled at runtime", have: 2, n: 1, fragment: "/run/systemd/transient/workerd@.service", wantRT: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := running(tt.have)
			if tt.fragment != "" {
				f.fragment = tt.fragment
			}
			var out bytes.Buffer
			if err := scaleTo(testCtx(t), f, tt.n, &out); err != nil {
				t.Fatalf("scaleTo(%d) = %v", tt.n, err)
			}
			wantOut := fmt.Sprintf("%d workers running (0 started, %d stopped)\n", tt.n, tt.have-tt.n)
			if got := out.String(); got != wantOut {
				t.Errorf("output = %q, want %q", got, wantOut)
			}
			if got := f.Calls("start", "enable"); len(got) != 0 {
				t.Errorf("scaling down made calls %q, want none", got)
			}

			// Only the services stop: the shared socket stays, and
			// with it what waits there for the other workers.
			var want []string
			for i := tt.n + 1; i <= tt.have; i++ {
				want = append(want, "stop "+workerService(i), "disable "+workerService(i))
			}
			if got := f.Calls("stop", "disable"); !slices.Equal(got, want) {
				t.Errorf("stop/disable calls =\n  %q\nwant\n  %q", got, want)
			}
			for i := 1; i <= tt.have; i++ {
				wantState, wantEnabled := "inactive", false
				if i <= tt.n {
					wantState, wantEnabled = "active", true
				}
				for _, u := range []string{workerService(i)} {
					if got := f.state(u); got != wantState {
						t.Errorf("%s is %s, want %s", u, got, wantState)
					}
					if got := f.enabled[u]; got != wantEnabled {
						t.Errorf("%s enabled = %v, want %v", u, got, wantEnabled)
					}
				}
			}
			for _, rt := range f.runtime {
				if rt != tt.wantRT {
					t.Errorf("disable runtime flags = %v, want all %v", f.runtime, tt.wantRT)
					break
				}
			}
		})
	}
}

func TestScaleErrors(t *testing.T) {
	denied := dbusErr("org.freedesktop.DBus.Error.AccessDenied", "Access denied")
	tests := []struct {
		name      string
		have, n   int
		setup     func(f *fakeSystemd)
		want      []string // in the error
		avoid     []string // not in the error
		wantState map[string]string
	}{
		{
			name: "service job failed", have: 0, n: 3,
			setup: func(f *fakeSystemd) { f.results[workerService(2)] = "failed" },
			want:  []string{"start workerd@2.service: job failed", "journalctl -u workerd@2.service"},
			avoid: []string{"workerd@1.service:", "workerd@3.service:"},
			wantState: map[string]string{
				workerService(1): "active", workerService(2): "failed", workerService(3): "active",
			},
		},
		{
			name: "socket job failed", have: 0, n: 2,
			setup: func(f *fakeSystemd) { f.results[queueSocket] = "failed" },
			want:  []string{"start workerd.socket: job failed"},
			wantState: map[string]string{
				queueSocket: "failed", workerService(1): "inactive", workerService(2): "inactive",
			},
		},
		{
			name: "two failures both named", have: 0, n: 3,
			setup: func(f *fakeSystemd) {
				f.results[workerService(1)] = "timeout"
				f.results[workerService(3)] = "dependency"
			},
			want: []string{"start workerd@1.service: job timeout", "start workerd@3.service: job dependency"},
		},
		{
			name: "start refused", have: 0, n: 1,
			setup: func(f *fakeSystemd) { f.jobErr[queueSocket] = denied },
			want:  []string{"start workerd.socket: permission denied", wantPermission},
		},
		{
			name: "units not installed", have: 0, n: 1,
			setup: func(f *fakeSystemd) {
				f.jobErr[queueSocket] = dbusErr("org.freedesktop.systemd1.NoSuchUnit", "Unit workerd.socket not found.")
			},
			want: []string{wantInstall},
		},
		{
			name: "list refused", have: 1, n: 2,
			setup: func(f *fakeSystemd) { f.listErr = denied },
			want:  []string{"list workers", wantPermission},
		},
		{
			name: "stop job failed", have: 3, n: 1,
			setup: func(f *fakeSystemd) { f.results[workerService(2)] = "failed" },
			want:  []string{"stop workerd@2.service: job failed"},
			// It goes on with the others.
			wantState: map[string]string{workerService(3): "inactive", queueSocket: "active"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := running(tt.have)
			tt.setup(f)
			var out bytes.Buffer
			err := scaleTo(testCtx(t), f, tt.n, &out)
			if err == nil {
				t.Fatalf("scaleTo(%d) = nil, want an error", tt.n)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("scaleTo(%d) = %q, want it to contain %q", tt.n, err, w)
				}
			}
			for _, a := range tt.avoid {
				if strings.Contains(err.Error(), a) {
					t.Errorf("scaleTo(%d) = %q, want it not to contain %q", tt.n, err, a)
				}
			}
			if strings.Contains(out.String(), "workers running") {
				t.Errorf("output = %q, want no success line after an error", out.String())
			}
			for u, want := range tt.wantState {
				if got := f.state(u); got != want {
					t.Errorf("%s is %s, want %s", u, got, want)
				}
			}
		})
	}
}

// TestScaleEnableRefused: the polkit rule lets edgeadm start and stop
// edged's units but not enable unit files; scale still runs the workers,
// for this boot, and says so.
func TestScaleEnableRefused(t *testing.T) {
	f := running(0)
	f.enableEr = dbusErr("org.freedesktop.DBus.Error.AccessDenied", "Access denied")
	var out bytes.Buffer
	if err := scaleTo(testCtx(t), f, 2, &out); err != nil {
		t.Fatalf("scaleTo(2) = %v, want nil when only enabling is refused", err)
	}
	for _, u := range []string{queueSocket, workerService(1), workerService(2)} {
		if got := f.state(u); got != "active" {
			t.Errorf("%s is %s, want active", u, got)
		}
	}
	if !strings.Contains(out.String(), "not permitted to enable") || !strings.Contains(out.String(), "2 workers running") {
		t.Errorf("output = %q, want the note and the outcome", out.String())
	}
}

func TestRuntimeUnits(t *testing.T) {
	tests := []struct {
		fragment string
		propErr  error
		want     bool
	}{
		{fragment: "/run/systemd/system/workerd@.service", want: true},
		{fragment: "/run/systemd/transient/workerd@1.service", want: true},
		{fragment: "/etc/systemd/system/workerd@.service", want: false},
		{fragment: "/usr/lib/systemd/system/workerd@.service", want: false},
		{fragment: "/running/workerd@.service", want: false},
		{fragment: "", want: false},
		{fragment: "/run/systemd/system/workerd@.service", propErr: errors.New("boom"), want: false},
	}
	for _, tt := range tests {
		name := tt.fragment
		if tt.propErr != nil {
			name += " unreadable"
		}
		t.Run(name, func(t *testing.T) {
			f := newFake(nil)
			f.fragment = tt.fragment
			if tt.propErr != nil {
				f.propErr[workerService(1)] = tt.propErr
			}
			if got := runtimeUnits(context.Background(), f); got != tt.want {
				t.Errorf("runtimeUnits() with FragmentPath %q = %v, want %v", tt.fragment, got, tt.want)
			}
		})
	}
}

func TestCollect(t *testing.T) {
	since := uint64(time.Now().Add(-time.Hour).UnixMicro())
	f := newFake(map[string]*fakeUnit{
		edgedUnit:            {active: "active", sub: "running", since: since, pid: 10, mem: 1000, cpu: 1e6, restarts: 9, status: "edge"},
		"workerd@10.service": {active: "active", sub: "running", since: since, pid: 110, mem: 100, cpu: 10, restarts: 1, status: "ten"},
		"workerd@2.service":  {active: "active", sub: "running", since: since, pid: 102, mem: 20, cpu: 2, restarts: 2, status: "two"},
		"workerd@3.service":  {active: "activating", sub: "start", pid: 103, mem: unset, cpu: unset, restarts: 4},
		"workerd@5.service":  {active: "failed", sub: "failed", mem: 0, cpu: 7, restarts: 8},
		"workerd@4.service":  {active: "inactive", sub: "dead", mem: 5000, cpu: 5000, restarts: 100},
		"workerd@6.service":  {load: "not-found", active: "inactive", sub: "dead", mem: 6000},
		"workerd@x.service":  {active: "active", mem: 7000},
		"workerd@1.socket":   {active: "active", mem: 8000},
	})
	rep, err := collect(context.Background(), f)
	if err != nil {
		t.Fatalf("collect() = %v", err)
	}
	if rep.Edged.Unit != edgedUnit || rep.Edged.PID != 10 || rep.Edged.Status != "edge" {
		t.Errorf("edged = %+v, want edged.service with PID 10 and status %q", rep.Edged, "edge")
	}
	var names []string
	for _, w := range rep.Workers {
		names = append(names, w.Unit)
	}
	wantNames := []string{"workerd@2.service", "workerd@3.service", "workerd@5.service", "workerd@10.service"}
	if !slices.Equal(names, wantNames) {
		t.Errorf("workers = %q, want %q", names, wantNames)
	}
	want := totals{Workers: 4, Active: 2, MemoryBytes: 120, CPUNanos: 19, Restarts: 15}
	if rep.Totals != want {
		t.Errorf("totals = %+v, want %+v", rep.Totals, want)
	}

	t.Run("json", func(t *testing.T) {
		b, err := json.Marshal(rep)
		if err != nil {
			t.Fatal(err)
		}
		var back struct {
			Workers []map[string]any `json:"workers"`
			Totals  map[string]any   `json:"totals"`
		}
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		if got := back.Workers[1]["memory_bytes"]; got != nil {
			t.Errorf("untracked memory_bytes = %v, want null", got)
		}
		if got := back.Totals["memory_bytes"]; got != float64(120) {
			t.Errorf("totals.memory_bytes = %v, want 120", got)
		}
	})

	t.Run("table", func(t *testing.T) {
		var out bytes.Buffer
		rep.print(&out)
		lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
		if got, want := len(lines), 1+1+4+1; got != want {
			t.Fatalf("table has %d lines, want %d:\n%s", got, want, out.String())
		}
		for _, w := range []struct {
			line int
			text string
		}{
			{0, "UNIT"},
			{1, "edged.service"},
			{2, "workerd@2.service"},
			{3, "activating/start"},
			{5, "workerd@10.service"},
			{6, "TOTAL (4 workers, 2 active)"},
		} {
			if !strings.Contains(lines[w.line], w.text) {
				t.Errorf("line %d = %q, want it to contain %q", w.line, lines[w.line], w.text)
			}
		}
	})
}

func TestCollectEmpty(t *testing.T) {
	f := newFake(map[string]*fakeUnit{edgedUnit: {active: "inactive", sub: "dead"}})
	rep, err := collect(context.Background(), f)
	if err != nil {
		t.Fatalf("collect() = %v", err)
	}
	if rep.Workers == nil || len(rep.Workers) != 0 {
		t.Errorf("workers = %#v, want an empty, non-nil slice (JSON [])", rep.Workers)
	}
	if rep.Totals != (totals{}) {
		t.Errorf("totals = %+v, want zero", rep.Totals)
	}
}

func TestCollectErrors(t *testing.T) {
	denied := dbusErr("org.freedesktop.DBus.Error.AccessDenied", "Access denied")
	tests := []struct {
		name  string
		setup func(f *fakeSystemd)
		want  []string
	}{
		{"edged unreadable", func(f *fakeSystemd) { f.propErr[edgedUnit] = denied }, []string{"read edged.service", wantPermission}},
		{"list refused", func(f *fakeSystemd) { f.listErr = denied }, []string{"list workers", wantPermission}},
		{"worker unreadable", func(f *fakeSystemd) { f.propErr[workerService(2)] = errors.New("boom") }, []string{"read workerd@2.service: boom"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := running(2)
			f.units[edgedUnit] = &fakeUnit{active: "active"}
			tt.setup(f)
			rep, err := collect(context.Background(), f)
			if err == nil {
				t.Fatalf("collect() = %+v, nil; want an error", rep)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("collect() = %q, want it to contain %q", err, w)
				}
			}
		})
	}
}

// TestRollingRestart checks the pieces restart() is made of, which it
// calls on a connection of its own: the workers to restart, in order, each
// job's result.
func TestRollingRestart(t *testing.T) {
	f := running(3)
	f.units["workerd@10.service"] = &fakeUnit{active: "active"}
	f.results[workerService(3)] = "failed"
	ctx := testCtx(t)
	ns, err := workerInstances(ctx, f)
	if err != nil {
		t.Fatal(err)
	}
	if want := []int{1, 2, 3, 10}; !slices.Equal(ns, want) {
		t.Fatalf("workerInstances() = %v, want %v", ns, want)
	}
	var failed error
	for _, i := range ns {
		if err := runJob(ctx, "restart "+workerService(i), func(ch chan<- string) (int, error) {
			return f.RestartUnitContext(ctx, workerService(i), "replace", ch)
		}); err != nil {
			failed = err
			break
		}
	}
	if failed == nil || !strings.Contains(failed.Error(), "restart workerd@3.service: job failed") {
		t.Errorf("restart error = %v, want one naming workerd@3.service", failed)
	}
	want := []string{"restart workerd@1.service", "restart workerd@2.service", "restart workerd@3.service"}
	if got := f.Calls("restart"); !slices.Equal(got, want) {
		t.Errorf("restart calls = %q, want %q", got, want)
	}
}

func TestScaleArgs(t *testing.T) {
	// Each is refused before edgectl reaches systemd; the context is
	// cancelled besides, so that a case let through changes nothing.
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no count", nil, "usage: edgectl scale N"},
		{"three words", []string{"shop", "1", "2"}, "usage: edgectl scale N"},
		{"a site no config has", []string{"-c", "/nonexistent/edged.toml", "shop", "2"}, "scale site shop"},
		{"auto and a count", []string{"--auto", "3"}, "usage: edgectl scale N"},
		{"word", []string{"many"}, "give a worker count from 0 to 1024"},
		{"negative", []string{"-1"}, "flag provided but not defined: -1"},
		{"too many", []string{"1025"}, "give a worker count from 0 to 1024"},
		{"leading zero", []string{"007"}, "give a worker count from 0 to 1024"},
		{"hex", []string{"0x10"}, "give a worker count from 0 to 1024"},
		{"plus", []string{"+3"}, "give a worker count from 0 to 1024"},
		{"trailing junk", []string{"3x"}, "give a worker count from 0 to 1024"},
		{"unknown flag", []string{"--fast", "3"}, "flag provided but not defined"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			var out bytes.Buffer
			err := scale(ctx, tt.args, &out)
			if err == nil {
				t.Fatalf("scale(%q) = nil, want an error", tt.args)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("scale(%q) = %q, want it to contain %q", tt.args, err, tt.want)
			}
			if strings.Contains(err.Error(), "D-Bus") {
				t.Errorf("scale(%q) = %q: reached for systemd, want the arguments refused first", tt.args, err)
			}
		})
	}
}

func TestMainCommands(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string // "" = nil error
	}{
		{"no command", nil, "no command given"},
		{"help", []string{"--help"}, ""},
		{"unknown", []string{"frobnicate"}, `unknown command "frobnicate"`},
	}
	// Main prints its usage to stderr: keep it out of the test output.
	stderr := os.Stderr
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	os.Stderr = null
	t.Cleanup(func() { os.Stderr = stderr; null.Close() })
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Main(tt.args)
			if tt.want == "" {
				if err != nil {
					t.Errorf("Main(%q) = %v, want nil", tt.args, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Main(%q) = %v, want an error containing %q", tt.args, err, tt.want)
			}
		})
	}
}

func TestFormatting(t *testing.T) {
	tests := []struct {
		name string
		got  string
		want string
	}{
		{"pid 0", pid(0), "-"},
		{"pid", pid(1234), "1234"},
		{"uptime zero", uptime(time.Time{}), "-"},
		{"uptime", uptime(time.Now().Add(-90 * time.Second)), "1m30s"},
		{"bytes nil", bytesOf(nil), "-"},
		{"bytes", bytesOf(new(uint64(3 << 19))), "1.5M"},
		{"bytes zero", bytesOf(new(uint64(0))), "0.0M"},
		{"cpu nil", cpuOf(nil), "-"},
		{"cpu", cpuOf(new(uint64(1500 * time.Millisecond))), "1.5s"},
		{"cpu rounded", cpuOf(new(uint64(1234567))), "1ms"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("got %q, want %q", tt.got, tt.want)
			}
		})
	}
}

func TestProgressNotTerminal(t *testing.T) {
	var out bytes.Buffer
	p := newProgress(&out)
	if p.tty {
		t.Fatal("a bytes.Buffer taken for a terminal")
	}
	p.step("started 1/2 workers")
	p.done("2 workers running")
	if got, want := out.String(), "2 workers running\n"; got != want {
		t.Errorf("output = %q, want %q", got, want)
	}
}

func sameSet(a, b []string) bool {
	return slices.Equal(slices.Sorted(slices.Values(a)), slices.Sorted(slices.Values(b)))
}

func TestRestartWorkers(t *testing.T) {
	t.Run("one at a time, in order", func(t *testing.T) {
		f := running(3)
		var out bytes.Buffer
		if err := restartWorkers(testCtx(t), f, &out); err != nil {
			t.Fatalf("restartWorkers = %v", err)
		}
		got := strings.Join(f.Calls("restart"), ", ")
		want := "restart workerd@1.service, restart workerd@2.service, restart workerd@3.service"
		if got != want {
			t.Errorf("calls = %s, want %s", got, want)
		}
		if !strings.Contains(out.String(), "restarted 3 workers") {
			t.Errorf("output = %q", out.String())
		}
	})
	t.Run("stops at the first failure", func(t *testing.T) {
		f := running(3)
		f.results[workerService(2)] = "failed"
		err := restartWorkers(testCtx(t), f, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "workerd@2.service") || !strings.Contains(err.Error(), "not restarted") {
			t.Errorf("restartWorkers = %v, want an error naming workerd@2 and saying the rest were left", err)
		}
		if got := f.Calls("restart"); len(got) != 2 {
			t.Errorf("calls = %v, want the restart to stop after workerd@2", got)
		}
	})
	t.Run("no worker", func(t *testing.T) {
		if err := restartWorkers(testCtx(t), running(0), io.Discard); err == nil || !strings.Contains(err.Error(), "edgectl scale") {
			t.Errorf("restartWorkers with none running = %v", err)
		}
	})
}

// A [[site]]'s workers are the generator's units: scaled by name, never
// enabled (systemd refuses to enable generated units), their count kept
// for the generator's next run instead.
func TestScaleSite(t *testing.T) {
	old := scaleDir
	scaleDir = t.TempDir()
	t.Cleanup(func() { scaleDir = old })
	f := newFake(map[string]*fakeUnit{})
	var out bytes.Buffer
	if err := scalePool(testCtx(t), f, poolOf("shop"), 2, &out); err != nil {
		t.Fatalf("scalePool = %v", err)
	}
	want := []string{"start workerd-shop.socket", "start workerd-shop@1.service", "start workerd-shop@2.service"}
	got := f.Calls("start")
	sort.Strings(got[1:])
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("starts %v, want %v", got, want)
	}
	if e := f.Calls("enable", "disable"); len(e) != 0 {
		t.Errorf("enabled generated units: %v", e)
	}
	if b, err := os.ReadFile(filepath.Join(scaleDir, "shop")); err != nil || string(b) != "2\n" {
		t.Errorf("recorded %q (%v), want 2", b, err)
	}
	if !strings.Contains(out.String(), "2 workers of shop running") {
		t.Errorf("output %q", out.String())
	}
	// The top-level site's workers are left alone.
	if s := f.Calls("stop"); len(s) != 0 {
		t.Errorf("stopped %v", s)
	}
	if err := scalePool(testCtx(t), f, poolOf("shop"), 1, &out); err != nil {
		t.Fatal(err)
	}
	if s := f.Calls("stop"); len(s) != 1 || s[0] != "stop workerd-shop@2.service" {
		t.Errorf("scaling down stopped %v", s)
	}
}

// With app.preload, a restart imports the app in one extra worker first:
// when that fails, no running worker is touched.
func TestRestartCanary(t *testing.T) {
	t.Run("the new code starts", func(t *testing.T) {
		f := running(2)
		if err := restartPool(testCtx(t), f, defaultPool, true, io.Discard); err != nil {
			t.Fatalf("restartPool = %v", err)
		}
		want := []string{"start " + workerService(3), "restart " + workerService(1), "restart " + workerService(2), "stop " + workerService(3)}
		if got := f.Calls("start", "restart", "stop"); strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("calls %v, want %v", got, want)
		}
		if e := f.Calls("enable"); len(e) != 0 {
			t.Errorf("the canary was enabled: %v", e)
		}
	})
	t.Run("the new code does not start", func(t *testing.T) {
		f := running(2)
		f.results[workerService(3)] = "failed"
		err := restartPool(testCtx(t), f, defaultPool, true, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "no running worker was restarted") {
			t.Fatalf("restartPool = %v, want the canary's failure", err)
		}
		if r := f.Calls("restart"); len(r) != 0 {
			t.Errorf("restarted %v after the canary failed", r)
		}
	})
}

func TestPrintCertificates(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	var b strings.Builder
	printCertificates(&b, []certInfo{
		{Names: []string{"shop.example"}, Source: "acme", Issuer: "R11", NotAfter: now.Add(60 * 24 * time.Hour), RenewAt: now.Add(30 * 24 * time.Hour), RenewBy: "ari"},
		{Names: []string{"blog.example"}, Source: "self-signed", Failures: 3, LastErrorAt: now.Add(-time.Minute),
			LastError: "urn:ietf:params:acme:error:connection: dial tcp: connection refused"},
		{Names: []string{"old.example"}, Source: "file", File: "/etc/edged/tls/old.crt", Issuer: "R10", NotAfter: now},
	}, now)
	for _, want := range []string{
		"shop.example", "(ARI)", "blog.example", "3 failed, last 1m0s ago: urn:ietf:params:acme:error:connection",
		"old.example (/etc/edged/tls/old.crt)",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("printCertificates: no %q in\n%s", want, b.String())
		}
	}
}
