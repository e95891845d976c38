package configs

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
)

// validator checks a decoded, defaulted Config. It also fills the values
// derived while checking (Endpoint.Prefixes, canonical codec and transport
// spellings) so that each value is parsed in one place only.
type validator struct {
	c    *Config
	t    tree
	ps   *problems
	opts parseOptions
}

// validate appends every problem in c to ps; it never stops at the first.
func validate(c *Config, t tree, ps *problems, opts parseOptions) {
	v := validator{c: c, t: t, ps: ps, opts: opts}
	v.dataDir()
	v.sip()
	v.endpoints()
	v.huntLists()
	v.numbers()
	v.callControl()
	if v.c.Blocklist != nil {
		v.blocklist("blocklist", v.c.Blocklist)
	}
	v.media()
	v.api()
	v.log()
	v.permissions()
	v.recording()
	v.nodeID()
	v.cdr()
	v.events()
	v.prompts()
	v.envSecrets()
}

func (v validator) dataDir() {
	if v.c.DataDir == "" {
		v.add("data_dir", "must not be empty; remove the key to use %q", DefaultDataDir)
	}
}

// add reports a problem with the value at path, on that value's line (or
// its nearest written parent's when the key is absent).
func (v validator) add(path, format string, args ...any) {
	v.ps.add(v.t.line(path), path, format, args...)
}

// addAt reports a problem about path on the line of another path, for
// problems caused by a neighbouring value.
func (v validator) addAt(linePath, path, format string, args ...any) {
	v.ps.add(v.t.line(linePath), path, format, args...)
}

func (v validator) api() {
	a := &v.c.API
	v.secret("api.token", a.Token)
	v.secret("api.read_token", a.ReadToken)
	if a.ReadToken.IsSet() && a.Token.IsSet() && a.ReadToken.Resolve() != "" && a.ReadToken.Resolve() == a.Token.Resolve() {
		v.add("api.read_token", "is the same secret as api.token: a read-only token must differ, or it could do everything the token can")
	}
	v.secret("api.webhook.app_secret", a.Webhook.AppSecret)
	v.secret("api.webhook.verify_token", a.Webhook.VerifyToken)
	if a.Webhook.AppSecret.IsSet() && !a.Webhook.VerifyToken.IsSet() {
		v.add("api.webhook.verify_token", "is required when app_secret is set: Meta sends it when subscribing the webhook; give value or env")
	}
	if a.Listen == "" {
		return // disabled on purpose
	}
	if msg := checkListenAddr(a.Listen, true); msg != "" {
		v.add("api.listen", "%s (or \"\" to turn the API off)", msg)
	}
	if a.Token.IsSet() {
		return
	}
	// The API then changes permissions or serves recordings; it must not
	// do so for anyone who can reach it.
	var cause, what string
	switch {
	case v.c.Permissions.Enabled:
		cause, what = "permissions.enabled", "permissions are enabled"
	case v.c.Recording.Enabled:
		cause, what = "recording.enabled", "recording is enabled"
	default:
		for i, n := range v.c.Numbers {
			if n.Recording != nil && *n.Recording {
				cause, what = fmt.Sprintf("numbers[%d].recording", i), fmt.Sprintf("%s is recorded", n.Number)
				break
			}
		}
	}
	if cause == "" {
		return
	}
	msg := "is required when %s and the API listens (on %s): give value or env, or set api.listen to \"\" to turn the API off"
	if v.t.has("api") {
		v.add("api.token", msg, what, a.Listen)
	} else {
		v.addAt(cause, "api.token", msg, what, a.Listen)
	}
}

func (v validator) log() {
	switch v.c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		v.add("log.level", "%q is not a level; use debug, info, warn or error", v.c.Log.Level)
	}
	switch v.c.Log.Format {
	case "text", "json":
	default:
		v.add("log.format", "%q is not a format; use text or json", v.c.Log.Format)
	}
}

// maxNodeIDLen bounds node_id: it is in every record and event.
const maxNodeIDLen = 64

func nodeIDChar(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-'
}

func (v validator) nodeID() {
	id := v.c.NodeID
	switch {
	case id == "":
		v.add("node_id", "must not be empty; remove the key to use the host name (%s)", DefaultNodeID())
	case len(id) > maxNodeIDLen:
		v.add("node_id", "is longer than %d characters", maxNodeIDLen)
	case strings.IndexFunc(id, func(r rune) bool { return !nodeIDChar(r) }) >= 0:
		v.add("node_id", "%q may hold only letters, digits, '.', '_' and '-'", id)
	}
}

// envSecrets reports every secret and password that names an environment
// variable which is unset or empty and has no inline value to fall back
// on. Without this check the secret would silently be "": Meta's webhook
// turned off, Meta's 407 left unanswered, a password that is empty, events
// signed with an empty key. Under envWarn (-check-config, which may run
// in another environment than the service) these are warnings.
func (v validator) envSecrets() {
	if v.opts.skipEnv {
		return
	}
	for _, r := range v.c.secretRefs() {
		if r.env == "" || r.value != "" || !envVarName.MatchString(r.env) || os.Getenv(r.env) != "" {
			continue
		}
		const msg = "the environment variable %s is not set (or empty) and no value is given; set it in wagate's environment or give value"
		if v.opts.envWarn {
			v.ps.warn(v.t.line(r.envPath), r.envPath, msg, r.env)
		} else {
			v.add(r.envPath, msg, r.env)
		}
	}
}

// transport checks a transport name and returns its canonical (lower-case)
// spelling; SIP writes transports in upper case, so operators will too.
func (v validator) transport(path, t string) string {
	switch lt := strings.ToLower(t); lt {
	case "udp", "tcp", "tls":
		return lt
	}
	v.add(path, "%q is not a transport; use udp, tcp or tls", t)
	return t
}

func (v validator) positive(path string, d Duration) {
	if d <= 0 {
		v.add(path, "%s must be greater than 0", d)
	}
}

func (v validator) atLeastOne(path string, n int) bool {
	if n < 1 {
		v.add(path, "%d must be at least 1", n)
		return false
	}
	return true
}

func (v validator) endpoint(name string) *Endpoint {
	for i := range v.c.Endpoints {
		if v.c.Endpoints[i].Name == name {
			return &v.c.Endpoints[i]
		}
	}
	return nil
}

func (v validator) hasKind(kind string) bool {
	for _, e := range v.c.Endpoints {
		if e.Kind == kind {
			return true
		}
	}
	return false
}

// checkListenAddr returns a sentence saying what is wrong with a listen
// address, or "". Only SIP listeners insist on an IP: binding to a name that
// resolves to several addresses would listen on an arbitrary one of them.
func checkListenAddr(addr string, allowName bool) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Sprintf("%q is not host:port (e.g. \"127.0.0.1:5072\", or \":5072\" for every address)", addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Sprintf("%q has no valid port (1–65535)", addr)
	}
	if host == "" {
		return ""
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return ""
	}
	if allowName && validHostName(host) {
		return ""
	}
	return fmt.Sprintf("%q does not start with an IP address", addr)
}

// parsePrefix reads a CIDR or a bare IP (meaning that one address). Host
// bits are cleared and IPv4-mapped IPv6 is folded to IPv4, so that equal
// networks compare equal and match packets from either socket family.
func parsePrefix(s string) (netip.Prefix, bool) {
	s = strings.TrimSpace(s)
	if !strings.Contains(s, "/") {
		ip, err := netip.ParseAddr(s)
		if err != nil || ip.Zone() != "" {
			return netip.Prefix{}, false
		}
		ip = ip.Unmap()
		return netip.PrefixFrom(ip, ip.BitLen()), true
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, false
	}
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p.Masked(), true
}

// canonicalCodec matches a codec name case-insensitively and returns the
// spelling used in SDP.
func canonicalCodec(name string) (string, bool) {
	for _, c := range []string{CodecOpus, CodecPCMU, CodecPCMA} {
		if strings.EqualFold(name, c) {
			return c, true
		}
	}
	return "", false
}

func validHost(h string) bool {
	if _, err := netip.ParseAddr(h); err == nil {
		return true
	}
	return validHostName(h)
}

// validHostName checks DNS name syntax (RFC 1123 labels).
func validHostName(h string) bool {
	h = strings.TrimSuffix(h, ".")
	if h == "" || len(h) > 253 {
		return false
	}
	labels := strings.Split(h, ".")
	// An all-numeric last label is a mistyped IP address ("10.0.0.300"),
	// never a name: no top-level domain is numeric.
	if digitsOnly.MatchString(labels[len(labels)-1]) {
		return false
	}
	for _, label := range labels {
		if len(label) == 0 || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}

// quotable reports whether s can be written inside a quoted-string of a
// SIP header (realm="…", username="…") without escaping.
func quotable(s string) bool {
	return !hasControl(s) && !strings.ContainsAny(s, "\"\\")
}

func hasControl(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool { return r < ' ' || r == 0x7f })
}
