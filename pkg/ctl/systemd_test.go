package ctl

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
)

const (
	wantPermission = `run as root, or join the "edgeadm" group`
	wantInstall    = "units are not installed"
)

func dbusErr(name, msg string) dbus.Error {
	return dbus.Error{Name: name, Body: []any{msg}}
}

func TestExplain(t *testing.T) {
	tests := []struct {
		name     string
		err      error
		want     []string
		avoid    []string
		wantWrap bool // errors.Is(got, err)
		wantAs   bool // errors.As(got, *dbus.Error)
	}{
		{
			name:  "access denied",
			err:   dbusErr("org.freedesktop.DBus.Error.AccessDenied", "Access denied"),
			want:  []string{"scale: permission denied", wantPermission},
			avoid: []string{wantInstall},
		},
		{
			name:  "interactive authorization required",
			err:   dbusErr("org.freedesktop.DBus.Error.InteractiveAuthorizationRequired", "Interactive authentication required."),
			want:  []string{"scale: permission denied", wantPermission},
			avoid: []string{wantInstall},
		},
		{
			name: "access denied, wrapped",
			err:  fmt.Errorf("call: %w", dbusErr("org.freedesktop.DBus.Error.AccessDenied", "Access denied")),
			want: []string{wantPermission},
		},
		{
			name:  "no such unit",
			err:   dbusErr("org.freedesktop.systemd1.NoSuchUnit", "Unit workerd@1.socket not found."),
			want:  []string{"scale:", "Unit workerd@1.socket not found.", wantInstall},
			avoid: []string{"edgeadm"},
		},
		{
			name:  "load failed",
			err:   dbusErr("org.freedesktop.systemd1.LoadFailed", "Unit workerd@1.service failed to load"),
			want:  []string{wantInstall},
			avoid: []string{"edgeadm"},
		},
		{
			name: "plain not found",
			err:  errors.New("Unit edged.service not found."),
			want: []string{"scale:", wantInstall},
		},
		{
			name:   "other dbus error",
			err:    dbusErr("org.freedesktop.DBus.Error.NoReply", "timed out"),
			want:   []string{"scale: timed out"},
			avoid:  []string{"edgeadm", wantInstall},
			wantAs: true,
		},
		{
			name:     "other error",
			err:      context.DeadlineExceeded,
			want:     []string{"scale: context deadline exceeded"},
			avoid:    []string{"edgeadm", wantInstall},
			wantWrap: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := explain("scale", tt.err)
			for _, w := range tt.want {
				if !strings.Contains(got.Error(), w) {
					t.Errorf("explain() = %q, want it to contain %q", got, w)
				}
			}
			if tt.wantWrap && !errors.Is(got, tt.err) {
				t.Errorf("explain() = %q, want it to wrap %v", got, tt.err)
			}
			var de dbus.Error
			if tt.wantAs && (!errors.As(got, &de) || de.Name != tt.err.(dbus.Error).Name) {
				t.Errorf("explain() = %q, want it to wrap the dbus.Error %v", got, tt.err)
			}
			for _, a := range tt.avoid {
				if strings.Contains(got.Error(), a) {
					t.Errorf("explain() = %q, want it not to contain %q", got, a)
				}
			}
		})
	}
}

func TestInstance(t *testing.T) {
	tests := []struct {
		unit   string
		want   int
		wantOK bool
	}{
		{"workerd@3.service", 3, true},
		{"workerd@1.service", 1, true},
		{"workerd@1024.service", 1024, true},
		{"workerd@x.service", 0, false},
		{"workerd@0.service", 0, false},
		{"workerd@-1.service", 0, false},
		{"workerd@.service", 0, false},
		{"edged.service", 0, false},
		{"workerd@3.socket", 0, false},
		{"workerd@3.service.service", 0, false},
		{"xworkerd@3.service", 0, false},
		// systemd treats these as other instances than workerd@3: taking
		// them for 3 would make scale skip or stop the wrong unit.
		{"workerd@03.service", 0, false},
		{"workerd@+3.service", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.unit, func(t *testing.T) {
			got, ok := instance(tt.unit)
			if ok != tt.wantOK || (ok && got != tt.want) {
				t.Errorf("instance(%q) = %d, %v; want %d, %v", tt.unit, got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestInstanceRoundTrip(t *testing.T) {
	for _, n := range []int{1, 2, 9, 10, 99, 100, 1024} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			got, ok := instance(workerService(n))
			if !ok || got != n {
				t.Errorf("instance(workerService(%d)) = %d, %v; want %d, true", n, got, ok, n)
			}
		})
	}
}

func TestWorkerInstances(t *testing.T) {
	tests := []struct {
		name    string
		units   map[string]*fakeUnit
		listErr error
		want    []int
		wantErr string
	}{
		{name: "none", want: nil},
		{
			name: "running states, sorted numerically",
			units: map[string]*fakeUnit{
				"workerd@10.service": {active: "active"},
				"workerd@2.service":  {active: "activating"},
				"workerd@3.service":  {active: "reloading"},
				"workerd@1.service":  {active: "active"},
			},
			want: []int{1, 2, 3, 10},
		},
		{
			name: "stopped and failed ones left out",
			units: map[string]*fakeUnit{
				"workerd@1.service": {active: "active"},
				"workerd@2.service": {active: "inactive"},
				"workerd@3.service": {active: "failed"},
				"workerd@4.service": {active: "deactivating"},
			},
			want: []int{1},
		},
		{
			name: "sockets, edged and odd names left out",
			units: map[string]*fakeUnit{
				"workerd@1.socket":   {active: "active"},
				"edged.service":      {active: "active"},
				"workerd@x.service":  {active: "active"},
				"workerd@03.service": {active: "active"},
				"workerd@2.service":  {active: "active"},
			},
			want: []int{2},
		},
		{
			name:    "access denied",
			listErr: dbusErr("org.freedesktop.DBus.Error.AccessDenied", "denied"),
			wantErr: wantPermission,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(tt.units)
			f.listErr = tt.listErr
			got, err := workerInstances(context.Background(), f)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("workerInstances() error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("workerInstances() error = %v", err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("workerInstances() = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestRunJob(t *testing.T) {
	tests := []struct {
		name     string
		result   string // sent on the channel; "" = nothing sent
		startErr error
		cancel   bool
		wantErr  string // "" = success
		wantIs   error
	}{
		{name: "done", result: "done"},
		{name: "failed", result: "failed", wantErr: "start workerd@1.service: job failed"},
		{name: "dependency", result: "dependency", wantErr: "job dependency"},
		{name: "timeout", result: "timeout", wantErr: "job timeout"},
		{
			name:     "start refused",
			startErr: dbusErr("org.freedesktop.DBus.Error.AccessDenied", "denied"),
			wantErr:  wantPermission,
		},
		{
			name:     "unit missing",
			startErr: dbusErr("org.freedesktop.systemd1.NoSuchUnit", "Unit workerd@1.service not found."),
			wantErr:  wantInstall,
		},
		{name: "cancelled while waiting", cancel: true, wantErr: "start workerd@1.service", wantIs: context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if tt.cancel {
				cancel()
			}
			err := runJob(ctx, "start workerd@1.service", func(ch chan<- string) (int, error) {
				if tt.startErr != nil {
					return 0, tt.startErr
				}
				if tt.result != "" {
					ch <- tt.result
				}
				return 7, nil
			})
			if tt.wantErr == "" {
				if err != nil {
					t.Errorf("runJob() = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("runJob() = %v, want an error containing %q", err, tt.wantErr)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("runJob() = %v, want it to wrap %v", err, tt.wantIs)
			}
		})
	}
}

func TestInfo(t *testing.T) {
	since := uint64(time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC).UnixMicro())
	tests := []struct {
		name      string
		unit      *fakeUnit
		wantSince bool
		wantMem   *uint64
		wantCPU   *uint64
	}{
		{
			name:      "active",
			unit:      &fakeUnit{active: "active", sub: "running", since: since, pid: 42, mem: 1 << 20, cpu: 5e9, restarts: 2, status: "ok"},
			wantSince: true, wantMem: new(uint64(1 << 20)), wantCPU: new(uint64(5e9)),
		},
		{
			name:      "counters not tracked",
			unit:      &fakeUnit{active: "active", sub: "running", since: since, pid: 42, mem: unset, cpu: unset},
			wantSince: true,
		},
		{
			name:    "failed keeps no uptime",
			unit:    &fakeUnit{active: "failed", sub: "failed", since: since, mem: 0, cpu: 0},
			wantMem: new(uint64(0)), wantCPU: new(uint64(0)),
		},
		{
			name:    "active without timestamp",
			unit:    &fakeUnit{active: "active", sub: "running", mem: 1, cpu: 1},
			wantMem: new(uint64(1)), wantCPU: new(uint64(1)),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(map[string]*fakeUnit{"workerd@1.service": tt.unit})
			got, err := info(context.Background(), f, "workerd@1.service")
			if err != nil {
				t.Fatalf("info() error = %v", err)
			}
			if got.Unit != "workerd@1.service" || got.State != tt.unit.active || got.SubState != tt.unit.sub {
				t.Errorf("info() unit/state = %q %q/%q, want %q %q/%q", got.Unit, got.State, got.SubState, "workerd@1.service", tt.unit.active, tt.unit.sub)
			}
			if got.PID != tt.unit.pid || got.Restarts != tt.unit.restarts || got.Status != tt.unit.status {
				t.Errorf("info() pid/restarts/status = %d/%d/%q, want %d/%d/%q", got.PID, got.Restarts, got.Status, tt.unit.pid, tt.unit.restarts, tt.unit.status)
			}
			wantSince := time.Time{}
			if tt.wantSince {
				wantSince = time.UnixMicro(int64(since))
			}
			if !got.Since.Equal(wantSince) {
				t.Errorf("info() Since = %v, want %v", got.Since, wantSince)
			}
			if !equalPtr(got.MemoryBytes, tt.wantMem) {
				t.Errorf("info() MemoryBytes = %s, want %s", showPtr(got.MemoryBytes), showPtr(tt.wantMem))
			}
			if !equalPtr(got.CPUNanos, tt.wantCPU) {
				t.Errorf("info() CPUNanos = %s, want %s", showPtr(got.CPUNanos), showPtr(tt.wantCPU))
			}
		})
	}
}

func equalPtr(a, b *uint64) bool {
	return (a == nil) == (b == nil) && (a == nil || *a == *b)
}

func showPtr(p *uint64) string {
	if p == nil {
		return "nil"
	}
	return fmt.Sprint(*p)
}
