package generator

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/edged/edged/pkg/config"
	"github.com/edged/edged/pkg/cores"
)

// Paths the generator reads.
const (
	// Name is the name systemd runs the generator under: a link to
	// edgectl in /usr/lib/systemd/system-generators.
	Name = "edged-generator"
	// LastGood is a copy of the last config that loaded, kept for a
	// daemon-reload with a config that does not: the running sites' units
	// stay. It lives under /run, which systemd mounts before generators run.
	LastGood = "/run/edged/generator/last-good.toml"
	// ScaleDir holds, per site, the worker count `edgectl scale SITE N`
	// asked for, so that the same number starts at the next boot. It is
	// on the root file system, as systemd's own enablement links are:
	// generators run before /var may be mounted.
	ScaleDir = "/etc/edged/scale"
	// Credentials holds each site's credentials directory: a site's
	// workers get /etc/edged/credentials/NAME, never another site's.
	Credentials = "/etc/edged/credentials"
)

// Main is edged-generator: systemd runs it at boot and at every
// daemon-reload with the directories to write units into (normal, early,
// late: systemd.generator(7)); it writes into the first. It never fails
// the boot: a config that does not load is reported on stderr (the
// journal) and the last one that did is used.
func Main(args []string, stderr io.Writer) int {
	if os.Getenv("SYSTEMD_SCOPE") == "system" {
		// Run by the system manager: what a generator prints goes to the
		// kernel log, where the journal finds it, as systemd's own
		// generators do.
		if k, err := os.OpenFile("/dev/kmsg", os.O_WRONLY, 0); err == nil {
			defer k.Close()
			stderr = kmsg{k}
		}
	}
	if len(args) != 1 && len(args) != 3 {
		fmt.Fprintf(stderr, "%s: usage: %s NORMAL-DIR [EARLY-DIR LATE-DIR] (systemd runs it)\n", Name, Name)
		return 1
	}
	exe, _ := os.Executable()
	return generate(paths{config: config.DefaultPath, lastGood: LastGood, scale: ScaleDir, credentials: Credentials, template: Template(exe)}, args[0], stderr)
}

// paths are where generate reads and keeps things.
type paths struct {
	config, lastGood, scale, credentials, template string
}

func generate(p paths, out string, stderr io.Writer) int {
	cfg, err := load(p.config, p.lastGood, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", Name, err)
		return 0
	}
	o := Options{Template: p.template, Source: p.config, Workers: BootWorkers(cfg, p.scale)}
	if err := Write(out, Units(cfg, o), cfg, p.credentials); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", Name, err)
		return 1
	}
	return 0
}

// load reads the config; when it does not load, the last one that did.
// It looks at the sites' names, pools and limits only, never at the files
// the config names: at boot they may be on a file system not yet mounted.
func load(path, lastGood string, stderr io.Writer) (*config.Config, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no %s: no site units", path)
	}
	var cfg *config.Config
	if err == nil {
		cfg, err = config.ParseShape(path, filepath.Dir(path), data)
	}
	if err == nil {
		if os.MkdirAll(filepath.Dir(lastGood), 0o755) == nil {
			os.WriteFile(lastGood, data, 0o644)
		}
		return cfg, nil
	}
	fmt.Fprintf(stderr, "%s: %s does not load, so the sites' units stay as they were (fix it, then systemctl daemon-reload):\n%s\n", Name, path, indent(err.Error()))
	good, rerr := os.ReadFile(lastGood)
	if rerr != nil {
		return nil, fmt.Errorf("no earlier config that loaded (%v): no site units", rerr)
	}
	return config.ParseShape(path, filepath.Dir(path), good)
}

func indent(s string) string { return "  " + strings.ReplaceAll(s, "\n", "\n  ") }

// Template is where the shared worker template lies for the binary at
// exe: /usr/lib/edged/workerd-site@.service for /usr/bin/edgectl.
func Template(exe string) string {
	return filepath.Join(filepath.Dir(filepath.Dir(exe)), "lib", "edged", "workerd-site@.service")
}

// BootWorkers is how many workers each site starts at boot: the count
// `edgectl scale SITE N` recorded in dir, else the site's share of
// (2 x cores) + 1 (see Shares).
func BootWorkers(cfg *config.Config, dir string) map[string]int {
	shares := Shares(cfg, cores.Count("system.slice").Workers())
	out := map[string]int{}
	for _, s := range cfg.Sites {
		out[s.Name] = shares[s.Name]
		if b, err := os.ReadFile(filepath.Join(dir, s.Name)); err == nil {
			if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && n >= 0 && n <= 1024 {
				out[s.Name] = n
			}
		}
	}
	return out
}

// Shares divides total workers among the sites by their weight,
// pool.workers (0 weighs as 1), each site at least one.
func Shares(cfg *config.Config, total int) map[string]int {
	sum := 0
	for _, s := range cfg.Sites {
		sum += weight(s)
	}
	out := map[string]int{}
	for _, s := range cfg.Sites {
		out[s.Name] = max(1, int(math.Round(float64(total)*float64(weight(s))/float64(sum))))
	}
	return out
}

func weight(s *config.Site) int { return max(1, s.Pool.Workers) }

// Write puts files into dir, and a drop-in giving each site's workers its
// credentials directory when it exists.
func Write(dir string, files []File, cfg *config.Config, credentials string) error {
	for _, s := range cfg.Sites {
		if s.Name == config.DefaultSite {
			continue
		}
		creds := filepath.Join(credentials, s.Name)
		if fi, err := os.Stat(creds); err == nil && fi.IsDir() {
			files = append(files, File{Name: "workerd-" + s.Name + "@.service.d/credentials.conf",
				Content: "# Written by edged-generator: the site's own secrets, never another site's.\n[Service]\nLoadCredential=app:" + creds + "\n"})
		}
	}
	for _, f := range files {
		p := filepath.Join(dir, f.Name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		os.Remove(p)
		var err error
		if f.Link != "" {
			err = os.Symlink(f.Link, p)
		} else {
			err = os.WriteFile(p, []byte(f.Content), 0o644)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// kmsg writes each line as a kernel log record of priority err, tagged
// with the generator's name.
type kmsg struct{ w io.Writer }

func (k kmsg) Write(p []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		line = strings.TrimPrefix(line, Name+": ")
		if _, err := io.WriteString(k.w, "<3>"+Name+": "+line+"\n"); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}
