package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testsslException is a testssl.sh finding accepted on purpose: one that
// no setting of edged's can change.
type testsslException struct {
	id      string // testssl.sh's finding id
	finding string // a part of the finding's text, so a new one under the same id still fails
	why     string
}

// testsslExceptions is every finding of LOW or above allowed. One that no
// longer shows fails the test too, so the list stays as short as it can be.
var testsslExceptions = []testsslException{
	{"cert_chain_of_trust", "failed (self signed)",
		"the test's certificate is self-signed; a real one chains to a CA"},
	{"cert_revocation", "Neither CRL nor OCSP URI provided",
		"the test's self-signed certificate has no CA to publish a CRL or run an OCSP responder"},
	{"TLS_session_ticket", "valid for 604800 seconds",
		"the 7-day hint is TLS 1.3's ticket lifetime, fixed in crypto/tls " +
			"(maxSessionTicketLifetime); Go resumes TLS 1.3 only with a fresh ECDHE " +
			"(psk_dhe_ke), so those tickets cost no forward secrecy. TLS 1.2 tickets, " +
			"sent with no hint, do for as long as Go keeps a ticket key: made daily, " +
			"accepted 7 days (ticketKeyRotation, ticketKeyLifetime); " +
			"tls.Config.SessionTicketsDisabled would end that, and resumption with it"},
	{"HSTS", "not offered",
		"edged adds no response headers of its own: Strict-Transport-Security is the " +
			"site's policy, sent by the app (the sample app sends none)"},
	{"security_headers", "--",
		"as HSTS: Content-Security-Policy, X-Frame-Options, X-Content-Type-Options and " +
			"the like are the app's, and the sample app sends none"},
}

// testsslFails is the severities that fail the test. Below them: OK,
// INFO and DEBUG; WARN says a check could not run, and is shown.
var testsslFails = map[string]bool{"LOW": true, "MEDIUM": true, "HIGH": true, "CRITICAL": true, "FATAL": true}

// testsslTimeout bounds the whole scan; it takes a few minutes.
const testsslTimeout = 12 * time.Minute

// TestTestssl is `make testssl`: Debian's testssl.sh scans edged's TLS
// listener and every finding of severity LOW or above fails the test,
// unless it is in testsslExceptions. It takes minutes, so it is not part
// of `make test`.
func TestTestssl(t *testing.T) {
	if os.Getenv("EDGED_TESTSSL") == "" {
		t.Skip("run with `make testssl`")
	}
	bin, err := exec.LookPath("testssl")
	if err != nil {
		t.Fatal("testssl is not installed (Debian package testssl.sh): run `make testssl`, which installs it when root")
	}
	s := startSuite(t, suiteOpts{tls: true, module: "sample:app", workers: 1})
	u, err := url.Parse(s.https)
	if err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	report := filepath.Join(dir, "testssl.json")
	ctx, cancel := context.WithTimeout(context.Background(), testsslTimeout)
	defer cancel()
	// The name the certificate is for, so that SNI is sent; --ip and -n
	// none keep it off DNS. --fast trims the cipher checks to one
	// handshake per cipher list, the time-outs bound a check that hangs.
	cmd := exec.CommandContext(ctx, bin,
		"--quiet", "--color", "0", "--warnings", "off", "--fast",
		"--ip", "127.0.0.1", "-n", "none",
		"--connect-timeout", "5", "--openssl-timeout", "10",
		"--jsonfile", report,
		"localhost:"+u.Port())
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	runErr := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("testssl did not finish within %s:\n%s", testsslTimeout, tail(out.String(), 60))
	}
	findings, err := readTestsslReport(report)
	if err != nil {
		// testssl.sh's exit status counts findings, so only a missing
		// or broken report says it did not run.
		t.Fatalf("testssl (%v): %v\n%s", runErr, err, tail(out.String(), 60))
	}
	t.Logf("testssl: %d findings in %s", len(findings), time.Since(start).Round(time.Second))

	seen := make([]bool, len(testsslExceptions))
	var bad []string
	for _, f := range findings {
		if f.Severity == "WARN" {
			t.Logf("testssl could not check %s: %s", f.ID, f.Finding)
		}
		if !testsslFails[f.Severity] {
			continue
		}
		if i := acceptedTestssl(f); i >= 0 {
			seen[i] = true
			t.Logf("accepted: %s %s %q: %s", f.Severity, f.ID, f.Finding, testsslExceptions[i].why)
			continue
		}
		bad = append(bad, fmt.Sprintf("%s %s: %s", f.Severity, f.ID, f.Finding))
	}
	if len(bad) > 0 {
		t.Errorf("testssl findings of LOW or above:\n%s\nits output:\n%s", strings.Join(bad, "\n"), out.String())
	}
	for i, e := range testsslExceptions {
		if !seen[i] {
			t.Errorf("accepted finding %s %q no longer shows: take it out of testsslExceptions", e.id, e.finding)
		}
	}
}

// testsslFinding is one entry of testssl.sh's flat JSON report.
type testsslFinding struct {
	ID       string `json:"id"`
	Severity string `json:"severity"`
	Finding  string `json:"finding"`
}

func readTestsslReport(path string) ([]testsslFinding, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var fs []testsslFinding
	if err := json.Unmarshal(b, &fs); err != nil {
		return nil, fmt.Errorf("testssl report %s: %w", path, err)
	}
	if len(fs) == 0 {
		return nil, fmt.Errorf("testssl report %s has no findings", path)
	}
	return fs, nil
}

// acceptedTestssl is the index of the exception that covers f, or -1.
func acceptedTestssl(f testsslFinding) int {
	for i, e := range testsslExceptions {
		if f.ID == e.id && strings.Contains(f.Finding, e.finding) {
			return i
		}
	}
	return -1
}
