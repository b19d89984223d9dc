package ctl

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edged/edged/pkg/backlog"
	"github.com/edged/edged/pkg/config"
)

// named starts a process called name (a copy of sleep) with env added,
// for as long as the test runs.
func named(t *testing.T, name string, env ...string) int {
	t.Helper()
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep binary")
	}
	b, err := os.ReadFile(sleep)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "60")
	cmd.Env = append(os.Environ(), env...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd.Process.Pid
}

func testPatient(t *testing.T, cfgText string) *patient {
	t.Helper()
	p := &patient{ctx: context.Background(), proc: "/proc", now: time.Now()}
	if cfgText != "" {
		dir := t.TempDir()
		p.cfg, p.cfgErr = config.Parse("edged.toml", dir, []byte(cfgText))
		if p.cfgErr != nil {
			p.cfg = nil
		} else {
			// The fake processes name no config: they are the default
			// one's suite.
			p.cfg.File = config.DefaultPath
		}
	}
	return p
}

func TestCheckRoot(t *testing.T) {
	pid := named(t, "edged")
	f := checkRoot(testPatient(t, ""))
	mine := fmt.Sprintf("edged (pid %d)", pid)
	if os.Geteuid() == 0 {
		if f.Verdict != verdictFail || !strings.Contains(f.Evidence, mine) || !strings.Contains(f.Fix, "DynamicUser") {
			t.Errorf("an edged running as root: %+v, want a fail naming %s", f, mine)
		}
	} else if strings.Contains(f.Evidence, mine) {
		t.Errorf("an edged of uid %d reported as root: %+v", os.Geteuid(), f)
	}
}

const appConfig = "[app]\nmodule = \"shop:app\"\n[pool]\nclass = %q\n[metrics]\nlisten = \"127.0.0.1:9180\"\n"

// metricsFor is two readings of a load where /slow waits on I/O and
// /report burns CPU, busy workers and a queue behind them.
func metricsFor(t *testing.T, p *patient) {
	t0 := time.Now()
	p.before = parsed(t, t0, `# TYPE edged_queue_wait_seconds histogram
edged_worker_busy_seconds_total{worker="1"} 10
edged_worker_busy_seconds_total{worker="2"} 10
edged_worker_requests_total{worker="1"} 100
edged_worker_requests_total{worker="2"} 100
edged_queue_wait_seconds_bucket{le="0.01"} 0
edged_queue_wait_seconds_bucket{le="0.1"} 0
edged_queue_wait_seconds_bucket{le="+Inf"} 0
edged_queue_wait_seconds_sum 0
edged_queue_wait_seconds_count 0
`)
	p.after = parsed(t, t0.Add(2*time.Second), `# TYPE edged_queue_wait_seconds histogram
# TYPE edged_app_duration_seconds histogram
edged_worker_busy_seconds_total{worker="1"} 12
edged_worker_busy_seconds_total{worker="2"} 11.9
edged_worker_requests_total{worker="1"} 120
edged_worker_requests_total{worker="2"} 119
edged_queue_wait_seconds_bucket{le="0.01"} 0
edged_queue_wait_seconds_bucket{le="0.1"} 39
edged_queue_wait_seconds_bucket{le="+Inf"} 39
edged_queue_wait_seconds_sum 2
edged_queue_wait_seconds_count 39
edged_app_duration_seconds_count{route="/slow"} 400
edged_app_duration_seconds_sum{route="/slow"} 40
edged_app_duration_seconds_count{route="/report"} 100
edged_app_duration_seconds_sum{route="/report"} 8
edged_app_duration_seconds_count{route="/"} 5
edged_app_duration_seconds_sum{route="/"} 0.01
edged_app_wall_seconds_total{route="/slow"} 40
edged_app_cpu_seconds_total{route="/slow"} 0.4
edged_app_wall_seconds_total{route="/report"} 8
edged_app_cpu_seconds_total{route="/report"} 7.6
edged_app_wall_seconds_total{route="/"} 0.01
edged_app_cpu_seconds_total{route="/"} 0.01
edged_requests_total{class="2xx",kind="app",method="GET"} 505
edged_streamed_total 60
edged_streamed_seconds_total 30
`)
}

func TestCheckIOBound(t *testing.T) {
	p := testPatient(t, fmt.Sprintf(appConfig, "sync"))
	metricsFor(t, p)
	f := checkIOBound(p)
	for _, want := range []string{"/slow waits 99%", "100 ms a request", "400 requests", "sync pool", "busy"} {
		if !strings.Contains(f.Evidence, want) {
			t.Errorf("evidence lacks %q: %+v", want, f)
		}
	}
	if f.Verdict != verdictWarn || !strings.Contains(f.Fix, `pool.class = "gevent"`) || strings.Contains(f.Evidence, "/report") {
		t.Errorf("I/O-bound /slow on sync: %+v, want a warn for /slow alone suggesting gevent", f)
	}
	p = testPatient(t, fmt.Sprintf(appConfig, "gevent"))
	metricsFor(t, p)
	if f := checkIOBound(p); f.Verdict != verdictOK {
		t.Errorf("the same on gevent: %+v, want ok", f)
	}
	p = testPatient(t, fmt.Sprintf(appConfig, "sync"))
	p.metricsErr = errNoMetrics
	if f := checkIOBound(p); f.Verdict != verdictSkip || !strings.Contains(f.Evidence, "[metrics]") {
		t.Errorf("without metrics: %+v, want a skip that says how", f)
	}
}

func TestCheckCPURoutes(t *testing.T) {
	p := testPatient(t, fmt.Sprintf(appConfig, "sync"))
	metricsFor(t, p)
	f := checkCPURoutes(p)
	if f.Verdict != verdictWarn || !strings.Contains(f.Evidence, "/report takes 95% of all worker CPU") || strings.Contains(f.Evidence, "/slow") {
		t.Errorf("CPU-bound /report: %+v, want a warn naming /report with its share", f)
	}
}

func TestCheckBuffering(t *testing.T) {
	p := testPatient(t, fmt.Sprintf(appConfig, "sync"))
	metricsFor(t, p)
	f := checkBuffering(p)
	if f.Verdict != verdictWarn || !strings.Contains(f.Evidence, "60 of 505 app answers were streamed") || !strings.Contains(f.Evidence, "30.0s") {
		t.Errorf("60 streamed answers: %+v", f)
	}
}

func TestCheckWorkersStarved(t *testing.T) {
	p := testPatient(t, fmt.Sprintf(appConfig, "sync"))
	metricsFor(t, p)
	f := checkWorkers(p)
	if f.Verdict != verdictWarn || !strings.Contains(f.Evidence, "too few: 2 workers") || !strings.Contains(f.Fix, "edgectl scale") {
		t.Errorf("2 workers all busy with a queue: %+v", f)
	}
}

// A listener that never accepts, with a backlog of one, flooded: the
// kernel turns connections away and counts them.
func TestCheckBacklogOverflow(t *testing.T) {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 1); err != nil {
		t.Fatal(err)
	}
	sa, _ := syscall.Getsockname(fd)
	addr := fmt.Sprintf("127.0.0.1:%d", sa.(*syscall.SockaddrInet4).Port)
	p := testPatient(t, "")
	p.overflows[0], _, _ = backlog.Overflows()
	for range 12 {
		d := net.Dialer{Timeout: 100 * time.Millisecond}
		if c, err := d.Dial("tcp", addr); err == nil {
			defer c.Close()
			c.Write([]byte("x"))
		}
	}
	time.Sleep(300 * time.Millisecond)
	p.overflows[1], _, _ = backlog.Overflows()
	f := checkBacklog(p)
	if f.Verdict != verdictFail || !strings.Contains(f.Evidence, "turned away") || !strings.Contains(f.Fix, "Backlog=") {
		t.Errorf("a flooded backlog of 1: %+v (ListenOverflows %v), want a fail", f, p.overflows)
	}
}

// TestCheckSecretsConfig checks that doctor tells a secret in the config
// from the config's other problems, and names the secret's key even when
// another problem comes first in the file.
func TestCheckSecretsConfig(t *testing.T) {
	for _, tt := range []struct {
		name string
		cfg  string
		want string // in the evidence of a fail; "" for no fail
	}{
		{"by value", "[app]\nmodule = \"shop:app\"\n[app.env]\nDATABASE_URL = \"postgres://shop:hunter2@db/shop\"\n",
			"the config holds a secret: app.env.DATABASE_URL holds a URL with a password in it"},
		{"after an unknown key", "bogus = 1\n[app]\nmodule = \"shop:app\"\n[app.env]\nDATABASE_URL = \"postgres://shop:hunter2@db/shop\"\n",
			"the config holds a secret: app.env.DATABASE_URL holds a URL with a password in it"},
		{"by name", "[app]\nmodule = \"shop:app\"\n[app.env]\nAPI_TOKEN = \"x1\"\n",
			"the config holds a secret: app.env.API_TOKEN looks like a secret by its name"},
		{"no secret, other problems", "bogus = 1\n[app]\nmodule = \"shop:app\"\n", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := checkSecrets(testPatient(t, tt.cfg))
			if tt.want == "" {
				if f.Verdict == verdictFail {
					t.Errorf("checkSecrets = %+v, want no fail: the config holds no secret", f)
				}
				return
			}
			if f.Verdict != verdictFail || !strings.Contains(f.Evidence, tt.want) || strings.Contains(f.Evidence, "hunter2") {
				t.Errorf("checkSecrets = %+v, want a fail with evidence %q, never the value", f, tt.want)
			}
		})
	}
}

func TestCheckSecrets(t *testing.T) {
	pid := named(t, "edged-worker", "CACHE_URL=redis://:s3cret-pass@cache:6379/0", "SECRET_KEY=from-a-credential-0123456789abcdefXYZ",
		"INVOCATION_ID=0123456789abcdef0123456789abcdef")
	p := testPatient(t, "[app]\nmodule = \"shop:app\"\n[app.credentials]\nSECRET_KEY = \"secret-key\"\n")
	f := checkSecrets(p)
	if f.Verdict != verdictWarn || !strings.Contains(f.Evidence, fmt.Sprintf("CACHE_URL holds a URL with a password in it (in 1 worker processes, pid %d first)", pid)) ||
		strings.Contains(f.Evidence, "SECRET_KEY") || strings.Contains(f.Evidence, "INVOCATION_ID") {
		t.Errorf("a password in a worker's environment: %+v, want a warn for CACHE_URL only (SECRET_KEY is a credential, INVOCATION_ID systemd's)", f)
	}
}

func TestCheckTLS(t *testing.T) {
	dir := t.TempDir()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	cert := func(name string, left time.Duration) string {
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
			NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(left)}
		der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
		p := filepath.Join(dir, name+".pem")
		os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
		return p
	}
	kder, _ := x509.MarshalECPrivateKey(k)
	key := filepath.Join(dir, "key.pem")
	os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	for _, tt := range []struct {
		left    time.Duration
		verdict string
		says    string
	}{
		{100 * 24 * time.Hour, verdictOK, "valid 99 more days"},
		{10 * 24 * time.Hour, verdictWarn, "expires in 9 days"},
		{-time.Hour, verdictFail, "expired on"},
	} {
		name := fmt.Sprintf("site%d.example", int(tt.left.Hours()))
		p := testPatient(t, fmt.Sprintf("[app]\nmodule = \"shop:app\"\n[[tls]]\ncert = %q\nkey = %q\n", cert(name, tt.left), key))
		if f := checkTLS(p); f.Verdict != tt.verdict || !strings.Contains(f.Evidence, tt.says) || !strings.Contains(f.Evidence, name) {
			t.Errorf("a certificate with %v left: %+v, want %s saying %q", tt.left, f, tt.verdict, tt.says)
		}
	}
}

// With [[site]]s, the worker count says how many each site runs.
func TestWorkerCountBySite(t *testing.T) {
	cfg, err := config.ParseShape("edged.toml", t.TempDir(), []byte("[app]\nmodule = \"x\"\n[[site]]\nname = \"shop\"\nnames = [\"shop.example\"]\n[site.app]\nmodule = \"shop\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	f := running(2)
	f.units["workerd-shop@1.service"] = &fakeUnit{active: "active", sub: "running"}
	p := &patient{ctx: context.Background(), systemd: f, cfg: cfg}
	n, from := p.workerCount()
	if n != 3 || from != "workerd units running: default 2, shop 1" {
		t.Errorf("workerCount() = %d, %q", n, from)
	}
}
