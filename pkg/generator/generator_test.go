package generator

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edged/edged/pkg/config"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

const sitesConfig = `
listen.http = ["0.0.0.0:80"]

[app]
module = "main:app"

[[site]]
name = "shop"
names = ["shop.example"]
[site.app]
module = "shop:app"
[site.pool]
workers = 3
memory_max = "2g"
[site.limits]
queue_length = 64

[[site]]
name = "blog"
names = ["blog.example"]
[site.app]
module = "blog.wsgi"
`

// dump is the files as one text: each file's name, then its content or
// where it links to.
func dump(files []File) string {
	var b strings.Builder
	for _, f := range files {
		if f.Link != "" {
			b.WriteString("== " + f.Name + " -> " + f.Link + "\n")
			continue
		}
		b.WriteString("== " + f.Name + "\n" + f.Content)
	}
	return b.String()
}

func TestUnits(t *testing.T) {
	cfg, err := config.Parse("/etc/edged/edged.toml", t.TempDir(), []byte(sitesConfig))
	if err != nil {
		t.Fatal(err)
	}
	got := dump(Units(cfg, Options{
		Template: "/usr/lib/edged/workerd-site@.service",
		Source:   "/etc/edged/edged.toml",
		Workers:  map[string]int{"shop": 3, "blog": 1},
	}))
	golden := filepath.Join("testdata", "sites.golden")
	if *update {
		os.WriteFile(golden, []byte(got), 0o644)
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("units differ from %s (go test ./pkg/generator -update rewrites it):\n%s", golden, got)
	}
}

// A config with no [[site]] needs nothing beyond the packaged units.
func TestUnitsNoSites(t *testing.T) {
	cfg, err := config.Parse("edged.toml", t.TempDir(), []byte("[app]\nmodule = \"x\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if files := Units(cfg, Options{}); len(files) != 0 {
		t.Errorf("Units = %v, want none", files)
	}
}

// The generator writes the units of the config, keeps them from the last
// config that loaded when the config is broken, and never fails the boot.
func TestGenerate(t *testing.T) {
	dir := t.TempDir()
	p := paths{
		config:      filepath.Join(dir, "etc", "edged.toml"),
		lastGood:    filepath.Join(dir, "run", "last-good.toml"),
		scale:       filepath.Join(dir, "scale"),
		credentials: filepath.Join(dir, "credentials"),
		template:    "/usr/lib/edged/workerd-site@.service",
	}
	os.MkdirAll(filepath.Dir(p.config), 0o755)
	os.MkdirAll(p.scale, 0o755)
	os.MkdirAll(filepath.Join(p.credentials, "shop"), 0o700)
	os.WriteFile(filepath.Join(p.scale, "blog"), []byte("4\n"), 0o644)
	run := func(t *testing.T) (string, string) {
		t.Helper()
		out := t.TempDir()
		var stderr strings.Builder
		if code := generate(p, out, &stderr); code != 0 {
			t.Fatalf("exit %d: %s", code, stderr.String())
		}
		var names []string
		filepath.Walk(out, func(path string, fi os.FileInfo, err error) error {
			if err == nil && !fi.IsDir() || fi != nil && fi.Mode()&os.ModeSymlink != 0 {
				rel, _ := filepath.Rel(out, path)
				names = append(names, rel)
			}
			return nil
		})
		return strings.Join(names, " "), stderr.String()
	}

	if files, _ := run(t); files != "" {
		t.Errorf("no config: wrote %s", files)
	}
	os.WriteFile(p.config, []byte(sitesConfig), 0o644)
	files, stderr := run(t)
	for _, want := range []string{"workerd-shop.socket", "workerd-blog@.service", "edged-shop.slice",
		"multi-user.target.wants/workerd-shop@3.service", "multi-user.target.wants/workerd-blog@4.service",
		"workerd-shop@.service.d/credentials.conf"} {
		if !strings.Contains(" "+files+" ", " "+want+" ") {
			t.Errorf("missing %s in %s", want, files)
		}
	}
	if strings.Contains(files, "workerd-blog@.service.d") || strings.Contains(files, "workerd-blog@5") {
		t.Errorf("wrote %s: blog has no credentials directory and 4 workers", files)
	}
	if stderr != "" {
		t.Errorf("stderr: %s", stderr)
	}

	// Files the config names that are not there (a file system not yet
	// mounted at boot) change nothing: the generator reads no file but
	// the config.
	os.WriteFile(p.config, []byte(strings.Replace(sitesConfig, `module = "shop:app"`, "module = \"shop:app\"\ndirectory = \"/srv/not-mounted-yet\"", 1)), 0o644)
	if again, stderr := run(t); again != files || stderr != "" {
		t.Errorf("with an app directory not there: %s (%s), want %s", again, stderr, files)
	}

	// A broken config: the same units, and why on stderr.
	os.WriteFile(p.config, []byte(sitesConfig+"\n[[site]]\nname = \"bad-name\"\n"), 0o644)
	again, stderr := run(t)
	if again != files {
		t.Errorf("with a broken config: %s, want the last good one's %s", again, files)
	}
	if !strings.Contains(stderr, "does not load") || !strings.Contains(stderr, "bad-name") {
		t.Errorf("stderr does not say why: %q", stderr)
	}
}

func TestShares(t *testing.T) {
	cfg, err := config.Parse("edged.toml", t.TempDir(), []byte(sitesConfig))
	if err != nil {
		t.Fatal(err)
	}
	// default and blog weigh 1, shop 3: 5 workers as 1, 3, 1.
	got := Shares(cfg, 5)
	if got["default"] != 1 || got["shop"] != 3 || got["blog"] != 1 {
		t.Errorf("Shares(5) = %v", got)
	}
	if got := Shares(cfg, 1); got["default"] != 1 || got["shop"] != 1 || got["blog"] != 1 {
		t.Errorf("Shares(1) = %v, want at least one each", got)
	}
}
