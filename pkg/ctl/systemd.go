package ctl

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	"github.com/godbus/dbus/v5"

	"github.com/edged/edged/pkg/config"
)

// Unit names.
const edgedUnit = "edged.service"

// pool is the units of one site's workers: workerd@N and workerd.socket
// for the top-level site (the packaged units), workerd-NAME@N and
// workerd-NAME.socket for a [[site]] (written by edged-generator).
type pool struct {
	site string // "" for the top-level site
}

// defaultPool is the top-level site's.
var defaultPool = pool{}

// poolOf is the pool of the site called name.
func poolOf(name string) pool {
	if name == config.DefaultSite {
		return defaultPool
	}
	return pool{site: name}
}

// name is the site's name, as the config says it.
func (p pool) name() string {
	if p.site == "" {
		return config.DefaultSite
	}
	return p.site
}

func (p pool) prefix() string {
	if p.site == "" {
		return "workerd@"
	}
	return "workerd-" + p.site + "@"
}

// service is the unit of worker n.
func (p pool) service(n int) string { return fmt.Sprintf("%s%d.service", p.prefix(), n) }

// socket is the one socket every worker of the site takes requests from.
func (p pool) socket() string {
	if p.site == "" {
		return queueSocket
	}
	return "workerd-" + p.site + ".socket"
}

// generated says the units come from edged-generator: they cannot be
// enabled, and the count to start at boot is recorded for it instead.
func (p pool) generated() bool { return p.site != "" }

func workerService(n int) string { return defaultPool.service(n) }

// queueSocket is the one socket every top-level worker takes requests from.
const queueSocket = "workerd.socket"

// manager is the part of systemd's D-Bus API edgectl uses; tests may fake
// it, production uses *sddbus.Conn.
type manager interface {
	ListUnitsByPatternsContext(ctx context.Context, states, patterns []string) ([]sddbus.UnitStatus, error)
	GetUnitPropertiesContext(ctx context.Context, unit string) (map[string]any, error)
	GetUnitTypePropertiesContext(ctx context.Context, unit, unitType string) (map[string]any, error)
	StartUnitContext(ctx context.Context, name, mode string, ch chan<- string) (int, error)
	StopUnitContext(ctx context.Context, name, mode string, ch chan<- string) (int, error)
	RestartUnitContext(ctx context.Context, name, mode string, ch chan<- string) (int, error)
	EnableUnitFilesContext(ctx context.Context, files []string, runtime, force bool) (bool, []sddbus.EnableUnitFileChange, error)
	DisableUnitFilesContext(ctx context.Context, files []string, runtime bool) ([]sddbus.DisableUnitFileChange, error)
	ResetFailedUnitContext(ctx context.Context, name string) error
	Close()
}

var _ manager = (*sddbus.Conn)(nil)

// connect reaches systemd over the system bus.
func connect(ctx context.Context) (manager, error) {
	c, err := sddbus.NewSystemConnectionContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("cannot reach systemd over D-Bus (%v): is this machine running systemd? Without it, `edgectl run` runs the suite in the foreground", err)
	}
	return c, nil
}

// explain turns a D-Bus error into what the user should do.
func explain(op string, err error) error {
	if denied(err) {
		return fmt.Errorf("%s: permission denied: run as root, or join the \"edgeadm\" group (the package's polkit rule lets it manage edged's units)", op)
	}
	var de dbus.Error
	missing := errors.As(err, &de) && (de.Name == "org.freedesktop.systemd1.NoSuchUnit" || de.Name == "org.freedesktop.systemd1.LoadFailed")
	if missing || strings.Contains(err.Error(), "not found") {
		return fmt.Errorf("%s: %v: the units are not installed: install the edged package, or copy units/ to /etc/systemd/system and run systemctl daemon-reload", op, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// denied reports a D-Bus refusal for lack of privilege.
func denied(err error) bool {
	var de dbus.Error
	if !errors.As(err, &de) {
		return false
	}
	return de.Name == "org.freedesktop.DBus.Error.AccessDenied" || de.Name == "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired"
}

// workerInstances lists the instance numbers of worker services that are
// running or starting.
func workerInstances(ctx context.Context, m manager) ([]int, error) {
	return defaultPool.instances(ctx, m)
}

// instances lists the instance numbers of the pool's worker services that
// are running or starting.
func (p pool) instances(ctx context.Context, m manager) ([]int, error) {
	return p.list(ctx, m, func(u sddbus.UnitStatus) bool {
		return u.ActiveState == "active" || u.ActiveState == "activating" || u.ActiveState == "reloading"
	})
}

// listWorkers lists, in order, the instance numbers of the worker
// services keep accepts.
func (p pool) list(ctx context.Context, m manager, keep func(sddbus.UnitStatus) bool) ([]int, error) {
	units, err := m.ListUnitsByPatternsContext(ctx, nil, []string{p.prefix() + "*.service"})
	if err != nil {
		return nil, explain("list workers", err)
	}
	var ns []int
	for _, u := range units {
		if n, ok := p.instance(u.Name); ok && keep(u) {
			ns = append(ns, n)
		}
	}
	sort.Ints(ns)
	return ns, nil
}

func instance(unit string) (int, bool) { return defaultPool.instance(unit) }

func (p pool) instance(unit string) (int, bool) {
	s, ok := strings.CutPrefix(unit, p.prefix())
	if !ok {
		return 0, false
	}
	s, ok = strings.CutSuffix(s, ".service")
	if !ok {
		return 0, false
	}
	return config.Instance(s)
}

// runJob starts a job and waits for its result.
func runJob(ctx context.Context, op string, start func(chan<- string) (int, error)) error {
	ch := make(chan string, 1)
	if _, err := start(ch); err != nil {
		return explain(op, err)
	}
	select {
	case res := <-ch:
		if res != "done" {
			return fmt.Errorf("%s: job %s", op, res)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%s: %w", op, ctx.Err())
	}
}

// unitInfo is one row of `edgectl status`.
type unitInfo struct {
	Unit string `json:"unit"`
	// Site is the worker's site, when the config has [[site]]s.
	Site        string    `json:"site,omitempty"`
	State       string    `json:"state"`
	SubState    string    `json:"sub_state"`
	PID         uint32    `json:"pid"`
	Since       time.Time `json:"since,omitempty"`
	MemoryBytes *uint64   `json:"memory_bytes"`
	CPUNanos    *uint64   `json:"cpu_nsec"`
	Restarts    uint32    `json:"restarts"`
	Status      string    `json:"status"`
}

// unset is how systemd reports a counter it does not track.
const unset = ^uint64(0)

func info(ctx context.Context, m manager, unit string) (unitInfo, error) {
	u := unitInfo{Unit: unit}
	up, err := m.GetUnitPropertiesContext(ctx, unit)
	if err != nil {
		return u, explain("read "+unit, err)
	}
	u.State, _ = up["ActiveState"].(string)
	u.SubState, _ = up["SubState"].(string)
	if ts, ok := up["ActiveEnterTimestamp"].(uint64); ok && ts > 0 && u.State == "active" {
		u.Since = time.UnixMicro(int64(ts))
	}
	sp, err := m.GetUnitTypePropertiesContext(ctx, unit, "Service")
	if err != nil {
		return u, explain("read "+unit, err)
	}
	u.PID, _ = sp["MainPID"].(uint32)
	if v, ok := sp["MemoryCurrent"].(uint64); ok && v != unset {
		u.MemoryBytes = &v
	}
	if v, ok := sp["CPUUsageNSec"].(uint64); ok && v != unset {
		u.CPUNanos = &v
	}
	u.Restarts, _ = sp["NRestarts"].(uint32)
	u.Status, _ = sp["StatusText"].(string)
	return u, nil
}
