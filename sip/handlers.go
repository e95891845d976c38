package sip

import (
	"log/slog"

	"github.com/emiago/sipgo/sip"
	"github.com/wagate/wagate/configs"
)

// peerOr403 returns the endpoint a request came from, or answers 403 and
// returns nil: a request from no configured endpoint is never routed.
func (s *Server) peerOr403(req *sip.Request, tx sip.ServerTransaction) *configs.Endpoint {
	ep := s.identify(req)
	if ep == nil {
		log := s.log.With("sip_call_id", callIDOf(req))
		s.Reject(tx, req, &Rejection{Code: 403, Reason: "Forbidden", Log: string(req.Method) + " from unknown source " + req.Source()}, log)
	}
	return ep
}

// onInvite hands an INVITE to the B2BUA: one with a To tag as an in-dialog
// request, a new one once its endpoint passed digest authentication (a
// retransmission of a live call's INVITE is dropped first: authenticating
// it again could refuse a replayed nonce).
func (s *Server) onInvite(req *sip.Request, tx sip.ServerTransaction) {
	ep := s.peerOr403(req, tx)
	if ep == nil {
		return
	}
	if tag, _ := req.To().Params.Get("tag"); tag != "" {
		s.calls.InDialog(req, tx, ep)
		return
	}
	if s.calls.Retransmission(req) {
		s.log.Debug("retransmitted INVITE of a live call ignored", "sip_call_id", callIDOf(req))
		return
	}
	log := func() *slog.Logger {
		return s.log.With("sip_call_id", callIDOf(req), "leg", "a", "endpoint", ep.Name)
	}
	if ok, refused := s.authenticate(tx, req, ep, log); !ok {
		if refused != nil {
			s.calls.Refused(req, ep, refused)
		}
		return
	}
	s.calls.Invite(req, tx, ep)
}

// onAck hands an ACK to the B2BUA. A stray ACK has no answer, so a
// stranger's (which the edge already dropped) could get none either.
func (s *Server) onAck(req *sip.Request, _ sip.ServerTransaction) {
	s.calls.Ack(req)
}

// onBye hands a BYE from an endpoint to the B2BUA.
func (s *Server) onBye(req *sip.Request, tx sip.ServerTransaction) {
	if ep := s.peerOr403(req, tx); ep != nil {
		s.calls.InDialog(req, tx, ep)
	}
}

// onCancel sees only CANCELs that matched no INVITE transaction: sipgo
// answers matching ones itself (200, then 487 to the INVITE).
func (s *Server) onCancel(req *sip.Request, tx sip.ServerTransaction) {
	if s.peerOr403(req, tx) == nil {
		return
	}
	s.Respond(tx, req, 481, "Call/Transaction Does Not Exist", nil)
}

// onOptions answers an out-of-dialog OPTIONS (a probe: 200, or 503 while
// draining) and hands one with a To tag to the B2BUA: a peer asking
// whether its call still exists must hear 481 once it does not, and 200
// while it does, draining or not.
func (s *Server) onOptions(req *sip.Request, tx sip.ServerTransaction) {
	ep := s.peerOr403(req, tx)
	if ep == nil {
		return
	}
	if tag, _ := req.To().Params.Get("tag"); tag != "" {
		s.calls.InDialog(req, tx, ep)
		return
	}
	if ok, _ := s.authenticate(tx, req, ep, s.endpointLog(ep)); !ok {
		return
	}
	if s.draining.Load() {
		// A dispatcher in front (Kamailio's, a load balancer) probes with
		// OPTIONS: a draining node answers 503 so it is taken out while
		// its live calls go on.
		s.Respond(tx, req, 503, "Service Unavailable", func(res *sip.Response) {
			res.AppendHeader(sip.NewHeader("Retry-After", "30"))
			res.AppendHeader(ReasonHeader(503, "draining"))
		})
		return
	}
	s.Respond(tx, req, 200, "OK", func(res *sip.Response) {
		res.AppendHeader(sip.NewHeader("Allow", allowedMethods))
		res.AppendHeader(sip.NewHeader("Accept", "application/sdp"))
	})
}

// onOther answers every other method: an in-dialog request (To tag) is
// the B2BUA's; wagate implements no other out-of-dialog method.
func (s *Server) onOther(req *sip.Request, tx sip.ServerTransaction) {
	if req.IsAck() {
		return
	}
	ep := s.peerOr403(req, tx)
	if ep == nil {
		return
	}
	if tag, _ := req.To().Params.Get("tag"); tag != "" {
		s.calls.InDialog(req, tx, ep)
		return
	}
	if ok, _ := s.authenticate(tx, req, ep, s.endpointLog(ep)); !ok {
		return
	}
	s.Respond(tx, req, 501, "Not Implemented", func(res *sip.Response) {
		res.AppendHeader(sip.NewHeader("Allow", allowedMethods))
	})
}

// endpointLog returns the logger authenticate builds for ep's requests.
func (s *Server) endpointLog(ep *configs.Endpoint) func() *slog.Logger {
	return func() *slog.Logger { return s.log.With("endpoint", ep.Name) }
}

// authenticate runs digest authentication on an out-of-dialog request from
// endpoint ep when ep has `auth`. When the request may not go on it answers
// it (407 with a fresh challenge, or 403 for a locked-out source) and
// returns false.
//
// refused is the 403 it sent to a locked-out source (nil for a challenge):
// a refusal worth a call record, where a challenge is not. The logger is
// built only for an endpoint with auth: most have none, and a logger with
// attributes costs allocations on every request.
func (s *Server) authenticate(tx sip.ServerTransaction, req *sip.Request, ep *configs.Endpoint, logger func() *slog.Logger) (ok bool, refused *Rejection) {
	if ep.Auth == nil {
		return true, nil
	}
	log := logger()
	src := sourceIP(req)
	r := s.auth.check(ep, req, src)
	switch r.verdict {
	case authOK:
		log.Debug("digest authentication passed", "user", r.user)
		return true, nil
	case authForbidden:
		rej := &Rejection{Code: 403, Reason: "Forbidden", Log: "digest authentication: " + r.why}
		s.Reject(tx, req, rej, log.With("source", src.String()))
		return false, rej
	}
	if r.failed {
		log.Info("digest authentication failed", "source", src.String(), "why", r.why)
	}
	s.Respond(tx, req, 407, "Proxy Authentication Required", func(res *sip.Response) {
		res.AppendHeader(sip.NewHeader("Proxy-Authenticate", s.auth.challenge(ep, r.stale)))
	})
	return false, nil
}

// ValidHeaderValue rejects what could end a header or a message early.
func ValidHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c == '\r' || c == '\n' || c == 0 {
			return false
		}
	}
	return true
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// DefaultReason is the reason phrase of a response wagate words itself:
// RFC 3261's for the codes it sends, else the class's.
func DefaultReason(code int) string {
	switch code {
	case 400:
		return "Bad Request"
	case 403:
		return "Forbidden"
	case 404:
		return "Not Found"
	case 480:
		return "Temporarily Unavailable"
	case 486:
		return "Busy Here"
	case 481:
		return "Call/Transaction Does Not Exist"
	case 487:
		return "Request Terminated"
	case 488:
		return "Not Acceptable Here"
	case 491:
		return "Request Pending"
	case 503:
		return "Service Unavailable"
	case 603:
		return "Decline"
	}
	switch {
	case code >= 600:
		return "Global Failure"
	case code >= 500:
		return "Server Error"
	}
	return "Request Failed"
}
