package metric

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
)

// names lists every constant of the package, metrics then labels.
var names = map[string]string{
	"RequestsTotal":              RequestsTotal,
	"RequestDurationSeconds":     RequestDurationSeconds,
	"QueueWaitSeconds":           QueueWaitSeconds,
	"AppDurationSeconds":         AppDurationSeconds,
	"AppWallSecondsTotal":        AppWallSecondsTotal,
	"AppCPUSecondsTotal":         AppCPUSecondsTotal,
	"AppJSONSecondsTotal":        AppJSONSecondsTotal,
	"RejectedTotal":              RejectedTotal,
	"ReceivedBodyBytesTotal":     ReceivedBodyBytesTotal,
	"SentBodyBytesTotal":         SentBodyBytesTotal,
	"SpillsTotal":                SpillsTotal,
	"StreamedTotal":              StreamedTotal,
	"StreamedSecondsTotal":       StreamedSecondsTotal,
	"TLSHandshakesTotal":         TLSHandshakesTotal,
	"WorkerRequestsTotal":        WorkerRequestsTotal,
	"WorkerBusySecondsTotal":     WorkerBusySecondsTotal,
	"WorkerRSSBytes":             WorkerRSSBytes,
	"WorkerRestartsTotal":        WorkerRestartsTotal,
	"ListenQueue":                ListenQueue,
	"ListenBacklog":              ListenBacklog,
	"KernelListenOverflowsTotal": KernelListenOverflowsTotal,
	"KernelListenDropsTotal":     KernelListenDropsTotal,
	"InFlightRequests":           InFlightRequests,
	"WorkerInFlightRequests":     WorkerInFlightRequests,
	"AbandonedRequests":          AbandonedRequests,
	"Websockets":                 Websockets,
	"WebsocketMessagesTotal":     WebsocketMessagesTotal,
	"WebsocketBytesTotal":        WebsocketBytesTotal,
	"WebsocketsClosedTotal":      WebsocketsClosedTotal,
	"CertificateExpirySeconds":   CertificateExpirySeconds,
	"BuildInfo":                  BuildInfo,
	"LabelVersion":               LabelVersion,
	"LabelConfigHash":            LabelConfigHash,
	"LabelDraining":              LabelDraining,
	"WorkerAppKeyInfo":           WorkerAppKeyInfo,
	"CertificateRenewalsTotal":   CertificateRenewalsTotal,

	"LabelClass":        LabelClass,
	"LabelMethod":       LabelMethod,
	"LabelKind":         LabelKind,
	"LabelSite":         LabelSite,
	"LabelRoute":        LabelRoute,
	"LabelLimit":        LabelLimit,
	"LabelWhat":         LabelWhat,
	"LabelResult":       LabelResult,
	"LabelName":         LabelName,
	"LabelSource":       LabelSource,
	"LabelOrder":        LabelOrder,
	"LabelWeak":         LabelWeak,
	"LabelDjangoUnsafe": LabelDjangoUnsafe,
	"LabelFingerprint":  LabelFingerprint,
	"LabelWorker":       LabelWorker,
	"LabelSocket":       LabelSocket,
	"LabelDirection":    LabelDirection,
	"LabelCode":         LabelCode,
}

// TestNames checks each constant: a metric is "edged_" and its Go name
// in snake case (so a name and its constant cannot drift apart), a label
// a valid Prometheus label name; and no two constants share a value.
func TestNames(t *testing.T) {
	labelRE := regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
	seen := map[string]string{}
	for name, value := range names {
		if other, ok := seen[value]; ok {
			t.Errorf("%s and %s are both %q", name, other, value)
		}
		seen[value] = name
		if label, ok := strings.CutPrefix(name, "Label"); ok {
			if want := snake(label); value != want || !labelRE.MatchString(value) {
				t.Errorf("%s = %q, want %q", name, value, want)
			}
			continue
		}
		if want := "edged_" + snake(name); value != want {
			t.Errorf("%s = %q, want %q", name, value, want)
		}
	}
}

// snake turns a Go name into Prometheus's words: AppCPUSecondsTotal,
// app_cpu_seconds_total.
func snake(s string) string {
	var b strings.Builder
	r := []rune(s)
	for i, c := range r {
		upper := c >= 'A' && c <= 'Z'
		if upper && i > 0 {
			prevLower := r[i-1] >= 'a' && r[i-1] <= 'z'
			nextLower := i+1 < len(r) && r[i+1] >= 'a' && r[i+1] <= 'z'
			if prevLower || nextLower {
				b.WriteByte('_')
			}
		}
		b.WriteRune(c | 0x20)
	}
	return b.String()
}

// TestEveryConstantListed checks that names holds every constant the
// package declares, so none escapes TestNames.
func TestEveryConstantListed(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	var declared []string
	fset := token.NewFileSet()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range file.Decls {
			if g, ok := d.(*ast.GenDecl); ok && g.Tok == token.CONST {
				for _, s := range g.Specs {
					for _, n := range s.(*ast.ValueSpec).Names {
						declared = append(declared, n.Name)
					}
				}
			}
		}
	}
	var listed []string
	for name := range names {
		listed = append(listed, name)
	}
	sort.Strings(declared)
	sort.Strings(listed)
	if !slices.Equal(declared, listed) {
		t.Errorf("the package declares %v, the test lists %v: list each constant in names", declared, listed)
	}
}
