package e2e

import (
	"bytes"
	"context"
	"encoding/xml"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// h2specException is an h2spec case edged fails on purpose: what Go's
// net/http HTTP/2 server (which edged serves HTTP/2 with) chose to do
// instead, and where that choice is made or discussed.
type h2specException struct {
	id  string // h2spec's case id, as `h2spec <id>` runs it
	why string
}

// h2specExceptions is every case allowed to fail, each a choice of Go's
// HTTP/2 server (net/http's h2_bundle.go, golang.org/x/net/http2 upstream)
// that edged cannot override, as it happens before edged's handler sees a
// request. A case that starts passing fails the test too, so the list and
// README's Conformance section follow the Go release edged is built with.
var h2specExceptions = []h2specException{
	{"http2/6.5.3/1", "a SETTINGS frame that names a setting twice is a " +
		"connection error (PROTOCOL_ERROR) in Go, not processed in order as " +
		"RFC 9113 6.5.3 asks: serverConn.processSettings hangs up on " +
		"duplicate or more than 100 entries as a defence, its comment says " +
		"\"this isn't actually in the spec\" (error counter settings_big_or_dups)"},
	{"http2/8.1.2.2/1", "a request with a connection-specific header " +
		"(Connection, Keep-Alive, Proxy-Connection, Transfer-Encoding, " +
		"Upgrade) gets a 400 Bad Request that names the header, not a " +
		"RST_STREAM: checkValidHTTP2RequestHeaders and new400Handler in " +
		"serverConn.newWriterAndRequest; RFC 9113 8.1.1 lets a server answer " +
		"a malformed request before closing the stream (golang/go#26321)"},
	{"http2/8.1.2.2/2", "a request with TE other than \"trailers\" gets a " +
		"400 Bad Request, not a RST_STREAM, by the same check as " +
		"http2/8.1.2.2/1 (golang/go#26321)"},
}

// TestH2spec runs h2spec, the HTTP/2 conformance tester pinned in
// packaging/tools, against edged over TLS, and fails on any failed case
// not in h2specExceptions. `make h2spec` runs it alone.
func TestH2spec(t *testing.T) {
	bin := buildH2spec(t)
	s := startSuite(t, suiteOpts{tls: true, module: "sample:app", workers: 1})
	u, err := url.Parse(s.https)
	if err != nil {
		t.Fatal(err)
	}

	report := filepath.Join(t.TempDir(), "h2spec.xml")
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	// -o 2: seconds per case; a case that waits in vain for an answer
	// costs that much, and the whole run must stay well under a minute.
	cmd := exec.CommandContext(ctx, bin, "-h", u.Hostname(), "-p", u.Port(), "-t", "-k", "-o", "2", "-j", report)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	runErr := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("h2spec did not finish within 50s:\n%s", tail(out.String(), 60))
	}
	cases, err := readH2specReport(report)
	if err != nil {
		// h2spec exits 1 when a case fails, so only a missing or broken
		// report says it did not run.
		t.Fatalf("h2spec (%v): %v\n%s", runErr, err, tail(out.String(), 60))
	}

	known := map[string]string{}
	for _, e := range h2specExceptions {
		known[e.id] = e.why
	}
	var passed, failed, skipped int
	var unexpected, fixed []string
	for _, c := range cases {
		switch {
		case c.skipped:
			skipped++
		case c.failed:
			failed++
			if _, ok := known[c.id]; !ok {
				unexpected = append(unexpected, fmt.Sprintf("%s %s\n    %s", c.id, c.desc, strings.ReplaceAll(strings.TrimSpace(c.detail), "\n", "\n    ")))
			}
			delete(known, c.id)
		default:
			passed++
			if _, ok := known[c.id]; ok {
				fixed = append(fixed, c.id)
			}
		}
	}
	t.Logf("h2spec: %d cases, %d passed, %d failed (%d known exceptions), %d skipped, in %s",
		len(cases), passed, failed, len(h2specExceptions), skipped, time.Since(start).Round(time.Second))
	if len(unexpected) > 0 {
		t.Errorf("h2spec cases failed that are not known exceptions:\n%s", strings.Join(unexpected, "\n"))
	}
	if len(fixed) > 0 {
		sort.Strings(fixed)
		t.Errorf("h2spec cases now pass: take them out of h2specExceptions: %s", strings.Join(fixed, ", "))
	}
}

// buildH2spec builds the h2spec that packaging/tools/go.mod pins. It
// skips, loudly, when its modules cannot be fetched (no module proxy
// here); a build that fails once they are fetched is a failure.
func buildH2spec(t *testing.T) string {
	return buildTool(t, "h2spec", "github.com/summerwind/h2spec/cmd/h2spec")
}

// buildTool builds a program pinned in packaging/tools into binDir, once
// per test binary; it skips when the module proxy cannot give its modules.
func buildTool(t *testing.T, name, pkg string) string {
	t.Helper()
	bin := filepath.Join(binDir, name)
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	modfile := "-modfile=" + filepath.Join("packaging", "tools", "go.mod")
	fetch := exec.Command("go", "list", modfile, "-deps", pkg)
	fetch.Dir = repoRoot
	if out, err := fetch.CombinedOutput(); err != nil {
		t.Skipf("SKIPPED: cannot fetch %s's modules (is the Go module proxy reachable?): %v\n%s", name, err, tail(string(out), 20))
	}
	build := exec.Command("go", "build", modfile, "-o", bin, pkg)
	build.Dir = repoRoot
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building %s: %v\n%s", name, err, out)
	}
	return bin
}

// h2specCase is one case of an h2spec run.
type h2specCase struct {
	id, desc        string
	failed, skipped bool
	detail          string // what h2spec expected and saw, when failed
}

// readH2specReport reads h2spec's JUnit report. The report names a case
// by its group and description only; the case's number, the last part of
// its id, is its place in the group, as every case of a group is run.
func readH2specReport(path string) ([]h2specCase, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r struct {
		Suites []struct {
			ID    string `xml:"package,attr"`
			Cases []struct {
				Desc    string  `xml:"classname,attr"`
				Failure *string `xml:"failure"`
				Error   *string `xml:"error"`
				Skipped *string `xml:"skipped"`
			} `xml:"testcase"`
		} `xml:"testsuite"`
	}
	if err := xml.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("h2spec report %s: %w", path, err)
	}
	var cases []h2specCase
	for _, s := range r.Suites {
		for i, c := range s.Cases {
			hc := h2specCase{id: fmt.Sprintf("%s/%d", s.ID, i+1), desc: c.Desc, skipped: c.Skipped != nil}
			for _, d := range []*string{c.Failure, c.Error} {
				if d != nil {
					hc.failed, hc.detail = true, *d
				}
			}
			cases = append(cases, hc)
		}
	}
	if len(cases) == 0 {
		return nil, fmt.Errorf("h2spec report %s has no cases", path)
	}
	return cases, nil
}
