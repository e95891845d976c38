package sip

import (
	"context"
	"log/slog"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/wagate/wagate/configs"
)

// findDialog returns the call and leg an in-dialog request belongs to, and
// checks it comes from that leg's peer: the Call-ID alone is not proof.
func (s *Server) findDialog(req *sip.Request) (callRef, bool) {
	ref, ok := s.reg.lookup(callIDOf(req))
	if !ok {
		return ref, false
	}
	from := req.From()
	if from == nil {
		return ref, false
	}
	tag, _ := from.Params.Get("tag")
	l := ref.leg
	l.mu.Lock()
	remoteTag := l.remoteTag
	l.mu.Unlock()
	if tag == "" || tag != remoteTag {
		return ref, false
	}
	return ref, true
}

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

// dialogOr481 finds the dialog of an in-dialog request, answering 481 when
// there is none.
func (s *Server) dialogOr481(req *sip.Request, tx sip.ServerTransaction) (callRef, bool) {
	ref, ok := s.findDialog(req)
	if !ok {
		s.Respond(tx, req, 481, "Call/Transaction Does Not Exist", nil)
	}
	return ref, ok
}

func (s *Server) onAck(req *sip.Request, tx sip.ServerTransaction) {
	ref, ok := s.findDialog(req)
	if !ok {
		// A stray ACK has no response; there is nothing to do.
		return
	}
	ref.call.ackReceived(ref.leg, req.CSeq().SeqNo)
}

func (s *Server) onBye(req *sip.Request, tx sip.ServerTransaction) {
	if s.peerOr403(req, tx) == nil {
		return
	}
	ref, ok := s.dialogOr481(req, tx)
	if !ok {
		return
	}
	c := ref.call
	c.mu.Lock()
	// Only a leg whose dialog is up can be hung up; a BYE racing our final
	// error response to A is for a dialog that never existed.
	up := (ref.leg == c.a && c.aAnswered) || (ref.leg == c.b && c.bAnswered)
	// The peer that hangs up needs no BYE back.
	if ref.leg == c.a {
		c.aAnswered = false
	} else {
		c.bAnswered = false
	}
	c.mu.Unlock()
	if !up {
		s.Respond(tx, req, 481, "Call/Transaction Does Not Exist", nil)
		return
	}
	s.Respond(tx, req, 200, "OK", nil)
	cause := "bye"
	if h := req.GetHeader("Reason"); h != nil && ValidHeaderValue(h.Value()) {
		cause = "bye: " + truncate(h.Value(), 128)
	}
	c.terminate(ref.leg, cause)
}

// onCancel sees only CANCELs that matched no INVITE transaction: sipgo
// answers matching ones itself (200, then 487 to the INVITE).
func (s *Server) onCancel(req *sip.Request, tx sip.ServerTransaction) {
	if s.peerOr403(req, tx) == nil {
		return
	}
	s.Respond(tx, req, 481, "Call/Transaction Does Not Exist", nil)
}

func (s *Server) onOptions(req *sip.Request, tx sip.ServerTransaction) {
	ep := s.peerOr403(req, tx)
	if ep == nil {
		return
	}
	if ok, _ := s.authenticate(tx, req, ep, s.log.With("endpoint", ep.Name)); !ok {
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

// onOther answers every method wagate does not implement. An in-dialog
// request (To tag) for no dialog wagate holds gets 481 whatever its
// method (RFC 3261 §12.2.2), before anything else is looked at.
func (s *Server) onOther(req *sip.Request, tx sip.ServerTransaction) {
	if req.IsAck() {
		return
	}
	ep := s.peerOr403(req, tx)
	if ep == nil {
		return
	}
	if tag, _ := req.To().Params.Get("tag"); tag != "" {
		if _, ok := s.dialogOr481(req, tx); !ok {
			return
		}
		if req.Method == sip.INFO {
			// DTMF over INFO is not relayed; accepting it keeps
			// dialogs alive with peers that send it anyway.
			s.Respond(tx, req, 200, "OK", nil)
			return
		}
	}
	if ok, _ := s.authenticate(tx, req, ep, s.log.With("endpoint", ep.Name)); !ok {
		return
	}
	s.Respond(tx, req, 501, "Not Implemented", func(res *sip.Response) {
		res.AppendHeader(sip.NewHeader("Allow", allowedMethods))
	})
}

// onReinvite answers a re-INVITE on either leg locally with the SDP that
// leg already has: Meta refuses re-INVITEs (500), so hold, refresh and
// transfer on the PBX side must not reach the WhatsApp leg.
func (s *Server) onReinvite(req *sip.Request, tx sip.ServerTransaction) {
	if s.peerOr403(req, tx) == nil {
		return
	}
	ref, ok := s.dialogOr481(req, tx)
	if !ok {
		return
	}
	c := ref.call
	if st := c.getState(); st != stateConfirmed && st != stateAnswered {
		s.Respond(tx, req, 491, "Request Pending", nil)
		return
	}
	var sdp []byte
	if ref.leg == c.a {
		sdp = c.bridge.LocalAnswerA()
	} else {
		sdp = c.bridge.LocalOfferB()
	}
	res := sip.NewResponseFromRequest(req, 200, "OK", sdp)
	res.AppendHeader(s.Contact(ref.leg.transport))
	ct := sip.ContentTypeHeader("application/sdp")
	res.AppendHeader(&ct)
	acked := make(chan struct{})
	key := pendingKey{ref.leg, req.CSeq().SeqNo}
	c.mu.Lock()
	if c.pendingAcks == nil {
		c.pendingAcks = make(map[pendingKey]chan struct{})
	}
	c.pendingAcks[key] = acked
	c.mu.Unlock()
	c.log.Info("re-INVITE answered locally", "leg", ref.leg.name)
	if err := tx.Respond(res); err != nil {
		c.log.Debug("re-INVITE 200 not sent", "leg", ref.leg.name, "error", err)
	}
	c.awaitAck(s.ctx, tx, res, acked, !isUnreliable(ref.leg.transport))
	c.mu.Lock()
	delete(c.pendingAcks, key)
	c.mu.Unlock()
}

// onStrayResponse sees responses that matched no client transaction. A
// retransmitted 2xx to our INVITE means B did not get our ACK: resend it. A
// 2xx for a call we no longer have would leave B with a half-open dialog:
// ACK it and hang up.
func (s *Server) onStrayResponse(res *sip.Response) {
	cseq := res.CSeq()
	if cseq == nil || cseq.MethodName != sip.INVITE || !res.IsSuccess() {
		return
	}
	if ref, ok := s.reg.lookup(callIDOf(res)); ok && ref.leg == ref.call.b {
		ref.call.mu.Lock()
		ack := ref.call.bAck
		ref.call.mu.Unlock()
		if ack != nil {
			if err := s.client.WriteRequest(ack.Clone()); err != nil {
				ref.call.log.Debug("ACK resend failed", "leg", "b", "error", err)
			}
		}
		return
	}
	if res.To() == nil || res.From() == nil || res.CallID() == nil || !isOurCallID(callIDOf(res)) {
		// Not a B-leg of ours: a forged or misrouted 2xx must not make
		// wagate send requests to a Contact of the sender's choosing.
		return
	}
	l := &leg{name: "b", callID: callIDOf(res), transport: res.Transport()}
	l.localURI = res.From().Address
	l.localTag, _ = res.From().Params.Get("tag")
	l.remoteURI = res.To().Address
	l.remoteTarget = res.To().Address
	l.fromUACResponse(res)
	l.localCSeq = cseq.SeqNo
	// The ACK and BYE go where the 2xx came from, not to its Contact
	// or route set: the peer is there, and nothing else is contacted.
	l.dest = res.Source()
	l.routeSet = nil
	ack := l.ack(cseq.SeqNo)
	s.Prepare(ack)
	if err := s.client.WriteRequest(ack); err != nil {
		s.log.Debug("ACK for stray 2xx failed", "sip_call_id", l.callID, "error", err)
	}
	bye := l.newRequest(sip.BYE, nil)
	s.Prepare(bye)
	s.log.Info("stray 2xx to INVITE: ACK and BYE", "sip_call_id", l.callID)
	s.wg.Go(func() {
		ctx, cancel := contextWithTimeout(64 * sip.T1)
		defer cancel()
		_, _ = s.client.Do(ctx, bye)
	})
}

// authenticate runs digest authentication on an out-of-dialog request from
// endpoint ep when ep has `auth`. When the request may not go on it answers
// it (407 with a fresh challenge, or 403 for a locked-out source) and
// returns false.
//
// refused is the 403 it sent to a locked-out source (nil for a challenge):
// a refusal worth a call record, where a challenge is not.
func (s *Server) authenticate(tx sip.ServerTransaction, req *sip.Request, ep *configs.Endpoint, log *slog.Logger) (ok bool, refused *Rejection) {
	if ep.Auth == nil {
		return true, nil
	}
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

// isOurCallID reports a Call-ID of the form wagate gives its B-legs.
func isOurCallID(id string) bool {
	hexID, ok := strings.CutSuffix(id, bLegCallIDSuffix)
	if !ok || len(hexID) != 24 {
		return false
	}
	for i := 0; i < len(hexID); i++ {
		if c := hexID[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func contextWithTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
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

func DefaultReason(code int) string {
	switch code {
	case 404:
		return "Not Found"
	case 480:
		return "Temporarily Unavailable"
	case 486:
		return "Busy Here"
	case 487:
		return "Request Terminated"
	case 488:
		return "Not Acceptable Here"
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
