package static

import "strings"

// encodings is a set of content codings the client accepts.
type encodings uint8

const (
	acceptBr encodings = 1 << iota
	acceptGzip
)

// acceptedEncodings parses Accept-Encoding header values (RFC 9110
// section 12.5.3). A coding is accepted when it is listed with q>0, or
// when it is not listed and "*" is listed with q>0. A malformed qvalue
// counts as q=0, so doubt always falls back to the identity encoding.
func acceptedEncodings(values []string) encodings {
	// Per coding: 0 = not listed, 1 = refused, 2 = accepted.
	var br, gz, star uint8
	for _, v := range values {
		for v != "" {
			var item string
			item, v, _ = strings.Cut(v, ",")
			coding, params, _ := strings.Cut(item, ";")
			coding = strings.TrimSpace(coding)
			if coding == "" {
				continue
			}
			state := uint8(2)
			if !positiveQ(params) {
				state = 1
			}
			switch {
			case strings.EqualFold(coding, "br"):
				br = state
			case strings.EqualFold(coding, "gzip"), strings.EqualFold(coding, "x-gzip"):
				gz = state
			case coding == "*":
				star = state
			}
		}
	}
	var acc encodings
	if br == 2 || (br == 0 && star == 2) {
		acc |= acceptBr
	}
	if gz == 2 || (gz == 0 && star == 2) {
		acc |= acceptGzip
	}
	return acc
}

// positiveQ reports whether the parameters of one Accept-Encoding element
// give a weight above zero. Absent q means q=1.
func positiveQ(params string) bool {
	for params != "" {
		var p string
		p, params, _ = strings.Cut(params, ";")
		name, val, ok := strings.Cut(strings.TrimSpace(p), "=")
		if !ok || !strings.EqualFold(strings.TrimSpace(name), "q") {
			continue
		}
		return qPositive(strings.TrimSpace(val))
	}
	return true
}

// qPositive parses qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )
// and reports whether it is greater than zero; malformed values report false.
func qPositive(q string) bool {
	if q == "" || (q[0] != '0' && q[0] != '1') {
		return false
	}
	one := q[0] == '1'
	frac := q[1:]
	if frac != "" {
		if frac[0] != '.' || len(frac) > 4 {
			return false
		}
		frac = frac[1:]
	}
	nonzero := false
	for i := 0; i < len(frac); i++ {
		c := frac[i]
		if c < '0' || c > '9' || (one && c != '0') {
			return false
		}
		if c != '0' {
			nonzero = true
		}
	}
	return one || nonzero
}
