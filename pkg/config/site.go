package config

import (
	"fmt"
	"net/netip"
	"os"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// Site is one site, as an nginx server block is: the host names it
// answers, what it adds to every answer, its per-path rules, and its own
// app, workers, static roots, certificates and limits. The top-level
// [app], [pool], [[static]], [[tls]] and [limits] are the site "default".
type Site struct {
	// Name names the site's units (workerd-NAME@N), its worker socket,
	// and the site in logs, metrics and `edgectl scale NAME N`.
	Name string `toml:"name"`
	// Names are the host names the site answers (Host, and SNI over
	// TLS); "*.example.com" is every name one label under example.com.
	Names []string `toml:"names"`
	// Default makes the site answer every name no site claims.
	Default bool `toml:"default"`
	// HTTPS is what plain HTTP gets: HTTPSOff (served as over TLS),
	// HTTPSRedirect or HTTPSOnly.
	HTTPS string `toml:"https"`
	// Canonical is the one name of Names the site is reached by: the
	// others are redirected to it.
	Canonical string `toml:"canonical"`
	// Headers are added to every answer of the site: the app's, the
	// static roots' and edged's own.
	Headers map[string]string `toml:"headers"`
	// OverrideHeaders are the names of Headers that replace the app's own
	// header of that name; by default the app's wins.
	OverrideHeaders []string `toml:"override_headers"`
	// Errors maps a status edged answers itself ("502") to an HTML file
	// sent as the body instead of the plain text one.
	Errors map[string]string `toml:"errors"`
	// AccessLog, when false, logs none of the site's requests (log.access
	// must be on for any to be).
	AccessLog *bool `toml:"access_log"`

	App    App        `toml:"app"`
	Pool   Pool       `toml:"pool"`
	Static []Static   `toml:"static"`
	TLS    TLSList    `toml:"tls"`
	Own    SiteLimits `toml:"limits"`
	Paths  []Path     `toml:"path"`

	// Limits is the top-level [limits] with the site's own on top.
	Limits Limits `toml:"-"`
	// ErrorPages is Errors by status.
	ErrorPages map[int]string `toml:"-"`
}

// What a site does with plain HTTP.
const (
	HTTPSOff      = "off"
	HTTPSRedirect = "redirect"
	HTTPSOnly     = "only"
)

// DefaultSite is the name of the site the top-level tables describe.
const DefaultSite = "default"

// Logged says the site's requests go to the access log.
func (s *Site) Logged() bool { return s.AccessLog == nil || *s.AccessLog }

// SiteLimits are the limits a site may set for itself; an unset one is
// the top-level [limits] value. The limits of a connection, met before
// its host is known (max_header, header_timeout, idle_timeout), are
// top-level only.
type SiteLimits struct {
	MaxBody              *Size     `toml:"max_body"`
	BodyTimeout          *Duration `toml:"body_timeout"`
	SendTimeout          *Duration `toml:"send_timeout"`
	QueueLength          *int      `toml:"queue_length"`
	QueueTimeout         *Duration `toml:"queue_timeout"`
	Rate                 *Rate     `toml:"rate"`
	Burst                *int      `toml:"burst"`
	ConnectionsPerClient *int      `toml:"connections_per_client"`
}

// validate checks the limits the site sets; the others were checked at
// the top level.
func (sl SiteLimits) validate(sc scope) {
	for _, d := range []struct {
		name string
		val  *Duration
	}{{"body_timeout", sl.BodyTimeout}, {"send_timeout", sl.SendTimeout}, {"queue_timeout", sl.QueueTimeout}} {
		if d.val != nil && *d.val <= 0 {
			sc.fail([]string{"limits", d.name}, "must be more than 0")
		}
	}
	if sl.MaxBody != nil && *sl.MaxBody <= 0 {
		sc.fail([]string{"limits", "max_body"}, "must be more than 0")
	}
	for _, n := range []struct {
		name string
		val  *int
	}{{"queue_length", sl.QueueLength}, {"burst", sl.Burst}, {"connections_per_client", sl.ConnectionsPerClient}} {
		if n.val != nil && *n.val < 0 {
			sc.fail([]string{"limits", n.name}, "must not be negative")
		}
	}
	if sl.Rate != nil && *sl.Rate < 0 {
		sc.fail([]string{"limits", "rate"}, "must not be negative")
	}
}

// over is top with the set limits of sl on top.
func (sl SiteLimits) over(top Limits) Limits {
	l := top
	if sl.MaxBody != nil {
		l.MaxBody = *sl.MaxBody
	}
	if sl.BodyTimeout != nil {
		l.BodyTimeout = *sl.BodyTimeout
	}
	if sl.SendTimeout != nil {
		l.SendTimeout = *sl.SendTimeout
	}
	if sl.QueueLength != nil {
		l.QueueLength = *sl.QueueLength
	}
	if sl.QueueTimeout != nil {
		l.QueueTimeout = *sl.QueueTimeout
	}
	if sl.Rate != nil {
		l.Rate = *sl.Rate
		if sl.Burst == nil {
			l.Burst = 0 // from the site's rate, not the top-level one
		}
	}
	if sl.Burst != nil {
		l.Burst = *sl.Burst
	}
	if sl.ConnectionsPerClient != nil {
		l.ConnectionsPerClient = *sl.ConnectionsPerClient
	}
	return l
}

// Path is a rule for the requests of a site whose path it matches, as an
// nginx location block: the first rule of the site that matches a
// request is the one that applies to it.
type Path struct {
	// Prefix is what the path starts with ("/login", "/admin/").
	Prefix string `toml:"prefix"`
	// Pattern is a whole path as path.Match takes it: "*" is any run of
	// characters but "/" ("/api/*/upload", "/*.php").
	Pattern string `toml:"pattern"`
	// Methods limits the rule to these methods; none is every method.
	Methods []string `toml:"methods"`
	// Rate and Burst limit each client's requests on these paths, apart
	// from the site's own rate.
	Rate  Rate `toml:"rate"`
	Burst int  `toml:"burst"`
	// MaxBody replaces limits.max_body on these paths; 0 keeps it.
	MaxBody Size `toml:"max_body"`
	// Allow and Deny are client addresses or CIDR prefixes: a client in
	// Deny gets 403, and so does one not in Allow when Allow is given.
	Allow []string `toml:"allow"`
	Deny  []string `toml:"deny"`
	// AuthBasic is the realm of HTTP basic authentication, asked for
	// against AuthBasicUserFile (an htpasswd file of bcrypt hashes).
	AuthBasic         string `toml:"auth_basic"`
	AuthBasicUserFile string `toml:"auth_basic_user_file"`
	// AccessLog, when false, logs none of these requests.
	AccessLog *bool `toml:"access_log"`

	AllowNets []netip.Prefix `toml:"-"`
	DenyNets  []netip.Prefix `toml:"-"`
}

// Logged says the rule's requests go to the access log.
func (p *Path) Logged() bool { return p.AccessLog == nil || *p.AccessLog }

// edgeErrors are the statuses edged answers itself that an error page
// may replace.
var edgeErrors = []int{400, 401, 403, 404, 405, 408, 413, 421, 429, 431, 500, 502, 503, 504}

// maxErrorPage bounds an error page: it is kept in memory.
const maxErrorPage = 1 << 20

// Site returns the site called name; "" is the default site, or the only
// one. ok is false when there is no such site.
func (c *Config) Site(name string) (s *Site, ok bool) {
	if name == "" {
		for _, s := range c.Sites {
			if s.Default {
				return s, true
			}
		}
		if len(c.Sites) == 1 {
			return c.Sites[0], true
		}
		return nil, false
	}
	for _, s := range c.Sites {
		if s.Name == name {
			return s, true
		}
	}
	return nil, false
}

// SiteNames lists the sites, in file order with the default site first.
func (c *Config) SiteNames() []string {
	names := make([]string, len(c.Sites))
	for i, s := range c.Sites {
		names[i] = s.Name
	}
	return names
}

// ForSite is the config as a worker of the site called name sees it: the
// site's app, pool, roots, certificates and limits in the top-level
// tables. "" is the default site, or the only one.
func (c *Config) ForSite(name string) (*Config, error) {
	s, ok := c.Site(name)
	if !ok {
		if name == "" {
			return nil, fmt.Errorf("%s has several sites and no default: name one (--site %s)", c.File, strings.Join(c.SiteNames(), ", --site "))
		}
		return nil, fmt.Errorf("%s has no site %q: its sites are %s", c.File, name, strings.Join(c.SiteNames(), ", "))
	}
	cc := *c
	cc.App, cc.Pool, cc.Static, cc.TLS, cc.Limits = s.App, s.Pool, s.Static, s.TLS, s.Limits
	cc.Sites = []*Site{s}
	return &cc, nil
}

// SetSocketDir puts every site's worker socket in dir (edgectl run's
// temporary directory).
func (c *Config) SetSocketDir(dir string) {
	c.Pool.SocketDir = dir
	for _, s := range c.Sites {
		s.Pool.SocketDir = dir
	}
}

// SetLogFormat overrides log.format (edgectl run asks its children for
// JSON: it renders their events itself); "" keeps the file's.
func (c *Config) SetLogFormat(format string) error {
	if format == "" {
		return nil
	}
	if !logFormat(format) {
		return fmt.Errorf("--log-format %q: %s", format, logFormats)
	}
	c.Log.Format = format
	return nil
}

// newSiteBlock is a [[site]] before its table is decoded into it: the
// defaults its app and pool start from.
func newSiteBlock() Site {
	d := Default()
	d.Pool.SocketDir = "" // the top-level one, once known
	d.Pool.GracefulTimeout = 0
	return Site{App: d.App, Pool: d.Pool}
}

// validateSites checks the [[site]] blocks and builds Sites: the top-level
// site first when it has an app, then each block.
func (c *Config) validateSites(v *validator) {
	c.Sites = nil
	if c.App.Module != "" || len(c.SiteBlocks) == 0 {
		top := &Site{
			Name: DefaultSite, Default: true, HTTPS: HTTPSOff,
			App: c.App, Pool: c.Pool, Static: c.Static, TLS: c.TLS, Limits: c.Limits,
		}
		top.Pool.Queue = QueueSocket
		if c.TLS.ACME {
			top.Names = c.ACME.Names
		}
		c.Sites = append(c.Sites, top)
	}
	names := map[string]string{} // normalised host name → site
	sites := map[string]int{}
	for i := range c.SiteBlocks {
		s := &c.SiteBlocks[i]
		sc := scope{v: v, key: []string{"site"}, display: fmt.Sprintf("site[%d]", i)}
		s.validate(sc, c)
		if prev, ok := sites[s.Name]; ok && s.Name != "" {
			sc.fail([]string{"name"}, fmt.Sprintf("%q is also site[%d]'s name: give each site a name of its own", s.Name, prev))
		}
		sites[s.Name] = i
		for _, n := range s.Names {
			key := normalizeName(n)
			if other, ok := names[key]; ok {
				sc.failElem([]string{"names"}, n, fmt.Sprintf("%q is also a name of site %q: a name belongs to one site", n, other))
			}
			names[key] = s.Name
		}
		c.Sites = append(c.Sites, s)
	}
	var defaults []string
	for _, s := range c.Sites {
		if s.Default {
			defaults = append(defaults, s.Name)
		}
	}
	if len(defaults) > 1 {
		msg := fmt.Sprintf("sites %s all say default = true: only one site may answer the names no site claims", strings.Join(defaults, ", "))
		if defaults[0] == DefaultSite {
			msg = fmt.Sprintf("the top-level [app] is already the default site: remove default = true from site %q, or move the top-level app into a [[site]] of its own", defaults[1])
		}
		v.failf([]string{"site", "default"}, "site.default", msg)
	}
}

func (s *Site) validate(sc scope, c *Config) {
	switch {
	case s.Name == "":
		sc.fail([]string{"name"}, "missing: give the site a name such as name = \"shop\"; it names the site's workers (workerd-shop@N) and appears in logs and metrics")
	case s.Name == DefaultSite:
		sc.fail([]string{"name"}, "\"default\" is the name of the top-level site: choose another")
	case s.Name == "queue" || s.Name == "workers":
		sc.fail([]string{"name"}, fmt.Sprintf("%q is taken: queue.sock is the top-level site's socket, edged-workers the group of the worker sockets; choose another", s.Name))
	case !siteName(s.Name):
		why := "use lower-case letters, digits and \"_\", starting with a letter, at most 24 (it names the site's user, edged-NAME)"
		if strings.Contains(s.Name, "-") {
			why = "a \"-\" would cut the site's unit names (workerd-NAME@N) in two: use \"_\""
		}
		sc.fail([]string{"name"}, fmt.Sprintf("%q is not a site name: %s", s.Name, why))
	}
	if len(s.Names) == 0 && !s.Default {
		sc.fail([]string{"names"}, "missing: list the host names the site answers, such as names = [\"shop.example\", \"www.shop.example\"], or say default = true")
	}
	for i, n := range s.Names {
		if why := hostNameProblem(n); why != "" {
			sc.failElem([]string{"names"}, n, fmt.Sprintf("names[%d] %q %s", i, n, why))
		}
		s.Names[i] = normalizeName(n)
	}
	switch s.HTTPS {
	case "":
		s.HTTPS = HTTPSOff
	case HTTPSOff, HTTPSRedirect, HTTPSOnly:
	default:
		sc.fail([]string{"https"}, fmt.Sprintf("%q is not a choice: \"redirect\" (HTTP answered with a redirect to HTTPS), \"only\" (HTTP refused with 403) or \"off\" (HTTP served too)", s.HTTPS))
		s.HTTPS = HTTPSOff
	}
	if s.HTTPS != HTTPSOff && len(c.Listen.HTTPS) == 0 {
		sc.fail([]string{"https"}, fmt.Sprintf("%q needs an HTTPS listener: set listen.https = [\"0.0.0.0:443\"] and give the site its [[site.tls]]", s.HTTPS))
	}
	if s.Canonical != "" {
		s.Canonical = normalizeName(s.Canonical)
		if !slices.Contains(s.Names, s.Canonical) || strings.HasPrefix(s.Canonical, "*.") {
			sc.fail([]string{"canonical"}, fmt.Sprintf("%q is not one of the site's names: it must be one of names (not a wildcard)", s.Canonical))
		}
	}
	s.validateHeaders(sc)
	s.validateErrors(sc)

	// The app, pool, roots and certificates, as at the top level.
	s.App.validate(sc)
	if s.Pool.SocketDir == "" {
		s.Pool.SocketDir = c.Pool.SocketDir
	}
	if s.Pool.GracefulTimeout == 0 {
		s.Pool.GracefulTimeout = c.Pool.GracefulTimeout
	}
	s.Pool.validate(sc)
	s.Pool.Queue = s.Name + ".sock"
	seen := map[string]bool{}
	for i := range s.Static {
		s.Static[i].validate(sc, i, seen)
	}
	s.TLS.validate(sc)
	if s.TLS.Any() && len(c.Listen.HTTPS) == 0 {
		sc.fail([]string{"tls"}, "certificates but no HTTPS listener: set listen.https = [\"0.0.0.0:443\"]")
	}
	if s.TLS.ACME {
		s.validateACME(sc)
	}
	s.Own.validate(sc)
	s.Limits = s.Own.over(c.Limits)
	if s.Limits.Rate > 0 && s.Limits.Burst == 0 {
		s.Limits.Burst = max(1, int(s.Limits.Rate.PerSecond()+0.999))
	}
	for i := range s.Paths {
		s.Paths[i].validate(sc.elem("path", i), s.Paths[:i])
	}
}

// siteName says n can name a site: it becomes part of unit names, a
// socket file name and a Prometheus label.
func siteName(n string) bool {
	if n == "" || len(n) > 24 || n[0] < 'a' || n[0] > 'z' {
		return false
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// normalizeName is a host name as sites are matched by: lower case,
// without a trailing dot.
func normalizeName(n string) string {
	return strings.TrimSuffix(strings.ToLower(strings.TrimSpace(n)), ".")
}

// hostNameProblem says what is wrong with a site's host name, "" if
// nothing: a DNS name (with an optional leading "*." label) or an IP
// address, with no port or scheme.
func hostNameProblem(n string) string {
	if strings.Contains(n, "://") {
		return "is a URL: give the host name alone, such as \"shop.example\""
	}
	if _, err := netip.ParseAddr(n); err == nil {
		return ""
	}
	if strings.Contains(n, ":") {
		return "has a port: give the host name alone; the listeners say the ports"
	}
	name := strings.TrimSuffix(n, ".")
	name = strings.TrimPrefix(name, "*.")
	if name == "" || len(name) > 253 {
		return "is not a host name"
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return "is not a host name: labels of 1 to 63 letters, digits and \"-\", separated by dots"
		}
		for i := 0; i < len(label); i++ {
			c := label[i] | 0x20
			if !(c >= 'a' && c <= 'z' || label[i] >= '0' && label[i] <= '9' || label[i] == '-') {
				if label[i] == '*' {
					return "has a \"*\" that is not a whole first label: write \"*.example.com\""
				}
				return fmt.Sprintf("is not a host name: %q is not a letter, digit, \"-\" or \".\" (write an internationalised name in its xn-- form)", label[i])
			}
		}
	}
	return ""
}

// hopHeaders are the fields of one connection, which no site may add.
var hopHeaders = []string{"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te", "trailer", "content-length", "content-type", "content-encoding", "date", "server"}

func (s *Site) validateHeaders(sc scope) {
	canon := map[string]string{}
	for name, val := range s.Headers {
		key := []string{"headers", name}
		switch {
		case !httpToken(name):
			sc.fail(key, fmt.Sprintf("%q is not a header name: letters, digits and !#$%%&'*+-.^_`|~ only", name))
		case slices.Contains(hopHeaders, strings.ToLower(name)):
			sc.fail(key, fmt.Sprintf("%q describes the answer or its connection, which edged sets: it cannot be added", name))
		}
		if strings.ContainsAny(val, "\r\n\x00") {
			sc.fail(key, "holds a line break or NUL: a header value is one line")
		}
		canon[strings.ToLower(name)] = name
	}
	for i, name := range s.OverrideHeaders {
		if _, ok := canon[strings.ToLower(name)]; !ok {
			sc.failElem([]string{"override_headers"}, name, fmt.Sprintf("override_headers[%d] %q is not in [site.headers]: list names of headers the site adds", i, name))
		}
	}
}

func (s *Site) validateErrors(sc scope) {
	s.ErrorPages = map[int]string{}
	codes := make([]string, 0, len(s.Errors))
	for k := range s.Errors {
		codes = append(codes, k)
	}
	sort.Strings(codes)
	for _, k := range codes {
		key := []string{"errors", k}
		code, err := strconv.Atoi(k)
		if err != nil || !slices.Contains(edgeErrors, code) {
			list := make([]string, len(edgeErrors))
			for i, c := range edgeErrors {
				list[i] = strconv.Itoa(c)
			}
			sc.fail(key, fmt.Sprintf("%q is not a status edged answers itself: use one of %s (the app's own answers are the app's)", k, strings.Join(list, ", ")))
			continue
		}
		p := sc.path(key, s.Errors[k], true)
		if fi, err := os.Stat(p); err == nil {
			switch {
			case fi.IsDir():
				sc.fail(key, fmt.Sprintf("%q is a directory: give the page's file", p))
			case fi.Size() > maxErrorPage:
				sc.fail(key, fmt.Sprintf("%q is %d bytes: an error page is kept in memory, keep it under 1 MiB", p, fi.Size()))
			}
		}
		s.ErrorPages[code] = p
	}
}

func (p *Path) validate(sc scope, before []Path) {
	switch {
	case p.Prefix == "" && p.Pattern == "":
		sc.fail([]string{"prefix"}, "missing: give the paths the rule is for, prefix = \"/login\" or pattern = \"/api/*/upload\"")
	case p.Prefix != "" && p.Pattern != "":
		sc.fail([]string{"pattern"}, "give prefix or pattern, not both")
	case p.Prefix != "" && !strings.HasPrefix(p.Prefix, "/"):
		sc.fail([]string{"prefix"}, fmt.Sprintf("%q must start with \"/\"", p.Prefix))
	case p.Pattern != "":
		if !strings.HasPrefix(p.Pattern, "/") {
			sc.fail([]string{"pattern"}, fmt.Sprintf("%q must start with \"/\"", p.Pattern))
		} else if _, err := path.Match(p.Pattern, "/"); err != nil {
			sc.fail([]string{"pattern"}, fmt.Sprintf("%q: %v; \"*\" is any run of characters but \"/\", \"?\" one, [a-z] a class", p.Pattern, err))
		}
	}
	for i, m := range p.Methods {
		if !Method(m) {
			sc.failElem([]string{"methods"}, m, fmt.Sprintf("methods[%d] %q is not a method such as \"POST\"", i, m))
		}
	}
	if p.Prefix != "" && p.Pattern == "" {
		for j, b := range before {
			if b.Pattern == "" && b.Prefix != "" && strings.HasPrefix(p.Prefix, b.Prefix) {
				what := "every"
				if len(b.Methods) > 0 {
					what = "its methods'" // and those requests would skip this rule's checks
				}
				sc.fail([]string{"prefix"}, fmt.Sprintf("%q is not reached by every request: the rule before it for %q (path[%d]) takes %s requests under it first; put the longer prefix first", p.Prefix, b.Prefix, j, what))
				break
			}
		}
	}
	if p.Rate < 0 {
		sc.fail([]string{"rate"}, "must not be negative")
	}
	if p.Burst < 0 {
		sc.fail([]string{"burst"}, "must not be negative")
	}
	if p.Rate > 0 && p.Burst == 0 {
		p.Burst = max(1, int(p.Rate.PerSecond()+0.999))
	}
	if p.Burst > 0 && p.Rate == 0 {
		sc.fail([]string{"burst"}, "a burst with no rate: give rate too, such as rate = \"5r/s\"")
	}
	if p.MaxBody < 0 {
		sc.fail([]string{"max_body"}, "must not be negative")
	}
	p.AllowNets = sc.nets([]string{"allow"}, p.Allow)
	p.DenyNets = sc.nets([]string{"deny"}, p.Deny)
	switch {
	case p.AuthBasic != "" && p.AuthBasicUserFile == "":
		sc.fail([]string{"auth_basic_user_file"}, "missing: basic authentication needs the htpasswd file of its users (made with htpasswd -B)")
	case p.AuthBasic == "" && p.AuthBasicUserFile != "":
		sc.fail([]string{"auth_basic"}, "missing: give the realm the browser shows, such as auth_basic = \"staging\"")
	}
	if strings.ContainsAny(p.AuthBasic, "\"\\\r\n") {
		sc.fail([]string{"auth_basic"}, "must not hold quotes, backslashes or line breaks")
	}
	if p.AuthBasicUserFile != "" {
		p.AuthBasicUserFile = sc.path([]string{"auth_basic_user_file"}, Credential("htpasswd", sc.v.abs(p.AuthBasicUserFile)), true)
	}
}

// nets parses a list of addresses and CIDR prefixes.
func (sc scope) nets(key []string, list []string) []netip.Prefix {
	var out []netip.Prefix
	for i, s := range list {
		pre, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				sc.failElem(key, s, fmt.Sprintf("%s[%d] %q is not an address or CIDR prefix such as \"10.0.0.0/8\"", key[len(key)-1], i, s))
				continue
			}
			pre = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, pre.Masked())
	}
	return out
}

// httpToken says s is an HTTP token (RFC 9110 5.6.2).
func httpToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// Method says m is a method as edged takes them, as nginx does:
// upper-case letters, "_" and "-". The edge refuses any other with a 400,
// and a path rule may name no other.
func Method(m string) bool {
	if m == "" {
		return false
	}
	for i := 0; i < len(m); i++ {
		if c := m[i]; (c < 'A' || c > 'Z') && c != '_' && c != '-' {
			return false
		}
	}
	return true
}
