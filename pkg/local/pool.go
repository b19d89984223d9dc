package local

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"
)

// pool runs the workerd processes of `edgectl run`, one per slot, each
// started again when it exits, as systemd's Restart= would. roll
// replaces them one at a time, each new process ready before the old one
// is asked to stop, so the pool never has a worker fewer and no request
// waits on a restart: the old process finishes what it took, and the
// queue it shares with the others keeps the rest.
type pool struct {
	site  string // the site's name; "" for the default site
	o     Options
	ctx   context.Context
	queue *os.File
	log   zerolog.Logger
	errc  chan<- error
	wg    sync.WaitGroup

	mu    sync.Mutex
	slots []*worker // slot i-1 runs workerd -i i

	rolling sync.Mutex
	seq     atomic.Int64 // names notify sockets
}

// worker is one workerd process.
type worker struct {
	slot  int
	cmd   *exec.Cmd
	start time.Time
	ready chan struct{} // closed when workerd says READY=1
	done  chan error    // its exit
}

func newPool(ctx context.Context, o Options, site string, queue *os.File, n int, log zerolog.Logger, errc chan<- error) (*pool, error) {
	p := &pool{site: site, o: o, ctx: ctx, queue: queue, log: log, errc: errc, slots: make([]*worker, n)}
	for i := 1; i <= n; i++ {
		w, err := p.start(i)
		if err != nil {
			return nil, err
		}
		p.slots[i-1] = w
		p.supervise(w)
	}
	return p, nil
}

// start starts workerd for slot i with a notify socket of its own, on
// which it says when the app is loaded.
func (p *pool) start(i int) (*worker, error) {
	name := fmt.Sprintf("notify-%d.sock", p.seq.Add(1))
	if p.site != "" {
		name = fmt.Sprintf("notify-%s-%d.sock", p.site, p.seq.Load())
	}
	path := filepath.Join(p.o.SocketDir, name)
	// One left by a run that ended before it could remove it (a datagram
	// socket's file stays after its close): this directory is ours.
	os.Remove(path)
	ns, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return nil, err
	}
	args := p.o.childArgs("-c", p.o.Config, "-i", strconv.Itoa(i), "--socket-dir", p.o.SocketDir, "--queue-fd", "3")
	if p.site != "" {
		args = append(args, "--site", p.site)
	}
	out, err := p.o.output()
	if err != nil {
		ns.Close()
		return nil, err
	}
	defer out.close()
	cmd := exec.Command(filepath.Join(p.o.BinDir, "workerd"), args...)
	cmd.Stdout, cmd.Stderr = out.stdout, out.stderr
	cmd.ExtraFiles = []*os.File{p.queue}
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+path)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		ns.Close()
		os.Remove(path)
		return nil, fmt.Errorf("start workerd: %w", err)
	}
	w := &worker{slot: i, cmd: cmd, start: time.Now(), ready: make(chan struct{}), done: make(chan error, 1)}
	go func() {
		// Read until the worker is gone, not only until READY=1: its
		// STATUS= lines keep coming every few seconds, and a datagram
		// socket nobody reads blocks its sender once a few are queued
		// (net.unix.max_dgram_qlen, 10), which would hang workerd.
		buf := make([]byte, 4096)
		ready := false
		for {
			n, err := ns.Read(buf)
			if err != nil {
				return
			}
			if !ready && strings.Contains("\n"+string(buf[:n])+"\n", "\nREADY=1\n") {
				ready = true
				close(w.ready)
			}
		}
	}()
	go func() {
		w.done <- cmd.Wait()
		ns.Close()
		os.Remove(path)
	}()
	return w, nil
}

// current says whether w still holds its slot (a roll replaces it).
func (p *pool) current(w *worker) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.slots[w.slot-1] == w
}

// supervise waits for w to exit and starts its slot again, unless the
// pool is stopping or a roll replaced w. A worker that fails at once (an
// app that cannot import) stops the pool with that error.
func (p *pool) supervise(w *worker) {
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			var err error
			select {
			case err = <-w.done:
			case <-p.ctx.Done():
				w.cmd.Process.Signal(syscall.SIGTERM)
				select {
				case <-w.done:
				case <-time.After(40 * time.Second):
					syscall.Kill(-w.cmd.Process.Pid, syscall.SIGKILL)
					<-w.done
				}
				return
			}
			if p.ctx.Err() != nil || !p.current(w) {
				return
			}
			var ee *exec.ExitError
			if errors.As(err, &ee) && time.Since(w.start) < 5*time.Second {
				p.errc <- fmt.Errorf("workerd %s%d exited early (%v): see its log above", p.label(), w.slot, err)
				return
			}
			time.Sleep(time.Second)
			next, serr := p.start(w.slot)
			if serr != nil {
				p.errc <- serr
				return
			}
			p.mu.Lock()
			if p.slots[w.slot-1] != w {
				p.mu.Unlock()
				next.cmd.Process.Signal(syscall.SIGTERM) // a roll came first
				return
			}
			p.slots[w.slot-1] = next
			p.mu.Unlock()
			w = next
		}
	}()
}

// label names the site's workers in messages: "shop " or "".
func (p *pool) label() string {
	if p.site == "" {
		return ""
	}
	return p.site + " "
}

// roll replaces every worker, one at a time. A new worker that fails
// (an edit that broke the app, say) ends the roll: the old ones go on
// serving, and its log says why.
func (p *pool) roll(why string) {
	p.rolling.Lock()
	defer p.rolling.Unlock()
	p.log.Info().Str("why", why).Int("workers", len(p.slots)).Msg("restarting the workers one at a time")
	for i := 1; i <= len(p.slots); i++ {
		if p.ctx.Err() != nil {
			return // stopping: no new workers
		}
		next, err := p.start(i)
		if err != nil {
			p.log.Error().Err(err).Msg("restart stopped")
			return
		}
		select {
		case <-next.ready:
		case err := <-next.done:
			p.log.Error().Int("worker", i).AnErr("exit", err).Msg("the new worker did not start (see its log): the running ones keep serving the code they loaded")
			return
		case <-time.After(2 * time.Minute):
			syscall.Kill(-next.cmd.Process.Pid, syscall.SIGKILL)
			p.log.Error().Int("worker", i).Msg("the new worker was not ready after 2m: the running ones keep serving")
			return
		case <-p.ctx.Done():
			syscall.Kill(-next.cmd.Process.Pid, syscall.SIGKILL)
			<-next.done
			return
		}
		p.mu.Lock()
		old := p.slots[i-1]
		p.slots[i-1] = next
		p.mu.Unlock()
		p.supervise(next)
		// It stops taking requests and finishes its own; the queue
		// holds the rest for the others.
		old.cmd.Process.Signal(syscall.SIGTERM)
	}
	p.log.Info().Msg("every worker restarted")
}

// wait returns once every worker has stopped. A roll under way ends
// first (it looks at ctx before each new worker), so that nothing starts
// a worker, or adds to wg, while it waits.
func (p *pool) wait() {
	p.rolling.Lock()
	defer p.rolling.Unlock()
	p.wg.Wait()
}
