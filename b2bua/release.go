package b2bua

import (
	"sync/atomic"

	"github.com/emiago/sipgo/sip"
	sipedge "github.com/wagate/wagate/sip"
)

// What a call gives back once its messages are done with. sipgo keeps a
// completed INVITE transaction, and what it points at, until Timer L or
// M fires (sip.transaction_linger after the 2xx), terminated or not; at
// 1,000 calls/s that is thousands of calls' INVITEs and 2xx. The call
// empties the ones nothing reads any more (sipedge.Release), so that a
// lingering transaction costs its key and timers, not its messages.

// reAcker resends the ACK of B's 2xx for each retransmission of it that
// B's INVITE transaction passes up. The transaction keeps the hook until
// Timer M; drop lets the ACK go before that.
type reAcker struct {
	s      *Engine
	callID string
	ack    atomic.Pointer[sip.Request]
}

func (r *reAcker) resend(*sip.Response) {
	ack := r.ack.Load()
	if ack == nil {
		return
	}
	if err := r.s.edge.Client().WriteRequest(ack.Clone()); err != nil {
		r.s.log.Debug("ACK resend failed", "leg", "b", "sip_call_id", r.callID, "error", err)
	}
}

func (r *reAcker) drop() {
	if r != nil {
		r.ack.Store(nil)
	}
}

// finishAnswered ends the client transaction of B's winning INVITE once
// its 2xx has been handled, and empties that INVITE and the 2xx: the
// dialog took what it needs from them (fromUACResponse copies the
// headers' values, and Release never changes a header), and from now on
// a retransmitted 2xx is ACKed again by onStrayResponse from the call's
// bAck, not by the transaction.
func (c *call) finishAnswered(ev attemptEvent) {
	ev.tx.Terminate()
	c.mu.Lock()
	r := c.bReAck
	c.bReAck = nil
	c.mu.Unlock()
	r.drop()
	sipedge.Release(ev.req)
	sipedge.Release(ev.res)
}

// aInviteFacts is what a call reads of A's INVITE after its handler
// returned and emptied it: a transfer's INVITE is built from the display
// name and Max-Forwards, and a retransmission is told by From tag and
// CSeq.
type aInviteFacts struct {
	set         bool // the call has an A INVITE (not one wagate originated)
	fromTag     string
	cseq        uint32
	display     string
	maxForwards int // 0: none
}

func aInviteFactsOf(req *sip.Request) aInviteFacts {
	f := aInviteFacts{set: true}
	if from := req.From(); from != nil {
		f.fromTag, _ = from.Params.Get("tag")
		f.display = from.DisplayName
	}
	if cs := req.CSeq(); cs != nil {
		f.cseq = cs.SeqNo
	}
	if mf := req.MaxForwards(); mf != nil {
		f.maxForwards = int(mf.Val())
	}
	return f
}

// forgetAInvite drops the call's references to A's INVITE and its
// transaction as the INVITE's handler returns: nothing else reads them,
// and a call that lasts past sip.transaction_linger then lets sipgo's
// finished transaction go, with the messages it holds. It runs on the
// handler's goroutine, the only one that reads the two fields.
func (c *call) forgetAInvite() { c.aInvite, c.aTx = nil, nil }
