package b2bua

import (
	"errors"
	"net"
	"net/netip"
	"strconv"

	"github.com/emiago/sipgo/sip"
	"github.com/wagate/wagate/configs"
)

// allowedMethods is the Allow header of wagate's answers.
const allowedMethods = "INVITE, ACK, BYE, CANCEL, OPTIONS, REFER"

// allowFor is the Allow header toward ep: REFER is offered to PBXs and
// dialers, which may transfer, not to Meta, which never does.
func allowFor(ep *configs.Endpoint) string {
	if ep != nil && ep.Kind == configs.KindWhatsApp {
		return "INVITE, ACK, BYE, CANCEL, OPTIONS"
	}
	return allowedMethods
}

func callIDOf(m interface{ CallID() *sip.CallIDHeader }) string {
	if h := m.CallID(); h != nil {
		return h.Value()
	}
	return ""
}

func itoa(n int) string { return strconv.Itoa(n) }

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// errNoAck ends a call whose A never acknowledged wagate's 2xx.
var errNoAck = errors.New("no ACK for 2xx")

// sourceIP returns the IP of a request's source address.
func sourceIP(req *sip.Request) netip.Addr {
	host, _, err := net.SplitHostPort(req.Source())
	if err != nil {
		return netip.Addr{}
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	return ip.Unmap()
}
