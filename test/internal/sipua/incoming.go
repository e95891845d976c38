// Incoming calls: accepting an INVITE, ringing, rejecting or answering
// it, with our 200 OK retransmitted until the ACK.

package sipua

import (
	"context"
	"errors"
	"sync"
	"time"
)

// Accept waits for the next new INVITE.
func (ua *UA) Accept(ctx context.Context) (*Incoming, error) {
	select {
	case inc := <-ua.incoming:
		return inc, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-ua.closed:
		return nil, errors.New("sip: UA closed")
	}
}

// Incoming is a received INVITE waiting for our answer.
type Incoming struct {
	ua       *UA
	Req      *Msg
	localTag string

	mu        sync.Mutex
	last      *Msg // last response sent
	final     bool
	dialog    *Dialog
	cancelled chan struct{}
	cancelOne sync.Once
}

// Cancelled is closed when the caller CANCELs before our final answer.
func (in *Incoming) Cancelled() <-chan struct{} { return in.cancelled }

func (in *Incoming) cancel() {
	in.mu.Lock()
	final := in.final
	in.mu.Unlock()
	if final {
		return
	}
	in.cancelOne.Do(func() { close(in.cancelled) })
	in.reply(487, "Request Terminated", nil, true)
}

func (in *Incoming) reply(code int, reason string, sdp []byte, final bool) *Msg {
	r := in.ua.response(in.Req, code, reason, in.localTag, sdp)
	in.mu.Lock()
	if in.final {
		in.mu.Unlock()
		return nil
	}
	in.last = r
	in.final = final
	in.mu.Unlock()
	in.ua.send(r, responseAddr(in.Req))
	return r
}

func (in *Incoming) resendLast() {
	in.mu.Lock()
	last := in.last
	in.mu.Unlock()
	if last != nil {
		in.ua.send(last, responseAddr(in.Req))
	}
}

// Ring sends 180 Ringing.
func (in *Incoming) Ring() { in.reply(180, "Ringing", nil, false) }

// Reject sends a final error response.
func (in *Incoming) Reject(code int, reason string) { in.reply(code, reason, nil, true) }

// Answer sends 200 OK with sdp, retransmitted until the ACK arrives (in the
// background: Dialog.Acked tells), and returns the dialog.
func (in *Incoming) Answer(sdp []byte) (*Dialog, error) {
	req := in.Req
	d := &Dialog{
		ua: in.ua, CallID: req.Get("Call-ID"), LocalTag: in.localTag, RemoteTag: req.FromTag(),
		LocalURI: URIOf(req.Get("To")), RemoteURI: URIOf(req.Get("From")),
		RemoteTarget: URIOf(req.Get("Contact")), RouteSet: in.ua.dropOwnRoutes(req.GetAll("Record-Route")),
		Invite: req, LocalSDP: sdp, RemoteSDP: req.Body, localCSeq: 100,
		acked: make(chan struct{}), bye: make(chan struct{}),
	}
	in.ua.mu.Lock()
	in.ua.dialogs[d.CallID] = d
	in.ua.mu.Unlock()
	res := in.reply(200, "OK", sdp, true)
	if res == nil {
		return nil, errors.New("sip: INVITE already answered or cancelled")
	}
	d.mu.Lock()
	d.Answer = res
	d.AnsweredAt = time.Now()
	d.mu.Unlock()
	dst := responseAddr(req)
	go func() {
		interval := T1
		deadline := time.After(TimerB)
		for {
			select {
			case <-d.acked:
				return
			case <-in.ua.closed:
				return
			case <-deadline:
				return
			case <-time.After(interval):
				in.ua.send(res, dst)
				interval = min(2*interval, T2)
			}
		}
	}()
	return d, nil
}
