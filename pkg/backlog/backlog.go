// Package backlog reads how full the kernel's accept queues are: of a
// TCP listener edged holds (TCP_INFO), of every listening Unix socket
// (sock_diag over netlink, as `ss -xl` does), and the kernel's count of
// connections a full queue turned away (ListenOverflows in
// /proc/net/netstat). edged exports them as metrics; edgectl doctor
// judges them.
package backlog

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Queue is one listening socket's accept queue.
type Queue struct {
	Waiting uint32 // connections accepted by the kernel, not yet by the server
	Max     uint32 // the backlog: the most that may wait (the kernel lets one more)
}

// TCP reads the accept queue of a listening TCP socket. For a listener,
// Linux reports the queue's length in tcpi_unacked and its backlog in
// tcpi_sacked.
func TCP(c syscall.Conn) (Queue, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return Queue{}, err
	}
	var info *unix.TCPInfo
	var serr error
	if err := rc.Control(func(fd uintptr) {
		info, serr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	}); err != nil {
		return Queue{}, err
	}
	if serr != nil {
		return Queue{}, serr
	}
	return Queue{Waiting: info.Unacked, Max: info.Sacked}, nil
}

// Unix reads the accept queue of every listening Unix socket with a path
// in this network namespace, by path.
func Unix() (map[string]Queue, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return nil, fmt.Errorf("sock_diag: %w", err)
	}
	defer unix.Close(fd)
	// struct nlmsghdr, then struct unix_diag_req.
	const (
		udiagShowName  = 0x01
		udiagShowRQLen = 0x10
		tcpListen      = 10
		reqLen         = unix.NLMSG_HDRLEN + 24
	)
	req := make([]byte, reqLen)
	le := binary.LittleEndian
	le.PutUint32(req[0:], reqLen)
	le.PutUint16(req[4:], unix.SOCK_DIAG_BY_FAMILY)
	le.PutUint16(req[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	le.PutUint32(req[8:], 1) // seq
	b := req[unix.NLMSG_HDRLEN:]
	b[0] = unix.AF_UNIX
	le.PutUint32(b[4:], 1<<tcpListen)                  // udiag_states
	le.PutUint32(b[12:], udiagShowName|udiagShowRQLen) // udiag_show
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("sock_diag: %w", err)
	}
	out := map[string]Queue{}
	buf := make([]byte, 64<<10)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return nil, fmt.Errorf("sock_diag: %w", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return nil, fmt.Errorf("sock_diag: %w", err)
		}
		for _, m := range msgs {
			switch m.Header.Type {
			case unix.NLMSG_DONE:
				return out, nil
			case unix.NLMSG_ERROR:
				if len(m.Data) >= 4 {
					if e := int32(le.Uint32(m.Data)); e != 0 {
						return nil, fmt.Errorf("sock_diag: %w", syscall.Errno(-e))
					}
				}
				return out, nil
			}
			parseUnixDiag(m.Data, out)
		}
	}
}

// parseUnixDiag reads one struct unix_diag_msg and its attributes.
func parseUnixDiag(d []byte, out map[string]Queue) {
	const (
		msgLen    = 16 // struct unix_diag_msg
		attrName  = 0  // UNIX_DIAG_NAME
		attrRQLen = 4  // UNIX_DIAG_RQLEN
	)
	if len(d) < msgLen {
		return
	}
	var name string
	var q Queue
	var haveQ bool
	for a := d[msgLen:]; len(a) >= 4; {
		l := int(binary.LittleEndian.Uint16(a))
		t := binary.LittleEndian.Uint16(a[2:])
		if l < 4 || l > len(a) {
			return
		}
		v := a[4:l]
		switch t {
		case attrName:
			name = strings.TrimRight(string(v), "\x00")
		case attrRQLen:
			if len(v) >= 8 {
				q = Queue{Waiting: binary.LittleEndian.Uint32(v), Max: binary.LittleEndian.Uint32(v[4:])}
				haveQ = true
			}
		}
		a = a[min((l+3)&^3, len(a)):]
	}
	if name != "" && name[0] != 0 && haveQ {
		out[name] = q
	}
}

// Overflows reads the kernel's counts of connections turned away because
// a listen queue was full (ListenOverflows) and of all dropped at listen
// (ListenDrops), for this network namespace, since boot.
func Overflows() (overflows, drops uint64, err error) {
	f, err := os.Open("/proc/net/netstat")
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 16<<10), 1<<20)
	var names []string
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 || fields[0] != "TcpExt:" {
			continue
		}
		if names == nil {
			names = fields
			continue
		}
		for i := 1; i < len(fields) && i < len(names); i++ {
			v, _ := strconv.ParseUint(fields[i], 10, 64)
			switch names[i] {
			case "ListenOverflows":
				overflows = v
			case "ListenDrops":
				drops = v
			}
		}
		return overflows, drops, nil
	}
	return 0, 0, errors.New("/proc/net/netstat has no TcpExt counters")
}
