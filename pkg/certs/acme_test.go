package certs

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mholt/acmez/v3/acme"
	"github.com/rs/zerolog"
	"go.uber.org/zap"
)

// newTestACME is an ACME client that is never started: no CA is asked.
func newTestACME(t *testing.T, log zerolog.Logger) *ACME {
	t.Helper()
	a, err := NewACME(ACMEOptions{CA: "https://ca.invalid/dir", Storage: t.TempDir(), RenewCheck: time.Hour}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	return a
}

// TestStoreACME: the names ACME keeps are answered by it (a self-signed
// stand-in until the CA issues), the others by the files, a CA's
// TLS-ALPN-01 hello goes to ACME, and ACME names count as covered.
func TestStoreACME(t *testing.T) {
	dir := t.TempDir()
	c, k := filepath.Join(dir, "f.crt"), filepath.Join(dir, "f.key")
	fileSerial := writePair(t, c, k, "files.example")
	var out lockedBuffer // the library logs from its own goroutines too
	s, err := Load([]Pair{{Cert: c, Key: k}}, zerolog.New(&out))
	if err != nil {
		t.Fatal(err)
	}
	a := newTestACME(t, zerolog.New(&out))
	if err := a.Manage([]string{"shop.example"}); err != nil {
		t.Fatal(err)
	}
	s.UseACME(a, []string{"Shop.Example"})

	got, err := s.GetCertificate(hello("shop.example"))
	if err != nil || !strings.Contains(got.Leaf.Subject.Organization[0], "self-signed") {
		t.Fatalf("shop.example before any order: %v %v, want the self-signed stand-in", got, err)
	}
	if again, _ := s.GetCertificate(hello("shop.example")); again != got {
		t.Errorf("a new stand-in at each handshake: want one, made once")
	}
	// A regression: a name with a port, brackets or another case once
	// made a new stand-in each, without end.
	if c, _ := s.GetCertificate(hello("SHOP.Example")); c != got {
		t.Errorf("SHOP.Example did not get shop.example's certificate")
	}
	for _, odd := range []string{"shop.example:443", "[shop.example]", "other.example"} {
		s.GetCertificate(hello(odd))
		if _, err := a.GetCertificate(hello(odd)); err == nil {
			t.Errorf("ACME answered for %q, a name it does not keep", odd)
		}
	}
	if len(a.fallback) != 1 {
		t.Errorf("%d stand-ins made, want 1", len(a.fallback))
	}
	if n := strings.Count(out.String(), "serving a self-signed one"); n != 1 {
		t.Errorf("the stand-in's warning logged %d times, want once:\n%s", n, out.String())
	}
	if f, _ := s.GetCertificate(hello("files.example")); f.Leaf.SerialNumber.Cmp(fileSerial) != 0 {
		t.Errorf("files.example: not its file's certificate")
	}
	ch := hello("shop.example")
	ch.SupportedProtos = []string{ACMETLS1}
	if !Challenge(ch) || Challenge(hello("shop.example")) {
		t.Errorf("Challenge: a TLS-ALPN-01 hello not told from an ordinary one")
	}
	if why := s.Uncovered([]string{"shop.example", "files.example"}); why != "" {
		t.Errorf("Uncovered = %q, want every name covered", why)
	}
	if why := s.Uncovered([]string{"other.example"}); !strings.Contains(why, "other.example") {
		t.Errorf("Uncovered(other.example) = %q", why)
	}
	infos := s.Infos()
	if len(infos) != 2 || infos[0].Source != "file" || infos[1].Source != "self-signed" || infos[1].Names[0] != "shop.example" {
		t.Errorf("Infos = %+v, want the file's and the ACME name's", infos)
	}

	// Under --check there is no client: the names are covered all the same.
	chk, _ := Load(nil, zerolog.Nop())
	chk.UseACME(nil, []string{"shop.example"})
	if why := chk.Uncovered([]string{"shop.example"}); why != "" || chk.Len() != 1 {
		t.Errorf("--check: Uncovered %q, Len %d", why, chk.Len())
	}
}

// TestACMEOrders: the library's events become each name's state: the
// CA's problem document in its own words, failures counted, cleared by
// a certificate.
func TestACMEOrders(t *testing.T) {
	a := newTestACME(t, zerolog.Nop())
	var results []string
	a.opts.OnResult = func(renewal bool, err string) { results = append(results, err) }
	a.Manage([]string{"shop.example"})
	problem := acme.Problem{Type: "urn:ietf:params:acme:error:rateLimited", Detail: "too many certificates already issued"}
	for range 2 {
		a.onEvent(context.Background(), "cert_failed", map[string]any{"identifier": "shop.example", "renewal": false, "error": errors.Join(errors.New("obtaining"), problem)})
	}
	in := a.Infos()[0]
	if in.Failures != 2 || in.LastError != "urn:ietf:params:acme:error:rateLimited: too many certificates already issued" {
		t.Errorf("after two failed orders: %+v", in)
	}
	a.onEvent(context.Background(), "cert_obtained", map[string]any{"identifier": "shop.example", "renewal": true})
	if in := a.Infos()[0]; in.Failures != 0 || in.LastError != "" {
		t.Errorf("after an order that succeeded: %+v", in)
	}
	if len(results) != 3 || results[2] != "" {
		t.Errorf("OnResult saw %q", results)
	}
	// A name no longer configured is forgotten.
	a.Manage(nil)
	if len(a.Infos()) != 0 || a.Manages("shop.example") {
		t.Errorf("a name removed is still kept")
	}
}

// lockedBuffer is a bytes.Buffer several goroutines may log to.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestZapCore: the library's zap events reach zerolog with their fields
// and level; debug ones only when the logger wants them.
func TestZapCore(t *testing.T) {
	var out bytes.Buffer
	l := zap.New(newZapCore(zerolog.New(&out).Level(zerolog.InfoLevel)))
	l.Named("obtain").With(zap.String("identifier", "shop.example")).Error("could not get certificate", zap.Int("attempt", 2))
	l.Debug("noise")
	got := out.String()
	for _, want := range []string{`"level":"error"`, `"logger":"obtain"`, `"identifier":"shop.example"`, `"attempt":2`, `"message":"could not get certificate"`} {
		if !strings.Contains(got, want) {
			t.Errorf("no %s in %s", want, got)
		}
	}
	if strings.Contains(got, "noise") {
		t.Errorf("a debug event passed an info logger: %s", got)
	}
}
