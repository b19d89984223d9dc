package worker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/edged/edged/pkg/config"
	"github.com/rs/zerolog"
)

// ErrCheckTimeout is CheckApp's error when the import did not finish in
// time.
var ErrCheckTimeout = errors.New("the app did not finish importing in time")

// CheckApp imports the app as a worker would: the same interpreter,
// virtualenv, directory, environment and credentials, and the worker
// class's preparation (gevent's patching). The Python process exits once
// it has; nothing is served. It returns nil when a worker would start, an
// *ImportError saying why it would not, or an error wrapping
// ErrCheckTimeout after timeout.
//
// What the app prints while it imports goes to log. The app's secret key,
// judged, comes back when the app has one edged can see (Flask's, Django's).
// A key of no source edged can name is imported a second time: one that
// differs is made anew by each process (os.urandom), and said so.
func CheckApp(ctx context.Context, cfg *config.Config, timeout time.Duration, log zerolog.Logger) (*AppKey, error) {
	k, err := checkOnce(ctx, cfg, timeout, log)
	if err != nil || k == nil || k.Source != "process" {
		return k, err
	}
	again, err := checkOnce(ctx, cfg, timeout, log)
	if err != nil {
		return k, err
	}
	if again != nil && again.Fingerprint != k.Fingerprint {
		k.Differs = true
	}
	return k, nil
}

func checkOnce(ctx context.Context, cfg *config.Config, timeout time.Duration, log zerolog.Logger) (*AppKey, error) {
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return nil, err
	}
	defer devnull.Close()
	w := New(cfg, "check", log)
	w.credentials = CredentialsDir
	w.checking = true
	c, err := w.start(childConf{Check: true, Class: cfg.Pool.Class}, devnull)
	if err != nil {
		return nil, err
	}
	var werr error
	select {
	case werr = <-c.waited:
	case <-time.After(timeout):
		c.cmd.Process.Kill()
		<-c.waited
		w.finish(c)
		return nil, fmt.Errorf("%w: importing %q took over %v (is it waiting on a database or the network at import time?)", ErrCheckTimeout, cfg.App.Module, timeout)
	case <-ctx.Done():
		c.cmd.Process.Kill()
		<-c.waited
		w.finish(c)
		return nil, ctx.Err()
	}
	if ie := w.finish(c); ie != nil {
		return nil, ie
	}
	if werr != nil || !w.loaded.Load() {
		return nil, &ImportError{Module: cfg.App.Module, Summary: fmt.Sprintf("the Python process ended without loading the app (%v)", werr)}
	}
	return w.appKey.Load(), nil
}
