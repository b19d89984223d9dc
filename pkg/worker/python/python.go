// Package python holds the Python side of workerd, the edged_worker
// package, shipped inside the binary so that a worker needs nothing but an
// interpreter and the app: the bootstrap reads the package's sources from
// a pipe and imports them from memory.
package python

import (
	"embed"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

//go:embed edged_worker/*.py
var files embed.FS

// Bootstrap is the -c argument that reads the bundle from fd 4 and runs
// edged_worker/boot.py with the rest, so that tracebacks name the files
// and ps shows a short command line.
const Bootstrap = `import os,json;f=os.fdopen(4,"rb");m=json.loads(f.read());f.close();exec(compile(m["edged_worker.boot"][1],"edged_worker/boot.py","exec"),{"__name__":"__edged_worker__","MODULES":m})`

// Bundle is what the bootstrap reads: a JSON object of module name ->
// [file name, source] for every module of the package.
var Bundle = sync.OnceValue(func() []byte {
	m := map[string][2]string{}
	fs.WalkDir(files, "edged_worker", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		src, _ := files.ReadFile(path)
		name := strings.TrimSuffix(path, ".py")
		name = strings.TrimSuffix(strings.ReplaceAll(name, "/", "."), ".__init__")
		m[name] = [2]string{path, string(src)}
		return nil
	})
	b, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	return b
})

// WriteTo writes the package under dir (dir/edged_worker/...), for tests
// and tools that import it from files.
func WriteTo(dir string) error {
	return fs.WalkDir(files, "edged_worker", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dir, path), 0o755)
		}
		src, err := files.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, path), src, 0o644)
	})
}
