package logging

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// journalPath is where journald takes native entries.
const journalPath = "/run/systemd/journal/socket"

// batchSocket sends entries to journald, several in one sendmmsg(2): a
// native entry is a datagram each, and a busy host's access log would
// otherwise cost a system call a request.
type batchSocket struct {
	path string // journalPath when ""
	fd   int    // -1 before the first send
	name unix.RawSockaddrUnix
	iovs []unix.Iovec
	msgs []unix.Mmsghdr
}

// send sends bufs in order; it says how many went, and why the next did
// not (errTooBig: it is too big for a datagram; errFull: journald's
// queue is full, and the send does not wait for room).
func (s *batchSocket) send(bufs [][]byte) (int, error) {
	if s.fd < 0 {
		fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return 0, err
		}
		s.fd = fd
		if s.path == "" {
			s.path = journalPath
		}
		s.name.Family = unix.AF_UNIX
		for i := range len(s.path) {
			s.name.Path[i] = int8(s.path[i])
		}
	}
	s.iovs = s.iovs[:0]
	s.msgs = s.msgs[:0]
	for _, b := range bufs {
		var iov unix.Iovec
		iov.Base = &b[0]
		iov.SetLen(len(b))
		s.iovs = append(s.iovs, iov)
		s.msgs = append(s.msgs, unix.Mmsghdr{})
	}
	for i := range s.msgs {
		h := &s.msgs[i].Hdr
		h.Name = (*byte)(unsafe.Pointer(&s.name))
		h.Namelen = uint32(unsafe.Offsetof(s.name.Path)) + uint32(len(s.path))
		h.Iov = &s.iovs[i]
		h.SetIovlen(1)
	}
	defer clear(s.iovs) // the buffers are the caller's
	sent := 0
	for sent < len(s.msgs) {
		r, _, e := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(s.fd), uintptr(unsafe.Pointer(&s.msgs[sent])), uintptr(len(s.msgs)-sent), unix.MSG_DONTWAIT, 0, 0)
		switch e {
		case 0:
			sent += int(r)
			continue
		case unix.EINTR:
			continue
		case unix.EMSGSIZE, unix.ENOBUFS:
			return sent, errTooBig
		case unix.EAGAIN:
			return sent, errFull
		}
		return sent, e
	}
	return sent, nil
}
