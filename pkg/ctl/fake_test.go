package ctl

import (
	"context"
	"path"
	"strings"
	"sync"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
)

// fakeUnit is one unit as the fake systemd holds it.
type fakeUnit struct {
	load     string // LoadState; "" = loaded
	active   string // ActiveState
	sub      string // SubState
	since    uint64 // ActiveEnterTimestamp, µs since the epoch
	pid      uint32
	mem      uint64
	cpu      uint64
	restarts uint32
	status   string
}

// fakeSystemd is an in-memory manager. Jobs complete at once: a start
// marks the unit active (or failed), a stop marks it inactive.
type fakeSystemd struct {
	mu       sync.Mutex
	units    map[string]*fakeUnit
	fragment string            // FragmentPath of every unit
	results  map[string]string // job result by unit; "" = "done"
	jobErr   map[string]error  // error returned by Start/Stop/Restart by unit
	listErr  error
	propErr  map[string]error // error returned by Get*Properties by unit
	enableEr error
	enabled  map[string]bool
	runtime  []bool   // the runtime flag of each Enable/Disable call
	calls    []string // every call in order: "start U", "stop U", "enable A B", ...
	closed   bool
}

func newFake(units map[string]*fakeUnit) *fakeSystemd {
	if units == nil {
		units = map[string]*fakeUnit{}
	}
	return &fakeSystemd{
		units:    units,
		fragment: "/usr/lib/systemd/system/workerd@.service",
		results:  map[string]string{},
		jobErr:   map[string]error{},
		propErr:  map[string]error{},
		enabled:  map[string]bool{},
	}
}

// running returns a fake with services 1..n active, and the worker
// socket with them when n > 0.
func running(n int) *fakeSystemd {
	f := newFake(nil)
	if n > 0 {
		f.units[queueSocket] = &fakeUnit{active: "active", sub: "running"}
		f.enabled[queueSocket] = true
	}
	for i := 1; i <= n; i++ {
		f.units[workerService(i)] = &fakeUnit{active: "active", sub: "running"}
		f.enabled[workerService(i)] = true
	}
	return f
}

func (f *fakeSystemd) record(call string) {
	f.calls = append(f.calls, call)
}

// Calls returns the calls whose verb is one of verbs, in order.
func (f *fakeSystemd) Calls(verbs ...string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, c := range f.calls {
		verb, _, _ := strings.Cut(c, " ")
		for _, v := range verbs {
			if verb == v {
				out = append(out, c)
			}
		}
	}
	return out
}

func (f *fakeSystemd) state(name string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if u, ok := f.units[name]; ok {
		return u.active
	}
	return "inactive"
}

func (f *fakeSystemd) unit(name string) *fakeUnit {
	u, ok := f.units[name]
	if !ok {
		u = &fakeUnit{active: "inactive", sub: "dead"}
		f.units[name] = u
	}
	return u
}

func (f *fakeSystemd) job(verb, name string, ch chan<- string, apply func(u *fakeUnit, ok bool)) (int, error) {
	f.mu.Lock()
	f.record(verb + " " + name)
	if err := f.jobErr[name]; err != nil {
		f.mu.Unlock()
		return 0, err
	}
	res := f.results[name]
	if res == "" {
		res = "done"
	}
	apply(f.unit(name), res == "done")
	id := len(f.calls)
	f.mu.Unlock()
	ch <- res
	return id, nil
}

func (f *fakeSystemd) StartUnitContext(ctx context.Context, name, mode string, ch chan<- string) (int, error) {
	return f.job("start", name, ch, func(u *fakeUnit, ok bool) {
		if ok {
			u.active, u.sub = "active", "running"
		} else {
			u.active, u.sub = "failed", "failed"
		}
	})
}

func (f *fakeSystemd) StopUnitContext(ctx context.Context, name, mode string, ch chan<- string) (int, error) {
	return f.job("stop", name, ch, func(u *fakeUnit, ok bool) {
		if ok {
			u.active, u.sub = "inactive", "dead"
		}
	})
}

func (f *fakeSystemd) RestartUnitContext(ctx context.Context, name, mode string, ch chan<- string) (int, error) {
	return f.job("restart", name, ch, func(u *fakeUnit, ok bool) {
		if ok {
			u.active, u.sub = "active", "running"
		} else {
			u.active, u.sub = "failed", "failed"
		}
	})
}

func (f *fakeSystemd) ListUnitsByPatternsContext(ctx context.Context, states, patterns []string) ([]sddbus.UnitStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("list " + strings.Join(patterns, " "))
	if f.listErr != nil {
		return nil, f.listErr
	}
	var out []sddbus.UnitStatus // in map order: callers must sort
	for name, u := range f.units {
		if !matchAny(patterns, name) || (len(states) > 0 && !matchAny(states, u.active)) {
			continue
		}
		load := u.load
		if load == "" {
			load = "loaded"
		}
		out = append(out, sddbus.UnitStatus{Name: name, LoadState: load, ActiveState: u.active, SubState: u.sub})
	}
	return out, nil
}

func matchAny(patterns []string, s string) bool {
	for _, p := range patterns {
		if ok, _ := path.Match(p, s); ok {
			return true
		}
	}
	return false
}

func (f *fakeSystemd) GetUnitPropertiesContext(ctx context.Context, unit string) (map[string]any, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.propErr[unit]; err != nil {
		return nil, err
	}
	u := f.units[unit]
	if u == nil {
		u = &fakeUnit{active: "inactive", sub: "dead"}
	}
	return map[string]any{
		"Id":                   unit,
		"ActiveState":          u.active,
		"SubState":             u.sub,
		"ActiveEnterTimestamp": u.since,
		"FragmentPath":         f.fragment,
	}, nil
}

func (f *fakeSystemd) GetUnitTypePropertiesContext(ctx context.Context, unit, unitType string) (map[string]any, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.propErr[unit]; err != nil {
		return nil, err
	}
	if unitType != "Service" {
		return map[string]any{}, nil
	}
	u := f.units[unit]
	if u == nil {
		u = &fakeUnit{}
	}
	return map[string]any{
		"MainPID":       u.pid,
		"MemoryCurrent": u.mem,
		"CPUUsageNSec":  u.cpu,
		"NRestarts":     u.restarts,
		"StatusText":    u.status,
	}, nil
}

func (f *fakeSystemd) EnableUnitFilesContext(ctx context.Context, files []string, runtime, force bool) (bool, []sddbus.EnableUnitFileChange, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("enable " + strings.Join(files, " "))
	if f.enableEr != nil {
		return false, nil, f.enableEr
	}
	f.runtime = append(f.runtime, runtime)
	for _, file := range files {
		f.enabled[file] = true
	}
	return true, nil, nil
}

func (f *fakeSystemd) DisableUnitFilesContext(ctx context.Context, files []string, runtime bool) ([]sddbus.DisableUnitFileChange, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("disable " + strings.Join(files, " "))
	f.runtime = append(f.runtime, runtime)
	for _, file := range files {
		delete(f.enabled, file)
	}
	return nil, nil
}

func (f *fakeSystemd) ResetFailedUnitContext(ctx context.Context, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("reset-failed " + name)
	return nil
}

func (f *fakeSystemd) Close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
}

var _ manager = (*fakeSystemd)(nil)
