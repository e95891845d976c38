package b2bua

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/wagate/wagate/configs"
	"github.com/wagate/wagate/events"
	"github.com/wagate/wagate/media"
	sipedge "github.com/wagate/wagate/sip"
)

// Hold, resume and media that moves: a peer's re-INVITE is answered by
// wagate from the leg's own media (Bridge.AcceptOffer) and never reaches
// the other leg. Meta refuses re-INVITEs, so the WhatsApp leg must not see
// the PBX's hold, its transfers or its media servers: while the PBX side
// holds, wagate plays music on hold (or comfort noise) toward WhatsApp,
// which also keeps Meta's no-media rule from ending the call, and does not
// expect media from the held side.

// engineControl is what the engine keeps for hold and transfer.
type engineControl struct {
	// moh is the music on hold (nil: comfort noise).
	moh atomic.Pointer[media.Clip]
	// link joins two calls' bridges (media.Link for real bridges).
	link func(b1 Bridge, s1 media.Side, b2 Bridge, s2 media.Side) error
	// handoverPublished, when set (tests only), runs in takeHandover
	// between publishing the handover on the consulted call and noting
	// it on the caller's: the consulted call may answer or fail there.
	handoverPublished atomic.Pointer[func()]
	// userAnswerTaken, when set (tests only), runs in userAnswered once
	// takeAnswer gave a click-to-call's answer to its agent, before the
	// call is up: a REFER there finds no handover to take.
	userAnswerTaken atomic.Pointer[func()]
}

// callControl is what hold and transfer keep about a call, under its mu
// (moh under mohMu).
type callControl struct {
	mohMu sync.Mutex
	moh   *media.Playback
	mohOn bool
	// reinvite is set while a re-INVITE is being answered: a second one
	// meanwhile gets 491.
	reinvite bool
	// xfer is the transfer under way; transfers the record of them all;
	// count how many were tried (a loop guard).
	xfer      *transfer
	transfers []events.Transfer
	count     int
	// joined is the call this one's media is linked to after an
	// attended transfer: each ends the other.
	joined *call
	// Semi-attended transfer (join.go): handoverCh is set while the
	// call's ring loop rings B for a dialer's or PBX's INVITE, handover
	// once a REFER handed B over to another call's caller; handoverTo,
	// on that other call, is the call whose answer it waits for.
	handoverCh chan struct{}
	handover   *handover
	handoverTo *call
	// handoverAnswered: B answered for a handover (takeAnswer) that
	// joinHandover has not set up yet; the agent's BYE meanwhile ends
	// only its leg, as it does while B rings (handoverAgentGoneLocked).
	handoverAnswered bool
	// answering, on a click-to-call, is made by takeAnswer when the
	// user's answer goes to the agent and closed once userAnswered is
	// through (answerSettled): a REFER that lost the race to hand the
	// user over waits for it, then joins the call as answered.
	answering chan struct{}
	// aReleased: A's INVITE got its 487 for a handover; nothing else
	// may answer it.
	aReleased bool
}

// SetMusicOnHold sets the audio a held caller hears (nil: comfort noise).
// Safe at any time; calls already on hold keep what they play.
func (s *Engine) SetMusicOnHold(c *media.Clip) { s.ctl.moh.Store(c) }

// holdSource is a new source of hold audio.
func (s *Engine) holdSource() media.FrameSource {
	if c := s.ctl.moh.Load(); c != nil {
		return c.Loop()
	}
	return media.ComfortNoise(comfortNoiseDBFS)
}

// comfortNoiseDBFS is the level of the comfort noise a held caller hears
// without music: a quiet room.
const comfortNoiseDBFS = -60

// waSide is the bridge side of the call's WhatsApp leg (A on a UIC);
// pbxSide the other, the PBX's or dialer's.
func (c *call) waSide() media.Side {
	if c.route.AEP.Kind == configs.KindWhatsApp {
		return media.SideA
	}
	return media.SideB
}

func (c *call) pbxSide() media.Side { return 1 - c.waSide() }

// legOf returns the call's current leg on side s.
func (c *call) legOf(s media.Side) *leg {
	a, b := c.legs()
	if s == media.SideA {
		return a
	}
	return b
}

// onReinvite answers a re-INVITE on either leg from that leg's own media:
// hold (sendonly, inactive, c=0.0.0.0) and resume, a new media address,
// new payload types. An offer the leg cannot take (its codec dropped,
// malformed) gets 488 and changes nothing (RFC 3261 §14.2). A re-INVITE
// without SDP (a session refresh, or a delayed offer: Cisco CUCM resumes
// and transfers so) is answered with an offer of the leg's current stream
// at sendrecv, and the answer in its ACK is applied like an offer.
//
// A second re-INVITE gets 491 while one is answered, and while an offer
// wagate made in a 200 waits for its answer in the ACK; not while only
// the ACK of an answered offer is on its way: the peer may send its next
// re-INVITE as soon as it sent that ACK, and the two can arrive in either
// order.
func (s *Engine) onReinvite(req *sip.Request, tx sip.ServerTransaction) {
	ref, ok := s.dialogOr481(req, tx)
	if !ok {
		return
	}
	c, l := ref.call, ref.leg
	c.mu.Lock()
	current := (l == c.a || l == c.b) && !l.retired
	// A transfer target that answered and was ACKed may re-INVITE at
	// once (a PBX moving media to the phone) before its leg takes the
	// place of the old one: 491, to retry, not 481, which ends its dialog.
	x := c.cc.xfer
	joining := !current && x != nil && x.leg == l && !x.connected
	st, busy := c.state, c.cc.reinvite
	// A click-to-call's agent hears wagate's ringback while the user's
	// phone rings: its PBX may refresh a session timer, move the media
	// or hold meanwhile, and a 491 repeated until the user answers could
	// end the call (RFC 4028). Its leg's media is wagate's own until
	// then, so wagate answers from it, as after the answer.
	ringing := st == stateCalling && l == c.a && c.agentUp && c.origin == OriginClickToCall
	open := st == stateConfirmed || st == stateAnswered || ringing
	if current && !busy && open {
		c.cc.reinvite = true
	}
	c.mu.Unlock()
	switch {
	case joining && st != stateEnded:
		s.edge.Respond(tx, req, 491, "Request Pending", nil)
		return
	case !current || st == stateEnded:
		// A re-INVITE that crossed the call's end is for a dialog that
		// is gone (or going: its BYE is on the way), not one to retry.
		s.edge.Respond(tx, req, 481, "Call/Transaction Does Not Exist", nil)
		return
	case busy || !open:
		s.edge.Respond(tx, req, 491, "Request Pending", nil)
		return
	}
	released := false
	release := func() {
		if !released {
			released = true
			c.mu.Lock()
			c.cc.reinvite = false
			c.mu.Unlock()
		}
	}
	defer release()
	var (
		sdp   []byte
		state media.StreamState
		err   error
	)
	delayed := len(req.Body()) == 0
	switch body := req.Body(); {
	case delayed:
		sdp = c.bridge.ReOffer(l.side)
	case req.ContentType() != nil && !isSDPType(req.ContentType().Value()):
		release() // before the answer: see the 488 below
		s.edge.Reject(tx, req, &sipedge.Rejection{Code: 415, Reason: "Unsupported Media Type", Warning: "the offer must be application/sdp",
			Accept: "application/sdp", Log: "re-INVITE body is " + truncate(req.ContentType().Value(), 64)}, c.log.With("leg", l.name))
		return
	default:
		if sdp, state, err = c.bridge.AcceptOffer(l.side, body); err != nil {
			if c.getState() == stateEnded {
				// The call ended as the offer was read (its media is
				// closed): the dialog is gone, the offer was fine.
				s.edge.Respond(tx, req, 481, "Call/Transaction Does Not Exist", nil)
				return
			}
			r := sdpRejection(err)
			r.Code, r.Reason = 488, "Not Acceptable Here"
			r.Log = "re-INVITE refused: " + err.Error()
			// The refused offer is over once its 488 is sent: the peer
			// may send its next re-INVITE as soon as it has the 488, and
			// released after, that one could find the call still taken
			// and get 491 (TestReinviteRightAfter488).
			release()
			s.edge.Reject(tx, req, r, c.log.With("leg", l.name))
			return
		}
	}
	res := sip.NewResponseFromRequest(req, 200, "OK", sdp)
	res.AppendHeader(s.edge.Contact(l.transport))
	res.AppendHeader(sip.NewHeader("Allow", allowFor(l.ep)))
	ct := sip.ContentTypeHeader("application/sdp")
	res.AppendHeader(&ct)
	pa := &pendingAck{done: make(chan struct{})}
	key := pendingKey{l, req.CSeq().SeqNo}
	c.mu.Lock()
	if c.pendingAcks == nil {
		c.pendingAcks = make(map[pendingKey]*pendingAck)
	}
	c.pendingAcks[key] = pa
	c.mu.Unlock()
	if delayed {
		c.log.Info("re-INVITE without SDP answered with an offer", "leg", l.name)
	} else {
		c.log.Info("re-INVITE answered", "leg", l.name, "direction", string(state.Direction), "hold", state.Hold, "moved", state.Moved)
	}
	if !delayed {
		// The offer is answered: the next re-INVITE may come before
		// this one's ACK, and as soon as the peer has the 200, so
		// before it is sent: released after, a peer that resumed at
		// once could find it still taken and get 491 (seen on a loaded
		// machine, TestReinviteBeforeAck).
		release()
	}
	if err := tx.Respond(res); err != nil {
		c.log.Debug("re-INVITE 200 not sent", "leg", l.name, "error", err)
	}
	c.updateMOH()
	acked := c.awaitAck(s.ctx, tx, res, pa.done, !isUnreliable(l.transport))
	c.mu.Lock()
	delete(c.pendingAcks, key)
	body := pa.body
	c.mu.Unlock()
	if !delayed || !acked {
		return
	}
	if len(body) == 0 {
		c.log.Warn("ACK to a re-INVITE without SDP carried no answer; media unchanged", "leg", l.name)
		return
	}
	if state, err = c.bridge.AcceptAnswer(l.side, body); err != nil {
		// The peer's answer is refused after the fact: the leg keeps
		// the media it had rather than the call being dropped.
		c.log.Warn("answer in the ACK not applied; media unchanged", "leg", l.name, "error", err)
		return
	}
	c.log.Info("answer in the ACK applied", "leg", l.name, "direction", string(state.Direction), "hold", state.Hold, "moved", state.Moved)
	c.updateMOH()
}

// updateMOH starts or stops the hold audio toward the WhatsApp side: it
// plays while the PBX side holds and while a transfer rings a new agent,
// not after an attended transfer joined the call to another.
func (c *call) updateMOH() {
	c.cc.mohMu.Lock()
	defer c.cc.mohMu.Unlock()
	held := c.bridge.Held(c.pbxSide())
	c.mu.Lock()
	x := c.cc.xfer
	want := c.state != stateEnded && c.cc.joined == nil && (held || x != nil && !x.connected)
	c.mu.Unlock()
	switch {
	case want && !c.cc.mohOn:
		src := c.srv.holdSource()
		if held && x == nil {
			// The PBX holding may play its own music (a=sendonly, the
			// contact centre's queue music) or send nothing (a phone's
			// hold key): what it sends is heard, ours fills the rest.
			// While a transfer's target rings the old peer's audio is
			// not for the caller.
			src = media.GiveWay(src)
		}
		pb, err := c.bridge.Play(c.waSide(), src, time.Time{})
		if err != nil {
			c.log.Warn("music on hold not played", "error", err)
			return
		}
		c.cc.moh, c.cc.mohOn = pb, true
		c.log.Info("music on hold started", "held", held, "transferring", x != nil)
	case !want && c.cc.mohOn:
		if c.cc.moh != nil {
			c.cc.moh.Stop()
		}
		c.cc.moh, c.cc.mohOn = nil, false
		c.log.Info("music on hold stopped")
	}
}
