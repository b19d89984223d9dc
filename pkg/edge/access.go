package edge

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// ServiceGroup is the group edged.service joins (SupplementaryGroups=):
// besides the "other" bits, the only way its DynamicUser reads a file.
const ServiceGroup = "edged-workers"

// unreadable says why the user edged serves as cannot read path (and,
// for a directory, list it), or "" when it can. Run by root, as an
// operator checking a config for systemd, it judges by the permission
// bits as a DynamicUser in ServiceGroup (which owns nothing) would meet
// them, every directory on the way included, and says which bits to add.
// A file that holds a private key is never to be made readable by
// others: for it the advice is /etc/edged/tls, which systemd hands to
// edged, or the group. Run by anyone else, it asks the kernel about that
// user, as edged under `edgectl run` is.
func unreadable(path string) string {
	fi, err := os.Stat(path)
	if err != nil {
		return err.Error()
	}
	need := uint32(unix.R_OK)
	if fi.IsDir() {
		need |= unix.X_OK
	}
	if os.Geteuid() != 0 {
		if err := unix.Access(path, need); err != nil {
			return fmt.Sprintf("this user (uid %d) cannot read it: %v", os.Getuid(), err)
		}
		return ""
	}
	gid := -1
	if g, err := user.LookupGroup(ServiceGroup); err == nil {
		gid, _ = strconv.Atoi(g.Gid)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return err.Error()
	}
	// Every directory above needs search (x), the path itself need.
	var chain []string
	for p := abs; ; p = filepath.Dir(p) {
		chain = append([]string{p}, chain...)
		if p == "/" {
			break
		}
	}
	for i, p := range chain {
		want := uint32(unix.X_OK)
		if i == len(chain)-1 {
			want = need
		}
		fi, err := os.Stat(p)
		if err != nil {
			return err.Error()
		}
		st := fi.Sys().(*syscall.Stat_t)
		mode := uint32(fi.Mode().Perm())
		other := mode & 7
		group := uint32(0)
		if gid >= 0 && int(st.Gid) == gid {
			group = (mode >> 3) & 7
		}
		if (other|group)&want == want {
			continue
		}
		bits := map[uint32]string{unix.X_OK: "x", unix.R_OK: "r", unix.R_OK | unix.X_OK: "rx"}[want]
		owner := strconv.Itoa(int(st.Uid))
		if u, err := user.LookupId(owner); err == nil {
			owner = u.Username
		}
		if !fi.IsDir() && holdsPrivateKey(p) {
			return fmt.Sprintf("the service user (a DynamicUser in group %s) cannot read %s (mode %04o, owner %s), and a private key must never be readable by others: "+
				"put it in %s/, readable by root only, and give that path in [[tls]] (edged.service hands that directory to edged as credentials, LoadCredential=tls:%s), "+
				"or chgrp %s %s and chmod g+r,o-rwx %s",
				ServiceGroup, p, mode, owner, TLSCredentials, TLSCredentials, ServiceGroup, p, p)
		}
		return fmt.Sprintf("the service user (a DynamicUser in group %s) cannot %s %s (mode %04o, owner %s): chmod o+%s %s, or chgrp %s %s and chmod g+%s",
			ServiceGroup, map[bool]string{true: "enter", false: "read"}[want == unix.X_OK], p, mode, owner, bits, p, ServiceGroup, p, bits)
	}
	return ""
}

// holdsPrivateKey says the file at path holds a PEM private key (alone,
// or beside its certificate chain), or cannot be read to tell: its
// advice must then keep it from others.
func holdsPrivateKey(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return true
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 1<<20))
	return err != nil || bytes.Contains(b, []byte("PRIVATE KEY-----"))
}
