package b2bua

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/emiago/sipgo/sip"
	"github.com/wagate/wagate/configs"
	sipedge "github.com/wagate/wagate/sip"
)

// Where a transfer goes: one extension of a pbx endpoint, or a hunt list
// rung as any hunt rings it (transferdial.go): in the list's strategy
// order (round_robin and least_recent share the routes' memory), a
// parallel list all at once.

// Target is where a transfer goes: a user (extension) at a pbx endpoint,
// or a hunt list (Hunt, instead of Endpoint and User).
type Target struct {
	Endpoint string
	User     string
	Hunt     string
}

func (t Target) String() string {
	switch {
	case t.Hunt != "":
		return "hunt " + t.Hunt
	case t.Endpoint == "":
		return ""
	}
	return t.User + "@" + t.Endpoint
}

// rung names the callee x rang last ("user@endpoint"), else its target.
func (x *transfer) rung() string {
	if x.ep != nil {
		return x.user + "@" + x.ep.Name
	}
	return x.target.String()
}

// transferCallees returns what t rings, in order, and its hunt list. The
// error wraps ErrBadTarget and says what is wrong.
func (s *Engine) transferCallees(cfg *configs.Config, t Target) ([]sipedge.Callee, *configs.HuntList, error) {
	if t.Hunt != "" {
		list := cfg.HuntList(t.Hunt)
		if list == nil {
			return nil, nil, fmt.Errorf("%w: %q is not a hunt list", ErrBadTarget, t.Hunt)
		}
		var callees []sipedge.Callee
		for _, tg := range list.Targets {
			ep := cfg.Endpoint(tg.Endpoint)
			if ep == nil {
				return nil, nil, fmt.Errorf("%w: hunt list %q names no endpoint %q", ErrBadTarget, t.Hunt, tg.Endpoint)
			}
			ring := tg.RingTimeout.D()
			if ring <= 0 {
				ring = cfg.SIP.RingTimeout.D()
			}
			callees = append(callees, sipedge.NewCallee(ep, tg.User, ring))
		}
		if len(callees) == 0 {
			return nil, nil, fmt.Errorf("%w: hunt list %q has no targets", ErrBadTarget, t.Hunt)
		}
		return s.hunts.order(&sipedge.Decision{Callees: callees, Hunt: list}), list, nil
	}
	ep := cfg.Endpoint(t.Endpoint)
	switch {
	case ep == nil:
		return nil, nil, fmt.Errorf("%w: %q is not a configured endpoint", ErrBadTarget, t.Endpoint)
	case ep.Kind != configs.KindPBX:
		return nil, nil, fmt.Errorf("%w: %q is a %s endpoint; transfers go to pbx endpoints", ErrBadTarget, t.Endpoint, ep.Kind)
	case !validExtension(t.User):
		return nil, nil, fmt.Errorf("%w: user %q is not an extension", ErrBadTarget, t.User)
	}
	return []sipedge.Callee{sipedge.NewCallee(ep, t.User, cfg.SIP.RingTimeout.D())}, nil, nil
}

// resolveTarget finds what a Refer-To URI names, and checks that from's
// transfer rules allow it. The URI names a pbx endpoint by its host (and
// port, when given). At wagate's own host its user is a hunt list when
// one has that name and the rules allow it, else an extension of the
// transferring endpoint when it is a pbx, else of the one pbx its rules
// name. why says what is not allowed.
func resolveTarget(cfg *configs.Config, from *configs.Endpoint, u sip.Uri) (Target, string) {
	host := strings.Trim(strings.ToLower(u.Host), "[]")
	var ep *configs.Endpoint
	if isOwnHost(cfg, host) {
		if cfg.HuntList(u.User) != nil {
			if !from.Transfer.AllowsHunt(u.User) {
				return Target{}, "endpoint " + from.Name + " may not transfer to hunt list " + u.User
			}
			return Target{Hunt: u.User}, ""
		}
		switch names := allowedEndpoints(from.Transfer); {
		case from.Kind == configs.KindPBX:
			ep = from
		case len(names) == 1:
			ep = cfg.Endpoint(names[0])
		default:
			return Target{}, "the Refer-To host is wagate's own and endpoint " + from.Name + " may transfer to several pbx endpoints: name the pbx's host"
		}
	} else {
		for i := range cfg.Endpoints {
			e := &cfg.Endpoints[i]
			if e.Kind == configs.KindPBX && strings.EqualFold(strings.Trim(e.Host, "[]"), host) && (u.Port == 0 || u.Port == e.Port) {
				ep = e
				break
			}
		}
	}
	if ep == nil || ep.Kind != configs.KindPBX {
		return Target{}, "the Refer-To host " + u.Host + " is not a configured pbx endpoint"
	}
	t := Target{Endpoint: ep.Name, User: u.User}
	if !from.Transfer.Allows(ep.Name, u.User) {
		return Target{}, "endpoint " + from.Name + " may not transfer to " + t.String()
	}
	return t, ""
}

func allowedEndpoints(t *configs.Transfer) []string {
	var names []string
	for _, r := range t.Allow {
		if r.Endpoint != "" && !containsString(names, r.Endpoint) {
			names = append(names, r.Endpoint)
		}
	}
	return names
}

func containsString(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// isOwnHost reports whether host names wagate: sip.host or a listener's
// address.
func isOwnHost(cfg *configs.Config, host string) bool {
	if strings.EqualFold(host, strings.Trim(cfg.SIP.Host, "[]")) {
		return true
	}
	for _, l := range cfg.SIP.Listen {
		if ap, err := netip.ParseAddrPort(l.Address); err == nil && strings.EqualFold(ap.Addr().String(), host) {
			return true
		}
	}
	return false
}
