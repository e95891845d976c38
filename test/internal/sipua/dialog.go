// Dialogs: an established call (its ACK and BYE), building and routing
// its in-dialog requests, and hanging up (see indialog.go for REFER and
// re-INVITE).

package sipua

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"
)

// Dialog is an established call.
type Dialog struct {
	ua  *UA
	UAC bool

	CallID, LocalTag, RemoteTag string
	LocalURI, RemoteURI         string

	mu           sync.Mutex
	RemoteTarget string
	RouteSet     []string
	localCSeq    uint32
	Invite       *Msg // the INVITE that made the dialog
	Answer       *Msg // the 2xx
	LocalSDP     []byte
	RemoteSDP    []byte
	AnsweredAt   time.Time // 2xx received (UAC) or sent (UAS)
	ackMsg       *Msg
	ackDst       *net.UDPAddr
	ByeMsg       *Msg // the BYE the remote side sent

	ackOnce, byeOnce sync.Once
	acked, bye       chan struct{}
}

// Acked is closed when the ACK for our 2xx arrived (UAS dialogs).
func (d *Dialog) Acked() <-chan struct{} { return d.acked }

// Done is closed when the remote side sent BYE.
func (d *Dialog) Done() <-chan struct{} { return d.bye }

// RemoteBye returns the BYE the remote side sent, or nil.
func (d *Dialog) RemoteBye() *Msg {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.ByeMsg
}

func (d *Dialog) gotAck() { d.ackOnce.Do(func() { close(d.acked) }) }

func (d *Dialog) gotBye(m *Msg) {
	d.mu.Lock()
	if d.ByeMsg == nil {
		d.ByeMsg = m
	}
	d.mu.Unlock()
	d.byeOnce.Do(func() { close(d.bye) })
}

func (d *Dialog) resendAck() {
	d.mu.Lock()
	ack, dst := d.ackMsg, d.ackDst
	d.mu.Unlock()
	if ack != nil {
		d.ua.send(ack, dst)
	}
}

func (d *Dialog) newRequest(method string, cseq uint32) *Msg {
	d.mu.Lock()
	defer d.mu.Unlock()
	r := &Msg{Request: true, Method: method, RURI: d.RemoteTarget}
	r.Add("Via", fmt.Sprintf("SIP/2.0/UDP %s;branch=%s;rport", d.ua.Addr(), newBranch()))
	r.Add("Max-Forwards", "70")
	for _, rt := range d.RouteSet {
		r.Add("Route", rt)
	}
	r.Add("From", fmt.Sprintf("<%s>;tag=%s", d.LocalURI, d.LocalTag))
	to := "<" + d.RemoteURI + ">"
	if d.RemoteTag != "" {
		to += ";tag=" + d.RemoteTag
	}
	r.Add("To", to)
	r.Add("Call-ID", d.CallID)
	r.Add("CSeq", fmt.Sprintf("%d %s", cseq, method))
	r.Add("Contact", "<"+d.ua.Contact()+">")
	return r
}

// nextHop is where in-dialog requests go: the first route, else the
// remote target.
func (d *Dialog) nextHop() (*net.UDPAddr, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.RouteSet) > 0 {
		return URIAddr(d.RouteSet[0])
	}
	return URIAddr(d.RemoteTarget)
}

// Bye ends the call from our side and returns the final response code.
func (d *Dialog) Bye(ctx context.Context) (int, error) {
	d.mu.Lock()
	d.localCSeq++
	cseq := d.localCSeq
	d.mu.Unlock()
	req := d.newRequest("BYE", cseq)
	dst, err := d.nextHop()
	if err != nil {
		return 0, err
	}
	res, err := d.ua.transaction(ctx, req, dst)
	d.ua.mu.Lock()
	delete(d.ua.dialogs, d.CallID)
	d.ua.mu.Unlock()
	if err != nil {
		return 0, err
	}
	return res.Status, nil
}
