// Validation of the endpoints: names, addresses, TLS, digest auth and the
// secrets (environment variable names) they refer to.

package configs

import (
	"crypto/x509"
	"fmt"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strings"
)

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

		e.Prefixes, e.ProxyPrefixes = nil, nil
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
			if e.Kind == KindWhatsApp && e.Transport == "tls" && pfx.Addr().IsPrivate() {
				// Meta's servers have public addresses: a private one
				// is likely Kamailio's META_SOCK from before
				// proxy_cidrs, whose every forwarded call would now be
				// dropped.
				v.ps.advise(v.t.line(pp), pp, "%s is a private network on a whatsapp endpoint on tls: only TLS is taken from source_cidrs, UDP and TCP are dropped; if it is a proxy forwarding Meta's requests (Kamailio's META_SOCK), move it to proxy_cidrs", pfx)
			}
		}
		v.proxyCIDRs(p, i, e, prefixOwner)

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

// proxyCIDRs checks the proxy_cidrs of endpoint e (index i, path p) and
// adds them to its source prefixes. prefixOwner holds every source prefix
// listed so far, source_cidrs of e included.
func (v validator) proxyCIDRs(p string, i int, e *Endpoint, prefixOwner map[netip.Prefix]int) {
	if len(e.ProxyCIDRs) > 0 && e.Kind != KindWhatsApp {
		// Only Meta's transport says something about its requests; a
		// proxy in front of a pbx or dialer is one of its sources.
		v.add(p+".proxy_cidrs", "only applies to whatsapp endpoints (Meta signals over TLS only, a proxy forwards over any transport); list a proxy in front of a %s in its source_cidrs", e.Kind)
		return
	}
	own := len(e.Prefixes)
	for j, s := range e.ProxyCIDRs {
		pp := fmt.Sprintf("%s.proxy_cidrs[%d]", p, j)
		pfx, ok := parsePrefix(s)
		if !ok {
			v.add(pp, "%q is not a CIDR or IP address", s)
			continue
		}
		if owner, dup := prefixOwner[pfx]; dup {
			switch {
			case owner != i:
				v.add(pp, "%s is already a source of endpoint %q", pfx, v.c.Endpoints[owner].Name)
			case slices.Contains(e.Prefixes[:own], pfx):
				// In both lists it would be a proxy; saying so keeps the
				// file meaning one thing.
				v.add(pp, "%s is also in source_cidrs; a proxy's address belongs in proxy_cidrs only", pfx)
			}
			continue
		}
		prefixOwner[pfx] = i
		e.Prefixes = append(e.Prefixes, pfx)
		e.ProxyPrefixes = append(e.ProxyPrefixes, pfx)
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
// What is written there is not repeated: a name that is no name is most
// often the secret itself, and the problem goes to the log of a refused
// reload.
func (v validator) envName(path, name string) {
	if name != "" && !envVarName.MatchString(name) {
		v.add(path, "is not an environment variable name (upper-case letters, digits and '_', not starting with a digit; what is written is not repeated here, in case it is the secret itself, which belongs in the variable)")
	}
}

// secret checks a Secret at path. Whether its variable is set is checked
// for all secrets at once, by envSecrets.
func (v validator) secret(path string, s Secret) {
	v.envName(path+".env", s.Env)
}
