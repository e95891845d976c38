// Outgoing calls: the INVITE transaction and the dialog it makes, or the
// StatusError of a failed call.

package sipua

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"
)

// StatusError is a final non-2xx response to an INVITE.
type StatusError struct {
	Code   int
	Reason string
	Msg    *Msg
}

func (e *StatusError) Error() string { return fmt.Sprintf("sip: %d %s", e.Code, e.Reason) }

// InviteRequest is a call to place.
type InviteRequest struct {
	Target  *net.UDPAddr // where the INVITE goes
	RURI    string       // Request-URI
	From    string       // From URI (our tag is added)
	To      string       // To URI
	CallID  string       // default: random
	Headers []Header     // extra headers (Record-Route, x-wa-meta-*, …)
	SDP     []byte
	// OnProvisional is called for each 1xx (except 100).
	OnProvisional func(*Msg)
	// LoseAnswers is how many 2xx to take as lost on the way (not
	// ACKed): the call is ACKed at the next retransmission. OnAnswer is
	// called for each 2xx received, lost or not.
	LoseAnswers int
	OnAnswer    func(*Msg)
}

// Invite places a call and returns its dialog once a 2xx arrived and was
// ACKed. A final error response returns a *StatusError.
func (ua *UA) Invite(ctx context.Context, r InviteRequest) (*Dialog, error) {
	callID := r.CallID
	if callID == "" {
		callID = newTag() + newTag() + "@" + ua.IP
	}
	d := &Dialog{
		ua: ua, UAC: true, CallID: callID, LocalTag: newTag(),
		LocalURI: r.From, RemoteURI: r.To, localCSeq: 1, LocalSDP: r.SDP,
		acked: make(chan struct{}), bye: make(chan struct{}),
	}
	branch := newBranch()
	inv := &Msg{Request: true, Method: "INVITE", RURI: r.RURI}
	inv.Add("Via", fmt.Sprintf("SIP/2.0/UDP %s;branch=%s;rport", ua.Addr(), branch))
	inv.Add("Max-Forwards", "70")
	inv.Add("From", fmt.Sprintf("<%s>;tag=%s", r.From, d.LocalTag))
	inv.Add("To", "<"+r.To+">")
	inv.Add("Call-ID", callID)
	inv.Add("CSeq", "1 INVITE")
	inv.Add("Contact", "<"+ua.Contact()+">")
	inv.Add("Allow", "INVITE, ACK, BYE, CANCEL, NOTIFY, OPTIONS")
	for _, h := range r.Headers {
		inv.Add(h.Name, h.Value)
	}
	if r.SDP != nil {
		inv.Add("Content-Type", "application/sdp")
		inv.Body = r.SDP
	}
	d.Invite = inv

	ch := ua.register(branch)
	defer ua.unregister(branch)
	// The dialog must be findable for BYEs and 2xx retransmissions as soon
	// as the 2xx can arrive.
	ua.mu.Lock()
	ua.dialogs[callID] = d
	ua.mu.Unlock()
	fail := func(err error) (*Dialog, error) {
		ua.mu.Lock()
		delete(ua.dialogs, callID)
		ua.mu.Unlock()
		return nil, err
	}

	if err := ua.send(inv, r.Target); err != nil {
		return fail(err)
	}
	interval := T1
	retrans := time.NewTimer(interval)
	defer retrans.Stop()
	timeout := time.NewTimer(TimerB)
	defer timeout.Stop()
	provisional := false
	for {
		select {
		case <-ctx.Done():
			return fail(ctx.Err())
		case <-ua.closed:
			return fail(errors.New("sip: UA closed"))
		case <-timeout.C:
			if !provisional {
				return fail(errors.New("sip: INVITE timed out (no response)"))
			}
			timeout.Reset(3 * time.Minute)
		case <-retrans.C:
			if !provisional {
				ua.send(inv, r.Target)
				interval *= 2
				retrans.Reset(interval)
			}
		case res := <-ch:
			switch {
			case res.Status < 200:
				provisional = true
				if res.Status > 100 && r.OnProvisional != nil {
					r.OnProvisional(res)
				}
			case res.Status < 300:
				if r.OnAnswer != nil {
					r.OnAnswer(res)
				}
				if r.LoseAnswers > 0 {
					r.LoseAnswers--
					continue
				}
				d.mu.Lock()
				d.AnsweredAt = time.Now()
				d.Answer = res
				d.RemoteSDP = res.Body
				d.RemoteTag = res.ToTag()
				d.RemoteTarget = URIOf(res.Get("Contact"))
				rr := res.GetAll("Record-Route")
				for i := len(rr) - 1; i >= 0; i-- {
					d.RouteSet = append(d.RouteSet, rr[i])
				}
				d.RouteSet = ua.dropOwnRoutes(d.RouteSet)
				d.mu.Unlock()
				ack := d.newRequest("ACK", 1)
				dst, err := d.nextHop()
				if err != nil {
					return fail(err)
				}
				d.mu.Lock()
				d.ackMsg, d.ackDst = ack, dst
				d.mu.Unlock()
				ua.send(ack, dst)
				return d, nil
			default:
				ack := &Msg{Request: true, Method: "ACK", RURI: r.RURI}
				ack.Add("Via", fmt.Sprintf("SIP/2.0/UDP %s;branch=%s;rport", ua.Addr(), branch))
				ack.Add("Max-Forwards", "70")
				ack.Add("From", inv.Get("From"))
				ack.Add("To", res.Get("To"))
				ack.Add("Call-ID", callID)
				ack.Add("CSeq", "1 ACK")
				ua.send(ack, r.Target)
				return fail(&StatusError{Code: res.Status, Reason: res.Reason, Msg: res})
			}
		}
	}
}

// dropOwnRoutes removes leading route entries that point at this UA (the
// part a proxy in front of it would have consumed).
func (ua *UA) dropOwnRoutes(rs []string) []string {
	for len(rs) > 0 {
		a, err := URIAddr(rs[0])
		if err != nil || a.String() != ua.Addr() {
			break
		}
		rs = rs[1:]
	}
	return rs
}
