package ctl

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/edged/edged/pkg/metric"
)

// What must be the same on every host of a fleet, as each edged's
// metrics say it: the build, the config's shared part (config.Hash:
// sites, apps, pools, limits; not the host's own addresses), and each
// site's app secret key (its fingerprint: a session signed on one host
// must be good on the next).

// hostFacts is one host's part of the comparison.
type hostFacts struct {
	version, config string
	keys            map[string]string // site -> its workers' key fingerprints, sorted, joined
	err             error
}

func factsOf(sc *scrape) hostFacts {
	h := hostFacts{keys: map[string]string{}}
	for _, se := range sc.series(metric.BuildInfo) {
		h.version, h.config = se.labels[metric.LabelVersion], se.labels[metric.LabelConfigHash]
	}
	prints := map[string]map[string]bool{}
	for _, se := range sc.series(metric.WorkerAppKeyInfo) {
		site, _, named := strings.Cut(se.labels[metric.LabelWorker], "/")
		if !named {
			site = "default"
		}
		if prints[site] == nil {
			prints[site] = map[string]bool{}
		}
		prints[site][se.labels[metric.LabelFingerprint]] = true
	}
	for site, ps := range prints {
		var l []string
		for p := range ps {
			l = append(l, p)
		}
		sort.Strings(l)
		h.keys[site] = strings.Join(l, ",")
	}
	return h
}

// readPeer scrapes the edged at addr (host:port of its [metrics] listen).
func readPeer(ctx context.Context, addr string) (*scrape, error) {
	b, err := adminGetAt(ctx, "tcp", addr, "/metrics", "metrics", "is its [metrics] listen on an address this host reaches?")
	if err != nil {
		return nil, fmt.Errorf("peer %s: %w", addr, err)
	}
	return parseScrape(b, addr)
}

// checkPeers compares this host with the --peer hosts.
func checkPeers(p *patient) finding {
	if len(p.peers) == 0 {
		return skip("no --peer given (edgectl doctor --peer 10.0.0.12:9180 … compares this host with the others of its fleet)")
	}
	if f, ok := p.needMetrics(); !ok {
		return f
	}
	here := factsOf(p.after)
	if here.version == "" {
		return skip("this edged's metrics have no " + metric.BuildInfo + " (an older edged: restart it)")
	}
	var diffs []string
	for _, addr := range p.peers {
		sc, err := readPeer(p.ctx, addr)
		if err != nil {
			diffs = append(diffs, err.Error())
			continue
		}
		there := factsOf(sc)
		if there.version != here.version {
			diffs = append(diffs, fmt.Sprintf("%s runs edged %s, this host %s", addr, orNone(there.version), here.version))
		}
		if there.config != here.config {
			diffs = append(diffs, fmt.Sprintf("%s has config %s, this host %s (compare the two edged.toml: sites, apps, pools and limits must match)", addr, orNone(there.config), here.config))
		}
		for _, site := range siteUnion(here.keys, there.keys) {
			a, b := here.keys[site], there.keys[site]
			if a != "" && b != "" && a != b {
				diffs = append(diffs, fmt.Sprintf("site %s: %s's app secret key differs from this host's (fingerprints %s and %s): a session signed on one host is refused on the other — "+keyFix, site, addr, b, a))
			}
		}
	}
	if len(diffs) > 0 {
		return finding{Verdict: verdictFail, Evidence: strings.Join(diffs, "; "),
			Fix: "make every host the same: the same package version, the same edged.toml (but its own listen and metrics addresses), the same app-secret credential"}
	}
	return ok(fmt.Sprintf("%d peers: the same edged (%s), the same config (%s), the same app secret keys", len(p.peers), here.version, here.config))
}

func orNone(s string) string {
	if s == "" {
		return "(not reported)"
	}
	return s
}

func siteUnion(a, b map[string]string) []string {
	seen := map[string]bool{}
	var out []string
	for _, m := range []map[string]string{a, b} {
		for k := range m {
			if !seen[k] {
				seen[k] = true
				out = append(out, k)
			}
		}
	}
	sort.Strings(out)
	return out
}
