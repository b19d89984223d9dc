// Package cores counts the CPUs a pool of workers may use, the way the
// (2 x cores) + 1 sizing rule needs them counted: the affinity mask and
// the tightest cgroup cpu quota, not the machine's CPUs.
package cores

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

// Budget is how many CPUs the workers may use, and how that was found.
type Budget struct {
	Online   int     // CPUs the machine has online
	Affinity int     // CPUs in this process's affinity mask
	Quota    float64 // CPUs the cgroup cpu.max allows; 0 = no quota
	QuotaAt  string  // the cgroup that sets it
	Cores    int
}

// Explain says how Cores was found, for a person.
func (c Budget) Explain() string {
	s := fmt.Sprintf("cores: %d online, %d in the CPU affinity mask", c.Online, c.Affinity)
	if c.Quota > 0 {
		s += fmt.Sprintf(", cgroup %s allows %.2f CPUs (cpu.max)", c.QuotaAt, c.Quota)
	} else {
		s += ", no cgroup cpu quota"
	}
	return s + fmt.Sprintf(" -> %d", c.Cores)
}

// Workers is the pool size for this budget: (2 x cores) + 1.
func (c Budget) Workers() int { return 2*c.Cores + 1 }

// Count counts the CPUs workers in cgroup (a path in the cgroup tree, as
// "system.slice" where systemd runs them) can use: this process's
// affinity mask, and the tightest cpu.max quota from that cgroup up to
// the root of the tree.
func Count(cgroup string) Budget {
	c := Budget{Online: runtime.NumCPU(), Affinity: runtime.NumCPU()}
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err == nil && set.Count() > 0 {
		c.Affinity = set.Count()
	}
	c.Cores = c.Affinity
	c.Quota, c.QuotaAt = cgroupQuota("/sys/fs/cgroup", cgroup)
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

// Own is this process's cgroup ("" when it cannot be read): where workers
// it starts itself will run.
func Own() string {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		if path, ok := strings.CutPrefix(line, "0::"); ok {
			return path
		}
	}
	return ""
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
