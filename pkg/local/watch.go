package local

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// watchInterval is how often `edgectl run --reload` looks at the app's
// files: a walk of a few hundred files a second costs next to nothing,
// and needs no watch per directory.
const watchInterval = time.Second

// maxWatched bounds the files looked at, for an app directory that holds
// far more than the app.
const maxWatched = 20000

// fileState is what a change to a file changes.
type fileState struct {
	mod  time.Time
	size int64
}

// pySnapshot is the .py files under dir, skipping what is not the app's
// code (caches, virtualenvs, version control, node_modules) and skip.
func pySnapshot(dir, skip string) map[string]fileState {
	files := map[string]fileState{}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if d.IsDir() {
			name := d.Name()
			if p != dir && (p == skip || name == "__pycache__" || name == "node_modules" || strings.HasPrefix(name, ".") ||
				fileExists(filepath.Join(p, "pyvenv.cfg"))) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(p, ".py") {
			return nil
		}
		if len(files) >= maxWatched {
			return filepath.SkipAll
		}
		if fi, err := d.Info(); err == nil {
			files[p] = fileState{fi.ModTime(), fi.Size()}
		}
		return nil
	})
	return files
}

// changed names a file that differs between two snapshots, or "".
func changed(before, after map[string]fileState) string {
	for p, st := range after {
		if b, ok := before[p]; !ok || b != st {
			return p
		}
	}
	for p := range before {
		if _, ok := after[p]; !ok {
			return p
		}
	}
	return ""
}

// watch calls onChange with a changed file each time the .py files under
// dir change, until ctx ends. A burst of changes (an editor's save, a
// checkout) is one call, once the files have been still for a moment.
func watch(ctx context.Context, dir, skip string, onChange func(file string)) {
	last := pySnapshot(dir, skip)
	t := time.NewTicker(watchInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := pySnapshot(dir, skip)
		file := changed(last, now)
		if file == "" {
			continue
		}
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(200 * time.Millisecond):
			}
			settled := pySnapshot(dir, skip)
			if changed(now, settled) == "" {
				break
			}
			now = settled
		}
		last = now
		onChange(file)
	}
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
