package sip

import (
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/wagate/wagate/configs"
)

// Direction tells which way a call crosses wagate.
type Direction string

// The two call directions of DESIGN.md §1.
const (
	// UIC is a user-initiated call: WhatsApp user → business → agent.
	UIC Direction = "UIC"
	// BIC is a business-initiated call: dialer → business → WhatsApp user.
	BIC Direction = "BIC"
)

// Decision is where a new call goes and as whom.
type Decision struct {
	Dir    Direction
	AEP    *configs.Endpoint
	BEP    *configs.Endpoint
	Number *configs.Number
	// User is the WhatsApp User's number in +E.164 (caller on UIC, callee on BIC).
	User string
	// Target is the B-leg Request-URI; bFrom and bTo its From and To.
	Target sip.Uri
	BFrom  sip.Uri
	BTo    sip.Uri
	// Dest forces the B-leg INVITE's next hop ("host:port") when the
	// Request-URI names a host that is not where the endpoint is (TLS:
	// sip:+user@wa.meta.vc;transport=tls sent to the configured address).
	Dest string

	// BIC holds the validated X-WABA values of a BIC; uic what Meta told
	// about a UIC's caller.
	BIC *BICInfo
	UIC UICInfo

	// CallFlow is the number's call-flow route when it has one: wagate
	// answers the call and runs the business's flows. BEP, Target, BTo
	// and Dest then name the route's fallback extension.
	CallFlow *configs.CallFlow
	// Queue is the number's queue route when it has one: wagate answers
	// the call and runs the call-flow engine's queue action. BEP, Target,
	// BTo and Dest then name the queue's hunt list's first target.
	Queue *configs.QueueRoute
	// Callees are where the B-leg rings, in the configured order: the
	// one extension of a route or the callee of a BIC, or a hunt list's
	// targets. BEP, Target, BTo and Dest above are the first one's.
	Callees []Callee
	// Hunt is the hunt list the callees come from (nil: a route to one
	// extension, or a BIC).
	Hunt *configs.HuntList
	// AfterHours is set when the number's business hours were closed
	// and its after-hours route was taken.
	AfterHours bool
}

// Callee is one place a B-leg INVITE can go.
type Callee struct {
	EP   *configs.Endpoint
	User string
	// URI is the Request-URI, To the To of the INVITE, Dest its forced
	// next hop (see Decision.Dest).
	URI  sip.Uri
	To   sip.Uri
	Dest string
	// RingTimeout is how long it may ring before wagate gives up on it.
	RingTimeout time.Duration
}

// NewCallee is user at endpoint ep, ringing for at most ring.
func NewCallee(ep *configs.Endpoint, user string, ring time.Duration) Callee {
	c := Callee{EP: ep, User: user, RingTimeout: ring}
	c.URI, c.Dest = endpointURI(ep, user)
	c.To = c.URI
	c.To.UriParams = nil
	return c
}

// Name is "user@endpoint", for logs.
func (c Callee) Name() string { return c.User + "@" + c.EP.Name }

// Rejection is a final response wagate sends to the A-leg.
type Rejection struct {
	Code    int
	Reason  string
	Warning string // optional Warning text (399 wagate "...")
	// Log is why, for the one Log line about it.
	Log string
	// MetaError is Meta's error code for X-WABA-Error (0: none).
	MetaError int
	// RetryAfter is the Retry-After of the response (0: 5 s for a 503,
	// none otherwise).
	RetryAfter time.Duration
	// Relayed marks a response that passes on B's final answer: it is not
	// wagate's own decision, so it carries no Reason header.
	Relayed bool
	// Accept is the Accept header of a 415.
	Accept string
	// NodeUnavailable marks a refusal for this node's own state, not the
	// call's: draining, overloaded, out of call slots or media ports. It
	// is a token naming it (NodeDraining, …), sent in
	// X-Wagate-Node-Unavailable, on which a dispatcher in front of
	// several nodes tries the next node and takes this one out; any other
	// refusal is the call's answer wherever it lands
	// (deploy/kamailio/kamailio.cfg).
	NodeUnavailable string
}

// The tokens of Rejection.NodeUnavailable.
const (
	NodeDraining   = "draining"
	NodeOverloaded = "overloaded"
	NodeFull       = "full"
)

// Route decides the B-leg of a new INVITE from endpoint ep, as of now. It
// reads only the Request-URI, the From and Meta's x-wa-meta headers of
// req, so it can be fuzzed on its own. A rejection of a UIC whose number
// and caller are known (blocklist, business hours) comes with the decision
// so far, for the call's record; its BEP and Callees are then empty.
func Route(cfg *configs.Config, ep *configs.Endpoint, req *sip.Request) (*Decision, *Rejection) {
	return RouteAt(cfg, ep, req, time.Now())
}

// RouteAt is Route with the time business hours are read at.
func RouteAt(cfg *configs.Config, ep *configs.Endpoint, req *sip.Request, now time.Time) (*Decision, *Rejection) {
	switch ep.Kind {
	case configs.KindWhatsApp:
		return routeUIC(cfg, ep, req, now)
	case configs.KindDialer, configs.KindPBX:
		return routeBIC(cfg, ep, req)
	}
	return nil, &Rejection{Code: 403, Reason: "Forbidden", Log: "endpoint kind cannot originate calls"}
}

func routeUIC(cfg *configs.Config, ep *configs.Endpoint, req *sip.Request, now time.Time) (*Decision, *Rejection) {
	num := cfg.NumberByE164(req.Recipient.User)
	if num == nil {
		return nil, &Rejection{Code: 404, Reason: "Not Found", Log: "business number not configured"}
	}
	caller := req.From().Address.User
	d := &Decision{
		Dir:    UIC,
		AEP:    ep,
		Number: num,
		User:   caller,
	}
	d.UIC = collectUIC(req, num)
	if d.UIC.User != "" {
		d.User = d.UIC.User
	} else if d.UIC.UserID != "" {
		d.User = d.UIC.UserID
	}
	// Refusals come before any B-leg exists: a blocklisted caller never
	// rings anyone, whatever the time.
	if rej := blocked(cfg, num, d.UIC); rej != nil {
		return d, rej
	}
	route := num.Route
	if h := num.Hours; h != nil && !InHours(h, now) {
		if h.AfterHours == nil {
			return d, &Rejection{Code: 480, Reason: "Temporarily Unavailable", Log: "outside business hours"}
		}
		route, d.AfterHours = *h.AfterHours, true
	}
	if cf := route.CallFlow; cf != nil {
		// A call-flow route is answered by wagate; its B-legs come
		// later, and the fallback extension stands for them until then.
		d.CallFlow = cf
		route = configs.Route{Endpoint: cf.Fallback.Endpoint, User: cf.Fallback.User}
	}
	if q := route.Queue; q != nil {
		// A queue route is answered by wagate too; the hunt list's
		// targets stand for its B-legs until an agent is free.
		d.Queue = q
		route = configs.Route{Hunt: q.Hunt}
	}
	if rej := d.routeTo(cfg, route); rej != nil {
		return d, rej
	}
	d.BFrom = sip.Uri{Scheme: "sip", User: caller, Host: cfg.SIP.Host}
	if !isE164(caller) {
		// A business-scoped user id replaces the number when the user
		// hides it; it still identifies the caller to the agent.
		d.BFrom.User = sanitizeUser(caller)
	}
	return d, nil
}

// routeTo sets d's callees from route r: its one extension, or its hunt
// list's targets.
func (d *Decision) routeTo(cfg *configs.Config, r configs.Route) *Rejection {
	callees, hunt, rej := Callees(cfg, r)
	if rej != nil {
		return rej
	}
	d.Callees, d.Hunt = callees, hunt
	first := callees[0]
	d.BEP, d.Target, d.BTo, d.Dest = first.EP, first.URI, first.To, first.Dest
	return nil
}

// Callees are where route r rings, in its configured order: its one
// extension (ringing sip.ring_timeout), or its hunt list's targets and
// the list. A call flow's connect rings through them too.
func Callees(cfg *configs.Config, r configs.Route) ([]Callee, *configs.HuntList, *Rejection) {
	// Validation rejects a route to nothing; a reload race is the only
	// way to get here with one.
	missing := &Rejection{Code: 503, Reason: "Service Unavailable", Log: "route endpoint missing"}
	var callees []Callee
	var hunt *configs.HuntList
	if r.Hunt != "" {
		if hunt = cfg.HuntList(r.Hunt); hunt == nil {
			return nil, nil, missing
		}
		for _, t := range hunt.Targets {
			ep := cfg.Endpoint(t.Endpoint)
			if ep == nil {
				return nil, nil, missing
			}
			callees = append(callees, NewCallee(ep, t.User, t.RingTimeout.D()))
		}
	} else if pbx := cfg.Endpoint(r.Endpoint); pbx != nil {
		callees = []Callee{NewCallee(pbx, r.User, cfg.SIP.RingTimeout.D())}
	}
	if len(callees) == 0 {
		return nil, nil, missing
	}
	return callees, hunt, nil
}

func routeBIC(cfg *configs.Config, ep *configs.Endpoint, req *sip.Request) (*Decision, *Rejection) {
	info, rej := checkBIC(cfg, ep, req)
	if rej != nil {
		return nil, rej
	}
	num, callee := info.Number, info.Callee
	wa := whatsappEndpoint(cfg)
	if wa == nil {
		return nil, &Rejection{Code: 503, Reason: "Service Unavailable", Log: "no whatsapp endpoint configured"}
	}
	d := &Decision{
		Dir:    BIC,
		AEP:    ep,
		BEP:    wa,
		Number: num,
		User:   callee,
		BFrom:  sip.Uri{Scheme: "sip", User: num.Number, Host: cfg.SIP.Host},
		BIC:    info,
	}
	c := NewCallee(wa, callee, cfg.SIP.RingTimeout.D())
	d.Callees = []Callee{c}
	d.Target, d.BTo, d.Dest = c.URI, c.To, c.Dest
	return d, nil
}

// endpointURI is the Request-URI of a new B-leg to user at ep, and the
// next hop to force when the URI does not name where ep is. Over TLS the
// URI names the endpoint's tls_server_name (Meta: wa.meta.vc, without a
// port) and the request goes to the configured host and port.
func endpointURI(ep *configs.Endpoint, user string) (sip.Uri, string) {
	tr := strings.ToLower(ep.Transport)
	u := sip.Uri{Scheme: "sip", User: user, Host: ep.Host, Port: ep.Port}
	if tr != "" && tr != "udp" {
		u.UriParams = sip.NewParams()
		u.UriParams.Add("transport", tr)
	}
	if tr != "tls" {
		return u, ""
	}
	if ep.TLSServerName != "" {
		u.Host = ep.TLSServerName
	}
	if ep.Kind == configs.KindWhatsApp || ep.Port == configs.DefaultTLSPort {
		u.Port = 0
	}
	if u.Host == ep.Host && u.Port == ep.Port {
		return u, ""
	}
	return u, net.JoinHostPort(ep.Host, strconv.Itoa(ep.Port))
}

func allowedDialer(n *configs.Number, name string) bool {
	for _, d := range n.Dialers {
		if d == name {
			return true
		}
	}
	return false
}

func whatsappEndpoint(cfg *configs.Config) *configs.Endpoint {
	for i := range cfg.Endpoints {
		if cfg.Endpoints[i].Kind == configs.KindWhatsApp {
			return &cfg.Endpoints[i]
		}
	}
	return nil
}

// normalizeE164 accepts 8–15 digits with an optional leading '+' and returns
// the number as +digits.
func normalizeE164(s string) (string, bool) {
	if !isE164(s) {
		return "", false
	}
	if s[0] == '+' {
		return s, true
	}
	return "+" + s, true
}

func isE164(s string) bool {
	if len(s) > 0 && s[0] == '+' {
		s = s[1:]
	}
	if len(s) < 8 || len(s) > 15 || s[0] == '0' {
		return false
	}
	_, err := strconv.ParseUint(s, 10, 64)
	return err == nil
}

// sanitizeUser keeps a URI user made of unreserved characters only, so that
// an identifier from one peer cannot inject syntax toward the other.
func sanitizeUser(s string) string {
	const max = 64
	out := make([]byte, 0, min(len(s), max))
	for i := 0; i < len(s) && len(out) < max; i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9',
			c == '-', c == '_', c == '.', c == '+', c == '~':
			out = append(out, c)
		}
	}
	if len(out) == 0 {
		return "anonymous"
	}
	return string(out)
}
