package b2bua

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	sipedge "github.com/wagate/wagate/sip"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/wagate/wagate/configs"
	"github.com/wagate/wagate/events"
	"github.com/wagate/wagate/media"
	"github.com/wagate/wagate/recording"
)

// Bridge is the media of one call as the B2BUA needs it: an offer toward B
// built from A's offer, A's answer built from B's, and relaying between
// them. media.Bridge implements it.
type Bridge interface {
	Offer(offerA []byte) ([]byte, error)
	AnswerB(answerB []byte) ([]byte, error)
	LocalAnswerA() []byte
	LocalOfferB() []byte
	Start(onTimeout func(err error))
	// SetTap sends both sides' decoded audio to a recording (nil: none).
	SetTap(t media.PCMTap)
	Close()

	// After the answer (hold.go, transfer.go): a side's re-INVITE, the
	// last SDP sent to a side, a new peer for a side, and audio wagate
	// plays toward a side itself.
	AcceptOffer(s media.Side, offer []byte) ([]byte, media.StreamState, error)
	LocalSDP(s media.Side) []byte
	// ReOffer is the offer for a re-INVITE without SDP, AcceptAnswer
	// the peer's answer to it in the ACK.
	ReOffer(s media.Side) []byte
	AcceptAnswer(s media.Side, answer []byte) (media.StreamState, error)
	Held(s media.Side) bool
	OfferSide(s media.Side, cfg media.LegConfig) ([]byte, error)
	AnswerSide(s media.Side, answer []byte) error
	CancelOffer(s media.Side)
	Play(s media.Side, src media.FrameSource, at time.Time) (*media.Playback, error)
}

// BridgeFactory allocates the media of a new call, given each leg's
// settings (side A sent the INVITE).
type BridgeFactory func(callID string, log *slog.Logger, a, b media.LegConfig) (Bridge, error)

// legConfig is the media side of an endpoint's configuration, for a call
// of business number num (its media_encryption overrides a whatsapp
// endpoint's). Its SignalIP is the endpoint's host when that is an IP
// address (where wagate sends the endpoint's SIP); setupMedia puts the
// INVITE's source on side A.
func legConfig(ep *configs.Endpoint, num *configs.Number) media.LegConfig {
	host, _ := netip.ParseAddr(ep.Host)
	enc := ep.MediaEncryption
	if ep.Kind == configs.KindWhatsApp && num != nil && num.MediaEncryption != "" {
		enc = num.MediaEncryption
	}
	return media.LegConfig{
		Codecs:          ep.Codecs,
		Encryption:      enc,
		Prefer:          ep.Prefer,
		WhatsApp:        ep.Kind == configs.KindWhatsApp,
		BehindNAT:       ep.BehindNAT,
		LatchAnyAddress: ep.LatchAnyAddress,
		SignalIP:        host,
	}
}

type callState int

const (
	stateCalling   callState = iota // B-leg INVITE sent, no final response
	stateAnswered                   // 200 sent to A, waiting for A's ACK
	stateConfirmed                  // both legs up
	stateEnded
)

func (s callState) String() string {
	switch s {
	case stateCalling:
		return "calling"
	case stateAnswered:
		return "answered"
	case stateConfirmed:
		return "confirmed"
	}
	return "ended"
}

// call is one call through wagate: two legs, one media bridge, one state.
type call struct {
	srv *Engine
	id  string // wagate's own call id (the recording key)
	dir sipedge.Direction
	// origin is OriginClickToCall for a call the API started, empty for
	// one a peer's INVITE started.
	origin string
	// agentUp: a click-to-call's agent answered; aAck is the ACK of its
	// 2xx, resent for each retransmission (both guarded by mu).
	agentUp   bool
	aAck      *sip.Request
	aEndpoint string
	// bEndpoint and bUser name the B-leg's callee: the route's first
	// until one answers (guarded by mu once the call rings).
	bEndpoint string
	bUser     string
	// aSource is where A's INVITE came from (host:port).
	aSource string
	log     *slog.Logger
	a, b    *leg
	route   *sipedge.Decision

	// aInvite and aTx are A's INVITE and its transaction, read only by
	// the INVITE's handler (Invite), which drops them as it returns and
	// empties the INVITE (release.go); aFacts is what the call needs of
	// the INVITE afterwards. All are unset for a call wagate originated.
	aInvite *sip.Request
	aFacts  aInviteFacts
	// aIncoming is what a restart after a crash needs to answer A's
	// INVITE (journalinvite.go); set as the call is made, never changed.
	aIncoming *journalIncoming
	aTx       sip.ServerTransaction
	bridge    Bridge
	created   time.Time

	// ackA is closed when the A-leg ACK for our 2xx arrives.
	ackA     chan struct{}
	ackAOnce sync.Once
	// ended is closed when the call is over; every wait selects on it.
	ended chan struct{}

	mu        sync.Mutex
	state     callState
	bAnswered bool // B sent 2xx and we ACKed it: B needs a BYE
	aAnswered bool // we sent 2xx to A: A needs a BYE
	// aAwaitingAck: answerA waits for A's ACK of our 2xx (resending it);
	// byeAOnAck: the call ended meanwhile, and answerA sends A's BYE
	// once the ACK is in (RFC 3261 §15: not before it, or 64·T1).
	aAwaitingAck, byeAOnAck bool
	bAck                    *sip.Request // resent on each retransmitted 2xx from B
	// bReAck resends bAck from B's INVITE transaction until it ends
	// (finishAnswered); nil after.
	bReAck     *reAcker
	answeredAt time.Time
	// pending re-INVITE 2xx waiting for ACK, by leg and CSeq.
	pendingAcks map[pendingKey]*pendingAck

	// ticket is the permission gate's reservation of a BIC (nil for UICs
	// and without a gate); it is finished with outcome when the call
	// ends. wasConnected records B's 2xx.
	ticket CallTicket
	// recorder records the call from answer to hangup (nil: not recorded).
	recorder     *recording.Recorder
	outcome      Outcome
	outcomeSet   bool
	wasConnected bool
	// bInvites counts the INVITEs of the call's own B-leg (Meta, for a
	// BIC) handed to the transport, counted before the hand-over and
	// taken back when it fails: while it is 0 the ticket finishes as
	// OutcomeNotSent. Counting first means a call that ends during the
	// hand-over stays counted: never given back for an INVITE Meta saw.
	bInvites int

	// For the call's record: when B first rang, the final response A got
	// when the call was not answered, the permission gate's verdict and
	// the recording's name.
	ringingAt            time.Time
	finalCode, wabaError int
	finalReason          string
	permission           string
	recordingID          string

	// flow runs the call's call flow when wagate answered it itself (a
	// call-flow route); nil otherwise. Set before the call is answered.
	flow *flowCall
	// attempts are the B-leg INVITEs placed (the record's attempts);
	// ringing, the INVITEs of any hunt (the call's own, a transfer's) with
	// no final response yet (GET /v1/calls).
	attempts attemptLog
	ringing  []ringingAttempt
	// apiCause is the cause of a hangup the API asked for before the
	// answer (Hangup); apiHangup, made by hangupRequests, is closed then
	// so that the hunt (ring) gives up on B.
	apiCause  string
	apiHangup chan struct{}

	// cc is what hold and transfer keep about the call (hold.go,
	// transfer.go), guarded by mu.
	cc callControl
}

// legs returns the call's current legs: a transfer replaces one.
func (c *call) legs() (a, b *leg) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.a, c.b
}

type pendingKey struct {
	leg  *leg
	cseq uint32
}

// pendingAck is a re-INVITE 2xx waiting for its ACK: done is closed when
// the ACK arrives, body is then the ACK's (the answer to a delayed offer).
type pendingAck struct {
	done chan struct{}
	body []byte
}

// bLegCallIDSuffix ends the Call-ID of every B-leg wagate places (after
// the call's id, 24 hex digits).
const bLegCallIDSuffix = "@wagate"

func newCallID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func newTag() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (c *call) getState() callState {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state
}

// ackReceived records the A-leg ACK for our 2xx, or for a re-INVITE 2xx
// (with the ACK's body).
func (c *call) ackReceived(l *leg, cseq uint32, body []byte) {
	if a, _ := c.legs(); l == a {
		c.ackAOnce.Do(func() { close(c.ackA) })
	}
	c.mu.Lock()
	p, ok := c.pendingAcks[pendingKey{l, cseq}]
	if ok {
		delete(c.pendingAcks, pendingKey{l, cseq})
		p.body = body
	}
	c.mu.Unlock()
	if ok {
		close(p.done)
	}
}

// setOutcome records how the B-leg ended, for the permission gate. The
// first outcome recorded wins: once wagate has given up (cancelled), Meta's
// 487 does not make the call "failed".
func (c *call) setOutcome(o Outcome) {
	c.mu.Lock()
	if !c.outcomeSet {
		c.outcome, c.outcomeSet = o, true
	}
	c.mu.Unlock()
}

// invitingB counts an INVITE of the call's B-leg about to be handed to
// the transport; the returned func takes it back when the hand-over
// failed (nothing reached Meta). ok is false, and nothing is counted,
// once the call has ended: its end has already given the permission
// gate the call back as never sent, so the INVITE must not go out.
func (c *call) invitingB() (unsent func(), ok bool) {
	c.mu.Lock()
	if c.state == stateEnded {
		c.mu.Unlock()
		return func() {}, false
	}
	c.bInvites++
	c.mu.Unlock()
	return func() {
		c.mu.Lock()
		c.bInvites--
		c.mu.Unlock()
	}, true
}

// connected records B's 2xx and tells the permission gate.
func (c *call) connected() {
	c.mu.Lock()
	first := !c.wasConnected
	c.wasConnected = true
	// A flow's click-to-call gets its ticket when its flow connects
	// (under c.mu).
	ticket := c.ticket
	c.mu.Unlock()
	if first && ticket != nil {
		ticket.Connected()
	}
}

// terminate ends the call once: media stops, ports and registry entry are
// released, and every leg that is up (other than from, which hung up
// itself) gets a BYE.
func (c *call) terminate(from *leg, cause string) { c.end(from, "", cause) }

// end is terminate naming who ended the call when neither leg did (by:
// events.HangupAPI; empty for wagate itself). It reports whether this
// call ended it (false: it had already ended).
func (c *call) end(from *leg, by, cause string) bool {
	c.mu.Lock()
	if c.state == stateEnded {
		c.mu.Unlock()
		return false
	}
	switch {
	case from == c.a:
		by = "a"
	case from == c.b:
		by = "b"
	case by != "":
	case c.apiCause != "":
		// What ends a call the API hung up before its answer (B's 487,
		// its late 2xx) finishes the API's hangup.
		by = events.HangupAPI
	default:
		by = events.HangupWagate
	}
	prev := c.state
	c.state = stateEnded
	byeA := c.aAnswered && from != c.a
	if byeA && c.aAwaitingAck {
		// A may not have our 2xx yet (lost on UDP): a BYE now is for a
		// dialog it does not have, and stopping the 2xx leaves its phone
		// ringing until its INVITE times out. answerA goes on resending
		// the 2xx and sends the BYE after the ACK.
		byeA, c.byeAOnAck = false, true
		c.srv.ackWait.Store(c.a.callID, c)
	}
	byeB := c.bAnswered && from != c.b
	answeredAt := c.answeredAt
	outcome := c.outcome
	switch {
	case c.wasConnected:
		// A connected call is answered whatever ended it.
		outcome = OutcomeAnswered
	case !c.outcomeSet:
		outcome = OutcomeFailed
	}
	// The gate's outcome: a call whose INVITE never left for Meta was
	// wagate's own refusal, whatever the record calls it.
	ticketOutcome := outcome
	if c.bInvites == 0 && !c.wasConnected {
		ticketOutcome = OutcomeNotSent
	}
	ticket := c.ticket
	// The agents still in the call are free once their BYE is sent (those
	// who left it were freed as they left).
	freeA, freeB := c.takeAgentLocked(c.a), c.takeAgentLocked(c.b)
	xrec, xended := c.endTransferLocked()
	c.mu.Unlock()

	close(c.ended)
	c.endControl()
	if ticket != nil {
		ticket.Finish(ticketOutcome)
	}
	if c.bridge != nil {
		c.bridge.Close()
	}
	c.srv.reg.remove(c)

	// call.transferred of a transfer the end cut short before call.ended,
	// whose record has it; call.ended before recording.ready: the
	// recording finishes on its own goroutine, and its event must not
	// overtake the call's.
	if xended {
		c.srv.notifyTransferred(xrec)
	}
	c.srv.notifyEnded(c, by, cause, outcome, c.wasConnectedNow())
	c.finishRecording(by, cause)
	attrs := []any{"hangup_by", by, "cause", cause, "state", prev.String()}
	if ticket != nil {
		attrs = append(attrs, "outcome", ticketOutcome.String())
	}
	if !answeredAt.IsZero() {
		attrs = append(attrs, "talk_s", time.Since(answeredAt).Round(time.Millisecond).Seconds())
	}
	c.log.Info("call ended", attrs...)

	c.srv.byeOrFree(c, c.a, byeA, freeA)
	c.srv.byeOrFree(c, c.b, byeB, freeB)
	return true
}

func (c *call) wasConnectedNow() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.wasConnected
}

// stopAwaitingAck ends answerA's wait for A's ACK and reports whether
// A's BYE was held for it (the caller sends it, if A has our 2xx).
func (c *call) stopAwaitingAck() bool {
	c.mu.Lock()
	held := c.byeAOnAck
	c.aAwaitingAck, c.byeAOnAck = false, false
	c.mu.Unlock()
	if held {
		c.srv.ackWait.Delete(c.a.callID)
	}
	return held
}

// byeWaitsAck reports whether the call ended while A's ACK of our 2xx
// was awaited, its BYE held until then.
func (c *call) byeWaitsAck() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.byeAOnAck
}

// awaitAck resends a 2xx on unreliable transports (RFC 3261 §13.3.1.4:
// T1 doubling to T2) until the ACK arrives, the call ends (unless A's BYE
// waits for the ACK: byeWaitsAck) or 64·T1 pass.
func (c *call) awaitAck(ctx context.Context, tx sip.ServerTransaction, res *sip.Response, acked <-chan struct{}, reliable bool) bool {
	interval := sip.T1
	resend := time.NewTimer(interval)
	defer resend.Stop()
	giveUp := time.NewTimer(64 * sip.T1)
	defer giveUp.Stop()
	ended := c.ended
	for {
		select {
		case <-acked:
			return true
		case <-tx.Acks():
			return true
		case <-ended:
			if acked != c.ackA || !c.byeWaitsAck() {
				return false
			}
			ended = nil // resend until the ACK, then A's BYE
		case <-ctx.Done():
			return false
		case <-giveUp.C:
			return false
		case <-resend.C:
			if !reliable {
				if err := resend2xx(tx, res); err != nil {
					c.log.Debug("2xx retransmission failed", "error", err)
				}
			}
			interval = min(2*interval, sip.T2)
			resend.Reset(interval)
		}
	}
}

// resend2xx sends a 2xx to an INVITE again. While the INVITE's
// transaction lives that goes through it (RFC 6026's Accepted state); it
// ends sip.transaction_linger after the 2xx (5 s by default), long before
// the 64·T1 a 2xx is resent for, and a transaction that ended sends
// nothing: from then on the 2xx is written on the connection the INVITE
// came in on (the UDP listener), as the transaction itself wrote it.
func resend2xx(tx sip.ServerTransaction, res *sip.Response) error {
	select {
	case <-tx.Done():
		if cx, ok := tx.(interface{ Connection() sip.Connection }); ok {
			if conn := cx.Connection(); conn != nil {
				return conn.WriteMsg(res)
			}
		}
	default:
	}
	return tx.Respond(res)
}
