package sip

import (
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/wagate/wagate/configs"
)

// ClickToCall is a call the control API asks wagate to place on both legs
// (POST /v1/calls): first the agent, then, once the agent answers, a
// business-initiated call from Business to User.
type ClickToCall struct {
	// Business is the business number, +E.164.
	Business string
	// User is the WhatsApp user: +E.164 (the '+' optional) or a
	// business-scoped user id.
	User string
	// AgentEndpoint and AgentUser name the agent: an extension on a
	// configured pbx endpoint.
	AgentEndpoint, AgentUser string
	// AgentRing bounds the agent's ringing (0: sip.ring_timeout).
	AgentRing time.Duration
}

// Agent is the agent leg of a click-to-call: where its INVITE goes.
type Agent struct {
	EP   *configs.Endpoint
	User string
	// URI is the Request-URI, To the To of the INVITE, Dest its forced
	// next hop (see Decision.Dest); From is the caller the agent sees:
	// the WhatsApp user.
	URI, To, From sip.Uri
	Dest          string
	RingTimeout   time.Duration
}

// Name is "user@endpoint", for logs.
func (a Agent) Name() string { return a.User + "@" + a.EP.Name }

// FieldError says which field of a click-to-call is wrong, and why.
type FieldError struct {
	Field, Msg string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

// RouteClickToCall checks a click-to-call against the configuration and
// returns its BIC decision (the leg toward Meta, as a dialer's INVITE for
// the same business number and user would get) and its agent leg.
func RouteClickToCall(cfg *configs.Config, r ClickToCall) (*Decision, []Agent, *FieldError) {
	if !isE164(r.Business) {
		return nil, nil, &FieldError{"business_number", "must be a business number in E.164 (+ and 8 to 15 digits)"}
	}
	num := cfg.NumberByE164(r.Business)
	if num == nil {
		return nil, nil, &FieldError{"business_number", "is not a configured business number"}
	}
	user, ok := normalizeE164(r.User)
	if !ok {
		if user, ok = normalizeBSUID(r.User); !ok {
			return nil, nil, &FieldError{"user", "must be the WhatsApp user's number in E.164 or a business-scoped user id"}
		}
	}
	ep := cfg.Endpoint(r.AgentEndpoint)
	switch {
	case ep == nil:
		return nil, nil, &FieldError{"agent.endpoint", "is not a configured endpoint"}
	case ep.Kind != configs.KindPBX:
		return nil, nil, &FieldError{"agent.endpoint", "is a " + ep.Kind + " endpoint; agents are on pbx endpoints"}
	case ep.MediaEncryption == "sdes":
		return nil, nil, &FieldError{"agent.endpoint", "uses media_encryption sdes; click-to-call agents need plain RTP"}
	}
	if r.AgentUser == "" || len(r.AgentUser) > 64 || sanitizeUser(r.AgentUser) != r.AgentUser {
		return nil, nil, &FieldError{"agent.extension", "must be 1 to 64 of the characters A-Z a-z 0-9 - _ . + ~"}
	}
	wa := whatsappEndpoint(cfg)
	if wa == nil {
		return nil, nil, &FieldError{"business_number", "no whatsapp endpoint is configured to call through"}
	}
	d := &Decision{
		Dir:    BIC,
		AEP:    ep,
		BEP:    wa,
		Number: num,
		User:   user,
		BFrom:  sip.Uri{Scheme: "sip", User: num.Number, Host: cfg.SIP.Host},
		BIC:    &BICInfo{Number: num, Callee: user},
	}
	d.Target, d.Dest = endpointURI(wa, user)
	d.BTo = d.Target
	d.BTo.UriParams = nil

	ring := r.AgentRing
	if ring <= 0 {
		ring = cfg.SIP.RingTimeout.D()
	}
	return d, []Agent{newAgent(cfg, ep, r.AgentUser, user, ring)}, nil
}

// newAgent is extension ext at ep, called on behalf of the WhatsApp user.
func newAgent(cfg *configs.Config, ep *configs.Endpoint, ext, user string, ring time.Duration) Agent {
	a := Agent{EP: ep, User: ext, RingTimeout: ring}
	a.URI, a.Dest = endpointURI(ep, ext)
	a.To = a.URI
	a.To.UriParams = nil
	a.From = sip.Uri{Scheme: "sip", User: sanitizeUser(user), Host: cfg.SIP.Host}
	return a
}

// ClickToCallHeaders are the X-WABA headers of the agent's INVITE: what
// a UIC's agent learns about its caller, with X-WABA-Direction BIC and
// X-WABA-Origin click-to-call.
func ClickToCallHeaders(d *Decision, session string) []sip.Header {
	return []sip.Header{
		sip.NewHeader(hdrWABADirection, string(BIC)),
		sip.NewHeader(hdrWABAOrigin, "click-to-call"),
		sip.NewHeader(hdrWABAPhoneNumberID, d.Number.PhoneNumberID),
		sip.NewHeader(hdrWABABusinessNumber, d.Number.Number),
		sip.NewHeader(hdrWABAUser, d.User),
		sip.NewHeader(hdrWABASession, session),
	}
}

// hdrWABAOrigin marks an agent leg wagate placed for the control API.
const hdrWABAOrigin = "X-WABA-Origin"
