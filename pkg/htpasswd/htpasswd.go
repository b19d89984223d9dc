// Package htpasswd reads the user files of HTTP basic authentication, as
// Apache's htpasswd -B writes them ("user:$2y$10$..."), and checks a
// user's password against them.
//
// Only bcrypt hashes are taken: the other formats htpasswd can write
// (MD5 "$apr1$", SHA-1 "{SHA}", crypt, plain text) are cracked in
// seconds on a GPU, and a file that holds one is refused with the
// command that makes a bcrypt one.
package htpasswd

import (
	"bufio"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"sync"

	"golang.org/x/crypto/bcrypt"
)

// File is the users of one htpasswd file. It is safe for concurrent use.
type File struct {
	users map[string][]byte // user → bcrypt hash
	// dummy is compared against for an unknown user, at the file's
	// highest cost, so that an unknown name takes as long to refuse as a
	// wrong password.
	dummy []byte

	// good remembers a digest of user and password pairs that passed, so
	// that a browser sending the same pair with every request costs one
	// bcrypt, not one per request. Failures are never remembered.
	mu   sync.Mutex
	good map[[32]byte]struct{}
}

// maxGood bounds the pairs remembered.
const maxGood = 1024

// maxFile bounds the file read: one line per user.
const maxFile = 4 << 20

// Load reads the file at path.
func Load(path string) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	hf, err := Parse(io.LimitReader(f, maxFile+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return hf, nil
}

// Parse reads an htpasswd file: one "user:hash" per line; blank lines and
// lines starting with "#" are skipped. The error names the line, never
// its hash.
func Parse(r io.Reader) (*File, error) {
	hf := &File{users: map[string][]byte{}, good: map[[32]byte]struct{}{}}
	maxCost := 0
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), maxFile)
	n, size := 0, 0
	for sc.Scan() {
		n++
		size += len(sc.Bytes()) + 1
		if size > maxFile {
			return nil, fmt.Errorf("over %d MiB: is it an htpasswd file?", maxFile>>20)
		}
		line := strings.TrimRight(sc.Text(), "\r")
		if strings.TrimSpace(line) == "" || strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		user, hash, ok := strings.Cut(line, ":")
		if !ok || user == "" {
			return nil, fmt.Errorf("line %d: not \"user:hash\"", n)
		}
		if strings.ContainsAny(user, " \t") {
			return nil, fmt.Errorf("line %d: the user name holds a space", n)
		}
		if _, dup := hf.users[user]; dup {
			return nil, fmt.Errorf("line %d: user %q is given twice", n, user)
		}
		if why := weak(hash); why != "" {
			return nil, fmt.Errorf("line %d: user %q has %s: make a bcrypt one with htpasswd -B FILE %s", n, user, why, user)
		}
		cost, err := bcrypt.Cost([]byte(hash))
		if err != nil {
			return nil, fmt.Errorf("line %d: user %q: not a bcrypt hash (%v): make one with htpasswd -B FILE %s", n, user, err, user)
		}
		if cost > MaxCost {
			return nil, fmt.Errorf("line %d: user %q: bcrypt cost %d costs every login attempt, anyone's, %s of CPU: make the hash again at %d or less (htpasswd -B -C 10 FILE %s)", n, user, cost, costTime(cost), MaxCost, user)
		}
		maxCost = max(maxCost, cost)
		hf.users[user] = []byte(hash)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(hf.users) == 0 {
		return nil, fmt.Errorf("no users: add one with htpasswd -B FILE USER")
	}
	hf.dummy, _ = bcrypt.GenerateFromPassword([]byte("edged: no such user"), maxCost)
	return hf, nil
}

// weak names a hash format that is not bcrypt; "" for bcrypt.
func weak(hash string) string {
	switch {
	case strings.HasPrefix(hash, "$2a$"), strings.HasPrefix(hash, "$2b$"), strings.HasPrefix(hash, "$2y$"):
		return ""
	case strings.HasPrefix(hash, "$apr1$"):
		return "an MD5 hash ($apr1$), quick to crack"
	case strings.HasPrefix(hash, "{SHA}"):
		return "a SHA-1 hash ({SHA}), quick to crack"
	case strings.HasPrefix(hash, "$5$"), strings.HasPrefix(hash, "$6$"):
		return "a SHA-crypt hash, not bcrypt"
	case len(hash) == 13:
		return "a DES crypt hash, quick to crack"
	default:
		return "no hash edged knows (a plain-text password?)"
	}
}

// Users is how many users the file has.
func (f *File) Users() int { return len(f.users) }

// MaxCost is the highest bcrypt cost taken: every login attempt, a
// stranger's included, pays it (cost 12 is about 0.25 s of CPU here, and
// each step doubles it).
const MaxCost = 12

func costTime(cost int) string {
	return fmt.Sprintf("about %.0f s", 0.25*float64(int(1)<<(cost-12)))
}

// checks bounds the bcrypt comparisons run at once, so that a flood of
// wrong passwords takes at most these cores, never the whole machine.
var checks = make(chan struct{}, max(1, runtime.NumCPU()/2))

// Check says password is user's.
func (f *File) Check(user, password string) bool {
	d := digest(user, password)
	f.mu.Lock()
	_, ok := f.good[d]
	f.mu.Unlock()
	if ok {
		return true
	}
	hash, known := f.users[user]
	if !known {
		hash = f.dummy
	}
	checks <- struct{}{}
	err := bcrypt.CompareHashAndPassword(hash, []byte(password))
	<-checks
	if err != nil || !known {
		return false
	}
	f.mu.Lock()
	if len(f.good) >= maxGood {
		clear(f.good)
	}
	f.good[d] = struct{}{}
	f.mu.Unlock()
	return true
}

// digest keys a user and password pair without keeping the password.
func digest(user, password string) [32]byte {
	h := sha256.New()
	h.Write([]byte(user))
	h.Write([]byte{0})
	h.Write([]byte(password))
	var d [32]byte
	h.Sum(d[:0])
	return d
}
