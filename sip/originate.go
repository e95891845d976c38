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
	// AgentHunt names a hunt list whose targets are the agents, instead
	// of AgentEndpoint and AgentUser.
	AgentHunt string
	// CampaignID and CallbackData are what a dialer gives in
	// X-WABA-Campaign-ID and X-WABA-Callback-Data: kept in the call's
	// events and record.
	CampaignID, CallbackData string
	// Flow runs the number's call-flow route on the agent's leg instead
	// of calling User (who must then be empty): the flow names the user
	// (RouteFlowUser). The agent sees the business number as caller.
	Flow bool
}

// Agent is one agent of a click-to-call: the callee its INVITE goes to,
// and the caller it shows (From: the WhatsApp user).
type Agent struct {
	Callee
	From sip.Uri
}

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
	user, ferr := routeUser(r.User)
	switch {
	case r.Flow && r.User != "":
		return nil, nil, &FieldError{"callflow", "give either user or callflow, not both"}
	case r.Flow:
		// Until the flow names the user, the agent is called on behalf of
		// the business number.
		user = num.Number
	case ferr != nil:
		return nil, nil, ferr
	}
	if r.CallbackData != "" && !isCallbackData(r.CallbackData) {
		return nil, nil, &FieldError{"callback_data", "must be at most 512 characters of printable text"}
	}
	if r.CampaignID != "" && !isCampaignID(r.CampaignID) {
		return nil, nil, &FieldError{"campaign_id", "must be 1 to 64 of the characters A-Z a-z 0-9 . _ ~ : / @ + = -"}
	}
	var agents []Agent
	var hunt *configs.HuntList
	switch {
	case r.AgentHunt != "" && (r.AgentEndpoint != "" || r.AgentUser != "" || r.AgentRing > 0):
		return nil, nil, &FieldError{"agent.hunt", "give either a hunt list or an endpoint and extension (with ring_timeout), not both"}
	case r.AgentHunt != "":
		if hunt = cfg.HuntList(r.AgentHunt); hunt == nil {
			return nil, nil, &FieldError{"agent.hunt", "is not a configured hunt list"}
		}
		for _, t := range hunt.Targets {
			ep := cfg.Endpoint(t.Endpoint)
			if fe := agentEndpoint(ep, "agent.hunt", "target "+t.User+"@"+t.Endpoint+" "); fe != nil {
				return nil, nil, fe
			}
			agents = append(agents, newAgent(cfg, ep, t.User, user, t.RingTimeout.D()))
		}
	default:
		ep := cfg.Endpoint(r.AgentEndpoint)
		if fe := agentEndpoint(ep, "agent.endpoint", ""); fe != nil {
			return nil, nil, fe
		}
		if r.AgentUser == "" || len(r.AgentUser) > 64 || sanitizeUser(r.AgentUser) != r.AgentUser {
			return nil, nil, &FieldError{"agent.extension", "must be 1 to 64 of the characters A-Z a-z 0-9 - _ . + ~"}
		}
		ring := r.AgentRing
		if ring <= 0 {
			ring = cfg.SIP.RingTimeout.D()
		}
		agents = []Agent{newAgent(cfg, ep, r.AgentUser, user, ring)}
	}
	if len(agents) == 0 {
		return nil, nil, &FieldError{"agent.hunt", "has no targets"}
	}
	wa := whatsappEndpoint(cfg)
	if wa == nil {
		return nil, nil, &FieldError{"business_number", "no whatsapp endpoint is configured to call through"}
	}
	d := &Decision{
		Dir:    BIC,
		AEP:    agents[0].EP,
		BEP:    wa,
		Number: num,
		User:   user,
		BFrom:  sip.Uri{Scheme: "sip", User: num.Number, Host: cfg.SIP.Host},
		BIC:    &BICInfo{Number: num, Callee: user, CampaignID: r.CampaignID, CallbackData: r.CallbackData},
	}
	// The agents' hunt list, for the call's record and its strategy.
	d.Hunt = hunt
	if r.Flow {
		d.User, d.BIC.Callee = "", ""
		return d, agents, nil
	}
	setUser(cfg, d, user)
	return d, agents, nil
}

// routeUser checks and normalises a WhatsApp user: +E.164 (the '+'
// optional) or a business-scoped user id.
func routeUser(u string) (string, *FieldError) {
	user, ok := normalizeE164(u)
	if !ok {
		if user, ok = normalizeBSUID(u); !ok {
			return "", &FieldError{"user", "must be the WhatsApp user's number in E.164 or a business-scoped user id"}
		}
	}
	return user, nil
}

// setUser makes user the callee of d's business-initiated leg.
func setUser(cfg *configs.Config, d *Decision, user string) {
	d.User = user
	d.BIC.Callee = user
	d.Target, d.Dest = endpointURI(d.BEP, user)
	d.BTo = d.Target
	d.BTo.UriParams = nil
	d.Callees = []Callee{NewCallee(d.BEP, user, cfg.SIP.RingTimeout.D())}
}

// RouteFlowUser is the decision of a click-to-call started with Flow
// once its call flow names the WhatsApp user to connect the agent to: a
// copy of d with user (checked as RouteClickToCall checks a request's)
// as the callee of the business-initiated leg.
func RouteFlowUser(cfg *configs.Config, d *Decision, user string) (*Decision, *FieldError) {
	u, ferr := routeUser(user)
	if ferr != nil {
		return nil, ferr
	}
	nd := *d
	bic := *d.BIC
	nd.BIC = &bic
	setUser(cfg, &nd, u)
	return &nd, nil
}

// agentEndpoint checks that ep can take a click-to-call's agent leg.
func agentEndpoint(ep *configs.Endpoint, field, what string) *FieldError {
	switch {
	case ep == nil:
		return &FieldError{field, what + "is not a configured endpoint"}
	case ep.Kind != configs.KindPBX:
		return &FieldError{field, what + "is a " + ep.Kind + " endpoint; agents are on pbx endpoints"}
	case ep.MediaEncryption != "" && ep.MediaEncryption != "none":
		return &FieldError{field, what + "uses media_encryption " + ep.MediaEncryption + "; click-to-call agents need plain RTP (none)"}
	}
	return nil
}

// newAgent is extension ext at ep, called on behalf of the WhatsApp user.
func newAgent(cfg *configs.Config, ep *configs.Endpoint, ext, user string, ring time.Duration) Agent {
	return Agent{Callee: NewCallee(ep, ext, ring), From: sip.Uri{Scheme: "sip", User: sanitizeUser(user), Host: cfg.SIP.Host}}
}

// ClickToCallHeaders are the X-WABA headers of the agent's INVITE: what
// a UIC's agent learns about its caller, with X-WABA-Direction BIC and
// X-WABA-Origin click-to-call.
func ClickToCallHeaders(d *Decision, session string) []sip.Header {
	hs := []sip.Header{
		sip.NewHeader(hdrWABADirection, string(BIC)),
		sip.NewHeader(hdrWABAOrigin, "click-to-call"),
		sip.NewHeader(hdrWABAPhoneNumberID, d.Number.PhoneNumberID),
		sip.NewHeader(hdrWABABusinessNumber, d.Number.Number),
	}
	if d.User != "" {
		// A flow's click-to-call learns its user only from the flow.
		hs = append(hs, sip.NewHeader(hdrWABAUser, d.User))
	}
	return append(hs, sip.NewHeader(hdrWABASession, session))
}

// hdrWABAOrigin marks an agent leg wagate placed for the control API.
const hdrWABAOrigin = "X-WABA-Origin"
