package edge

import "testing"

// BenchmarkHeadScanner is the scanner's cost for one typical request head.
func BenchmarkHeadScanner(b *testing.B) {
	req := []byte("GET /static/f4k.bin HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n")
	s := headScanner{max: 8192}
	for b.Loop() {
		s.feed(req)
		s.next()
	}
}
