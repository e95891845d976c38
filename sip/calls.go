package sip

import (
	"context"
	"net/netip"

	"github.com/emiago/sipgo/sip"
	"github.com/wagate/wagate/configs"
)

// Calls is the B2BUA behind the edge (b2bua.Engine). It is handed what
// passed the edge, the source check and, for new INVITEs, digest
// authentication; it never sees a stranger's message.
type Calls interface {
	// Invite handles a dialog-creating INVITE from endpoint ep and answers
	// tx before it returns.
	Invite(req *sip.Request, tx sip.ServerTransaction, ep *configs.Endpoint)
	// Retransmission reports whether req repeats the INVITE of a live
	// call; the edge then drops it before authenticating it again.
	Retransmission(req *sip.Request) bool
	// Refused records an INVITE the edge refused itself once it knew its
	// endpoint (a source locked out by digest failures).
	Refused(req *sip.Request, ep *configs.Endpoint, r *Rejection)
	// InDialog handles a request with a To tag (re-INVITE, BYE, INFO, …)
	// from endpoint ep and answers it.
	InDialog(req *sip.Request, tx sip.ServerTransaction, ep *configs.Endpoint)
	// Ack takes an ACK (which has no answer).
	Ack(req *sip.Request)
	// StrayResponse takes a response that matched no client transaction.
	StrayResponse(res *sip.Response)
	// Busy reports whether a live call's A-leg came from src (host:port),
	// so that its stream connection is not closed as idle.
	Busy(src string) bool
	// DialogPeer returns the endpoint, as a live call's leg has it, whose
	// source addresses hold ip, or nil: a source a reload removed or
	// moved may still end (or answer within) the calls it has up.
	DialogPeer(ip netip.Addr) *configs.Endpoint
	// Started runs the B2BUA's background work once every listener is
	// bound (hanging up what a crash left, sampling the CPU) until ctx
	// ends.
	Started(ctx context.Context)
	// Drain ends the calls at shutdown: it waits until none is left or
	// ctx ends, hangs up the rest and waits briefly for their BYEs.
	Drain(ctx context.Context)
}

// noCalls stands in until SetCalls: an edge without a B2BUA (its own
// tests, a misconfigured build) refuses calls instead of crashing.
type noCalls struct{ s *Server }

func (n noCalls) Invite(req *sip.Request, tx sip.ServerTransaction, _ *configs.Endpoint) {
	n.s.Respond(tx, req, 503, "Service Unavailable", nil)
}
func (noCalls) Retransmission(*sip.Request) bool                    { return false }
func (noCalls) Refused(*sip.Request, *configs.Endpoint, *Rejection) {}
func (n noCalls) InDialog(req *sip.Request, tx sip.ServerTransaction, _ *configs.Endpoint) {
	n.s.Respond(tx, req, 481, "Call/Transaction Does Not Exist", nil)
}
func (noCalls) Ack(*sip.Request)                        {}
func (noCalls) StrayResponse(*sip.Response)             {}
func (noCalls) Busy(string) bool                        { return false }
func (noCalls) DialogPeer(netip.Addr) *configs.Endpoint { return nil }
func (noCalls) Started(context.Context)                 {}
func (noCalls) Drain(context.Context)                   {}
