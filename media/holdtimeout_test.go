package media

import (
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtcp"
)

// TestHoldTimeoutOnRTCP: B holds (sendonly) and sends no RTP, longer than
// the RTP timeout, while it goes on sending RTCP receiver reports, as
// RFC 3264 §5.1 asks of a held stream: the call stays up. Then B stops
// reporting too (a PBX that crashed with the call on hold): the call
// ends on B's timeout. Before, a held side was never timed out, and the
// call stayed up until the WhatsApp user hung up.
func TestHoldTimeoutOnRTCP(t *testing.T) {
	const timeout = 600 * time.Millisecond
	c, stop, wg := startRTCPCall(t, "call-hold", timeout)
	defer func() { close(stop); wg.Wait() }()
	// A talks all along, with a timeout of its own.
	sendEvery(t, wg, stop, c.a, c.toA, 111, 0xA1)
	c.bp.send(c.toB, rtpPacket(t, 107, 1, 960, 0xB1, []byte("hi")))
	if _, _, err := c.b.AcceptOffer(SideB, sdpOffer(c.bp.port(), "RTP/AVP", "107", "rtpmap:107 opus/48000/2", "sendonly")); err != nil {
		t.Fatal(err)
	}
	rr, err := rtcp.Marshal([]rtcp.Packet{&rtcp.ReceiverReport{SSRC: 0xB1}})
	if err != nil {
		t.Fatal(err)
	}
	toRTCP := netip.AddrPortFrom(c.toB.Addr(), c.toB.Port()+1)
	reporting := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-reporting:
				return
			case <-time.After(100 * time.Millisecond):
			}
			c.bp.send(toRTCP, rr)
		}
	}()
	select {
	case err := <-c.timeouts:
		t.Fatalf("timed out while B held and reported: %v", err)
	case <-time.After(4 * timeout):
	}
	if c.b.Stats().RTCPReceived == 0 {
		t.Fatal("B's reports were not read")
	}
	close(reporting)
	select {
	case err := <-c.timeouts:
		if !strings.Contains(err.Error(), "side B on hold") {
			t.Fatalf("timeout %v, want side B's on hold", err)
		}
	case <-time.After(10 * timeout):
		t.Fatal("B stopped sending RTCP on hold, and the call did not end")
	}
}

// TestOfferSideNotTimedOnRTCP: a transfer rings its target (OfferSide)
// while the transferring agent, who had reported RTCP for a while, hangs
// up and goes silent: the caller must not be dropped for the old peer's
// silence, RTP or RTCP, however long the target rings (the review of the
// merged work found the hold's RTCP timeout, which pending offers shared
// through "quiet", ending such calls rtp_timeout + 1.5 intervals later).
func TestOfferSideNotTimedOnRTCP(t *testing.T) {
	const timeout = 600 * time.Millisecond
	c, stop, wg := startRTCPCall(t, "call-xfer", timeout)
	defer func() { close(stop); wg.Wait() }()
	sendEvery(t, wg, stop, c.a, c.toA, 111, 0xA1)
	c.bp.send(c.toB, rtpPacket(t, 107, 1, 960, 0xB1, []byte("hi")))
	if _, err := c.b.OfferSide(SideB, LegConfig{Codecs: []string{"opus", "PCMU"}}); err != nil {
		t.Fatal(err)
	}
	rr, err := rtcp.Marshal([]rtcp.Packet{&rtcp.ReceiverReport{SSRC: 0xB1}})
	if err != nil {
		t.Fatal(err)
	}
	toRTCP := netip.AddrPortFrom(c.toB.Addr(), c.toB.Port()+1)
	// The agent reports for 5 intervals while the target rings, then
	// hangs up.
	for range 5 {
		c.bp.send(toRTCP, rr)
		time.Sleep(100 * time.Millisecond)
	}
	if c.b.Stats().RTCPReceived == 0 {
		t.Fatal("the agent's reports were not read: the test tests nothing")
	}
	select {
	case err := <-c.timeouts:
		t.Fatalf("the call ended while the transfer's target rang: %v", err)
	case <-time.After(6 * timeout):
	}
}

// startRTCPCall starts an Opus call between peers a and bp with the RTP
// timeout given and RTCP read every 100 ms; stop and wg are for the
// senders a test starts.
func startRTCPCall(t *testing.T, name string, timeout time.Duration) (*call, chan struct{}, *sync.WaitGroup) {
	t.Helper()
	t.Cleanup(func() { checkNoRelayGoroutines(t) })
	m := newTestManager(t, 2, 0, timeout)
	m.rtcpInterval = 100 * time.Millisecond
	c := &call{m: m, a: newPeer(t), bp: newPeer(t), timeouts: make(chan error, 2)}
	var err error
	if c.b, err = m.NewBridge(name, testLogger(t)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.b.Close)
	offerB, err := c.b.OfferB(sdpOffer(c.a.port(), "RTP/AVP", "111", "rtpmap:111 opus/48000/2", "ptime:20"), []string{"opus"})
	if err != nil {
		t.Fatal(err)
	}
	answerA, err := c.b.AnswerB(sdpOffer(c.bp.port(), "RTP/AVP", "107", "rtpmap:107 opus/48000/2"))
	if err != nil {
		t.Fatal(err)
	}
	c.toB, c.toA = mustParse(t, offerB).Media[0].Addr(), mustParse(t, answerA).Media[0].Addr()
	c.b.Start(func(err error) { c.timeouts <- err })
	return c, make(chan struct{}), &sync.WaitGroup{}
}
