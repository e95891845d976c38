package b2bua

import (
	"bytes"
	"context"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
	sipedge "github.com/wagate/wagate/sip"
)

// findDialog returns the call and leg an in-dialog request belongs to, and
// checks it comes from that leg's peer: the Call-ID alone is not proof.
func (s *Engine) findDialog(req *sip.Request) (callRef, bool) {
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

// dialogOr481 finds the dialog of an in-dialog request, answering 481 when
// there is none.
func (s *Engine) dialogOr481(req *sip.Request, tx sip.ServerTransaction) (callRef, bool) {
	ref, ok := s.findDialog(req)
	if !ok {
		s.edge.Respond(tx, req, 481, "Call/Transaction Does Not Exist", nil)
	}
	return ref, ok
}

func (s *Engine) onAck(req *sip.Request) {
	ref, ok := s.findDialog(req)
	if !ok {
		if v, ok := s.ackWait.Load(callIDOf(req)); ok {
			// The ACK a hung-up call's BYE waits for.
			c := v.(*call)
			if from := req.From(); from != nil {
				tag, _ := from.Params.Get("tag")
				c.a.mu.Lock()
				remoteTag := c.a.remoteTag
				c.a.mu.Unlock()
				if tag != "" && tag == remoteTag {
					c.ackReceived(c.a, req.CSeq().SeqNo, nil)
				}
			}
		}
		// A stray ACK has no response; there is nothing to do.
		return
	}
	ref.call.ackReceived(ref.leg, req.CSeq().SeqNo, bytes.Clone(req.Body()))
}

func (s *Engine) onBye(req *sip.Request, tx sip.ServerTransaction) {
	ref, ok := s.dialogOr481(req, tx)
	if !ok {
		return
	}
	c := ref.call
	c.mu.Lock()
	if ref.leg.retired || c.transferorGoneLocked(ref.leg) || c.handoverAgentGoneLocked(ref.leg) {
		// A leg that left the call (transferred away) hangs up only
		// itself.
		c.mu.Unlock()
		s.edge.Respond(tx, req, 200, "OK", nil)
		c.log.Info("BYE from a leg that left the call", "leg", ref.leg.name, "sip_call_id", ref.leg.callID)
		return
	}
	if x := c.cc.xfer; x != nil && x.leg == ref.leg && !x.connected && c.state != stateEnded {
		// A transfer target that hangs up as soon as it answered, before
		// its leg took the call's place: the transfer completes and the
		// call ends then (completeTransfer), as if it had hung up a
		// moment later. A 481 here left the caller on a leg that was gone.
		x.legGone = true
		c.mu.Unlock()
		s.edge.Respond(tx, req, 200, "OK", nil)
		c.log.Info("BYE from the transfer target before it took the call", "sip_call_id", ref.leg.callID)
		sipedge.Release(req)
		return
	}
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
		s.edge.Respond(tx, req, 481, "Call/Transaction Does Not Exist", nil)
		return
	}
	s.edge.Respond(tx, req, 200, "OK", nil)
	cause := "bye"
	if h := req.GetHeader("Reason"); h != nil && sipedge.ValidHeaderValue(h.Value()) {
		cause = "bye: " + truncate(h.Value(), 128)
	}
	// The BYE's transaction keeps it until Timer J to answer a
	// retransmission with the 200 it has; the BYE itself is not read
	// again (release.go).
	sipedge.Release(req)
	c.terminate(ref.leg, cause)
}

// onOtherInDialog answers the other in-dialog requests: INFO is accepted
// (DTMF over INFO is not relayed, but refusing it tears down dialogs with
// peers that send it anyway), OPTIONS (a peer asking whether the dialog
// is still there) gets 200, a dialog that is gone 481; the rest are not
// implemented.
func (s *Engine) onOtherInDialog(req *sip.Request, tx sip.ServerTransaction) {
	ref, ok := s.dialogOr481(req, tx)
	if !ok {
		return
	}
	switch req.Method {
	case sip.INFO:
		s.edge.Respond(tx, req, 200, "OK", nil)
		return
	case sip.OPTIONS:
		s.edge.Respond(tx, req, 200, "OK", func(res *sip.Response) {
			res.AppendHeader(sip.NewHeader("Allow", allowFor(ref.leg.ep)))
			res.AppendHeader(sip.NewHeader("Accept", "application/sdp"))
		})
		return
	}
	s.edge.Respond(tx, req, 501, "Not Implemented", func(res *sip.Response) {
		res.AppendHeader(sip.NewHeader("Allow", allowedMethods))
	})
}

// onStrayResponse sees responses that matched no client transaction. A
// retransmitted 2xx to our INVITE means B did not get our ACK: resend it. A
// 2xx for a call we no longer have would leave B with a half-open dialog:
// ACK it and hang up (every copy is ACKed; one BYE per dialog, at most
// maxStrayByes under way).
func (s *Engine) onStrayResponse(res *sip.Response) {
	cseq := res.CSeq()
	if cseq == nil || cseq.MethodName != sip.INVITE {
		return
	}
	if res.StatusCode >= 300 {
		// The 487 to an INVITE cancelled after a restart: ACKed, or
		// it is resent for 32 s.
		s.ackRestartCancelled(res)
		return
	}
	if !res.IsSuccess() {
		return
	}
	// A transfer's new leg keeps its own ACK; a click-to-call's agent leg
	// is one wagate placed too.
	if ref, ok := s.reg.lookup(callIDOf(res)); ok && (ref.leg.lastAck() != nil || ref.leg == ref.call.b || ref.call.origin != "") {
		ack := ref.leg.lastAck()
		ref.call.mu.Lock()
		switch {
		case ack != nil:
		case ref.leg == ref.call.a:
			ack = ref.call.aAck
		default:
			ack = ref.call.bAck
		}
		ref.call.mu.Unlock()
		if ack != nil {
			if err := s.edge.Client().WriteRequest(ack.Clone()); err != nil {
				ref.call.log.Debug("ACK resend failed", "leg", ref.leg.name, "error", err)
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
	s.edge.Prepare(ack)
	if err := s.edge.Client().WriteRequest(ack); err != nil {
		s.log.Debug("ACK for stray 2xx failed", "sip_call_id", l.callID, "error", err)
	}
	// One BYE per stray dialog, and a bounded number at once: a flood of
	// 2xx must not become twelve requests and a 32 s goroutine each.
	if !s.strays.start(l.callID, s.log) {
		return
	}
	bye := l.newRequest(sip.BYE, nil)
	s.edge.Prepare(bye)
	s.log.Info("stray 2xx to INVITE: ACK and BYE", "sip_call_id", l.callID)
	s.wg.Go(func() {
		defer s.strays.done(l.callID)
		ctx, cancel := contextWithTimeout(64 * sip.T1)
		defer cancel()
		_, _ = s.edge.Client().Do(ctx, bye)
	})
}

// isOurCallID reports a Call-ID of the form wagate gives its B-legs: the
// call's id, then for the second and later attempts of a hunt "-n"
// (bLegCallID; n has no leading zero and at most maxAttemptDigits
// digits: a queue ringing its agents for an hour numbers in the
// thousands).
func isOurCallID(id string) bool {
	hexID, ok := strings.CutSuffix(id, bLegCallIDSuffix)
	if !ok {
		return false
	}
	if base, n, found := strings.Cut(hexID, "-"); found {
		if len(n) == 0 || len(n) > maxAttemptDigits || n[0] == '0' || strings.Trim(n, "0123456789") != "" {
			return false
		}
		hexID = base
	}
	if len(hexID) != 24 {
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
