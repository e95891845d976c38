package b2bua

import (
	"errors"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/wagate/wagate/configs"
	sipedge "github.com/wagate/wagate/sip"
)

// dialResult is how placing a new leg ended: answered (leg and its ACKed
// 2xx), or the final code and reason it failed with.
type dialResult struct {
	leg    *leg
	answer *sip.Response
	code   int
	reason string
}

func (r dialResult) ok() bool { return r.answer != nil }

// dialLeg places a new leg of answered call c to callee,
// with offer (from Bridge.OfferSide) as its SDP, for the side the leg
// replaced by x is on. It returns when the leg answered (its 2xx ACKed),
// failed, rang past its ring time (480), or the call ended (487):
// then the INVITE is cancelled, and a 2xx that crosses the CANCEL gets
// its ACK and a BYE. The leg is findable by its Call-ID from the INVITE
// on; on failure it is forgotten again.
//
// It is the transfer's dialler. The hunt list's B-leg dialler is meant to
// take its place, so it knows nothing of transfers but x's leg and side.
func (s *Engine) dialLeg(c *call, x *transfer, callee sipedge.Callee, offer []byte, ringing func()) dialResult {
	cfg := s.edge.Config()
	ep := callee.EP
	l := &leg{name: x.from.name, ep: ep, side: x.from.side, callID: newCallID() + bLegCallIDSuffix, localTag: newTag(), localCSeq: 1}
	target, dest := callee.URI, callee.Dest
	l.localURI = c.newLegFrom(cfg)
	l.remoteURI, l.remoteTarget = callee.To, target
	l.transport = strings.ToUpper(ep.Transport)
	l.dest = dest

	req := sip.NewRequest(sip.INVITE, target)
	from := &sip.FromHeader{Address: l.localURI, Params: sip.NewParams()}
	from.Params.Add("tag", l.localTag)
	req.AppendHeader(from)
	req.AppendHeader(&sip.ToHeader{Address: l.remoteURI, Params: sip.NewParams()})
	cid := sip.CallIDHeader(l.callID)
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.INVITE})
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	req.AppendHeader(s.edge.Contact(l.transport))
	req.AppendHeader(sip.NewHeader("User-Agent", cfg.SIP.UserAgent))
	req.AppendHeader(sip.NewHeader("Allow", allowFor(ep)))
	for _, h := range c.route.TransferHeaders(c.id) {
		req.AppendHeader(h)
	}
	ct := sip.ContentTypeHeader("application/sdp")
	req.AppendHeader(&ct)
	req.SetBody(offer)
	req.SetTransport(l.transport)
	if dest != "" {
		req.SetDestination(dest)
	}
	s.edge.Prepare(req)

	c.mu.Lock()
	x.leg = l
	c.mu.Unlock()
	s.reg.addLeg(c, l)
	fail := func(code int, reason string) dialResult {
		s.reg.removeLeg(c, l)
		return dialResult{code: code, reason: reason}
	}
	btx, err := s.edge.Client().TransactionRequest(s.ctx, req)
	if err != nil {
		c.log.Warn("transfer INVITE not sent", "target", target.String(), "error", err)
		return fail(503, "Service Unavailable")
	}
	defer btx.Terminate()
	c.log.Info("transfer target called", "target", target.String(), "endpoint", ep.Name, "sip_call_id_new", l.callID)

	ringFor := callee.RingTimeout
	if ringFor <= 0 {
		ringFor = cfg.SIP.RingTimeout.D()
	}
	ring := time.NewTimer(ringFor)
	defer ring.Stop()
	var (
		provisional, cancelSent bool
		gaveUp                  string // why wagate stopped waiting; "" while it waits
		giveUpCode              int
		abandon                 <-chan time.Time
	)
	giveUp := func(code int, why string) {
		if gaveUp != "" {
			return
		}
		gaveUp, giveUpCode = why, code
		abandon = time.After(64 * sip.T1)
		if provisional && !cancelSent {
			cancelSent = true
			s.sendCancel(c, req)
		}
	}
	ended := c.ended
	for {
		select {
		case res := <-btx.Responses():
			switch {
			case res.StatusCode < 200:
				provisional = true
				if gaveUp != "" && !cancelSent {
					cancelSent = true
					s.sendCancel(c, req)
				}
				if res.StatusCode > 100 && gaveUp == "" && ringing != nil {
					ringing()
				}
			case res.StatusCode < 300:
				l.fromUACResponse(res)
				ack := l.ack(req.CSeq().SeqNo)
				s.edge.Prepare(ack)
				if err := s.edge.Client().WriteRequest(ack); err != nil {
					c.log.Warn("ACK not sent", "leg", l.name, "sip_call_id", l.callID, "error", err)
				}
				l.mu.Lock()
				l.sentAck = ack
				l.mu.Unlock()
				btx.OnRetransmission(s.reAck(ack, l.callID))
				if gaveUp != "" {
					// Answered as wagate gave up on it: hang it up.
					s.sendBye(c, l)
					return fail(giveUpCode, gaveUp)
				}
				return dialResult{leg: l, answer: res, code: res.StatusCode, reason: res.Reason}
			default:
				if gaveUp != "" {
					return fail(giveUpCode, gaveUp)
				}
				reason := res.Reason
				if reason == "" || !sipedge.ValidHeaderValue(reason) {
					reason = sipedge.DefaultReason(res.StatusCode)
				}
				return fail(res.StatusCode, reason)
			}
		case <-btx.Done():
			if gaveUp != "" {
				return fail(giveUpCode, gaveUp)
			}
			if err := btx.Err(); err != nil && !errors.Is(err, sip.ErrTransactionTimeout) {
				return fail(503, "Service Unavailable")
			}
			return fail(408, "Request Timeout")
		case <-ring.C:
			giveUp(480, "Temporarily Unavailable")
		case <-ended:
			ended = nil
			giveUp(487, "Request Terminated")
		case <-s.ctx.Done():
			giveUp(503, "Service Unavailable")
			return fail(giveUpCode, gaveUp)
		case <-abandon:
			c.log.Warn("transfer target sent no final response within 64*T1 of being cancelled", "sip_call_id_new", l.callID)
			return fail(giveUpCode, gaveUp)
		}
	}
}

// newLegFrom is the From of a new agent leg: the WhatsApp user, as the
// first agent of a UIC saw it; on a BIC the user's number (or id) at our
// host.
func (c *call) newLegFrom(cfg *configs.Config) sip.Uri {
	if c.route.Dir == sipedge.UIC {
		return *c.route.BFrom.Clone()
	}
	return sip.Uri{Scheme: "sip", User: c.route.User, Host: cfg.SIP.Host}
}
