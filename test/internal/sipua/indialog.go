package sipua

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Requests inside an established dialog other than BYE: REFER (transfer)
// and re-INVITE (hold, resume, media that moves), as a PBX sends them.

// Request sends a non-INVITE request in the dialog (REFER, INFO, …) with
// the given extra headers and body, and returns the final response.
func (d *Dialog) Request(ctx context.Context, method string, headers []Header, contentType string, body []byte) (*Msg, error) {
	req := d.nextRequest(method, headers, contentType, body)
	dst, err := d.nextHop()
	if err != nil {
		return nil, err
	}
	return d.ua.transaction(ctx, req, dst)
}

func (d *Dialog) nextRequest(method string, headers []Header, contentType string, body []byte) *Msg {
	d.mu.Lock()
	d.localCSeq++
	cseq := d.localCSeq
	d.mu.Unlock()
	req := d.newRequest(method, cseq)
	for _, h := range headers {
		req.Add(h.Name, h.Value)
	}
	if body != nil {
		req.Add("Content-Type", contentType)
		req.Body = body
	}
	return req
}

// Reinvite sends a re-INVITE offering sdp and returns the final response.
// A 2xx is ACKed (and its retransmissions too, by the UA), and its SDP
// becomes the dialog's RemoteSDP, sdp its LocalSDP. An error response is
// ACKed hop by hop and returned with a nil error.
func (d *Dialog) Reinvite(ctx context.Context, sdp []byte) (*Msg, error) {
	return d.reinvite(ctx, sdp, nil)
}

// ReinviteLate sends a re-INVITE without SDP (a delayed offer, as Cisco
// CUCM sends for hold, resume and transfer): the 2xx carries the other
// side's offer, and answer(offer) is the SDP the ACK carries, which
// becomes the dialog's LocalSDP. It returns the final response as
// Reinvite does.
func (d *Dialog) ReinviteLate(ctx context.Context, answer func(offer []byte) []byte) (*Msg, error) {
	return d.reinvite(ctx, nil, answer)
}

func (d *Dialog) reinvite(ctx context.Context, sdp []byte, answer func(offer []byte) []byte) (*Msg, error) {
	inv := d.nextRequest("INVITE", nil, "application/sdp", sdp)
	cseq, _ := inv.CSeq()
	dst, err := d.nextHop()
	if err != nil {
		return nil, err
	}
	branch := inv.Branch()
	ch := d.ua.register(branch)
	defer d.ua.unregister(branch)
	if err := d.ua.send(inv, dst); err != nil {
		return nil, err
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
			return nil, ctx.Err()
		case <-d.ua.closed:
			return nil, errors.New("sip: UA closed")
		case <-timeout.C:
			return nil, errors.New("sip: re-INVITE timed out")
		case <-retrans.C:
			if !provisional {
				d.ua.send(inv, dst)
				interval *= 2
				retrans.Reset(interval)
			}
		case res := <-ch:
			switch {
			case res.Status < 200:
				provisional = true
			case res.Status < 300:
				ack := d.newRequest("ACK", cseq)
				if answer != nil {
					sdp = answer(res.Body)
					ack.Add("Content-Type", "application/sdp")
					ack.Body = sdp
				}
				d.mu.Lock()
				d.RemoteSDP, d.LocalSDP = res.Body, sdp
				d.ackMsg, d.ackDst = ack, dst
				d.mu.Unlock()
				d.ua.send(ack, dst)
				return res, nil
			default:
				ack := &Msg{Request: true, Method: "ACK", RURI: inv.RURI}
				ack.Add("Via", inv.Get("Via"))
				ack.Add("Max-Forwards", "70")
				for _, r := range inv.GetAll("Route") {
					ack.Add("Route", r)
				}
				ack.Add("From", inv.Get("From"))
				ack.Add("To", res.Get("To"))
				ack.Add("Call-ID", d.CallID)
				ack.Add("CSeq", fmt.Sprintf("%d ACK", cseq))
				d.ua.send(ack, dst)
				return res, nil
			}
		}
	}
}

// Received returns the requests of method the dialog's peer sent so far
// (NOTIFYs of a REFER, for example), in order.
func (d *Dialog) Received(method string) []*Msg {
	var out []*Msg
	for _, te := range d.ua.Trace() {
		if !te.Sent && te.Msg.Request && te.Msg.Method == method && te.Msg.Get("Call-ID") == d.CallID {
			out = append(out, te.Msg)
		}
	}
	return out
}
