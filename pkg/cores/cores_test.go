package cores

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadCPUMax(t *testing.T) {
	tests := []struct {
		name    string
		content *string // nil: no file
		want    float64
	}{
		{"no quota", new("max 100000\n"), 0},
		{"two CPUs", new("200000 100000\n"), 2},
		{"half a CPU", new("50000 100000\n"), 0.5},
		{"no trailing newline", new("150000 100000"), 1.5},
		{"garbage", new("lots of cpu\n"), 0},
		{"not numbers", new("abc 100000\n"), 0},
		{"one field", new("100000\n"), 0},
		{"zero period", new("100000 0\n"), 0},
		{"empty file", new(""), 0},
		{"missing file", nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "cpu.max")
			if tt.content != nil {
				if err := os.WriteFile(path, []byte(*tt.content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if got := readCPUMax(path); got != tt.want {
				t.Errorf("readCPUMax(%q) = %v, want %v", deref(tt.content), got, tt.want)
			}
		})
	}
}

func TestCgroupQuota(t *testing.T) {
	const child = "system.slice/workers.slice"
	tests := []struct {
		name   string
		dir    string
		files  map[string]string // cgroup (relative to the root, "" = root) -> cpu.max
		want   float64
		wantAt string
	}{
		{
			name: "parent tighter than child",
			dir:  child,
			files: map[string]string{
				"system.slice": "100000 100000",
				child:          "300000 100000",
			},
			want: 1, wantAt: "/system.slice",
		},
		{
			name: "child tighter than parent",
			dir:  child,
			files: map[string]string{
				"system.slice": "400000 100000",
				child:          "150000 100000",
			},
			want: 1.5, wantAt: "/system.slice/workers.slice",
		},
		{
			name:  "no quota anywhere",
			dir:   child,
			files: map[string]string{"": "max 100000", "system.slice": "max 100000", child: "max 100000"},
			want:  0, wantAt: "",
		},
		{
			name:  "no cpu.max files",
			dir:   child,
			files: nil,
			want:  0, wantAt: "",
		},
		{
			name:  "quota only at the root (a container's cgroup namespace)",
			dir:   "system.slice",
			files: map[string]string{"": "200000 100000", "system.slice": "max 100000"},
			want:  2, wantAt: "/",
		},
		{
			name:  "root tightest",
			dir:   child,
			files: map[string]string{"": "50000 100000", "system.slice": "100000 100000", child: "200000 100000"},
			want:  0.5, wantAt: "/",
		},
		{
			name:  "absolute dir",
			dir:   "/system.slice",
			files: map[string]string{"system.slice": "300000 100000"},
			want:  3, wantAt: "/system.slice",
		},
		{
			name: "absolute path, as /proc/self/cgroup gives it",
			dir:  "/" + child,
			files: map[string]string{
				"system.slice": "100000 100000",
				child:          "300000 100000",
			},
			want: 1, wantAt: "/system.slice",
		},
		{
			name:  "missing directory",
			dir:   "nowhere.slice",
			files: nil,
			want:  0, wantAt: "",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			if err := os.MkdirAll(filepath.Join(root, "system.slice", "workers.slice"), 0o755); err != nil {
				t.Fatal(err)
			}
			for dir, content := range tt.files {
				if err := os.WriteFile(filepath.Join(root, dir, "cpu.max"), []byte(content+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got, gotAt := cgroupQuota(root, tt.dir)
			if got != tt.want || gotAt != tt.wantAt {
				t.Errorf("cgroupQuota(root, %q) = %v, %q; want %v, %q", tt.dir, got, gotAt, tt.want, tt.wantAt)
			}
		})
	}
}

func TestCount(t *testing.T) {
	c := Count("system.slice")
	t.Logf("%+v", c)
	if c.Cores < 1 {
		t.Errorf("Cores = %d, want >= 1", c.Cores)
	}
	if c.Cores > c.Affinity {
		t.Errorf("Cores = %d, want <= Affinity %d", c.Cores, c.Affinity)
	}
	if c.Online < 1 || c.Affinity < 1 {
		t.Errorf("Online = %d, Affinity = %d, want both >= 1", c.Online, c.Affinity)
	}
	if c.Quota > 0 {
		if q := int(math.Ceil(c.Quota)); c.Cores > max(q, 1) {
			t.Errorf("Cores = %d with a quota of %.2f CPUs, want <= %d", c.Cores, c.Quota, max(q, 1))
		}
		if c.QuotaAt == "" {
			t.Errorf("Quota = %.2f but QuotaAt is empty", c.Quota)
		}
	} else if c.QuotaAt != "" {
		t.Errorf("no quota but QuotaAt = %q", c.QuotaAt)
	}
}

func TestCoresExplain(t *testing.T) {
	tests := []struct {
		name  string
		c     Budget
		want  []string
		avoid []string
	}{
		{
			name:  "quota",
			c:     Budget{Online: 16, Affinity: 8, Quota: 2.5, QuotaAt: "/system.slice", Cores: 3},
			want:  []string{"16 online", "8 in the CPU affinity mask", "cgroup /system.slice allows 2.50 CPUs", "-> 3"},
			avoid: []string{"no cgroup cpu quota"},
		},
		{
			name:  "no quota",
			c:     Budget{Online: 4, Affinity: 2, Cores: 2},
			want:  []string{"4 online", "2 in the CPU affinity mask", "no cgroup cpu quota", "-> 2"},
			avoid: []string{"allows"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.c.Explain()
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("Explain() = %q, want it to contain %q", got, w)
				}
			}
			for _, a := range tt.avoid {
				if strings.Contains(got, a) {
					t.Errorf("Explain() = %q, want it not to contain %q", got, a)
				}
			}
		})
	}
}

func TestOwn(t *testing.T) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil || !strings.Contains(string(b), "0::") {
		t.Skip("no cgroup v2 entry in /proc/self/cgroup")
	}
	if got := Own(); !strings.HasPrefix(got, "/") {
		t.Errorf("Own() = %q, want a path from the root of the cgroup tree", got)
	}
}

func deref(s *string) string {
	if s == nil {
		return "<no file>"
	}
	return *s
}
