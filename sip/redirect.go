package sip

import (
	"cmp"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/emiago/sipgo/sip"
	"github.com/wagate/wagate/configs"
)

// MaxRedirects bounds the 3xx followed from one target: two PBXs that
// redirect to each other, or a long chain, end there.
const MaxRedirects = 3

// Redirect returns where a 3xx from callee from moves the call, when the
// configuration allows it: from's endpoint has follow_redirects, and a
// Contact of res names a configured pbx endpoint by its host and port
// (compared as written, never resolved) whose media settings suit the
// offer already made. Contacts are tried in order of their q value. The
// new callee rings for from's ring time. Anything else, a host that is no
// endpoint above all, is refused with the reason: wagate must never dial
// a destination a peer chose (toll fraud).
func Redirect(cfg *configs.Config, from Callee, res *sip.Response) (Callee, string) {
	if !from.EP.FollowRedirects {
		return Callee{}, "follow_redirects is off for endpoint " + from.EP.Name
	}
	var contacts []*sip.ContactHeader
	for _, h := range res.GetHeaders("Contact") {
		if c, ok := h.(*sip.ContactHeader); ok {
			contacts = append(contacts, c)
		}
	}
	slices.SortStableFunc(contacts, func(a, b *sip.ContactHeader) int { return cmp.Compare(qValue(b), qValue(a)) })
	why := "no Contact names a configured pbx endpoint"
	for _, c := range contacts {
		u := c.Address
		if u.Scheme != "sip" && u.Scheme != "sips" {
			continue
		}
		ep := pbxAt(cfg, u)
		if ep == nil {
			continue
		}
		if u.User == "" || sanitizeUser(u.User) != u.User {
			why = "the Contact at endpoint " + ep.Name + " names no usable user"
			continue
		}
		if !configs.MediaCompatible(from.EP, ep) {
			why = "endpoint " + ep.Name + " has other media settings than " + from.EP.Name + " (the offer is already made)"
			continue
		}
		return NewCallee(ep, u.User, from.RingTimeout), ""
	}
	return Callee{}, why
}

// pbxAt is the pbx endpoint whose host and port u names, or nil. A URI
// without a port means 5060 (5061 for sips or transport=tls).
func pbxAt(cfg *configs.Config, u sip.Uri) *configs.Endpoint {
	port := u.Port
	if port == 0 {
		port = configs.DefaultEndpointPort
		if tr, _ := u.UriParams.Get("transport"); u.Scheme == "sips" || strings.EqualFold(tr, "tls") {
			port = configs.DefaultTLSPort
		}
	}
	host := strings.Trim(u.Host, "[]")
	for i := range cfg.Endpoints {
		ep := &cfg.Endpoints[i]
		if ep.Kind == configs.KindPBX && ep.Port == port && sameHost(ep.Host, host) {
			return ep
		}
	}
	return nil
}

func sameHost(a, b string) bool {
	ia, errA := netip.ParseAddr(a)
	ib, errB := netip.ParseAddr(b)
	if errA == nil && errB == nil {
		return ia.Unmap() == ib.Unmap()
	}
	return strings.EqualFold(strings.TrimSuffix(a, "."), strings.TrimSuffix(b, "."))
}

// qValue is a Contact's q parameter (RFC 3261 §20.10), 1 when absent or
// malformed.
func qValue(c *sip.ContactHeader) float64 {
	if c.Params == nil {
		return 1
	}
	v, ok := c.Params.Get("q")
	if !ok {
		return 1
	}
	q, err := strconv.ParseFloat(v, 64)
	if err != nil || q < 0 || q > 1 {
		return 1
	}
	return q
}
