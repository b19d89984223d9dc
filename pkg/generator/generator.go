// Package generator turns the sites of a config into the systemd units
// their workers run as: per site, a queue socket, a template linked to
// the shared one (so each site's workers are workerd-NAME@N, with %j the
// site's name), a slice, and the wants that start them at boot. It is a
// pure function of the config and the counts; `edged-generator` (edgectl
// under that name, run by systemd at boot and at daemon-reload) writes
// what it returns into the directory systemd gives it.
//
// The top-level site keeps the packaged workerd.socket and workerd@.service.
package generator

import (
	"fmt"
	"path"
	"sort"
	"strings"

	"github.com/edged/edged/pkg/config"
)

// File is one file to write into the generator's output directory: text,
// or a symbolic link when Link is set.
type File struct {
	Name    string // relative to the output directory
	Content string
	Link    string // the link's target
}

// Options are what the units depend on beyond the config.
type Options struct {
	// Template is the shared worker template every site's links to
	// (/usr/lib/edged/workerd-site@.service).
	Template string
	// Source is the config file the units come from (SourcePath=).
	Source string
	// Workers is how many workers each site runs at boot, by site name;
	// a site missing from it gets none started at boot (its socket starts
	// the first on the first request).
	Workers map[string]int
}

// Units returns the files for every [[site]] of cfg, in name order.
func Units(cfg *config.Config, o Options) []File {
	var out []File
	sites := append([]*config.Site{}, cfg.Sites...)
	sort.Slice(sites, func(i, j int) bool { return sites[i].Name < sites[j].Name })
	for _, s := range sites {
		if s.Name == config.DefaultSite {
			continue
		}
		out = append(out, siteUnits(s, o)...)
	}
	return out
}

func siteUnits(s *config.Site, o Options) []File {
	n := s.Name
	socket := "workerd-" + n + ".socket"
	template := "workerd-" + n + "@.service"
	slice := "edged-" + n + ".slice"
	var b strings.Builder
	fmt.Fprintf(&b, `# Written by edged-generator from %[1]s: do not edit (edit the config,
# then systemctl daemon-reload).
[Unit]
Description=edged worker queue socket of site %[2]s
Documentation=man:workerd(8)
SourcePath=%[1]s

[Socket]
# The queue every workerd-%[2]s@N takes requests from (limits.queue_length).
ListenStream=%[3]s
SocketUser=root
SocketGroup=edged-workers
SocketMode=0660
DirectoryMode=0755
RemoveOnStop=yes
Backlog=%[4]d
Service=workerd-%[2]s@1.service
`, o.Source, n, s.Pool.Socket(), s.Limits.Backlog())
	files := []File{
		{Name: socket, Content: b.String()},
		{Name: template, Link: o.Template},
		{Name: "sockets.target.wants/" + socket, Link: "../" + socket},
	}
	b.Reset()
	fmt.Fprintf(&b, `# Written by edged-generator from %[1]s: do not edit.
[Unit]
Description=edged workers of site %[2]s
Documentation=man:workerd(8)
SourcePath=%[1]s
Before=slices.target
`, o.Source, n)
	if s.Pool.MemoryMax > 0 {
		fmt.Fprintf(&b, "\n[Slice]\n# pool.memory_max: every worker of the site together.\nMemoryMax=%d\n", int64(s.Pool.MemoryMax))
	}
	files = append(files, File{Name: slice, Content: b.String()})
	for i := 1; i <= o.Workers[n]; i++ {
		unit := fmt.Sprintf("workerd-%s@%d.service", n, i)
		files = append(files, File{Name: path.Join("multi-user.target.wants", unit), Link: "../" + template})
	}
	return files
}
