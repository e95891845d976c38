package b2bua

import (
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/wagate/wagate/configs"
	sipedge "github.com/wagate/wagate/sip"
)

// attempt is one B-leg INVITE of a call: the only one of a route to one
// extension or of a BIC, one per target a hunt rings, one more per
// redirect followed. Its goroutine (runAttempt) drives the INVITE
// transaction to its end and reports to the hunt; the hunt goroutine owns
// the fields below stop.
type attempt struct {
	n         int // 1-based, in the order started
	callee    sipedge.Callee
	leg       *leg // its dialog; copied into call.b when it wins
	redirects int  // 3xx followed to get here
	// stop is closed when the hunt gives up on the attempt: it is
	// cancelled, and can no longer win.
	stop     chan struct{}
	stopOnce sync.Once

	// ring is the agent's ring (huntState.ring) the attempt holds
	// (hunt.start; nil for a target skipped without an INVITE).
	ring *ringHold
	// won: its 2xx won the hunt (claim). Its ring then ends when its
	// agent is seated, not when its goroutine ends (hunt.ringEnded).
	won bool

	started  time.Time
	rang     bool // it reported ringing
	resolved bool // its result is known
	result   string
	code     int
	endedAt  time.Time
}

func (at *attempt) cancel() { at.stopOnce.Do(func() { close(at.stop) }) }

// endRing ends the attempt's ring, if it holds one and has not ended it.
func (at *attempt) endRing() { at.ring.end() }

// ringHold is an agent's ring held by an attempt, apart from it: what
// ends the ring late (hunt.ringEnded's timer) holds this, not the
// attempt, whose call, legs and messages would otherwise live on for
// that time after the call (33 MiB more at 1,000 calls/s).
type ringHold struct {
	done    atomic.Bool
	release func()
}

// end calls release once; a nil ringHold holds no ring.
func (r *ringHold) end() {
	if r != nil && r.done.CompareAndSwap(false, true) {
		r.release()
	}
}

// cancelled reports whether the hunt gave up on the attempt.
func (at *attempt) cancelled() bool {
	select {
	case <-at.stop:
		return true
	default:
		return false
	}
}

// attemptEvent is what an attempt tells its hunt.
type attemptEvent struct {
	at   *attempt
	kind eventKind
	res  *sip.Response
	// req and tx are the INVITE and transaction a 2xx answered, handed
	// over to the hunt with evAnswered.
	req *sip.Request
	tx  sip.ClientTransaction
	// err says why no final response came (evFailed), or that the
	// attempt was abandoned (evDone).
	err error
	// unsent marks an INVITE that could not even be sent (evFailed).
	unsent bool
	// afterStop marks an event of an attempt already given up on.
	afterStop bool
}

type eventKind int

const (
	evRinging  eventKind = iota // a 1xx other than 100
	evFinal                     // a final error response (3xx–6xx)
	evTimeout                   // the callee's ring time passed; it is being cancelled
	evFailed                    // no final response: not sent, transport error, Timer B
	evAnswered                  // a 2xx that won: req and tx are the hunt's now
	evLate                      // a 2xx that could not win: ACKed and hung up already
	evDone                      // the attempt's goroutine ended
)

// errAbandoned marks an attempt that never ended its INVITE transaction
// after it was cancelled.
var errAbandoned = errors.New("b-leg never ended its INVITE")

// errCallEnded is an attempt not made: its call ended before its INVITE
// could go out.
var errCallEnded = errors.New("the call ended before the B-leg INVITE went out")

// maxAttemptDigits bounds the attempt number in a B-leg Call-ID that
// isOurCallID accepts: 9 digits are room for a queue's parallel ring of
// 50 agents every second for far longer than its 1 h limit_time (180,000
// attempts), yet keep a stray response's Call-ID short to check.
const maxAttemptDigits = 9

// bLegCallID is the Call-ID of the nth B-leg INVITE of call id: the first
// keeps the form every call had before hunts (its id and @wagate), so a
// call to one extension looks the same as ever.
func bLegCallID(id string, n int) string {
	if n <= 1 {
		return id + bLegCallIDSuffix
	}
	return id + "-" + strconv.Itoa(n) + bLegCallIDSuffix
}

// newAttempt prepares the hunt's next attempt, toward callee.
func (h *hunt) newAttempt(callee sipedge.Callee, redirects int) *attempt {
	n := h.base + len(h.attempts) + 1
	return &attempt{n: n, callee: callee, redirects: redirects, stop: make(chan struct{}), leg: h.side.newLeg(h.c, n)}
}

// bInvite builds the INVITE of attempt at, with the offer made once for
// every attempt of the call, and sets up the attempt's leg.
func (s *Engine) bInvite(c *call, at *attempt, offer []byte) *sip.Request {
	dec, callee := c.route, at.callee
	b := at.leg
	s.reg.usePeer(c, callee.EP)
	b.mu.Lock()
	b.localURI = dec.BFrom
	b.localTag = newTag()
	b.remoteURI = callee.To
	b.remoteTarget = callee.URI
	b.transport = strings.ToUpper(callee.EP.Transport)
	b.localCSeq = 1
	b.dest = callee.Dest
	tag, callID, transport := b.localTag, b.callID, b.transport
	b.mu.Unlock()

	req := sip.NewRequest(sip.INVITE, callee.URI)
	from := &sip.FromHeader{Address: dec.BFrom, Params: sip.NewParams()}
	from.Params.Add("tag", tag)
	if dn := c.aFacts.display; dn != "" && dec.Dir == sipedge.UIC {
		from.DisplayName = sanitizeDisplay(dn)
	}
	req.AppendHeader(from)
	req.AppendHeader(&sip.ToHeader{Address: callee.To, Params: sip.NewParams()})
	cid := sip.CallIDHeader(callID)
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.INVITE})
	mf := sip.MaxForwardsHeader(70)
	if c.aFacts.maxForwards > 0 {
		mf = sip.MaxForwardsHeader(c.aFacts.maxForwards - 1)
	}
	req.AppendHeader(&mf)
	req.AppendHeader(s.edge.Contact(transport))
	req.AppendHeader(sip.NewHeader("User-Agent", s.edge.Config().SIP.UserAgent))
	req.AppendHeader(sip.NewHeader("Allow", allowFor(callee.EP)))
	if dec.Dir == sipedge.UIC {
		// The PBX learns about the WhatsApp call only through these;
		// toward Meta (BIC) nothing X-WABA is ever written.
		for _, h := range dec.UIC.Headers(dec.Number, c.id) {
			req.AppendHeader(h)
		}
	}
	ct := sip.ContentTypeHeader("application/sdp")
	req.AppendHeader(&ct)
	req.SetBody(offer)
	req.SetTransport(transport)
	if callee.Dest != "" {
		req.SetDestination(callee.Dest)
	}
	s.edge.Prepare(req)
	return req
}

// runAttempt sends attempt at's INVITE and drives its transaction until
// it ends: provisional responses and the final one are reported to h; B's
// digest challenge is answered (BIC); at the callee's ring time or when h
// gives up on it, the INVITE is cancelled, and B then has 64·T1 to end it
// (RFC 3261 §9.1) before it is abandoned. A 2xx wins the call only when h
// lets it (claim); one that cannot is ACKed and hung up here. It runs in a
// goroutine the engine owns and always ends with evDone.
func (s *Engine) runAttempt(h *hunt, at *attempt, offer []byte) {
	c := h.c
	log := c.log.With("leg", at.leg.name, "target", at.callee.Name(), "attempt", at.n)
	req := h.side.invite(s, c, at, offer)
	unsent := func() {}
	if _, ok := h.side.(bSide); ok && h.xfer == nil {
		var live bool
		if unsent, live = c.invitingB(); !live {
			log.Info("B-leg INVITE not sent: the call ended first")
			h.send(attemptEvent{at: at, kind: evFailed, err: errCallEnded, unsent: true})
			h.send(attemptEvent{at: at, kind: evDone})
			return
		}
	}
	tx, err := s.edge.Client().TransactionRequest(s.ctx, req)
	if err != nil {
		unsent()
		log.Warn("B-leg INVITE not sent", "error", err)
		h.send(attemptEvent{at: at, kind: evFailed, err: err, unsent: true})
		h.send(attemptEvent{at: at, kind: evDone})
		return
	}
	log.Debug("B-leg INVITE sent", "uri", at.callee.URI.String())
	// Until its final response, a crash leaves the callee ringing: the
	// journal keeps what the next start cancels it with.
	branch := s.journalInvite(c, at.leg.name, req)
	final := false // B's final response came
	defer func() { s.journalInviteDone(c, branch, final) }()

	var (
		handedOver  bool // a 2xx won: the transaction is the hunt's
		abandoned   bool
		provisional bool // B sent a 1xx, so CANCEL may be sent
		stopping    bool // wagate gave up on B
		cancelSent  bool
		authTries   int // B's challenges answered
		abandon     <-chan time.Time
	)
	defer func() {
		if !handedOver {
			tx.Terminate()
		}
		done := attemptEvent{at: at, kind: evDone}
		if abandoned {
			done.err = errAbandoned
		}
		h.send(done)
	}()
	sendCancel := func() {
		if stopping && provisional && !cancelSent {
			cancelSent = true
			s.sendCancel(c, req)
		}
	}
	giveUp := func() {
		if !stopping {
			stopping = true
			abandon = time.After(64 * sip.T1)
		}
		sendCancel()
	}
	ring := time.NewTimer(at.callee.RingTimeout)
	defer ring.Stop()
	stop := at.stop

	for {
		select {
		case res := <-tx.Responses():
			final = res.StatusCode >= 200
			switch {
			case res.StatusCode < 200:
				provisional = true
				sendCancel()
				if !stopping && res.StatusCode > 100 {
					h.send(attemptEvent{at: at, kind: evRinging, res: res})
				}
			case res.StatusCode < 300:
				if !stopping && h.claim(at) {
					handedOver = true
					h.send(attemptEvent{at: at, kind: evAnswered, res: res, req: req, tx: tx})
					return
				}
				s.hangUpLate(c, at, req, tx, res, log)
				h.send(attemptEvent{at: at, kind: evLate, res: res, afterStop: stopping})
				return
			default:
				if (res.StatusCode == 401 || res.StatusCode == 407) && !stopping {
					if retry := s.answerB(c, at.callee.EP, req, res, authTries, log); retry != nil {
						ntx, err := s.edge.Client().TransactionRequest(s.ctx, retry)
						if err != nil {
							log.Warn("B-leg INVITE with credentials not sent", "error", err)
						} else {
							// The old transaction ACKs the challenge
							// (and its retransmissions) by itself.
							authTries++
							s.journalInviteEnded(c, branch)
							branch = s.journalInvite(c, at.leg.name, retry)
							req, tx, provisional, final = retry, ntx, false, false
							at.leg.mu.Lock()
							at.leg.localCSeq = retry.CSeq().SeqNo
							at.leg.mu.Unlock()
							continue
						}
					}
				}
				h.send(attemptEvent{at: at, kind: evFinal, res: res, afterStop: stopping})
				return
			}
		case <-tx.Done():
			log.Debug("B-leg INVITE ended without a final response", "error", errString(tx.Err()))
			h.send(attemptEvent{at: at, kind: evFailed, err: tx.Err(), afterStop: stopping})
			return
		case <-ring.C:
			if !stopping {
				h.send(attemptEvent{at: at, kind: evTimeout})
				giveUp()
			}
		case <-stop:
			stop = nil
			giveUp()
		case <-abandon:
			log.Warn("B-leg sent no final response within 64*T1 of being cancelled; attempt abandoned", "cancel_sent", cancelSent)
			abandoned = true
			return
		case <-s.ctx.Done():
			giveUp()
			return
		}
	}
}

// hangUpLate ACKs a 2xx that came too late to win (wagate gave up on the
// callee, another answered first, or A is gone) and hangs that dialog up
// at once: B must not be left with a half-open call.
func (s *Engine) hangUpLate(c *call, at *attempt, req *sip.Request, tx sip.ClientTransaction, res *sip.Response, log *slog.Logger) {
	// A winner hung up this way is seated nowhere: its ring ends now.
	at.endRing()
	l := at.leg
	l.fromUACResponse(res)
	ack := l.ackOf(req)
	s.edge.Prepare(ack)
	if err := s.edge.Client().WriteRequest(ack); err != nil {
		log.Warn("ACK not sent", "error", err)
	}
	tx.OnRetransmission(s.reAck(ack, l.callID))
	bye := l.newRequest(sip.BYE, nil)
	s.edge.Prepare(bye)
	log.Info("B-leg answered too late: ACK and BYE", "code", res.StatusCode)
	s.wg.Go(func() {
		ctx, cancel := contextWithTimeout(64 * sip.T1)
		defer cancel()
		if _, err := s.edge.Client().Do(ctx, bye); err != nil {
			log.Warn("BYE failed", "error", err)
		}
	})
}

// answerB returns the INVITE that answers B's challenge res to bReq, or nil
// when wagate must not answer it: only a whatsapp B-leg's challenge, in its
// digest_realm, from its addresses, and once per call (a second challenge
// means the credentials were refused; it becomes a 503 to A) unless the
// second says stale=true: the nonce expired, the password was right
// (RFC 7616 §3.3), and the new nonce is answered once. tries is how many
// challenges of this INVITE were answered already.
func (s *Engine) answerB(c *call, bep *configs.Endpoint, bReq *sip.Request, res *sip.Response, tries int, log *slog.Logger) *sip.Request {
	if tries > 0 && (tries > 1 || !sipedge.StaleChallenge(bep, res)) {
		log.Warn("B-leg challenged the INVITE with credentials again; not answering twice", "code", res.StatusCode, "answered", tries)
		return nil
	}
	retry, err := sipedge.AnswerChallenge(s.edge.Config(), bep, c.route.Number, bReq, res)
	if err != nil {
		log.Warn("B-leg challenge not answered", "code", res.StatusCode, "why", err.Error())
		return nil
	}
	s.edge.Prepare(retry)
	log.Debug("B-leg challenge answered", "code", res.StatusCode)
	return retry
}

// sendCancel cancels the B-leg INVITE (RFC 3261 §9.1: same Request-URI,
// Call-ID, From, To, CSeq number and top Via as the INVITE).
func (s *Engine) sendCancel(c *call, inv *sip.Request) {
	req := sip.NewRequest(sip.CANCEL, inv.Recipient)
	if v := inv.Via(); v != nil {
		req.AppendHeader(v.Clone())
	}
	for _, h := range inv.GetHeaders("Route") {
		req.AppendHeader(sip.HeaderClone(h))
	}
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	req.AppendHeader(sip.HeaderClone(inv.From()))
	req.AppendHeader(sip.HeaderClone(inv.To()))
	req.AppendHeader(sip.HeaderClone(inv.CallID()))
	req.AppendHeader(&sip.CSeqHeader{SeqNo: inv.CSeq().SeqNo, MethodName: sip.CANCEL})
	req.SetTransport(inv.Transport())
	req.SetDestination(inv.Destination())
	req.Laddr = inv.Laddr
	s.wg.Go(func() {
		ctx, cancel := contextWithTimeout(64 * sip.T1)
		defer cancel()
		res, err := s.edge.Client().Do(ctx, req)
		switch {
		case err != nil || res == nil:
			c.log.Warn("CANCEL failed", "leg", "b", "sip_call_id_b", callIDOf(inv), "error", errString(err))
		case res.StatusCode >= 200 && res.StatusCode < 300:
			// The callee will end the INVITE with 487: a stop before it
			// comes must not have the next start cancel it again.
			s.journalInviteCancelled(inv)
		}
	})
	c.log.Debug("B-leg cancelled", "leg", "b", "sip_call_id_b", callIDOf(inv))
}

// mapFinal chooses A's final response for B's final error. Codes pass
// through, except those that would make A act on B's behalf: a challenge
// for B's realm, or a redirect around wagate.
func mapFinal(res *sip.Response) (int, string) {
	switch {
	case res.StatusCode == 401 || res.StatusCode == 407:
		return 503, "Service Unavailable"
	case res.StatusCode >= 300 && res.StatusCode < 400:
		return 480, "Temporarily Unavailable"
	}
	reason := res.Reason
	if reason == "" || !sipedge.ValidHeaderValue(reason) {
		reason = sipedge.DefaultReason(res.StatusCode)
	}
	return res.StatusCode, reason
}
