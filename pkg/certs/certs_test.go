package certs

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// writePair writes a self-signed ECDSA certificate for names, and its
// key, to cert and key; it returns the certificate's serial.
func writePair(t *testing.T, cert, key string, names ...string) *big.Int {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(k)
	if cert != "" {
		os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	}
	if key != "" {
		os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	}
	return serial
}

var modern = &tls.ClientHelloInfo{SupportedVersions: []uint16{tls.VersionTLS13},
	SignatureSchemes: []tls.SignatureScheme{tls.ECDSAWithP256AndSHA256}, SupportedCurves: []tls.CurveID{tls.CurveP256}}

func hello(name string) *tls.ClientHelloInfo {
	h := *modern
	h.ServerName = name
	return &h
}

func TestPick(t *testing.T) {
	dir := t.TempDir()
	var pairs []Pair
	for _, names := range [][]string{{"shop.example", "www.shop.example"}, {"*.blog.example"}} {
		c, k := filepath.Join(dir, names[0]+".crt"), filepath.Join(dir, names[0]+".key")
		writePair(t, c, k, names...)
		pairs = append(pairs, Pair{Cert: c, Key: k})
	}
	s, err := Load(pairs, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ sni, want string }{
		{"shop.example", "shop.example"},
		{"WWW.Shop.Example", "shop.example"},
		{"a.blog.example", "*.blog.example"},
		{"blog.example", "shop.example"}, // no certificate: the first
		{"", "shop.example"},
	} {
		c, err := s.GetCertificate(hello(tt.sni))
		if err != nil || c.Leaf.Subject.CommonName != tt.want {
			t.Errorf("SNI %q: %v %v, want %s", tt.sni, c.Leaf.Subject.CommonName, err, tt.want)
		}
	}
	if got := s.Uncovered([]string{"shop.example", "x.blog.example", "other.example", "*.blog.example"}); got != "no certificate is for other.example" {
		t.Errorf("Uncovered: %q", got)
	}
	if s.Len() != 2 {
		t.Errorf("Len %d", s.Len())
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	c, k := filepath.Join(dir, "a.crt"), filepath.Join(dir, "a.key")
	writePair(t, c, "", "a.example")
	writePair(t, "", k, "b.example") // a key of another certificate
	_, err := Load([]Pair{{Cert: c, Key: k, Where: "site shop: tls[0]"}}, zerolog.Nop())
	if err == nil || !strings.HasPrefix(err.Error(), "site shop: tls[0] cert ") || !strings.Contains(err.Error(), "private key does not match") {
		t.Errorf("a key that is not the certificate's: %v", err)
	}
	if _, err := Load([]Pair{{Cert: filepath.Join(dir, "none.crt"), Key: k}}, zerolog.Nop()); err == nil {
		t.Errorf("a missing file loaded")
	}
}

// A renewed pair serves the next handshakes; a half-renewed one (the new
// certificate, the old key) is refused with one log line, the old pair
// serving meanwhile, and taken once the key follows.
func TestReload(t *testing.T) {
	dir := t.TempDir()
	c, k := filepath.Join(dir, "a.crt"), filepath.Join(dir, "a.key")
	first := writePair(t, c, k, "a.example")
	var logs bytes.Buffer
	s, err := Load([]Pair{{Cert: c, Key: k}}, zerolog.New(&logs))
	if err != nil {
		t.Fatal(err)
	}
	serial := func() *big.Int {
		got, err := s.GetCertificate(hello("a.example"))
		if err != nil {
			t.Fatal(err)
		}
		return got.Leaf.SerialNumber
	}
	if s.Check() != 0 || serial().Cmp(first) != 0 {
		t.Fatalf("a check with nothing changed changed something")
	}

	// The certificate first, as a renewal writes it; the key later.
	newKey := filepath.Join(dir, "new.key")
	second := writePair(t, c, newKey, "a.example")
	touch(t, c)
	if n := s.Check(); n != 0 || serial().Cmp(first) != 0 {
		t.Errorf("a certificate whose key is not there yet was put in use")
	}
	s.Check()
	if n := strings.Count(logs.String(), "cannot be used"); n != 1 {
		t.Errorf("%d log lines for the refused pair, want 1:\n%s", n, logs.String())
	}
	os.Rename(newKey, k)
	if n := s.Check(); n != 1 || serial().Cmp(second) != 0 {
		t.Errorf("the renewed pair was not put in use")
	}
	if !strings.Contains(logs.String(), "certificate reloaded") {
		t.Errorf("no log line says the certificate was reloaded:\n%s", logs.String())
	}

	// Watch does the same on its own.
	s.Watch(50 * time.Millisecond)
	defer s.Close()
	third := writePair(t, c, k, "a.example")
	touch(t, c)
	touch(t, k)
	deadline := time.Now().Add(5 * time.Second)
	for serial().Cmp(third) != 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if serial().Cmp(third) != 0 {
		t.Errorf("Watch did not put the renewed pair in use")
	}
}

// touch moves a file's time on, as a rewrite within the file system's
// time granularity might not: each touch a second later than the last.
func touch(t *testing.T, path string) {
	t.Helper()
	touches++
	at := time.Now().Add(time.Duration(touches) * time.Second)
	if err := os.Chtimes(path, at, at); err != nil {
		t.Fatal(err)
	}
}

var touches int
