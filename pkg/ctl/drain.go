package ctl

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"
)

// controlSocket is edged's control socket under systemd
// (RuntimeDirectory=edged/edge in edged.service).
const controlSocket = "/run/edged/edge/control.sock"

// drain is `edgectl drain` and `edgectl undrain`: it asks the running
// edged over its control socket, and prints the state it answers.
func drain(args []string, out io.Writer, req string) error {
	fs := flag.NewFlagSet("edgectl "+req, flag.ContinueOnError)
	path := fs.String("control", controlSocket, "edged's control `socket` (under edgectl run: the path its output gives)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	state, err := askControl(*path, req)
	if err != nil {
		return err
	}
	switch req {
	case "drain":
		fmt.Fprintf(out, "edged is %s: /healthz answers 503 and the agent check \"drain\", answers close their connections; requests are still served.\n", state)
		fmt.Fprintln(out, "Stop it once the balancer has moved its traffic (systemctl stop edged), or take it back with edgectl undrain.")
	default:
		fmt.Fprintf(out, "edged is %s: /healthz answers 200 again, keep-alive is on.\n", state)
	}
	return nil
}

// askControl sends one request line to edged's control socket and
// returns what follows its "ok ".
func askControl(path, req string) (string, error) {
	c, err := net.DialTimeout("unix", path, 5*time.Second)
	if err != nil {
		if errors.Is(err, os.ErrPermission) {
			return "", fmt.Errorf("cannot reach edged at %s: permission denied — run as root", path)
		}
		return "", fmt.Errorf("cannot reach edged at %s (is edged.service running? under edgectl run, pass --control with the path its output gives): %w", path, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintln(c, req)
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("no answer from edged at %s: %w", path, err)
	}
	line = strings.TrimSpace(line)
	if !strings.HasPrefix(line, "ok") {
		return "", fmt.Errorf("edged refused %q: %s", req, strings.TrimPrefix(line, "error: "))
	}
	return strings.TrimSpace(strings.TrimPrefix(line, "ok")), nil
}
