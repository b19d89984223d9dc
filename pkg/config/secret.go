package config

import (
	"fmt"
	"math"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// A secret in the config is refused: by its value, whatever the key is
// called (a URL with a password, a DSN, a private key, a long random
// token), and by its key's name unless the value is plainly no secret
// (a small number, a boolean, nothing).

// SecretError is why a value was refused as a secret. The error of Load
// and Parse wraps one for each such value, so that a caller tells a
// secret from other problems with errors.As; it never holds the value.
type SecretError struct {
	// Key is the key holding the value, as the error message names it
	// ("app.env.DATABASE_URL"); "" for a private key pasted where no key
	// can be named.
	Key string
	// Why says what the value looks like: "holds a URL with a password in it".
	Why string
}

func (e *SecretError) Error() string {
	if e.Key == "" {
		return "a value " + e.Why
	}
	return e.Key + " " + e.Why
}

// secretWords are parts of key names that hold secrets rather than settings.
var secretWords = []string{"secret", "password", "passwd", "token", "api_key", "apikey", "private_key", "access_key"}

// secrets walks the decoded document and calls found for each key whose
// value is refused, with the reason.
func secrets(doc map[string]any, found func(k toml.Key, why string)) {
	var walk func(k toml.Key, v any)
	walk = func(k toml.Key, v any) {
		switch v := v.(type) {
		case map[string]any:
			if len(k) >= 2 && k[len(k)-2] == "app" && k[len(k)-1] == "credentials" {
				return // names of credentials, never values
			}
			for name, sub := range v {
				walk(append(k[:len(k):len(k)], name), sub)
			}
		case []map[string]any:
			for _, sub := range v {
				walk(k, sub)
			}
		case []any:
			for _, sub := range v {
				walk(k, sub)
			}
		default:
			if why := secretValue(v); why != "" {
				found(k, why)
			} else if secretName(k) && !harmless(v) {
				found(k, "looks like a secret by its name")
			}
		}
	}
	for name, v := range doc {
		walk(toml.Key{name}, v)
	}
}

// secretName says the last part of k names a secret.
func secretName(k toml.Key) bool {
	last := strings.ToLower(k[len(k)-1])
	for _, w := range secretWords {
		if strings.Contains(last, w) {
			return true
		}
	}
	return false
}

// harmless says v cannot be a secret: no string, or a small number, a
// boolean, an empty string.
func harmless(v any) bool {
	s, ok := v.(string)
	if !ok {
		return true
	}
	s = strings.TrimSpace(s)
	if _, err := strconv.ParseBool(s); err == nil || s == "" {
		return true
	}
	switch strings.ToLower(s) {
	case "yes", "no", "on", "off", "none", "null":
		return true
	}
	return len(s) <= 6 && strings.Trim(s, "0123456789") == ""
}

const whyPrivateKey = "holds a private key"

var awsKeyID = regexp.MustCompile(`^(AKIA|ASIA)[0-9A-Z]{16}$`)

// secretValue says what kind of secret the value v is, or "".
func secretValue(v any) string {
	s, ok := v.(string)
	if !ok {
		return ""
	}
	s = strings.TrimSpace(s)
	if strings.Contains(s, "-----BEGIN") && strings.Contains(s, "PRIVATE KEY") {
		return whyPrivateKey
	}
	if strings.Contains(s, "://") {
		u, err := url.Parse(s)
		if err == nil && u.User != nil {
			if p, set := u.User.Password(); set && p != "" {
				return "holds a URL with a password in it"
			}
			if token(u.User.Username()) {
				return "holds a DSN: a URL with a key in it"
			}
		}
		return ""
	}
	if awsKeyID.MatchString(s) || token(s) {
		return "holds what looks like a key or token (long and random)"
	}
	return ""
}

// token says s looks like a random key: long, of one word, letters and
// digits mixed, and high in entropy.
func token(s string) bool {
	if len(s) < 20 || strings.ContainsAny(s, " \t/:@") {
		return false
	}
	var letters, digits int
	count := map[rune]int{}
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z':
			letters++
		case r >= '0' && r <= '9':
			digits++
		case strings.ContainsRune("-_+=.~", r):
		default:
			return false
		}
		count[r]++
	}
	if letters == 0 || digits == 0 {
		return false
	}
	var bits float64
	for _, n := range count {
		p := float64(n) / float64(len(s))
		bits -= p * math.Log2(p)
	}
	return bits >= 3.5
}

func secretAdvice(k toml.Key, why string) string {
	name := k[len(k)-1]
	env := strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
	cred := strings.ToLower(strings.ReplaceAll(name, "_", "-"))
	return fmt.Sprintf("%s, and secrets do not belong in the config file (it is world-readable and ends up in backups): "+
		"put the value in /etc/edged/credentials/%s, readable only by root (the shipped workerd@.service already loads that directory with LoadCredential=app:/etc/edged/credentials), "+
		"and write [app.credentials] %s = %q here; the app then reads it from the environment as %s",
		why, cred, env, cred, env)
}

// SecretValue says what kind of secret s looks like (a URL with a
// password, a DSN, a private key, a token), or "" when none: the judge
// the config's values get, for other places values come from (edgectl
// doctor reads the app's environment with it).
func SecretValue(s string) string { return secretValue(s) }
