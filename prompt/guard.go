package prompt

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// ErrDenied is wrapped when a file's URL, or a redirect, leads to an
// address wagate does not fetch from: the URLs come from a business's web
// service, and must not reach wagate's own network (its admin API, Redis,
// a cloud's metadata service) unless the operator allowed it.
var ErrDenied = errors.New("prompt: address not allowed")

// Address classes AddrClass returns.
const (
	ClassUnspecified = "unspecified"
	ClassLoopback    = "loopback"
	ClassPrivate     = "private"
	ClassLinkLocal   = "link-local"
	ClassCGNAT       = "cgnat"
	ClassMulticast   = "multicast"
	ClassReserved    = "reserved"
)

// special are the blocks that are not public unicast beyond what netip's
// predicates know, with their class.
var special = []struct {
	p     netip.Prefix
	class string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), ClassUnspecified}, // "this network": Linux dials 0.x as local
	{netip.MustParsePrefix("100.64.0.0/10"), ClassCGNAT},
	{netip.MustParsePrefix("192.0.0.0/24"), ClassReserved},  // IETF protocol assignments
	{netip.MustParsePrefix("192.0.2.0/24"), ClassReserved},  // documentation
	{netip.MustParsePrefix("198.18.0.0/15"), ClassReserved}, // benchmarking
	{netip.MustParsePrefix("198.51.100.0/24"), ClassReserved},
	{netip.MustParsePrefix("203.0.113.0/24"), ClassReserved},
	{netip.MustParsePrefix("240.0.0.0/4"), ClassReserved},     // and 255.255.255.255
	{netip.MustParsePrefix("::/96"), ClassReserved},           // IPv4-compatible, deprecated
	{netip.MustParsePrefix("::ffff:0:0:0/96"), ClassReserved}, // IPv4-translated
	{netip.MustParsePrefix("64:ff9b:1::/48"), ClassPrivate},
	{netip.MustParsePrefix("100::/64"), ClassReserved},      // discard-only
	{netip.MustParsePrefix("2001::/32"), ClassReserved},     // Teredo: hides the IPv4 it reaches
	{netip.MustParsePrefix("2001:db8::/32"), ClassReserved}, // documentation
	{netip.MustParsePrefix("fec0::/10"), ClassPrivate},      // site-local, deprecated
	{netip.MustParsePrefix("ff00::/8"), ClassMulticast},     // (IsMulticast knows it too)
	{netip.MustParsePrefix("2001:2::/48"), ClassReserved},   // benchmarking
	{netip.MustParsePrefix("3fff::/20"), ClassReserved},     // documentation
	{netip.MustParsePrefix("2001:10::/28"), ClassReserved},  // ORCHID
	{netip.MustParsePrefix("2001:20::/28"), ClassReserved},  // ORCHIDv2
}

var (
	nat64   = netip.MustParsePrefix("64:ff9b::/96")
	sixTo4  = netip.MustParsePrefix("2002::/16")
	v4InAny = [...]netip.Prefix{nat64, sixTo4}
)

// AddrClass says why ip is not fetched from by default, or "" when it is a
// public unicast address. IPv4-mapped IPv6 (::ffff:a.b.c.d) is classed as
// its IPv4 address, and so are the IPv4 addresses carried inside NAT64
// (64:ff9b::/96) and 6to4 (2002::/16) addresses, which a gateway would
// deliver to that IPv4 address.
func AddrClass(ip netip.Addr) string {
	if !ip.IsValid() {
		return ClassReserved
	}
	ip = ip.WithZone("").Unmap()
	switch {
	case ip.IsUnspecified():
		return ClassUnspecified
	case ip.IsLoopback():
		return ClassLoopback
	case ip.IsPrivate():
		return ClassPrivate
	case ip.IsLinkLocalUnicast():
		return ClassLinkLocal
	case ip.IsMulticast():
		return ClassMulticast
	}
	for _, s := range special {
		if s.p.Contains(ip) {
			return s.class
		}
	}
	if ip.Is6() {
		for _, p := range v4InAny {
			if p.Contains(ip) {
				if c := AddrClass(embeddedV4(ip, p)); c != "" {
					return c
				}
			}
		}
	}
	return ""
}

// embeddedV4 is the IPv4 address inside a NAT64 (last 32 bits) or 6to4
// (bits 16–47) address.
func embeddedV4(ip netip.Addr, p netip.Prefix) netip.Addr {
	b := ip.As16()
	if p == sixTo4 {
		return netip.AddrFrom4([4]byte{b[2], b[3], b[4], b[5]})
	}
	return netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]})
}

// Allow lists what files are fetched from although AddrClass denies it.
type Allow struct {
	// Prefixes are networks whose addresses are fetched from.
	Prefixes []netip.Prefix
	// Hosts are host names fetched from whatever they resolve to: an exact
	// name, or "*.example.com" for every name under example.com (not
	// example.com itself). Lower case, without a trailing dot.
	Hosts []string
}

// allowsHost reports whether URL host name h is one of the Hosts.
func (a Allow) allowsHost(h string) bool {
	h = strings.TrimSuffix(strings.ToLower(h), ".")
	if h == "" {
		return false
	}
	for _, n := range a.Hosts {
		if suffix, ok := strings.CutPrefix(n, "*"); ok {
			if strings.HasSuffix(h, suffix) && len(h) > len(suffix) {
				return true
			}
		} else if h == n {
			return true
		}
	}
	return false
}

// checkIP returns an ErrDenied error unless ip is public or allowed.
func (a Allow) checkIP(ip netip.Addr) error {
	ip = ip.WithZone("").Unmap()
	class := AddrClass(ip)
	if class == "" {
		return nil
	}
	for _, p := range a.Prefixes {
		if p.Contains(ip) {
			return nil
		}
	}
	return fmt.Errorf("%w: %s is a %s address (not in prompts.fetch_allow)", ErrDenied, ip, class)
}

// checkURL refuses early what the dialer would refuse anyway: a URL whose
// host is an IP address that is not allowed. Names are checked once
// resolved, when dialed.
func (a Allow) checkURL(u *url.URL) error {
	ip, err := netip.ParseAddr(u.Hostname())
	if err != nil {
		return nil
	}
	return a.checkIP(ip)
}

// control is the dialer's check of the address it is about to connect to:
// the name resolved, so neither a DNS answer that changes between checks
// (rebinding) nor a redirect gets past it.
func (a Allow) control(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: cannot read the address %q", ErrDenied, address)
	}
	return a.checkIP(ap.Addr())
}

// fetchClient returns the client that downloads files: every connection
// goes to an address allow permits (checked when dialing), redirects stay
// on http and https, at most maxRedirects of them, and no proxy from the
// environment is used (it would do the dialing, past the check).
func fetchClient(allow Allow) *http.Client {
	t := KeptTransport()
	t.Proxy = nil
	t.MaxResponseHeaderBytes = 64 << 10
	checked := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second, Control: allow.control}
	trusted := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	t.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if host, _, err := net.SplitHostPort(addr); err == nil && allow.allowsHost(host) {
			return trusted.DialContext(ctx, network, addr)
		}
		return checked.DialContext(ctx, network, addr)
	}
	c := SafeClient(&http.Client{Transport: t})
	schemes := c.CheckRedirect
	c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if err := schemes(req, via); err != nil {
			return err
		}
		if allow.allowsHost(req.URL.Hostname()) {
			return nil
		}
		if err := allow.checkURL(req.URL); err != nil {
			return fmt.Errorf("redirected to %s: %w", req.URL.Redacted(), err)
		}
		return nil
	}
	return c
}
