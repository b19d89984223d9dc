package config_test

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/edged/edged/pkg/config"
)

func TestParseSize(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want config.Size
	}{
		{"0", 0},
		{"1", 1},
		{"512", 512},
		{"512b", 512},
		{"512B", 512},
		{"1k", 1 << 10},
		{"16k", 16 << 10},
		{"16K", 16 << 10},
		{"64KiB", 64 << 10},
		{"64kb", 64 << 10},
		{"1m", 1 << 20},
		{"5MB", 5 << 20},
		{"5MiB", 5 << 20},
		{"2g", 2 << 30},
		{"2GiB", 2 << 30},
		{" 16k ", 16 << 10},
		{"16 k", 16 << 10},
		{"007", 7},
		{"4611686018427387904", 1 << 62},
		{"4194304g", 4194304 << 30},
		{"4294967296g", 1 << 62},
	} {
		got, err := config.ParseSize(tt.in)
		if err != nil {
			t.Errorf("ParseSize(%q): %v", tt.in, err)
			continue
		}
		if got != tt.want {
			t.Errorf("ParseSize(%q) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

func TestParseSizeErrors(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want string // a part of the message
	}{
		{"", `bad size "": write a number of bytes`},
		{"k", `bad size "k": write a number of bytes`},
		{"-1", `bad size "-1": write a number of bytes`},
		{"+1k", `bad size "+1k"`},
		{"1.5m", `unknown unit ".5m"`},
		{"5 parsecs", `unknown unit "parsecs", use k, m or g`},
		{"1t", `unknown unit "t"`},
		{"1kk", `unknown unit "kk"`},
		{"1 k b", `unknown unit "k b"`},
		{"0x10", `unknown unit "x10"`},
		{"4611686018427387905", "too large"},
		{"4294967297g", "too large"},
		{"9223372036854775807", "too large"},
		{"99999999999999999999", "too large"},
		{"99999999999999999999k", "too large"},
	} {
		got, err := config.ParseSize(tt.in)
		if err == nil {
			t.Errorf("ParseSize(%q) = %d, want an error", tt.in, got)
			continue
		}
		if !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseSize(%q) error = %q, want it to contain %q", tt.in, err, tt.want)
		}
	}
}

func TestSizeString(t *testing.T) {
	for _, tt := range []struct {
		in   config.Size
		want string
	}{
		{0, "0"},
		{1, "1"},
		{1023, "1023"},
		{1 << 10, "1k"},
		{1536, "1536"},
		{16 << 10, "16k"},
		{1 << 20, "1m"},
		{1<<20 + 1<<10, "1025k"},
		{5 << 20, "5m"},
		{1 << 30, "1g"},
		{3 << 30, "3g"},
		{1 << 62, "4294967296g"},
	} {
		if got := tt.in.String(); got != tt.want {
			t.Errorf("Size(%d).String() = %q, want %q", int64(tt.in), got, tt.want)
		}
	}
}

// TestSizeRoundTrip checks that ParseSize reads back what String writes.
func TestSizeRoundTrip(t *testing.T) {
	sizes := []config.Size{0, 1, 512, 1023, 1024, 1025, 4096, 16 << 10, 1<<20 - 1, 1 << 20, 1<<20 + 1<<10, 7 << 30, 1<<40 + 1, 1 << 62}
	for shift := 0; shift < 62; shift++ {
		sizes = append(sizes, config.Size(1)<<shift, config.Size(1)<<shift+1)
		if shift < 60 {
			sizes = append(sizes, config.Size(3)<<shift)
		}
	}
	for _, s := range sizes {
		str := s.String()
		got, err := config.ParseSize(str)
		if err != nil {
			t.Errorf("ParseSize(%q) (from Size(%d).String()): %v", str, int64(s), err)
			continue
		}
		if got != s {
			t.Errorf("ParseSize(%q) = %d, want %d", str, got, s)
		}
	}
}

func TestSizeUnmarshalTOML(t *testing.T) {
	for _, tt := range []struct {
		in   any
		want config.Size
		err  string
	}{
		{int64(0), 0, ""},
		{int64(1048576), 1 << 20, ""},
		{"1m", 1 << 20, ""},
		{int64(-1), 0, "size -1 is negative"},
		{"5 parsecs", 0, `bad size "5 parsecs"`},
		{1.5, 0, "not a float"},
		{true, 0, "not a boolean"},
		{[]any{int64(1)}, 0, "not an array"},
		{map[string]any{"a": int64(1)}, 0, "not a table"},
	} {
		var s config.Size
		err := s.UnmarshalTOML(tt.in)
		switch {
		case tt.err == "" && err != nil:
			t.Errorf("Size.UnmarshalTOML(%#v): %v", tt.in, err)
		case tt.err != "" && err == nil:
			t.Errorf("Size.UnmarshalTOML(%#v) = %d, want an error", tt.in, s)
		case tt.err != "" && !strings.Contains(err.Error(), tt.err):
			t.Errorf("Size.UnmarshalTOML(%#v) error = %q, want it to contain %q", tt.in, err, tt.err)
		case s != tt.want:
			t.Errorf("Size.UnmarshalTOML(%#v) = %d, want %d", tt.in, s, tt.want)
		}
	}
}

func TestDuration(t *testing.T) {
	for _, tt := range []struct {
		in   any // string or int64, as the TOML decoder hands them over
		want time.Duration
	}{
		{"0", 0},
		{"0s", 0},
		{"30s", 30 * time.Second},
		{"500ms", 500 * time.Millisecond},
		{"1m30s", 90 * time.Second},
		{"1h", time.Hour},
		{"1.5h", 90 * time.Minute},
		{"2h45m", 2*time.Hour + 45*time.Minute},
		{"100us", 100 * time.Microsecond},
		{"100µs", 100 * time.Microsecond},
		{"10ns", 10},
		{" 30s ", 30 * time.Second},
		{"1d", 24 * time.Hour},
		{"7d", 7 * 24 * time.Hour},
		{"1w", 7 * 24 * time.Hour},
		{"1w2d12h", 9*24*time.Hour + 12*time.Hour},
		{"1.5d", 36 * time.Hour},
		{int64(0), 0},
		{int64(30), 30 * time.Second},
		{int64(86400), 24 * time.Hour},
		{int64(math.MaxInt64 / int64(time.Second)), time.Duration(math.MaxInt64/int64(time.Second)) * time.Second},
	} {
		var d config.Duration
		if err := d.UnmarshalTOML(tt.in); err != nil {
			t.Errorf("Duration(%#v): %v", tt.in, err)
			continue
		}
		if d.D() != tt.want {
			t.Errorf("Duration(%#v) = %v, want %v", tt.in, d.D(), tt.want)
		}
		if s, ok := tt.in.(string); ok {
			var d2 config.Duration
			if err := d2.UnmarshalText([]byte(s)); err != nil || d2 != d {
				t.Errorf("Duration.UnmarshalText(%q) = %v, %v; UnmarshalTOML gave %v", s, d2, err, d)
			}
		}
		// String writes a Go duration, which reads back the same.
		var back config.Duration
		if err := back.UnmarshalText([]byte(d.String())); err != nil || back != d {
			t.Errorf("Duration(%#v).String() = %q, which reads back as %v, %v", tt.in, d.String(), back, err)
		}
	}
}

func TestDurationErrors(t *testing.T) {
	for _, tt := range []struct {
		in   any
		want string // a part of the message
	}{
		{"", `bad duration "": write a number with a unit`},
		{"10 seconds", `bad duration "10 seconds": write a number with a unit, such as "30s"`},
		{"30", `bad duration "30"`},
		{"1y", `bad duration "1y"`},
		{"d", `bad duration "d"`},
		{"99999999w", `bad duration "99999999w"`},
		{"-5s", `bad duration "-5s": must not be negative`},
		{"3000000h", `bad duration "3000000h"`},
		{int64(-1), "bad duration -1: must not be negative"},
		{int64(math.MaxInt64/int64(time.Second) + 1), "too large"},
		{int64(18446744074), "too large"}, // used to wrap around to 290ms
		{int64(math.MaxInt64), "too large"},
		{1.5, "not a float"},
		{true, "not a boolean"},
		{[]any{"30s"}, "not an array"},
	} {
		var d config.Duration
		err := d.UnmarshalTOML(tt.in)
		if err == nil {
			t.Errorf("Duration(%#v) = %v, want an error", tt.in, d)
			continue
		}
		if !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Duration(%#v) error = %q, want it to contain %q", tt.in, err, tt.want)
		}
	}
}
