package ctl

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// cores is how many CPUs the workers may use, and how that was found.
type cores struct {
	Online   int     // CPUs the machine has online
	Affinity int     // CPUs in this process's affinity mask
	Quota    float64 // CPUs the cgroup cpu.max allows; 0 = no quota
	QuotaAt  string  // the cgroup that sets it
	Cores    int
}

func (c cores) Explain() string {
	s := fmt.Sprintf("cores: %d online, %d in the CPU affinity mask", c.Online, c.Affinity)
	if c.Quota > 0 {
		s += fmt.Sprintf(", cgroup %s allows %.2f CPUs (cpu.max)", c.QuotaAt, c.Quota)
	} else {
		s += ", no cgroup cpu quota"
	}
	return s + fmt.Sprintf(" -> %d", c.Cores)
}

// countCores counts the CPUs the workers can use: the affinity mask, and
// the tightest cpu.max quota on the way from the workers' slice (where
// systemd runs them) up to the root of the cgroup tree.
func countCores() cores {
	c := cores{Online: runtime.NumCPU(), Affinity: runtime.NumCPU()}
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err == nil && set.Count() > 0 {
		c.Affinity = set.Count()
	}
	c.Cores = c.Affinity
	c.Quota, c.QuotaAt = cgroupQuota("/sys/fs/cgroup", "system.slice")
	if c.Quota > 0 {
		if q := int(math.Ceil(c.Quota)); q < c.Cores {
			c.Cores = q
		}
	}
	if c.Cores < 1 {
		c.Cores = 1
	}
	return c
}

// cgroupQuota walks from root/dir up to root and returns the smallest
// cpu.max quota in CPUs, and where it is set.
func cgroupQuota(root, dir string) (float64, string) {
	best, at := 0.0, ""
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		if q := readCPUMax(filepath.Join(root, d, "cpu.max")); q > 0 && (best == 0 || q < best) {
			best, at = q, filepath.Join("/", d) // "." (the root itself) is "/"
		}
		if d == "." || d == "/" {
			break
		}
	}
	return best, at
}

// readCPUMax parses "QUOTA PERIOD" (or "max PERIOD") from a cpu.max file.
func readCPUMax(path string) float64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) != 2 || f[0] == "max" {
		return 0
	}
	q, err1 := strconv.ParseFloat(f[0], 64)
	p, err2 := strconv.ParseFloat(f[1], 64)
	if err1 != nil || err2 != nil || p <= 0 {
		return 0
	}
	return q / p
}
