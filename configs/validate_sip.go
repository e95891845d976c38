// Validation of the sip section: listeners, the edge, SIP tracing (HEP)
// and listener TLS, with the file checks TLS material needs.

package configs

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

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
	if s.TCP.PacedRequestRate < 0 {
		v.add("sip.tcp.paced_request_rate", "%d is negative; use 0 for no pacing", s.TCP.PacedRequestRate)
	}
	if d := s.TransactionLinger.D(); d < time.Second || d > 32*time.Second {
		v.add("sip.transaction_linger", "%s must be between 1s and 32s (RFC 3261's 64·T1)", d)
	}
	if s.MaxCPUPercent < 0 || s.MaxCPUPercent > 100 {
		v.add("sip.max_cpu_percent", "%d must be between 0 (off) and 100", s.MaxCPUPercent)
	}
	// 100 would never refuse: no more than all of the media can be late.
	if s.MaxLateMediaPercent < 0 || s.MaxLateMediaPercent > 99 {
		v.add("sip.max_late_media_percent", "%d must be between 0 (off) and 99", s.MaxLateMediaPercent)
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
