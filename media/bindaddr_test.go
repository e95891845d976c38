package media

import (
	"errors"
	"net"
	"net/netip"
	"testing"
)

func TestEffectiveBind(t *testing.T) {
	host := func() ([]net.Addr, error) {
		return []net.Addr{
			&net.IPNet{IP: net.IPv4(127, 0, 0, 1), Mask: net.CIDRMask(8, 32)},
			&net.IPNet{IP: net.IPv6loopback, Mask: net.CIDRMask(128, 128)},
			&net.IPNet{IP: net.IPv4(10, 10, 0, 5).To4(), Mask: net.CIDRMask(24, 32)},
			&net.IPNet{IP: net.ParseIP("2001:db8::5"), Mask: net.CIDRMask(64, 128)},
		}, nil
	}
	broken := func() ([]net.Addr, error) { return nil, errors.New("netlink refused") }
	a := netip.MustParseAddr
	for _, c := range []struct {
		name            string
		bind, advertise string
		addrs           func() ([]net.Addr, error)
		want            string
	}{
		{"specific bind kept", "10.10.0.5", "203.0.113.10", host, "10.10.0.5"},
		{"specific bind kept even if advertise is local", "10.10.0.5", "127.0.0.1", host, "10.10.0.5"},
		{"wildcard, advertise on an interface", "0.0.0.0", "10.10.0.5", host, "10.10.0.5"},
		{"dual-stack wildcard, IPv4 advertise on an interface", "::", "10.10.0.5", host, "10.10.0.5"},
		{"wildcard, IPv6 advertise on an interface", "::", "2001:db8::5", host, "2001:db8::5"},
		{"wildcard, anywhere in loopback's network", "0.0.0.0", "127.0.77.1", host, "127.0.77.1"},
		{"wildcard, behind NAT", "0.0.0.0", "203.0.113.10", host, "0.0.0.0"},
		{"wildcard, a neighbour on the interface's network", "0.0.0.0", "10.10.0.6", host, "0.0.0.0"},
		{"wildcard, IPv6 neighbour", "::", "2001:db8::6", host, "::"},
		{"wildcard, interfaces unreadable", "0.0.0.0", "10.10.0.5", broken, "0.0.0.0"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := effectiveBind(a(c.bind), a(c.advertise), c.addrs); got != a(c.want) {
				t.Errorf("bind_ip %s, advertise_ip %s: RTP binds %s, want %s", c.bind, c.advertise, got, c.want)
			}
		})
	}
}
