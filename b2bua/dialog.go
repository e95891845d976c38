package b2bua

import (
	"slices"
	"sync"

	"github.com/emiago/sipgo/sip"
	"github.com/wagate/wagate/configs"
	"github.com/wagate/wagate/media"
)

// leg is one side of a call: the dialog wagate holds with one peer.
//
// wagate is a user agent on each leg (not a proxy), so each leg has its own
// Call-ID, tags, CSeq space, remote target and route set.
type leg struct {
	name string // "a" or "b", for logs
	// ep is the peer's endpoint, side the bridge side its media is on.
	// Both are set when the leg is made and never change once the call is
	// answered (a hunt sets B's to the target that answered).
	ep   *configs.Endpoint
	side media.Side
	// retired: the leg left its call (transferred away, or joined to
	// another call) and no longer ends it; guarded by the call's mu.
	retired bool
	// agent frees the agent on this leg (agents.go) when the leg leaves
	// the call, with its after-call work when told so; guarded by the
	// call's mu.
	agent func(wrap bool)

	mu        sync.Mutex
	callID    string
	localURI  sip.Uri
	localTag  string
	remoteURI sip.Uri
	remoteTag string
	// remoteTarget is the peer's Contact, where in-dialog requests go.
	remoteTarget sip.Uri
	// routeSet is the Record-Route set in the order requests must use it.
	routeSet  []sip.Uri
	localCSeq uint32
	transport string // "UDP" or "TCP"
	// dest forces the next hop ("host:port") for the initial request; empty
	// for in-dialog requests, which follow the route set.
	dest string
	// ack is the ACK wagate sent for the 2xx of a leg it placed after the
	// call's first (a transfer's), resent for each retransmitted 2xx.
	sentAck *sip.Request
}

// lastAck returns the ACK to resend for a retransmitted 2xx, or nil.
func (l *leg) lastAck() *sip.Request {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sentAck
}

// getCallID is the leg's Call-ID (a call flow's leg B gets a new one for
// each call it places).
func (l *leg) getCallID() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.callID
}

// fromUAS sets a leg up from an incoming dialog-creating INVITE: the caller's
// Record-Route is used in the order received (RFC 3261 §12.1.1).
func (l *leg) fromUAS(req *sip.Request, localTag string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.callID = req.CallID().Value()
	l.localURI = req.To().Address
	l.localTag = localTag
	l.remoteURI = req.From().Address
	l.remoteTag, _ = req.From().Params.Get("tag")
	if c := req.Contact(); c != nil {
		l.remoteTarget = c.Address
	} else {
		l.remoteTarget = req.From().Address
	}
	l.routeSet = l.routeSet[:0]
	for _, h := range req.GetHeaders("Record-Route") {
		if rr, ok := h.(*sip.RecordRouteHeader); ok {
			l.routeSet = append(l.routeSet, rr.Address)
		}
	}
	l.transport = req.Transport()
	// Each direction of a dialog has its own CSeq space (RFC 3261 §12.2.1.1).
	l.localCSeq = 1
}

// fromUACResponse completes a leg we originated from a dialog-forming
// response: the callee's Record-Route is used in reverse (RFC 3261 §12.1.2).
func (l *leg) fromUACResponse(res *sip.Response) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.remoteTag, _ = res.To().Params.Get("tag")
	// In-dialog requests follow the Contact and route set from now on.
	l.dest = ""
	if c := res.Contact(); c != nil {
		l.remoteTarget = c.Address
	}
	rrs := res.GetHeaders("Record-Route")
	l.routeSet = l.routeSet[:0]
	for _, h := range slices.Backward(rrs) {
		if rr, ok := h.(*sip.RecordRouteHeader); ok {
			l.routeSet = append(l.routeSet, rr.Address)
		}
	}
}

// newRequest builds an in-dialog request on this leg with the next CSeq.
func (l *leg) newRequest(method sip.RequestMethod, contact *sip.ContactHeader) *sip.Request {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.localCSeq++
	return l.buildLocked(method, l.localCSeq, contact)
}

func (l *leg) buildLocked(method sip.RequestMethod, cseq uint32, contact *sip.ContactHeader) *sip.Request {
	req := sip.NewRequest(method, *l.remoteTarget.Clone())
	for _, r := range l.routeSet {
		req.AppendHeader(&sip.RouteHeader{Address: *r.Clone()})
	}
	from := &sip.FromHeader{Address: *l.localURI.Clone(), Params: sip.NewParams()}
	from.Params.Add("tag", l.localTag)
	req.AppendHeader(from)
	to := &sip.ToHeader{Address: *l.remoteURI.Clone(), Params: sip.NewParams()}
	if l.remoteTag != "" {
		to.Params.Add("tag", l.remoteTag)
	}
	req.AppendHeader(to)
	cid := sip.CallIDHeader(l.callID)
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: cseq, MethodName: method})
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(&mf)
	if contact != nil && method != sip.BYE && method != sip.ACK {
		req.AppendHeader(contact.Clone())
	}
	req.SetTransport(l.transport)
	if len(l.routeSet) > 0 && !l.routeSet[0].UriParams.Has("lr") {
		// Strict router (RFC 3261 §12.2.1.1): the first route becomes the
		// Request-URI and the remote target goes last in the Route set.
		req.Recipient = *l.routeSet[0].Clone()
		req.RemoveHeader("Route")
		for _, r := range l.routeSet[1:] {
			req.AppendHeader(&sip.RouteHeader{Address: *r.Clone()})
		}
		req.AppendHeader(&sip.RouteHeader{Address: *l.remoteTarget.Clone()})
	}
	if l.dest != "" && len(l.routeSet) == 0 {
		req.SetDestination(l.dest)
	}
	return req
}

// ack builds the ACK for a 2xx to the INVITE with the given CSeq number
// (RFC 3261 §13.2.2.4: same CSeq number, new transaction).
func (l *leg) ack(inviteCSeq uint32) *sip.Request {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buildLocked(sip.ACK, inviteCSeq, nil)
}

// ackOf builds the ACK for a 2xx to inv, wagate's own INVITE on this leg.
// It carries inv's credentials (RFC 3261 §13.2.2.4: "The ACK MUST contain
// the same credentials as the INVITE"): the INVITE that Meta answered is
// the one wagate sent again with Proxy-Authorization after Meta's 407.
func (l *leg) ackOf(inv *sip.Request) *sip.Request {
	ack := l.ack(inv.CSeq().SeqNo)
	for _, name := range [...]string{"Proxy-Authorization", "Authorization"} {
		for _, h := range inv.GetHeaders(name) {
			ack.AppendHeader(sip.HeaderClone(h))
		}
	}
	return ack
}
