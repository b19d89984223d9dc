package ctl

import (
	"fmt"
	"net"
	"sort"
	"strings"

	"github.com/edged/edged/pkg/metric"
)

// keyFix is the one way to give every worker the same strong key that
// lives outside the code.
const keyFix = `put a random key (python3 -c 'import secrets; print(secrets.token_urlsafe(48))') in a root-only file /etc/edged/credentials/app-secret, name it in [app.credentials] SECRET_KEY = "app-secret", and read os.environ["SECRET_KEY"] in the app; edgectl restart`

// checkAppKey judges the app's secret key as the workers reported it at
// import (they never send the key): from outside the code, strong, no
// known default, and the same in every worker of a site; Django's DEBUG
// and ALLOWED_HOSTS = ['*'] behind a public listener.
func checkAppKey(p *patient) finding {
	sc := p.after
	if sc == nil {
		sc = p.before
	}
	if sc == nil {
		return skip("needs edged's metrics: " + firstLine(fmt.Sprint(p.metricsErr)))
	}
	type report struct{ worker, source, weak, unsafe, print string }
	bySite := map[string][]report{}
	for _, se := range sc.series(metric.WorkerAppKeyInfo) {
		r := report{se.labels[metric.LabelWorker], se.labels[metric.LabelSource], se.labels[metric.LabelWeak],
			se.labels[metric.LabelDjangoUnsafe], se.labels[metric.LabelFingerprint]}
		site, _, named := strings.Cut(r.worker, "/")
		if !named {
			site = "default"
		}
		bySite[site] = append(bySite[site], r)
	}
	if len(bySite) == 0 {
		return ok("no worker reported a Flask or Django secret key (the app has none edged can see, or no worker has answered yet)")
	}
	sites := make([]string, 0, len(bySite))
	for s := range bySite {
		sites = append(sites, s)
	}
	sort.Strings(sites)
	verdict := verdictOK
	var notes, fixes []string
	for _, site := range sites {
		rs := bySite[site]
		where := ""
		if len(bySite) > 1 || site != "default" {
			where = "site " + site + ": "
		}
		prints, sources := map[string]bool{}, map[string]bool{}
		weak, unsafe := false, false
		for _, r := range rs {
			prints[r.print] = true
			sources[r.source] = true
			weak = weak || r.weak == "true"
			unsafe = unsafe || r.unsafe == "true"
		}
		switch {
		case sources["none"] && len(sources) == 1:
			notes = append(notes, where+"the app has no secret key")
			continue
		case len(prints) > 1:
			verdict = worst(verdict, verdictFail)
			notes = append(notes, fmt.Sprintf("%s%d different keys among %d workers: a session (a login) made by one worker is refused by the others", where, len(prints), len(rs)))
			fixes = append(fixes, keyFix)
		}
		switch {
		case sources["default"]:
			verdict = worst(verdict, verdictFail)
			notes = append(notes, where+"the key is a known default (django-insecure-…, dev, changeme…): anyone can forge the app's sessions and signed cookies (edged --check names the file and line)")
			fixes = append(fixes, keyFix)
		case sources["literal"]:
			verdict = worst(verdict, verdictWarn)
			notes = append(notes, where+"the key is a literal in the code: whoever reads the repository or a backup can forge sessions (edged --check names the file and line)")
			fixes = append(fixes, keyFix)
		case sources["process"] && len(prints) == 1 && len(rs) > 1:
			notes = append(notes, fmt.Sprintf("%sthe key comes from where edged cannot see, the same in all %d workers", where, len(rs)))
		case sources["process"] && len(prints) == 1:
			verdict = worst(verdict, verdictWarn)
			notes = append(notes, where+"the key is made in the process or read from where edged cannot see: with one worker, nothing tells whether each worker makes its own")
			fixes = append(fixes, keyFix)
		case len(prints) == 1:
			notes = append(notes, fmt.Sprintf("%sthe key comes from the %s, the same in all %d workers", where, strings.Join(keys(sources), ", "), len(rs)))
		}
		if weak {
			verdict = worst(verdict, verdictWarn)
			notes = append(notes, where+"the key holds under 32 bytes of randomness")
			fixes = append(fixes, keyFix)
		}
		if unsafe && p.cfg != nil && publicListener(p.cfg.Listen.HTTP, p.cfg.Listen.HTTPS) {
			verdict = worst(verdict, verdictWarn)
			notes = append(notes, where+"Django runs with DEBUG = True or ALLOWED_HOSTS = ['*'] behind a public listener: error pages show settings and code, any Host is answered")
			fixes = append(fixes, "set DEBUG = False and list the site's names in ALLOWED_HOSTS")
		}
	}
	f := finding{Verdict: verdict, Evidence: strings.Join(notes, "; ")}
	if verdict != verdictOK {
		f.Fix = strings.Join(uniq(fixes), "; ")
	}
	return f
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// publicListener says some address listens beyond this host (not
// loopback).
func publicListener(lists ...[]string) bool {
	for _, l := range lists {
		for _, a := range l {
			host, _, err := net.SplitHostPort(a)
			if err != nil {
				continue
			}
			if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
				return true
			}
		}
	}
	return false
}
