package media

import (
	"errors"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

// reoffer is B's re-INVITE offer from port with extra attributes: opus
// at pt plus telephone-event 101.
func reoffer(port int, pt string, attrs ...string) []byte {
	return sdpOffer(port, "RTP/AVP", pt+" 101", append([]string{"rtpmap:" + pt + " opus/48000/2", "rtpmap:101 telephone-event/8000"}, attrs...)...)
}

// sendEvery sends one packet every 20 ms from p to to until stop.
func sendEvery(t *testing.T, wg *sync.WaitGroup, stop <-chan struct{}, p *peer, to netip.AddrPort, pt uint8, ssrc uint32) {
	sendPayloadEvery(t, wg, stop, p, to, pt, ssrc, 960, []byte("x"))
}

// sendPayloadEvery sends payload from p to to every 20 ms (step
// timestamp units a packet) until stop.
func sendPayloadEvery(t *testing.T, wg *sync.WaitGroup, stop <-chan struct{}, p *peer, to netip.AddrPort, pt uint8, ssrc uint32, step int, payload []byte) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			if _, err := p.conn.WriteToUDPAddrPort(rtpPacket(t, pt, uint16(i), uint32(i*step), ssrc, payload), to); err != nil {
				return
			}
		}
	}()
}

// drain reads p until nothing arrives for quiet and returns the count.
func drain(p *peer, quiet time.Duration) int {
	n := 0
	for p.recv(quiet) != nil {
		n++
	}
	return n
}

// TestAcceptOfferHoldResume: B holds with sendonly, inactive and
// c=0.0.0.0 in turn, sending nothing for longer than the RTP timeout:
// wagate answers recvonly, inactive and recvonly, sends B nothing, and
// does not time B out; A is still relayed to... nowhere, and keeps its
// own timeout. B resumes with sendrecv: the relay works again both ways,
// and B's timeout is back.
func TestAcceptOfferHoldResume(t *testing.T) {
	// A talks throughout, so its timeout must outlast the scheduling gaps
	// of a loaded machine: at 300 ms A's ticker-driven sender was starved
	// past it (plus the 50 ms grace) and A timed out under go test -race
	// with all packages running on 2 cores.
	const timeout = time.Second
	c := newCall(t, 0, timeout)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	defer func() { close(stop); wg.Wait() }()
	sendEvery(t, &wg, stop, c.a, c.toA, 111, 0xA1) // A talks all along

	for _, tt := range []struct {
		name, conn, dir, want string
	}{
		{"sendonly", "127.0.0.1", "sendonly", "a=recvonly"},
		{"inactive", "127.0.0.1", "inactive", "a=inactive"},
		{"0.0.0.0", "0.0.0.0", "sendrecv", "a=recvonly"},
	} {
		offer := strings.Replace(string(reoffer(c.bp.port(), "107", tt.dir)), "c=IN IP4 127.0.0.1", "c=IN IP4 "+tt.conn, 1)
		ans, st, err := c.b.AcceptOffer(SideB, []byte(offer))
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if !strings.Contains(string(ans), tt.want+"\r\n") || !st.Hold {
			t.Fatalf("%s: answer %q (state %+v), want %s and hold", tt.name, ans, st, tt.want)
		}
		if got := mustParse(t, ans).Media[0].Addr(); got != c.toB {
			t.Fatalf("%s: answer names %v, want the same port %v", tt.name, got, c.toB)
		}
		drain(c.bp, 50*time.Millisecond) // what was under way
		if n := drain(c.bp, 2*timeout); n != 0 {
			t.Fatalf("%s: B got %d packets while holding", tt.name, n)
		}
		select {
		case err := <-c.timeouts:
			t.Fatalf("%s: timed out while B held: %v", tt.name, err)
		default:
		}
	}
	if c.b.Stats().BtoA != 0 {
		t.Fatal("something relayed from B")
	}

	ans, st, err := c.b.AcceptOffer(SideB, reoffer(c.bp.port(), "107", "sendrecv"))
	if err != nil || st.Hold || !strings.Contains(string(ans), "a=sendrecv\r\n") {
		t.Fatalf("resume: %v %+v\n%s", err, st, ans)
	}
	if expect(t, c.bp) == nil {
		t.Fatal("nothing relayed to B after the resume")
	}
	c.bp.send(c.toB, rtpPacket(t, 107, 1, 960, 0xB1, []byte("back")))
	deadline := time.Now().Add(time.Second)
	for c.b.Stats().BtoA == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if c.b.Stats().BtoA == 0 {
		t.Fatal("B's packet not relayed after the resume")
	}
	// B is expected again: silent, it times out.
	select {
	case err := <-c.timeouts:
		if !strings.Contains(err.Error(), "side B") {
			t.Fatalf("timeout %v, want side B", err)
		}
	case <-time.After(5 * timeout):
		t.Fatal("B's timeout did not come back after the resume")
	}
}

// TestAcceptOfferMovesMedia: B moves its media to another address (a
// PBX handing the call to a media server): wagate answers from the same
// port, relays A to the new address, takes B's media from there only.
func TestAcceptOfferMovesMedia(t *testing.T) {
	c := newCall(t, 0, 0)
	moved := newPeer(t)
	ans, st, err := c.b.AcceptOffer(SideB, reoffer(moved.port(), "107"))
	if err != nil || !st.Moved || st.Hold {
		t.Fatalf("move: %v %+v", err, st)
	}
	if got := mustParse(t, ans).Media[0].Addr(); got != c.toB {
		t.Fatalf("answer names %v, want %v", got, c.toB)
	}
	c.a.send(c.toA, rtpPacket(t, 111, 1, 960, 0xA1, []byte("to the new place")))
	if got := expect(t, moved); string(got[12:]) != "to the new place" {
		t.Fatalf("moved peer got %q", got[12:])
	}
	if c.bp.recv(100*time.Millisecond) != nil {
		t.Fatal("the old address still gets media")
	}
	c.bp.send(c.toB, rtpPacket(t, 107, 1, 960, 0xB1, []byte("old")))
	moved.send(c.toB, rtpPacket(t, 107, 1, 960, 0xB2, []byte("new")))
	if got := expect(t, c.a); string(got[12:]) != "new" {
		t.Fatalf("A got %q, want the new source's", got[12:])
	}
	waitStats(t, c.b, "old source dropped", func(s BridgeStats) bool { return s.DroppedSource == 1 && s.BtoA == 1 })
}

// TestReOfferDelayed: B holds (sendonly), then sends a re-INVITE without
// SDP and moves its media in the answer (a delayed offer, as CUCM resumes
// and transfers): wagate's offer is sendrecv from the same port with the
// call's codec, and the answer moves the relay to the new address; an
// answer without the codec changes nothing.
func TestReOfferDelayed(t *testing.T) {
	c := newCall(t, 0, 0)
	if _, st, err := c.b.AcceptOffer(SideB, reoffer(c.bp.port(), "107", "sendonly")); err != nil || !st.Hold {
		t.Fatalf("hold: %v %+v", err, st)
	}
	offer := c.b.ReOffer(SideB)
	d := mustParse(t, offer)
	if len(d.Media) != 1 || d.EffectiveDirection(&d.Media[0]) != SendRecv || d.Media[0].Addr() != c.toB {
		t.Fatalf("re-offer %q: want one sendrecv stream from %v", offer, c.toB)
	}
	if cs := d.Media[0].Codecs; len(cs) != 2 || cs[0].Name != "opus" || cs[0].PT != 107 || cs[1].Name != "telephone-event" {
		t.Fatalf("re-offer codecs %v, want opus at 107 and telephone-event", cs)
	}
	if string(c.b.LocalSDP(SideB)) != string(offer) {
		t.Fatal("LocalSDP is not the re-offer")
	}
	if _, err := c.b.AcceptAnswer(SideB, sdpOffer(c.bp.port(), "RTP/AVP", "0", "rtpmap:0 PCMU/8000")); !errors.Is(err, ErrNoCommonCodec) {
		t.Fatalf("answer without opus: %v, want ErrNoCommonCodec", err)
	}
	moved := newPeer(t)
	st, err := c.b.AcceptAnswer(SideB, reoffer(moved.port(), "107"))
	if err != nil || !st.Moved || st.Hold {
		t.Fatalf("answer: %v %+v", err, st)
	}
	if string(c.b.LocalSDP(SideB)) != string(offer) {
		t.Fatal("an answer changed the SDP wagate sent")
	}
	c.a.send(c.toA, rtpPacket(t, 111, 1, 960, 0xA1, []byte("resumed")))
	if got := expect(t, moved); string(got[12:]) != "resumed" {
		t.Fatalf("moved peer got %q", got[12:])
	}
	moved.send(c.toB, rtpPacket(t, 107, 1, 960, 0xB2, []byte("back")))
	if got := expect(t, c.a); string(got[12:]) != "back" {
		t.Fatalf("A got %q, want the resumed stream", got[12:])
	}
}

// TestAcceptOfferCodec: the leg's codec may change payload type but not
// go away; an offer without it changes nothing.
func TestAcceptOfferCodec(t *testing.T) {
	c := newCall(t, 0, 0)
	before := c.b.LocalSDP(SideB)
	_, _, err := c.b.AcceptOffer(SideB, sdpOffer(c.bp.port(), "RTP/AVP", "0", "rtpmap:0 PCMU/8000"))
	if !errors.Is(err, ErrNoCommonCodec) {
		t.Fatalf("offer without opus: %v, want ErrNoCommonCodec", err)
	}
	if got := c.b.LocalSDP(SideB); string(got) != string(before) {
		t.Fatal("a refused offer changed our SDP")
	}
	ans, _, err := c.b.AcceptOffer(SideB, reoffer(c.bp.port(), "96"))
	if err != nil {
		t.Fatal(err)
	}
	if m := mustParse(t, ans).Media[0]; m.Codecs[0].PT != 96 || m.Codecs[0].Name != "opus" {
		t.Fatalf("answer codecs %v, want opus at 96", m.Codecs)
	}
	c.a.send(c.toA, rtpPacket(t, 111, 1, 960, 0xA1, []byte("pt")))
	if h := readHdr(expect(t, c.bp)); h.pt != 96 {
		t.Fatalf("relayed with PT %d, want 96", h.pt)
	}
	if _, _, err := c.b.AcceptOffer(SideB, []byte("v=0\r\nm=audio x")); !errors.Is(err, ErrBadSDP) {
		t.Fatalf("garbage: %v, want ErrBadSDP", err)
	}
}

// TestOfferAnswerSide: side B gets a new peer that speaks PCMA: A's opus
// is transcoded to it, and the old peer gets nothing more.
func TestOfferAnswerSide(t *testing.T) {
	c := newCall(t, 0, 0)
	offer, err := c.b.OfferSide(SideB, LegConfig{Codecs: []string{"PCMU", "PCMA"}})
	if err != nil {
		t.Fatal(err)
	}
	mo := mustParse(t, offer).Media[0]
	if mo.Addr() != c.toB || len(mo.Codecs) != 3 || mo.Codecs[0].Name != "PCMU" || mo.Codecs[2].Name != telephoneEvent {
		t.Fatalf("offer to the new peer:\n%s", offer)
	}
	// Until it answers, the old peer keeps the media.
	c.a.send(c.toA, rtpPacket(t, 111, 1, 960, 0xA1, []byte("still old")))
	expect(t, c.bp)
	np := newPeer(t)
	if err := c.b.AnswerSide(SideB, sdpOffer(np.port(), "RTP/AVP", "8 101", "rtpmap:8 PCMA/8000", "rtpmap:101 telephone-event/8000")); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	sendEvery(t, &wg, stop, c.a, c.toA, 111, 0xA1)
	defer func() { close(stop); wg.Wait() }()
	got := expect(t, np)
	if h := readHdr(got); h.pt != 8 || len(got)-12 != 160 {
		t.Fatalf("new peer got PT %d, %d bytes; want PCMA, 20 ms", h.pt, len(got)-12)
	}
	drain(c.bp, 50*time.Millisecond)
	if c.bp.recv(100*time.Millisecond) != nil {
		t.Fatal("the old peer still gets media")
	}
	if err := c.b.AnswerSide(SideB, sdpOffer(np.port(), "RTP/AVP", "8")); err == nil {
		t.Fatal("a second answer without an offer was taken")
	}
	// Live, not Report: Report is for a closed bridge.
	if r := c.b.Live(); r.B.Codec != "PCMA" {
		t.Fatalf("live report: B's codec %q, want PCMA", r.B.Codec)
	}
}

// TestLink: two calls' B sides are linked: what A of one call says
// reaches A of the other, both ways, and neither A sees its stream
// change.
func TestLink(t *testing.T) {
	c1 := newCall(t, 0, 0)
	c2 := newCall(t, 0, 0)
	// Both closed before either call's goroutine check runs.
	t.Cleanup(c1.b.Close)
	if err := Link(c1.b, SideB, c2.b, SideB); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		c1.a.send(c1.toA, rtpPacket(t, 111, uint16(i), uint32(i*960), 0xA1, []byte("from one")))
		if got := expect(t, c2.a); string(got[12:]) != "from one" || readHdr(got).pt != 111 {
			t.Fatalf("call 2's A got %q PT %d", got[12:], readHdr(got).pt)
		}
		c2.a.send(c2.toA, rtpPacket(t, 111, uint16(i), uint32(i*960), 0xA2, []byte("from two")))
		if got := expect(t, c1.a); string(got[12:]) != "from two" {
			t.Fatalf("call 1's A got %q", got[12:])
		}
	}
	if c1.bp.recv(50*time.Millisecond) != nil || c2.bp.recv(50*time.Millisecond) != nil {
		t.Fatal("a B peer still gets media after the link")
	}
	if err := Link(c1.b, SideB, c1.b, SideA); err == nil {
		t.Fatal("a bridge linked to itself")
	}
}

// TestAcceptOfferCodecChange: a relayed PCMU call whose PBX re-INVITEs
// with PCMA only (its own transfer moved the call to a PCMA phone):
// wagate answers PCMA on the same port and converts both ways from then
// on; the caller's side is not asked to change. An offer of a codec the
// leg does not allow still gets ErrNoCommonCodec and changes nothing.
func TestAcceptOfferCodecChange(t *testing.T) {
	m := newTestManager(t, 2, 0, 0)
	t.Cleanup(func() { checkNoRelayGoroutines(t) })
	b, err := m.NewCallBridge("codec-change", testLogger(t), LegConfig{Codecs: []string{"PCMU"}}, LegConfig{Codecs: []string{"PCMU", "PCMA"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	a, bp := newPeer(t), newPeer(t)
	offerB, err := b.Offer(sdpOffer(a.port(), "RTP/AVP", "0 101", "rtpmap:0 PCMU/8000", "rtpmap:101 telephone-event/8000", "ptime:20"))
	if err != nil {
		t.Fatal(err)
	}
	answerA, err := b.AnswerB(sdpOffer(bp.port(), "RTP/AVP", "0 101", "rtpmap:0 PCMU/8000", "rtpmap:101 telephone-event/8000", "ptime:20"))
	if err != nil {
		t.Fatal(err)
	}
	toB, toA := mustParse(t, offerB).Media[0].Addr(), mustParse(t, answerA).Media[0].Addr()
	b.Start(func(error) {})

	before := b.LocalSDP(SideB)
	if _, _, err := b.AcceptOffer(SideB, sdpOffer(bp.port(), "RTP/AVP", "111", "rtpmap:111 opus/48000/2")); !errors.Is(err, ErrNoCommonCodec) {
		t.Fatalf("offer of opus, which the leg does not allow: %v, want ErrNoCommonCodec", err)
	}
	if string(b.LocalSDP(SideB)) != string(before) {
		t.Fatal("a refused offer changed our SDP")
	}

	moved := newPeer(t)
	ans, st, err := b.AcceptOffer(SideB, sdpOffer(moved.port(), "RTP/AVP", "8 101", "rtpmap:8 PCMA/8000", "rtpmap:101 telephone-event/8000", "ptime:20"))
	if err != nil {
		t.Fatalf("offer of PCMA only: %v", err)
	}
	if !st.Moved {
		t.Errorf("stream state %+v, want moved", st)
	}
	ma := mustParse(t, ans).Media[0]
	if ma.Addr() != toB || ma.Codecs[0].Name != "PCMA" || ma.Codecs[0].PT != 8 {
		t.Fatalf("answer from %v with codecs %v, want PCMA at 8 from %v", ma.Addr(), ma.Codecs, toB)
	}
	// µ-law 0xFF and A-law 0xD5 are both (near) silence: the conversion
	// keeps the audio, not the bytes (A-law's smallest step, ±8, is µ-law
	// 0xFE or 0x7E).
	ulaw, alaw := make([]byte, 160), make([]byte, 160)
	for i := range ulaw {
		ulaw[i], alaw[i] = 0xFF, 0xD5
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	defer func() { close(stop); wg.Wait() }()
	sendPayloadEvery(t, &wg, stop, a, toA, 0, 0xA1, 160, ulaw)
	sendPayloadEvery(t, &wg, stop, moved, toB, 8, 0xB2, 160, alaw)
	got := expect(t, moved)
	if h := readHdr(got); h.pt != 8 || len(got)-12 != 160 || got[12]&0x7F != 0x55 {
		t.Fatalf("the PBX's new phone got PT %d, %d bytes (first %#x); want PCMA silence, 20 ms", h.pt, len(got)-12, got[12])
	}
	for {
		got = expect(t, a)
		if h := readHdr(got); h.pt == 0 {
			break // silence wagate sent before the new phone spoke may come first
		}
	}
	if len(got)-12 != 160 || got[12]&0x7E != 0x7E {
		t.Fatalf("the caller got %d bytes (first %#x); want PCMU silence, 20 ms", len(got)-12, got[12])
	}
	if r := b.Live(); r.B.Codec != "PCMA" || r.A.Codec != "PCMU" {
		t.Fatalf("live report: codecs A %q, B %q; want PCMU, PCMA", r.A.Codec, r.B.Codec)
	}
}
