package configs

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
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

func (v validator) sip() {
	s := &v.c.SIP
	if len(s.Listen) == 0 {
		v.add("sip.listen", "at least one listener is needed; remove the key to listen on %s (UDP and TCP)", DefaultSIPAddress)
	}
	seen := map[string]int{}
	for i := range s.Listen {
		l := &s.Listen[i]
		p := fmt.Sprintf("sip.listen[%d]", i)
		l.Transport = v.transport(p+".transport", l.Transport)
		if msg := checkListenAddr(l.Address, false); msg != "" {
			v.add(p+".address", "%s", msg)
		}
		v.listenerTLS(p, l)
		// tcp and tls listeners are both TCP sockets: they cannot share a
		// port, while udp and tcp can.
		proto := l.Transport
		if proto == "tls" {
			proto = "tcp"
		}
		key := proto + " " + l.Address
		switch first, dup := seen[key]; {
		case !dup:
			seen[key] = i
		case s.Listen[first].Transport == l.Transport:
			v.add(p, "%s %s is already listed at sip.listen[%d]", l.Transport, l.Address, first)
		default:
			v.add(p, "%s %s takes the port of the %s listener at sip.listen[%d]; tcp and tls need different ports",
				l.Transport, l.Address, s.Listen[first].Transport, first)
		}
	}
	if ip, err := netip.ParseAddr(s.Host); err == nil && ip.IsUnspecified() {
		v.add("sip.host", "%s cannot be reached by peers; give the address or name they should send SIP to", s.Host)
	} else if !validHost(s.Host) {
		v.add("sip.host", "%q is not an IP address or host name", s.Host)
	}
	if s.UserAgent == "" {
		v.add("sip.user_agent", "must not be empty; remove the key to send %q", DefaultUserAgent)
	} else if hasControl(s.UserAgent) {
		v.add("sip.user_agent", "must not contain line breaks or control characters")
	}
	v.positive("sip.ring_timeout", s.RingTimeout)
	if s.MaxCalls < 0 {
		v.add("sip.max_calls", "%d is negative; use 0 for no cap", s.MaxCalls)
	}
	v.edge(s)
	v.trace(&s.Trace)
}

// edge checks the limits of the SIP edge.
func (v validator) edge(s *SIP) {
	switch s.UnknownSources {
	case UnknownSourcesDrop, UnknownSourcesReject:
	default:
		v.add("sip.unknown_sources", "%q is not drop or reject", s.UnknownSources)
	}
	// Below these a normal INVITE from Meta (about 2 KB with DTLS
	// candidates, 20 headers) would be refused.
	if s.Limits.MaxMessageSize < 4096 || s.Limits.MaxMessageSize > 65535 {
		v.add("sip.limits.max_message_size", "%d must be between 4096 and 65535 bytes", s.Limits.MaxMessageSize)
	}
	if s.Limits.MaxHeaders < 20 {
		v.add("sip.limits.max_headers", "%d must be at least 20", s.Limits.MaxHeaders)
	}
	if s.Limits.MaxBodySize < 1024 || s.Limits.MaxBodySize > s.Limits.MaxMessageSize {
		v.add("sip.limits.max_body_size", "%d must be between 1024 and sip.limits.max_message_size (%d)", s.Limits.MaxBodySize, s.Limits.MaxMessageSize)
	}
	if s.Flood.StrangerRate < 0 {
		v.add("sip.flood.stranger_rate", "%d is negative; use 0 for no limit", s.Flood.StrangerRate)
	}
	v.positive("sip.flood.block_time", s.Flood.BlockTime)
	if s.TCP.MaxConnections < 0 {
		v.add("sip.tcp.max_connections", "%d is negative; use 0 for no cap", s.TCP.MaxConnections)
	}
	v.atLeastOne("sip.tcp.max_connections_per_source", s.TCP.MaxConnectionsPerSource)
	v.positive("sip.tcp.idle_timeout", s.TCP.IdleTimeout)
	if d := s.TransactionLinger.D(); d < time.Second || d > 32*time.Second {
		v.add("sip.transaction_linger", "%s must be between 1s and 32s (RFC 3261's 64·T1)", d)
	}
	if s.MaxCPUPercent < 0 || s.MaxCPUPercent > 100 {
		v.add("sip.max_cpu_percent", "%d must be between 0 (off) and 100", s.MaxCPUPercent)
	}
	v.positive("sip.tcp.tls_handshake_timeout", s.TCP.TLSHandshakeTimeout)
}

// maxHEPPassword bounds sip.trace.hep.password: it travels in every HEP
// packet.
const maxHEPPassword = 256

// trace checks the SIP trace and its HEP collector.
func (v validator) trace(t *SIPTrace) {
	h := t.HEP
	if h == nil {
		return
	}
	const p = "sip.trace.hep"
	if h.Address == "" {
		v.add(p+".address", "is required: the collector's host:port, e.g. \"homer.example.com:9060\" (remove hep to turn the export off)")
	} else if msg := checkHEPAddress(h.Address); msg != "" {
		v.add(p+".address", "%s", msg)
	}
	if h.AgentID < 0 || int64(h.AgentID) > math.MaxUint32 {
		v.add(p+".agent_id", "%d must be between 0 and %d", h.AgentID, uint32(math.MaxUint32))
	}
	v.secret(p+".password", h.Password)
	if len(h.Password.Value) > maxHEPPassword {
		v.add(p+".password.value", "is longer than %d characters", maxHEPPassword)
	}
}

// checkHEPAddress returns a sentence saying what is wrong with a HEP
// collector address, or "".
func checkHEPAddress(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Sprintf("%q is not host:port (e.g. \"192.0.2.10:9060\")", addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Sprintf("%q has no valid port (1–65535)", addr)
	}
	if host == "" {
		return fmt.Sprintf("%q names no host to send to", addr)
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		if ip.IsUnspecified() {
			return fmt.Sprintf("%q names no host to send to", addr)
		}
		return ""
	}
	if !validHostName(host) {
		return fmt.Sprintf("%q is not an IP address or host name with a port", addr)
	}
	return ""
}

// listenerTLS checks the certificate and key of listener l at path p:
// required and usable for tls, refused for udp and tcp, where they would
// be silently ignored.
func (v validator) listenerTLS(p string, l *Listener) {
	if l.Transport != "tls" {
		if l.Transport != "udp" && l.Transport != "tcp" {
			return // the transport problem says it all
		}
		if l.CertFile != "" {
			v.add(p+".cert_file", "only a tls listener takes a certificate; this one is %s", l.Transport)
		}
		if l.KeyFile != "" {
			v.add(p+".key_file", "only a tls listener takes a key; this one is %s", l.Transport)
		}
		return
	}
	certOK, keyOK := false, false
	if l.CertFile == "" {
		v.add(p+".cert_file", "a tls listener needs cert_file, the PEM certificate chain it presents")
	} else {
		certOK = v.readable(p+".cert_file", l.CertFile)
	}
	if l.KeyFile == "" {
		v.add(p+".key_file", "a tls listener needs key_file, the PEM private key of its certificate")
	} else {
		keyOK = v.readable(p+".key_file", l.KeyFile)
	}
	if certOK && keyOK {
		if _, err := tls.LoadX509KeyPair(l.CertFile, l.KeyFile); err != nil {
			v.add(p+".cert_file", "%s and %s are not a usable certificate and key: %v", l.CertFile, l.KeyFile, err)
		}
	}
}

// readable checks that the file name given at path can be read, reporting
// it if not. It reports true only when the file was checked and can be
// read, so that callers may go on to look inside it.
func (v validator) readable(path, name string) bool {
	if v.opts.skipFiles {
		return false
	}
	if msg := fileProblem(name); msg != "" {
		v.add(path, "%s", msg)
		return false
	}
	return true
}

// fileProblem returns a sentence saying why the file name cannot be read,
// or "". Relative names are read from the working directory, which the
// sentence names: under a service manager it is often not what one thinks.
func fileProblem(name string) string {
	where := ""
	if !filepath.IsAbs(name) {
		if wd, err := os.Getwd(); err == nil {
			where = fmt.Sprintf(" (relative to the working directory %s)", wd)
		}
	}
	fi, err := os.Stat(name)
	switch {
	case err == nil && fi.IsDir():
		return fmt.Sprintf("%s is a directory, not a file%s", name, where)
	case err == nil && !fi.Mode().IsRegular():
		return fmt.Sprintf("%s is not a regular file%s", name, where)
	case err == nil:
		f, oerr := os.Open(name)
		if oerr == nil {
			f.Close()
			return ""
		}
		err = oerr
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Sprintf("%s does not exist%s", name, where)
	}
	return fmt.Sprintf("%s cannot be read%s: %v", name, where, err)
}

var endpointName = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

func (v validator) endpoints() {
	names := map[string]int{}
	prefixOwner := map[netip.Prefix]int{} // network → index of the endpoint listing it
	for i := range v.c.Endpoints {
		e := &v.c.Endpoints[i]
		p := fmt.Sprintf("endpoints[%d]", i)

		switch {
		case e.Name == "":
			v.add(p+".name", "every endpoint needs a name")
		case !endpointName.MatchString(e.Name):
			v.add(p+".name", "%q may only contain letters, digits, '_' and '-'", e.Name)
		default:
			if first, dup := names[e.Name]; dup {
				v.add(p+".name", "endpoint name %q is already used by endpoints[%d]", e.Name, first)
			} else {
				names[e.Name] = i
			}
		}

		switch e.Kind {
		case KindWhatsApp, KindPBX, KindDialer:
		case "":
			v.add(p+".kind", "every endpoint needs a kind: whatsapp, pbx or dialer")
		default:
			v.add(p+".kind", "%q is not a kind; use whatsapp, pbx or dialer", e.Kind)
		}

		switch {
		case e.Host == "" && (e.Kind == KindWhatsApp || e.Kind == KindPBX):
			v.add(p+".host", "an endpoint of kind %s needs a host to send calls to", e.Kind)
		case e.Host != "" && !validHost(e.Host):
			v.add(p+".host", "%q is not an IP address or host name", e.Host)
		}
		if e.Port < 1 || e.Port > 65535 {
			v.add(p+".port", "%d is not a port (1–65535)", e.Port)
		}
		e.Transport = v.transport(p+".transport", e.Transport)
		v.endpointTLS(p, e)
		switch me := strings.ToLower(e.MediaEncryption); me {
		case MediaEncryptionDTLS, MediaEncryptionSDES, MediaEncryptionNone:
			e.MediaEncryption = me
		default:
			v.add(p+".media_encryption", "%q is not a media encryption; use dtls (ICE and DTLS-SRTP), sdes (SRTP keyed in SDP) or none (plain RTP)", e.MediaEncryption)
		}
		switch pr := strings.ToLower(e.Prefer); {
		case pr == "" || pr == PreferTranscode || pr == PreferPassthrough:
			e.Prefer = pr
			if pr != "" && e.Kind != KindWhatsApp {
				v.add(p+".prefer", "only applies to whatsapp endpoints (it chooses between Opus and Meta's G.711); remove the key")
			}
		default:
			v.add(p+".prefer", "%q is not a preference; use transcode (Opus toward Meta) or passthrough (G.711 relayed end to end)", e.Prefer)
		}
		if e.RefuseKeyingMismatch && e.Kind != KindWhatsApp {
			v.add(p+".refuse_keying_mismatch", "only applies to whatsapp endpoints (it compares their keying with Meta's); remove the key")
		}
		if e.LatchAnyAddress && !e.BehindNAT {
			v.add(p+".latch_any_address", "only applies with behind_nat: true (latching is what it widens); set behind_nat or remove the key")
		}
		switch {
		case e.Kind == KindWhatsApp && e.DigestRealm == "":
			v.add(p+".digest_realm", "must not be empty: wagate answers Meta's digest challenges only in this realm; remove the key to use %q", MetaSIPDomain)
		case !quotable(e.DigestRealm):
			v.add(p+".digest_realm", "%q must not contain quotes, backslashes or control characters", e.DigestRealm)
		}
		if e.Auth != nil {
			v.auth(p+".auth", e.Auth)
		}
		if e.MaxCPS < 0 {
			v.add(p+".max_cps", "%d is negative; use 0 for no cap", e.MaxCPS)
		}
		if e.MaxRequestRate < 0 {
			v.add(p+".max_request_rate", "%d is negative; use 0 for no limit", e.MaxRequestRate)
		}
		v.redirectsAndProbe(p, e)

		e.Prefixes = nil
		if len(e.SourceCIDRs) == 0 {
			v.add(p+".source_cidrs", "at least one source CIDR is needed; requests are accepted only from listed networks")
		}
		for j, s := range e.SourceCIDRs {
			pp := fmt.Sprintf("%s.source_cidrs[%d]", p, j)
			pfx, ok := parsePrefix(s)
			if !ok {
				v.add(pp, "%q is not a CIDR or IP address", s)
				continue
			}
			if owner, dup := prefixOwner[pfx]; dup {
				if owner != i {
					// The same network on two endpoints would make the
					// source of a request ambiguous.
					v.add(pp, "%s is already a source of endpoint %q", pfx, v.c.Endpoints[owner].Name)
				}
				continue
			}
			prefixOwner[pfx] = i
			e.Prefixes = append(e.Prefixes, pfx)
		}

		if v.t.has(p+".codecs") && len(e.Codecs) == 0 {
			v.add(p+".codecs", "the list is empty; remove the key to use the defaults for kind %s", e.Kind)
		}
		seen := map[string]bool{}
		for j, name := range e.Codecs {
			canon, ok := canonicalCodec(name)
			if !ok {
				v.add(fmt.Sprintf("%s.codecs[%d]", p, j), "%q is not a codec; use opus, PCMU or PCMA", name)
				continue
			}
			if seen[canon] {
				v.add(fmt.Sprintf("%s.codecs[%d]", p, j), "%s is listed twice", canon)
			}
			seen[canon] = true
			e.Codecs[j] = canon
		}

		if e.MaxCalls < 0 {
			v.add(p+".max_calls", "%d is negative; use 0 for no cap", e.MaxCalls)
		}
	}
}

// endpointTLS checks the TLS settings of endpoint e at path p.
func (v validator) endpointTLS(p string, e *Endpoint) {
	// Only a written name is checked: a default copied from host would
	// repeat the host's own problem.
	switch {
	case !v.t.has(p + ".tls_server_name"):
	case e.TLSServerName == "" && e.Transport == "tls" && e.Host != "":
		v.add(p+".tls_server_name", "must not be empty with transport tls: it is the name the peer's certificate is checked against; remove the key to use the default")
	case e.TLSServerName != "" && !validHost(e.TLSServerName):
		v.add(p+".tls_server_name", "%q is not a host name or IP address", e.TLSServerName)
	}
	if e.Transport == "tls" && len(v.c.TLSListeners()) == 0 {
		// The peer sends its in-dialog requests (BYE, ACK) to our Contact,
		// which for a TLS leg must be a TLS listener of ours.
		v.add(p+".transport", "transport tls needs a tls listener under sip.listen: the peer sends BYE and ACK to wagate over TLS")
	}
	if e.CAFile == "" {
		return
	}
	if e.Transport != "tls" {
		if e.Transport == "udp" || e.Transport == "tcp" { // else the transport problem says it all
			v.add(p+".ca_file", "only an endpoint with transport tls uses ca_file; this one is %s", e.Transport)
		}
		return
	}
	if !v.readable(p+".ca_file", e.CAFile) {
		return
	}
	pem, err := os.ReadFile(e.CAFile)
	if err != nil {
		v.add(p+".ca_file", "%s cannot be read: %v", e.CAFile, err)
		return
	}
	if !x509.NewCertPool().AppendCertsFromPEM(pem) {
		v.add(p+".ca_file", "%s holds no PEM certificate", e.CAFile)
	}
}

// auth checks the digest authentication wagate demands from an endpoint.
func (v validator) auth(p string, a *Auth) {
	switch {
	case a.Realm == "":
		v.add(p+".realm", "must not be empty; remove the key to use sip.host (%s)", v.c.SIP.Host)
	case !quotable(a.Realm):
		v.add(p+".realm", "%q must not contain quotes, backslashes or control characters", a.Realm)
	}
	if len(a.Users) == 0 {
		v.add(p+".users", "at least one user is needed, each with a username and a password or password_env")
	}
	names := map[string]int{}
	for j, u := range a.Users {
		up := fmt.Sprintf("%s.users[%d]", p, j)
		switch {
		case u.Username == "":
			v.add(up+".username", "every user needs a username")
		case !quotable(u.Username):
			v.add(up+".username", "%q must not contain quotes, backslashes or control characters", u.Username)
		default:
			if first, dup := names[u.Username]; dup {
				v.add(up+".username", "user %q is already listed at %s.users[%d]", u.Username, p, first)
			} else {
				names[u.Username] = j
			}
		}
		if u.Password == "" && u.PasswordEnv == "" {
			v.add(up+".password", "every user needs a password or password_env (the environment variable holding it)")
		}
		v.envName(up+".password_env", u.PasswordEnv)
	}
	v.positive(p+".nonce_ttl", a.NonceTTL)
	v.atLeastOne(p+".max_failures", a.MaxFailures)
	v.positive(p+".failure_window", a.FailureWindow)
}

// envVarName is what wagate accepts as an environment variable name: the
// portable upper-case form, so that a lower-case typo of a real name cannot
// silently read an unset variable.
var envVarName = regexp.MustCompile(`^[A-Z_][A-Z0-9_]*$`)

// envName checks the name of an environment variable holding a secret.
func (v validator) envName(path, name string) {
	if name != "" && !envVarName.MatchString(name) {
		v.add(path, "%q is not an environment variable name: upper-case letters, digits and '_', not starting with a digit", name)
	}
}

// secret checks a Secret at path. Whether its variable is set is checked
// for all secrets at once, by envSecrets.
func (v validator) secret(path string, s Secret) {
	v.envName(path+".env", s.Env)
}

var (
	e164Number = regexp.MustCompile(`^\+[0-9]{8,15}$`)
	digitsOnly = regexp.MustCompile(`^[0-9]+$`)
)

func (v validator) numbers() {
	if len(v.c.Numbers) > 0 && !v.hasKind(KindWhatsApp) {
		v.add("numbers", "business numbers are configured but no endpoint has kind whatsapp to carry their calls")
	}
	byNumber := map[string]int{}
	byID := map[string]int{}
	for i := range v.c.Numbers {
		n := &v.c.Numbers[i]
		p := fmt.Sprintf("numbers[%d]", i)

		switch {
		case n.Number == "":
			v.add(p+".number", "every business number needs its number in +E.164 form")
		case !e164Number.MatchString(n.Number):
			v.add(p+".number", "%q is not +E.164 (a '+' followed by 8 to 15 digits)", n.Number)
		default:
			if first, dup := byNumber[n.Number]; dup {
				v.add(p+".number", "%s is already configured at numbers[%d]", n.Number, first)
			} else {
				byNumber[n.Number] = i
			}
		}

		switch {
		case n.PhoneNumberID == "":
			v.add(p+".phone_number_id", "every business number needs Meta's phone_number_id")
		case !digitsOnly.MatchString(n.PhoneNumberID):
			v.add(p+".phone_number_id", "%q must be digits only", n.PhoneNumberID)
		default:
			if first, dup := byID[n.PhoneNumberID]; dup {
				v.add(p+".phone_number_id", "%s is already used by numbers[%d]", n.PhoneNumberID, first)
			} else {
				byID[n.PhoneNumberID] = i
			}
		}

		switch {
		case !v.t.has(p + ".route"):
			v.add(p+".route", "every business number needs a route: the pbx endpoint and user (or the hunt list) that take its user-initiated calls, or a callflow")
		case n.Route.CallFlow == nil:
			v.routeTo(p+".route", n.Route, "the route")
		case n.Route.Endpoint != "" || n.Route.User != "" || n.Route.Hunt != "":
			at := p + ".route.endpoint"
			switch {
			case n.Route.Hunt != "":
				at = p + ".route.hunt"
			case n.Route.Endpoint == "":
				at = p + ".route.user"
			}
			v.addAt(at, p+".route", "give either endpoint and user (ring an extension), hunt (a hunt list) or callflow (run the business's call flows), not two; a callflow's own fallback names the extension")
		default:
			v.callFlow(p+".route.callflow", n.Route.CallFlow)
		}
		if n.Hours != nil {
			v.hours(p+".hours", n.Hours)
		}
		if n.Blocklist != nil {
			v.blocklist(p+".blocklist", n.Blocklist)
		}

		v.secret(p+".digest", n.Digest)

		switch me := strings.ToLower(n.MediaEncryption); me {
		case "", MediaEncryptionDTLS, MediaEncryptionSDES, MediaEncryptionNone:
			n.MediaEncryption = me
		default:
			v.add(p+".media_encryption", "%q is not a media encryption; use dtls, sdes or none (or remove the key to use the whatsapp endpoint's)", n.MediaEncryption)
		}

		for j, name := range n.Dialers {
			pp := fmt.Sprintf("%s.dialers[%d]", p, j)
			switch e := v.endpoint(name); {
			case e == nil:
				v.add(pp, "%q is not a defined endpoint", name)
			case e.Kind != KindDialer && e.Kind != KindPBX:
				v.add(pp, "endpoint %q has kind %s; only dialer and pbx endpoints may originate calls", e.Name, e.Kind)
			}
		}
	}
}

func (v validator) media() {
	m := &v.c.Media
	bind, bindErr := netip.ParseAddr(m.BindIP)
	if bindErr != nil {
		v.add("media.bind_ip", "%q is not an IP address", m.BindIP)
	}
	switch {
	case m.AdvertiseIP != "":
		if ip, err := netip.ParseAddr(m.AdvertiseIP); err != nil {
			v.add("media.advertise_ip", "%q is not an IP address", m.AdvertiseIP)
		} else if ip.IsUnspecified() {
			v.add("media.advertise_ip", "%s cannot be reached by peers; give the address they should send RTP to", m.AdvertiseIP)
		}
	case bindErr != nil:
		// Nothing to default from; the bind_ip problem says it all.
	case bind.IsUnspecified():
		v.addAt("media.bind_ip", "media.advertise_ip", "is required when bind_ip is %s: peers must be told an address they can reach", m.BindIP)
	default:
		v.add("media.advertise_ip", "must not be empty; remove the key to advertise bind_ip")
	}

	minOK := v.mediaPort("media.port_min", m.PortMin)
	maxOK := v.mediaPort("media.port_max", m.PortMax)
	if minOK && m.PortMin%2 != 0 {
		v.add("media.port_min", "%d is odd; RTP takes the even port of each pair", m.PortMin)
		minOK = false
	}
	if minOK && maxOK {
		switch pairs := (m.PortMax - m.PortMin + 1) / 2; {
		case m.PortMin > m.PortMax:
			v.add("media.port_min", "%d is above port_max %d; the port range is reversed", m.PortMin, m.PortMax)
		case pairs < 2:
			v.add("media.port_max", "the range %d–%d holds %d RTP/RTCP port pair(s); at least 2 are needed", m.PortMin, m.PortMax, pairs)
		}
	}
	v.positive("media.port_quarantine", m.PortQuarantine)
	v.positive("media.rtp_timeout", m.RTPTimeout)
	v.positive("media.rtp_start_timeout", m.RTPStartTimeout)

	if m.RTCPInterval < Duration(time.Second) {
		v.add("media.rtcp_interval", "%s is below 1s", m.RTCPInterval)
	}
	jb := m.JitterBuffer
	switch {
	case jb.single && (jb.Max < 0 || jb.Max > Duration(time.Second)):
		v.add("media.jitter_buffer", "%s is outside 0s–1s", jb.Max)
	case jb.Min < 0 || jb.Min > Duration(time.Second):
		v.add("media.jitter_buffer.min", "%s is outside 0s–1s", jb.Min)
	case jb.Max < 0 || jb.Max > Duration(time.Second):
		v.add("media.jitter_buffer.max", "%s is outside 0s–1s", jb.Max)
	case jb.Min > jb.Max:
		v.add("media.jitter_buffer.min", "%s is above max %s; the buffer's depth stays between min and max", jb.Min, jb.Max)
	}
	if n := m.RelatchPackets; n < 0 || n > MaxRelatchPackets {
		v.add("media.relatch_packets", "%d is outside 0–%d (0: a latched peer never moves)", n, MaxRelatchPackets)
	}
	if d := m.DTLS.HandshakeTimeout; d < Duration(time.Second) || d > Duration(time.Minute) {
		v.add("media.dtls.handshake_timeout", "%s is outside 1s–1m", d)
	}
	if d := m.ICE.ConsentTimeout; d < Duration(3*time.Second) || d > Duration(10*time.Minute) {
		v.add("media.ice.consent_timeout", "%s is outside 3s–10m (RFC 7675 uses 30s)", d)
	}
	if b := m.Opus.Bitrate; b < 6000 || b > 510000 {
		v.add("media.opus.bitrate", "%d is outside Opus's 6000–510000 bit/s", b)
	}
	if cx := m.Opus.Complexity; cx < 0 || cx > 10 {
		v.add("media.opus.complexity", "%d is outside 0–10", cx)
	}
}

// mediaPort keeps media ports off the privileged range, where binding needs
// root and where well-known services live.
func (v validator) mediaPort(path string, port int) bool {
	if port < 1024 || port > 65535 {
		v.add(path, "%d is outside 1024–65535", port)
		return false
	}
	return true
}

func (v validator) api() {
	a := &v.c.API
	v.secret("api.token", a.Token)
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

func (v validator) permissions() {
	pm := &v.c.Permissions
	if pm.Store == "" {
		v.add("permissions.store", "must not be empty; remove the key to use %s", filepath.Join(v.c.DataDir, DefaultPermissionStore))
	}
	switch pm.Backend {
	case PermissionBackendBolt:
	case PermissionBackendRedis:
		v.permissionRedis(&pm.Redis)
	default:
		v.add("permissions.backend", "%q is not a store; use bbolt (one node) or redis (several nodes)", pm.Backend)
	}
	l := &pm.Limits
	const lp = "permissions.limits."
	v.positive(lp+"temporary_ttl", l.TemporaryTTL)
	counts := []struct {
		key string
		n   int
	}{
		{"connected_calls_per_user_24h", l.ConnectedCallsPerUser24h},
		{"consecutive_unanswered_max", l.ConsecutiveUnansweredMax},
		{"consecutive_unanswered_nudge", l.ConsecutiveUnansweredNudge},
		{"new_calls_per_number_24h", l.NewCallsPerNumber24h},
		{"concurrent_calls_per_number", l.ConcurrentCallsPerNumber},
		{"requests_per_24h", l.RequestsPer24h},
		{"requests_per_7d", l.RequestsPer7d},
	}
	// 0 turns a rule off (docs/api.md); below 0 is a mistake.
	ok := true
	for _, c := range counts {
		if c.n < 0 {
			v.add(lp+c.key, "%d is negative; use 0 to turn the rule off", c.n)
			ok = false
		}
	}
	if !ok {
		return // the comparisons below would repeat the problem
	}
	if l.ConsecutiveUnansweredNudge > 0 && l.ConsecutiveUnansweredMax > 0 && l.ConsecutiveUnansweredNudge >= l.ConsecutiveUnansweredMax {
		v.add(lp+"consecutive_unanswered_nudge", "%d must be below consecutive_unanswered_max %d: the nudge comes before the revocation",
			l.ConsecutiveUnansweredNudge, l.ConsecutiveUnansweredMax)
	}
	if l.RequestsPer7d > 0 && l.RequestsPer24h > l.RequestsPer7d {
		v.add(lp+"requests_per_24h", "%d is above requests_per_7d %d", l.RequestsPer24h, l.RequestsPer7d)
	}
}

func (v validator) permissionRedis(r *PermissionRedis) {
	const rp = "permissions.redis."
	if _, _, err := net.SplitHostPort(r.Address); err != nil || r.Address == "" {
		v.add(rp+"address", "%q is not host:port", r.Address)
	}
	v.secret(rp+"password", r.Password)
	if r.DB < 0 {
		v.add(rp+"db", "%d is negative", r.DB)
	}
	if r.Prefix == "" {
		v.add(rp+"prefix", "must not be empty; remove the key to use %q", DefaultRedisPrefix)
	}
	v.positive(rp+"slot_ttl", r.SlotTTL)
	if r.SlotTTL > 0 && r.SlotTTL < Duration(time.Second) {
		v.add(rp+"slot_ttl", "%s is below 1s: a node refreshes its slots every third of it", r.SlotTTL)
	}
	v.positive(rp+"timeout", r.Timeout)
	switch r.OnDown {
	case "refuse", "cache":
	default:
		v.add(rp+"on_down", "%q is not a policy; use refuse (503) or cache (admit from what this node last saw)", r.OnDown)
	}
	if r.WaitReplicas < 0 {
		v.add(rp+"wait_replicas", "%d is negative", r.WaitReplicas)
	}
	v.positive(rp+"wait_timeout", r.WaitTimeout)
}

func (v validator) recording() {
	r := &v.c.Recording
	if r.Directory == "" {
		v.add("recording.directory", "must not be empty; remove the key to use %q", DefaultRecordingDir)
	}
	switch r.SampleRate {
	case 8000, 16000:
	default:
		v.add("recording.sample_rate", "%d is not a sample rate wagate records at; use 8000 or 16000", r.SampleRate)
	}
	switch r.NameBy {
	case "a", "b":
	default:
		v.add("recording.name_by", "%q is not a leg; use a (the Call-ID of the incoming leg) or b (of the outgoing leg)", r.NameBy)
	}
	if r.RetentionDays < 0 {
		v.add("recording.retention_days", "%d is negative; use 0 to keep recordings forever", r.RetentionDays)
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

func (v validator) cdr() {
	if n := v.c.CDR.RetentionDays; n < 0 {
		v.add("cdr.retention_days", "%d is negative; use 0 to keep call records forever", n)
	}
}

func (v validator) events() {
	e := &v.c.Events
	v.atLeastOne("events.max_attempts", e.MaxAttempts)
	v.atLeastOne("events.queue_size", e.QueueSize)
	if e.RetentionDays < 0 {
		v.add("events.retention_days", "%d is negative; use 0 to keep delivered events forever", e.RetentionDays)
	}
	v.positive("events.backoff_base", e.BackoffBase)
	v.positive("events.backoff_max", e.BackoffMax)
	if e.BackoffBase > 0 && e.BackoffMax < e.BackoffBase {
		v.add("events.backoff_max", "%s is below backoff_base %s", e.BackoffMax, e.BackoffBase)
	}
	known := map[string]bool{}
	for _, t := range EventTypes() {
		known[t] = true
	}
	names := map[string]int{}
	for i := range e.Subscribers {
		s := &e.Subscribers[i]
		p := fmt.Sprintf("events.subscribers[%d]", i)
		switch {
		case s.Name == "":
			v.add(p+".name", "every subscriber needs a name (letters, digits, '_' and '-')")
		case !endpointName.MatchString(s.Name) || len(s.Name) > 64:
			v.add(p+".name", "%q may hold only letters, digits, '_' and '-' (at most 64)", s.Name)
		default:
			if first, dup := names[s.Name]; dup {
				v.add(p+".name", "subscriber %q is already listed at events.subscribers[%d]", s.Name, first)
			} else {
				names[s.Name] = i
			}
		}
		if msg := checkWebhookURL(s.URL); msg != "" {
			v.add(p+".url", "%s", msg)
		}
		if !s.Secret.IsSet() {
			v.add(p+".secret", "every subscriber needs a secret (value or env): it keys the signature receivers check")
		} else {
			v.secret(p+".secret", s.Secret)
		}
		seen := map[string]int{}
		for j, t := range s.Types {
			tp := fmt.Sprintf("%s.types[%d]", p, j)
			if !known[t] {
				v.add(tp, "%q is not an event type; use %s", t, strings.Join(EventTypes(), ", "))
			} else if first, dup := seen[t]; dup {
				v.add(tp, "%s is already listed at %s.types[%d]", t, p, first)
			} else {
				seen[t] = j
			}
		}
		v.positive(p+".timeout", s.Timeout)
		v.atLeastOne(p+".concurrency", s.Concurrency)
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

// checkWebhookURL returns a sentence saying what is wrong with a
// subscriber's URL, or "".
func checkWebhookURL(raw string) string {
	if raw == "" {
		return "every subscriber needs the URL events are POSTed to, e.g. \"https://crm.example.com/wagate\""
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return fmt.Sprintf("%q is not a URL", raw)
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Sprintf("%q must start with http:// or https://", raw)
	case u.Host == "" || u.Hostname() == "":
		return fmt.Sprintf("%q has no host", raw)
	case u.User != nil:
		return fmt.Sprintf("%s must not carry a user or password (it would show in logs); receivers authenticate wagate by the signature", u.Redacted())
	case u.Fragment != "":
		return fmt.Sprintf("%q has a #fragment, which is never sent", raw)
	}
	return ""
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
