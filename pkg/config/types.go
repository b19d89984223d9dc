package config

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Size is a byte count written in the config as an integer or a string with
// a binary unit, the way nginx writes them: "512", "16k", "1m", "2g",
// "64KiB", "5MB". Every unit is a power of 1024.
type Size int64

// UnmarshalText parses a size; the error names the bad value.
func (s *Size) UnmarshalText(b []byte) error {
	v, err := ParseSize(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// UnmarshalTOML accepts a bare integer as a number of bytes.
func (s *Size) UnmarshalTOML(v any) error {
	switch x := v.(type) {
	case int64:
		if x < 0 {
			return fmt.Errorf("size %d is negative: write a byte count such as 1048576 or \"1m\"", x)
		}
		*s = Size(x)
		return nil
	case string:
		return s.UnmarshalText([]byte(x))
	default:
		return fmt.Errorf("size must be an integer or a string such as \"16k\" or \"1m\", not %s", tomlType(v))
	}
}

func (s Size) String() string {
	n := int64(s)
	for _, u := range []struct {
		suffix string
		shift  uint
	}{{"g", 30}, {"m", 20}, {"k", 10}} {
		if n != 0 && n%(1<<u.shift) == 0 {
			return strconv.FormatInt(n>>u.shift, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}

// ParseSize parses "16k", "1m", "2g", "64KiB", "5MB" or a plain byte count.
func ParseSize(in string) (Size, error) {
	s := strings.TrimSpace(in)
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	if i == 0 {
		return 0, fmt.Errorf("bad size %q: write a number of bytes with an optional unit k, m or g (for example \"16k\" or \"1m\")", in)
	}
	n, err := strconv.ParseInt(s[:i], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("bad size %q: too large", in)
	}
	unit := strings.TrimSpace(s[i:])
	var shift uint
	switch strings.ToLower(unit) {
	case "", "b":
	case "k", "kb", "kib":
		shift = 10
	case "m", "mb", "mib":
		shift = 20
	case "g", "gb", "gib":
		shift = 30
	default:
		return 0, fmt.Errorf("bad size %q: unknown unit %q, use k, m or g", in, unit)
	}
	if n > (1<<62)>>shift {
		return 0, fmt.Errorf("bad size %q: too large", in)
	}
	return Size(n << shift), nil
}

// Duration is a time span written as a Go duration string ("30s", "1m30s",
// "500ms") or an integer number of seconds.
type Duration time.Duration

// UnmarshalText parses a duration; the error names the bad value.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(daysAndWeeks(strings.TrimSpace(string(b))))
	if err != nil {
		return fmt.Errorf("bad duration %q: write a number with a unit, such as \"30s\", \"1m30s\", \"500ms\" or \"7d\"", string(b))
	}
	if v < 0 {
		return fmt.Errorf("bad duration %q: must not be negative", string(b))
	}
	*d = Duration(v)
	return nil
}

// UnmarshalTOML accepts a bare integer as seconds.
func (d *Duration) UnmarshalTOML(v any) error {
	switch x := v.(type) {
	case int64:
		if x < 0 {
			return fmt.Errorf("bad duration %d: must not be negative", x)
		}
		if x > math.MaxInt64/int64(time.Second) {
			return fmt.Errorf("bad duration %d: too large", x)
		}
		*d = Duration(time.Duration(x) * time.Second)
		return nil
	case string:
		return d.UnmarshalText([]byte(x))
	default:
		return fmt.Errorf("duration must be a string such as \"30s\" or an integer number of seconds, not %s", tomlType(v))
	}
}

// D returns the value as a time.Duration.
// dayOrWeek is a count of days or weeks, which Go's durations lack.
var dayOrWeek = regexp.MustCompile(`([0-9]+(?:\.[0-9]*)?)([dw])`)

// daysAndWeeks writes the days ("d", 24h) and weeks ("w", 7d) of s in
// hours, for time.ParseDuration.
func daysAndWeeks(s string) string {
	return dayOrWeek.ReplaceAllStringFunc(s, func(m string) string {
		n, err := strconv.ParseFloat(m[:len(m)-1], 64)
		if err != nil {
			return m
		}
		if m[len(m)-1] == 'w' {
			n *= 7
		}
		return strconv.FormatFloat(n*24, 'f', -1, 64) + "h"
	})
}

func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) String() string { return time.Duration(d).String() }

// tomlType names the type of a decoded TOML value, for messages.
func tomlType(v any) string {
	return goTypeName(strings.ReplaceAll(fmt.Sprintf("%T", v), "interface {}", "any"))
}

// goTypeName turns the Go type the TOML decoder gives a value into the TOML
// term for it.
func goTypeName(t string) string {
	switch t {
	case "string":
		return "a string"
	case "int64":
		return "an integer"
	case "float64":
		return "a float"
	case "bool":
		return "a boolean"
	case "time.Time", "toml.LocalDate", "toml.LocalTime", "toml.LocalDatetime":
		return "a date or time"
	case "map[string]any":
		return "a table"
	case "[]map[string]any":
		return "an array of tables"
	}
	if strings.HasPrefix(t, "[]") {
		return "an array"
	}
	return t
}

// Rate is a request rate written as nginx's limit_req writes it: "20r/s"
// or "600r/m". Zero means no limit.
type Rate float64

// PerSecond is the rate in requests per second.
func (r Rate) PerSecond() float64 { return float64(r) }

// UnmarshalText parses a rate; the error names the bad value.
func (r *Rate) UnmarshalText(b []byte) error {
	v, err := ParseRate(string(b))
	if err != nil {
		return err
	}
	*r = v
	return nil
}

// ParseRate parses "20r/s", "600r/m" or "" (no limit).
func ParseRate(in string) (Rate, error) {
	s := strings.TrimSpace(in)
	if s == "" {
		return 0, nil
	}
	num, unit, ok := strings.Cut(s, "r/")
	n, err := strconv.ParseUint(num, 10, 32)
	if !ok || err != nil || n == 0 {
		return 0, fmt.Errorf("bad rate %q: write requests per second or minute, such as \"20r/s\" or \"600r/m\"", in)
	}
	switch unit {
	case "s":
		return Rate(n), nil
	case "m":
		return Rate(float64(n) / 60), nil
	}
	return 0, fmt.Errorf("bad rate %q: the unit is r/s or r/m, such as \"20r/s\"", in)
}

func (r Rate) String() string {
	if r == 0 {
		return ""
	}
	if r >= 1 && r == Rate(math.Trunc(float64(r))) {
		return strconv.FormatFloat(float64(r), 'f', -1, 64) + "r/s"
	}
	return strconv.FormatFloat(float64(r)*60, 'f', 0, 64) + "r/m"
}
