package worker

import (
	"fmt"
	"strings"

	"github.com/rs/zerolog"
)

// AppKey is what a worker's Python process judged of the app's secret key
// at import (edged_worker/appkey.py). It never holds the key.
type AppKey struct {
	Framework string // "flask" or "django"
	// Source is where the key came from: "environment", "credential",
	// "literal" (in the code, at Where), "default" (a known default),
	// "process" (made in the process, or read from where edged cannot
	// see), or "none" (the app has no key).
	Source string
	Where  string // file:line of a literal; the variable of an environment key
	Key    string // the setting judged: SECRET_KEY, JWT_SECRET_KEY...
	Bits   int    // the randomness it can hold, estimated
	Weak   bool   // under 256 bits
	// Debug and AllowedAny are Django's DEBUG = True and
	// ALLOWED_HOSTS = ['*'].
	Debug, AllowedAny bool
	// Fingerprint tells two processes' keys apart (10 bits of a keyed
	// hash).
	Fingerprint int
	// Differs: two imports (--check) made two different keys.
	Differs bool
}

func appKeyOf(ev map[string]any) *AppKey {
	k := &AppKey{}
	k.Framework, _ = ev["framework"].(string)
	k.Source, _ = ev["source"].(string)
	k.Where, _ = ev["where"].(string)
	k.Key, _ = ev["key"].(string)
	bits, _ := ev["bits"].(float64)
	fp, _ := ev["fingerprint"].(float64)
	k.Bits, k.Fingerprint = int(bits), int(fp)
	k.Weak, _ = ev["weak"].(bool)
	k.Debug, _ = ev["debug"].(bool)
	k.AllowedAny, _ = ev["allowed_any"].(bool)
	return k
}

// Verdict is "ok", "warn" or "fail", with what is wrong and what to do;
// the same judgement as edgectl doctor's secrets check makes of a
// running pool.
func (k *AppKey) Verdict() (verdict string, problems []string, fix string) {
	name := "the app's " + k.Key
	if k.Key == "" {
		name = "the app's secret key"
	}
	fix = `put a random key (python3 -c 'import secrets; print(secrets.token_urlsafe(48))') in a root-only file under /etc/edged/credentials/ and read it from the environment: [app.credentials] SECRET_KEY = "FILE"`
	verdict = "ok"
	worse := func(v string) {
		if v == "fail" || verdict == "ok" {
			verdict = v
		}
	}
	switch k.Source {
	case "default":
		worse("fail")
		p := name + " is a known default"
		if k.Where != "" {
			p += " (" + k.Where + ")"
		}
		problems = append(problems, p+": anyone can sign sessions and cookies the app trusts")
	case "literal":
		worse("warn")
		p := name + " is a literal in the code"
		if k.Where != "" {
			p += " at " + k.Where
		}
		problems = append(problems, p+": whoever reads the code (a repository, a backup) can forge sessions")
	case "process":
		if k.Differs {
			worse("fail")
			problems = append(problems, name+" is made anew by each process (os.urandom?): every worker has its own, and a session made by one is refused by the others")
		} else {
			worse("warn")
			problems = append(problems, name+" is made in the process or read from where edged cannot see: if each worker makes its own, a session made by one is refused by the others")
		}
	}
	if k.Weak && k.Source != "none" && k.Source != "default" {
		worse("warn")
		problems = append(problems, fmt.Sprintf("%s holds about %d bits of randomness, under 32 bytes' (256)", name, k.Bits))
	}
	if k.Debug {
		worse("warn")
		problems = append(problems, "Django runs with DEBUG = True: error pages show settings and code to anyone")
		fix += "; set DEBUG = False"
	}
	if k.AllowedAny {
		worse("warn")
		problems = append(problems, "Django's ALLOWED_HOSTS = ['*'] answers any Host header")
		fix += "; list the site's names in ALLOWED_HOSTS"
	}
	if verdict == "ok" {
		fix = ""
	}
	return verdict, problems, fix
}

// Summary is the one line --check prints and the log says.
func (k *AppKey) Summary() string {
	v, problems, _ := k.Verdict()
	if v == "ok" {
		switch k.Source {
		case "none":
			return fmt.Sprintf("%s app has no secret key", k.Framework)
		case "environment", "credential":
			return fmt.Sprintf("%s from the %s (%s), about %d bits: ok", k.Key, k.Source, k.Where, k.Bits)
		}
		return k.Key + ": ok"
	}
	return strings.Join(problems, "; ")
}

// log says what the worker found, at the level it deserves.
func (k *AppKey) log(log zerolog.Logger) {
	v, _, fix := k.Verdict()
	e := log.Info()
	switch v {
	case "fail":
		e = log.Error()
	case "warn":
		e = log.Warn()
	}
	e = e.Str("framework", k.Framework).Str("source", k.Source).Str("key", k.Key).Int("bits", k.Bits)
	if k.Where != "" {
		e = e.Str("where", k.Where)
	}
	if fix != "" {
		e = e.Str("fix", fix)
	}
	e.Msg("app secret key: " + k.Summary())
}
