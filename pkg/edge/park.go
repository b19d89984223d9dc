package edge

import (
	"net"
	"runtime"
	"runtime/debug"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// A keep-alive connection that waits for its client's next request holds
// net/http's goroutine (an 8 KiB stack) and its read and write buffers
// (4 KiB each, more with the allocator's rounding): about 21 KiB, for a
// connection that may sit idle for limits.idle_timeout. Past parkAfter
// with nothing to read, the connection leaves net/http instead: its Read
// says the client has gone (net/http hands its goroutine and buffers
// back), its Close keeps the socket, and the parker watches the socket
// for the client's next bytes with one epoll instance for all of them.
// When they come, the socket goes back to the pipeline as a new
// connection; at its deadline (what net/http had set: the idle or header
// timeout) it is closed, as net/http would have. A parked connection
// costs its socket and a few hundred bytes.
//
// Plain HTTP/1.1 only: a TLS connection keeps decrypted bytes and the
// session in its tls.Conn, which net/http's buffers are small beside.

// parkAfter is how long a connection waits for its next request inside
// net/http before it is parked: a client that sends its requests back to
// back never is.
var parkAfter = time.Second

// parker holds the parked connections of one pipeline.
type parker struct {
	epfd  int
	wake  func(net.Conn) // hands a connection whose client spoke back
	mu    sync.Mutex
	conns map[int32]*parkedConn
	done  chan struct{}
	once  sync.Once

	// freedAt is the count parked when memory was last given back to
	// the system (see giveBack), freed when.
	freedAt int
	freed   time.Time
}

// giveBackAfter is by how many the parked connections must have grown or
// shrunk since memory was last given back for it to be given back again,
// and giveBackEvery the least time between two: a burst of connections
// that go idle leaves net/http's buffers and stacks free, and one that
// closes the parked sockets, which Go would otherwise keep for minutes.
const (
	giveBackAfter = 1024
	giveBackEvery = 5 * time.Second
)

type parkedConn struct {
	net.Conn
	fd       int32
	deadline time.Time // zero: none
}

// newParker starts watching; nil (and parking is off) when epoll cannot
// be had.
func newParker(wake func(net.Conn)) *parker {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil
	}
	p := &parker{epfd: fd, wake: wake, conns: map[int32]*parkedConn{}, done: make(chan struct{})}
	go p.watch()
	return p
}

// park takes c out of net/http's hands until its client speaks, or its
// deadline passes; false when it cannot (the connection is then closed
// by the caller).
func (p *parker) park(c net.Conn, deadline time.Time) bool {
	if p == nil {
		return false
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	var fd int32 = -1
	raw.Control(func(f uintptr) { fd = int32(f) })
	if fd < 0 {
		return false
	}
	c.SetReadDeadline(time.Time{}) // Go's own timer is not needed meanwhile
	pc := &parkedConn{Conn: c, fd: fd, deadline: deadline}
	p.mu.Lock()
	select {
	case <-p.done:
		p.mu.Unlock()
		return false
	default:
	}
	p.conns[fd] = pc
	p.mu.Unlock()
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT, Fd: fd}
	if err := unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, int(fd), &ev); err != nil {
		p.mu.Lock()
		delete(p.conns, fd)
		p.mu.Unlock()
		return false
	}
	return true
}

// take removes fd's connection, if it is still parked.
func (p *parker) take(fd int32) *parkedConn {
	p.mu.Lock()
	defer p.mu.Unlock()
	pc := p.conns[fd]
	if pc != nil {
		delete(p.conns, fd)
		unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, int(fd), nil)
	}
	return pc
}

// watch hands back the connections whose clients speak, and closes those
// past their deadline, until close.
func (p *parker) watch() {
	events := make([]unix.EpollEvent, 128)
	lastSweep := time.Now()
	for {
		n, err := unix.EpollWait(p.epfd, events, 250)
		select {
		case <-p.done:
			return
		default:
		}
		if err != nil && err != unix.EINTR {
			return
		}
		for i := 0; i < n; i++ {
			if pc := p.take(events[i].Fd); pc != nil {
				if hungUp(pc.fd) {
					pc.Close() // gone without a word: no need of net/http to learn it
					continue
				}
				go p.wake(pc.Conn)
			}
		}
		if now := time.Now(); now.Sub(lastSweep) >= 250*time.Millisecond {
			lastSweep = now
			p.sweep(now)
			p.giveBack(now)
		}
	}
}

// hungUp says the client closed its side with nothing left to read.
func hungUp(fd int32) bool {
	var b [1]byte
	n, _, err := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
	return n == 0 && err == nil
}

// giveBack returns free memory to the system after a burst of parking.
func (p *parker) giveBack(now time.Time) {
	p.mu.Lock()
	n := len(p.conns)
	moved := n - p.freedAt
	due := (moved >= giveBackAfter || -moved >= giveBackAfter) && now.Sub(p.freed) >= giveBackEvery
	if due {
		p.freedAt, p.freed = n, now
	}
	p.mu.Unlock()
	if due {
		// Two collections: the buffers sit in net/http's pools (a
		// sync.Pool keeps what it held for one more).
		go func() {
			runtime.GC()
			debug.FreeOSMemory()
		}()
	}
}

// sweep closes the connections past their deadline.
func (p *parker) sweep(now time.Time) {
	var late []*parkedConn
	p.mu.Lock()
	for fd, pc := range p.conns {
		if !pc.deadline.IsZero() && now.After(pc.deadline) {
			delete(p.conns, fd)
			unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, int(fd), nil)
			late = append(late, pc)
		}
	}
	p.mu.Unlock()
	for _, pc := range late {
		pc.Close()
	}
}

// Len is how many connections are parked.
func (p *parker) Len() int {
	if p == nil {
		return 0
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

// close closes every parked connection and stops watching.
func (p *parker) close() {
	if p == nil {
		return
	}
	p.once.Do(func() {
		p.mu.Lock()
		close(p.done)
		conns := p.conns
		p.conns = map[int32]*parkedConn{}
		p.mu.Unlock()
		for fd, pc := range conns {
			unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, int(fd), nil)
			pc.Close()
		}
		// The watcher wakes within its timeout and sees done; the epoll
		// descriptor goes with it.
		go func() {
			time.Sleep(time.Second)
			unix.Close(p.epfd)
		}()
	})
}
