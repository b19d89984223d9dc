package edge

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/edged/edged/pkg/config"
	"github.com/edged/edged/pkg/logging"
	"github.com/edged/edged/pkg/sd"
)

// Main is edged's command line.
func Main(args []string) error {
	fs := flag.NewFlagSet("edged", flag.ContinueOnError)
	file := fs.String("c", config.DefaultPath, "config `file`")
	check := fs.Bool("check", false, "validate the config (and certificates) and exit")
	sockDir := fs.String("socket-dir", "", "override pool.socket_dir")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := config.Load(*file)
	if err != nil {
		return err
	}
	if *sockDir != "" {
		cfg.Pool.SocketDir = *sockDir
	}
	if err := Check(cfg); err != nil {
		return err
	}
	if *check {
		fmt.Printf("%s: ok\n", cfg.File)
		return nil
	}
	log := logging.New(os.Stderr, cfg.Log.Level, cfg.Log.Format)
	s, err := New(cfg, log)
	if err != nil {
		return err
	}
	defer s.Close()
	ls, err := listeners(cfg)
	if err != nil {
		return err
	}
	defer ls.Close()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	sd.Notify("READY=1\nSTATUS=serving")
	err = s.Serve(ctx, ls)
	sd.Notify("STOPPING=1")
	return err
}

// Check does what loading a config cannot: it loads the certificates and
// tries the temporary directory.
func Check(cfg *config.Config) error {
	if len(cfg.Listen.HTTPS) > 0 {
		if _, err := TLSConfig(cfg); err != nil {
			return err
		}
	}
	return tempDirOK(cfg.Buffers.TempDir)
}

// listeners takes the sockets systemd passed, named "http" and "https",
// or binds the configured addresses itself.
func listeners(cfg *config.Config) (*Listeners, error) {
	named, err := sd.Listeners()
	if err != nil {
		return nil, err
	}
	if len(named) == 0 {
		return Listen(cfg)
	}
	ls := &Listeners{HTTP: named["http"], HTTPS: named["https"]}
	for name := range named {
		if name != "http" && name != "https" {
			return nil, fmt.Errorf("socket activation passed a socket named %q: name them FileDescriptorName=http or https in edged.socket", name)
		}
	}
	return ls, nil
}
