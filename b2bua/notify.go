package b2bua

import (
	"context"
	"strconv"
	"time"

	"github.com/emiago/sipgo/sip"
)

// The implicit subscription of a REFER (RFC 3515): wagate tells the
// transferring leg how the transfer goes with NOTIFYs carrying a
// message/sipfrag status line — 100 Trying at once, 180 Ringing when the
// target rings, then the target's final response, which ends the
// subscription.

// notifyFinalWait bounds the wait for the final NOTIFY's answer before
// what follows it (the BYE of the transferring leg) goes anyway.
const notifyFinalWait = 4 * time.Second

// notice is one sipfrag to send; then runs after the final one.
type notice struct {
	code   int
	reason string
	final  bool
	then   func()
}

// notifier sends one REFER's NOTIFYs, in order, on a goroutine the
// engine owns. A nil notifier (a transfer the API asked for) sends
// nothing but still runs then.
type notifier struct {
	s     *Engine
	c     *call
	l     *leg
	id    uint32 // the REFER's CSeq: Event: refer;id=
	ch    chan notice
	alive func() bool
	sent  map[int]bool
}

// newNotifier starts the NOTIFYs of refer on leg l; alive reports whether
// l is still there to be told.
func (s *Engine) newNotifier(c *call, l *leg, refer *sip.Request, alive func() bool) *notifier {
	n, start := s.heldNotifier(c, l, refer, alive)
	start()
	return n
}

// heldNotifier is newNotifier whose NOTIFYs wait in its queue until
// start: the REFER's 202 must go out first, and what is queued before it
// may already be final.
func (s *Engine) heldNotifier(c *call, l *leg, refer *sip.Request, alive func() bool) (*notifier, func()) {
	n := &notifier{s: s, c: c, l: l, id: refer.CSeq().SeqNo, ch: make(chan notice, 8), alive: alive, sent: map[int]bool{}}
	return n, func() { s.wg.Go(n.run) }
}

// progress queues a provisional status (each code once).
func (n *notifier) progress(code int, reason string) {
	if n == nil || n.sent[code] {
		return
	}
	n.sent[code] = true
	select {
	case n.ch <- notice{code: code, reason: reason}:
	default: // the leg is slow; a later status says more
	}
}

// final queues the last status; then runs once it is answered (or was
// not sent).
func (n *notifier) final(code int, reason string, then func()) {
	if n == nil {
		if then != nil {
			then()
		}
		return
	}
	n.ch <- notice{code: code, reason: reason, final: true, then: then}
	close(n.ch)
}

func (n *notifier) run() {
	for m := range n.ch {
		if n.alive() {
			n.send(m)
		}
		if m.final && m.then != nil {
			m.then()
		}
	}
}

func (n *notifier) send(m notice) {
	req := n.l.newRequest(sip.NOTIFY, n.s.edge.Contact(n.l.transport))
	req.AppendHeader(sip.NewHeader("Event", "refer;id="+strconv.FormatUint(uint64(n.id), 10)))
	state := "active;expires=60"
	if m.final {
		state = "terminated;reason=noresource"
	}
	req.AppendHeader(sip.NewHeader("Subscription-State", state))
	ct := sip.ContentTypeHeader("message/sipfrag;version=2.0")
	req.AppendHeader(&ct)
	req.SetBody([]byte("SIP/2.0 " + strconv.Itoa(m.code) + " " + m.reason + "\r\n"))
	n.s.edge.Prepare(req)
	wait := 64 * sip.T1
	if m.final {
		wait = notifyFinalWait
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	res, err := n.s.edge.Client().Do(ctx, req)
	switch {
	case err != nil || res == nil:
		n.c.log.Debug("NOTIFY not answered", "leg", n.l.name, "status", m.code, "error", errString(err))
	case res.StatusCode >= 300:
		n.c.log.Debug("NOTIFY refused", "leg", n.l.name, "status", m.code, "code", res.StatusCode)
	}
}
