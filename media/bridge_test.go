package media

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wagate/wagate/configs"
)

// call is a bridge between two fake peers on loopback, negotiated and
// started: A offers opus 111 + telephone-event 126, B answers opus 107 +
// telephone-event 101.
type call struct {
	m          *Manager
	b          *Bridge
	a, bp      *peer
	toA, toB   netip.AddrPort // the bridge's ports facing A and B
	timeouts   chan error
	calledOnce atomic.Int32
}

func newCall(t *testing.T, startTimeout, timeout time.Duration) *call {
	t.Helper()
	// Registered first, so it runs after the bridge's Close below.
	t.Cleanup(func() { checkNoRelayGoroutines(t) })
	c := &call{m: newTestManager(t, 2, startTimeout, timeout), a: newPeer(t), bp: newPeer(t), timeouts: make(chan error, 2)}
	var err error
	c.b, err = c.m.NewBridge("call-1", testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.b.Close)
	offerB, err := c.b.OfferB(sdpOffer(c.a.port(), "RTP/AVP", "111 126", "rtpmap:111 opus/48000/2", "rtpmap:126 telephone-event/8000", "ptime:20"), []string{"opus"})
	if err != nil {
		t.Fatal(err)
	}
	answerA, err := c.b.AnswerB(sdpOffer(c.bp.port(), "RTP/AVP", "107 101", "rtpmap:107 opus/48000/2", "rtpmap:101 telephone-event/8000"))
	if err != nil {
		t.Fatal(err)
	}
	c.toB = mustParse(t, offerB).Media[0].Addr()
	c.toA = mustParse(t, answerA).Media[0].Addr()
	c.b.Start(func(err error) {
		c.calledOnce.Add(1)
		c.timeouts <- err
	})
	return c
}

// expect waits for the packet the bridge should relay to p.
func expect(t *testing.T, p *peer) []byte {
	t.Helper()
	pkt := p.recv(5 * time.Second) // generous: a loaded machine
	if pkt == nil {
		t.Fatal("no packet relayed")
	}
	return pkt
}

// waitStats polls until cond holds for the bridge's stats.
func waitStats(t *testing.T, b *Bridge, what string, cond func(BridgeStats) bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second) // generous: a loaded machine
	for !cond(b.Stats()) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: stats %+v", what, b.Stats())
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestBridgeRelay(t *testing.T) {
	c := newCall(t, 0, 0)

	// A → B: payload intact, PT mapped, stream re-originated.
	var first hdr
	for i := range 5 {
		payload := []byte(fmt.Sprintf("opus frame %d", i))
		c.a.send(c.toA, rtpPacket(t, 111, uint16(1000+i), uint32(50000+960*i), 0xA1, payload))
		got := expect(t, c.bp)
		h := readHdr(got)
		if !bytes.Equal(got[12:], payload) {
			t.Fatalf("payload %q, want %q", got[12:], payload)
		}
		if h.pt != 107 {
			t.Fatalf("PT %d, want 107", h.pt)
		}
		if i == 0 {
			first = h
			if h.ssrc == 0xA1 {
				t.Fatal("SSRC not re-originated")
			}
			continue
		}
		if h.ssrc != first.ssrc || h.seq != first.seq+uint16(i) || h.ts != first.ts+uint32(960*i) || h.marker {
			t.Fatalf("packet %d: %+v after %+v", i, h, first)
		}
	}
	// telephone-event follows the same stream, own PT mapping.
	c.a.send(c.toA, rtpPacket(t, 126, 1005, 50000+960*5, 0xA1, []byte{1, 0, 0, 160}))
	if h := readHdr(expect(t, c.bp)); h.pt != 101 || h.seq != first.seq+5 || h.ssrc != first.ssrc {
		t.Fatalf("telephone-event %+v", h)
	}
	// A restarts its stream: new SSRC, unrelated numbers; B's stream goes on.
	c.a.send(c.toA, rtpPacket(t, 111, 7, 123, 0xA2, []byte("after switch")))
	// The new stream starts where the next audio after the old one would
	// have (the event's timestamp is its start, not audio).
	if h := readHdr(expect(t, c.bp)); h.ssrc != first.ssrc || h.seq != first.seq+6 || h.ts != first.ts+960*5 || !h.marker {
		t.Fatalf("after SSRC change %+v, first %+v", h, first)
	}
	c.a.send(c.toA, rtpPacket(t, 111, 8, 123+960, 0xA2, nil))
	if h := readHdr(expect(t, c.bp)); h.seq != first.seq+7 || h.ts != first.ts+960*6 || h.marker {
		t.Fatalf("second packet after SSRC change %+v", h)
	}

	// B → A: B's own PT and ours both arrive as A's.
	for i, pt := range []uint8{107, 111, 101} {
		c.bp.send(c.toB, rtpPacket(t, pt, uint16(i), uint32(i*960), 0xB1, []byte("from B")))
		got := expect(t, c.a)
		want := map[uint8]uint8{107: 111, 111: 111, 101: 126}[pt]
		if h := readHdr(got); h.pt != want || h.ssrc == 0xB1 || h.ssrc == first.ssrc || string(got[12:]) != "from B" {
			t.Fatalf("B→A PT %d: %+v %q", pt, h, got[12:])
		}
	}
	// Counters move just after the write, so the peer may be faster.
	waitStats(t, c.b, "relayed", func(s BridgeStats) bool {
		return s.AtoB == 8 && s.BtoA == 3 && s.DTMFEvents == 2 && s.DroppedSource+s.DroppedInvalid+s.DroppedAuth+s.DroppedLate == 0
	})
}

func TestBridgeDrops(t *testing.T) {
	c := newCall(t, 0, 0)
	intruder := newPeer(t)

	// RTP bleed/injection: right packet, wrong source address.
	intruder.send(c.toA, rtpPacket(t, 111, 1, 1, 1, []byte("inject")))
	intruder.send(c.toB, rtpPacket(t, 107, 1, 1, 1, []byte("inject")))
	waitStats(t, c.b, "wrong source", func(s BridgeStats) bool { return s.DroppedSource == 2 })

	// Right source, not RTP or not negotiated.
	for _, pkt := range [][]byte{
		[]byte("hello"),
		make([]byte, 20), // version 0
		rtpPacket(t, 0, 1, 1, 1, []byte("PCMU was not negotiated")),
		rtpPacket(t, 13, 1, 1, 1, []byte{0x40}), // comfort noise
		make([]byte, packetBufSize+100),         // would be truncated
	} {
		if len(pkt) > 12 {
			pkt[0] |= 0x80 // version 2 where it is meant to look like RTP
			if len(pkt) == 20 {
				pkt[0] = 0
			}
		}
		c.a.send(c.toA, pkt)
	}
	waitStats(t, c.b, "invalid", func(s BridgeStats) bool { return s.DroppedInvalid == 5 })

	// Multiplexed RTCP from the right source is read and counted, never
	// relayed.
	rr := []byte{0x80, 201, 0, 1, 0, 0, 0, 1}
	c.a.send(c.toA, rr)
	// A packet after it proves the RTCP was processed first.
	c.a.send(c.toA, rtpPacket(t, 111, 1, 1, 1, []byte("ok")))
	if got := expect(t, c.bp); string(got[12:]) != "ok" {
		t.Fatalf("got %q", got[12:])
	}
	waitStats(t, c.b, "after RTCP", func(s BridgeStats) bool {
		return s == BridgeStats{AtoB: 1, DroppedSource: 2, DroppedInvalid: 5, RTCPReceived: 1}
	})
	if pkt := intruder.recv(50 * time.Millisecond); pkt != nil {
		t.Fatal("intruder received media")
	}
}

func TestBridgeBeforeAnswer(t *testing.T) {
	m := newTestManager(t, 2, 0, 0)
	a, bp := newPeer(t), newPeer(t)
	b, err := m.NewBridge("early", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	b.Start(nil) // before any SDP: everything is dropped
	toA := netip.AddrPortFrom(loopback, uint16(b.legs[SideA].pair.port))
	toB := netip.AddrPortFrom(loopback, uint16(b.legs[SideB].pair.port))
	a.send(toA, rtpPacket(t, 0, 1, 1, 1, nil))
	waitStats(t, b, "unknown source", func(s BridgeStats) bool { return s.DroppedSource == 1 })

	if _, err := b.OfferB(sdpOffer(a.port(), "RTP/AVP", "0"), []string{"PCMU"}); err != nil {
		t.Fatal(err)
	}
	// A is known but B is not: A's packets go nowhere and are not errors;
	// B's are dropped as unknown. A's packet leaves no trace, so an
	// intruder's packet behind it on A's socket, dropped and counted, shows
	// it was read: still queued when B answered, it would be relayed to B
	// (a loaded machine did that, and B got it instead of "now").
	a.send(toA, rtpPacket(t, 0, 2, 2, 1, nil))
	newPeer(t).send(toA, rtpPacket(t, 0, 1, 1, 9, nil))
	bp.send(toB, rtpPacket(t, 0, 1, 1, 2, nil))
	waitStats(t, b, "B unknown, A's packet read", func(s BridgeStats) bool { return s.DroppedSource == 3 })
	if _, err := b.AnswerB(sdpOffer(bp.port(), "RTP/AVP", "0")); err != nil {
		t.Fatal(err)
	}
	a.send(toA, rtpPacket(t, 0, 3, 3, 1, []byte("now")))
	if got := expect(t, bp); string(got[12:]) != "now" {
		t.Fatalf("got %q", got[12:])
	}
	waitStats(t, b, "after answer", func(s BridgeStats) bool { return s == BridgeStats{AtoB: 1, DroppedSource: 3} })
}

func TestBridgeTimeouts(t *testing.T) {
	// The side that never stops must not time out however the machine is
	// loaded: its 20 ms sender was seen starved past 300 ms (plus the 50 ms
	// grace) in TestAcceptOfferHoldResume, so 1 s, not 200 ms.
	const d = time.Second
	for _, tt := range []struct {
		name         string
		sendA, sendB int    // packets each side sends before going silent (-1: never stops)
		side         string // the side named in the error ("": either)
	}{
		{name: "nobody sends", sendA: 0, sendB: 0, side: ""},
		{name: "A never starts", sendA: 0, sendB: -1, side: "A"},
		{name: "A stops mid-call", sendA: 3, sendB: -1, side: "A"},
		{name: "B stops mid-call", sendA: -1, sendB: 3, side: "B"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// Before newCall, which starts the bridge and with it the
			// timeouts: taken after, a test goroutine held up on a busy
			// machine for more than 20 ms in between would count the
			// timeout short and fail the check below.
			started := time.Now()
			c := newCall(t, d, d)
			stop := make(chan struct{})
			var wg sync.WaitGroup
			send := func(p *peer, to netip.AddrPort, n int) {
				defer wg.Done()
				tick := time.NewTicker(20 * time.Millisecond)
				defer tick.Stop()
				for i := 0; n < 0 || i < n; i++ {
					select {
					case <-stop:
						return
					case <-tick.C:
					}
					p.send(to, rtpPacket(t, 111, uint16(i), uint32(i*960), 1, nil))
				}
			}
			wg.Add(2)
			go send(c.a, c.toA, tt.sendA)
			go send(c.bp, c.toB, tt.sendB)
			defer func() { close(stop); wg.Wait() }()

			var err error
			select {
			case err = <-c.timeouts:
			case <-time.After(5 * time.Second):
				t.Fatal("no timeout")
			}
			if el := time.Since(started); el < d-20*time.Millisecond {
				t.Fatalf("timed out after %s, before %s", el, d)
			}
			if !strings.Contains(err.Error(), "no RTP from side "+tt.side) || !strings.Contains(err.Error(), " for 1s") {
				t.Fatalf("error %q, want side %q", err, tt.side)
			}
			// Called once even when both sides time out (the second
			// would come within the 50 ms grace of the first).
			time.Sleep(d / 2)
			if n := c.calledOnce.Load(); n != 1 {
				t.Fatalf("onTimeout called %d times", n)
			}
		})
	}
}

func TestBridgeCloseFromOnTimeout(t *testing.T) {
	m := newTestManager(t, 2, 100*time.Millisecond, 100*time.Millisecond)
	b, err := m.NewBridge("cb", nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	b.Start(func(err error) {
		b.Close() // what the SIP layer's hang-up ends with
		done <- err
	})
	select {
	case err := <-done:
		if !strings.Contains(err.Error(), "no RTP from side") {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("onTimeout did not return: Close deadlocked?")
	}
	if s := m.Stats(); s.PortsInUse != 0 || s.Bridges != 0 {
		t.Fatalf("manager stats %+v after Close", s)
	}
	checkNoRelayGoroutines(t)
}

func TestBridgeCloseReleases(t *testing.T) {
	goroutinesBefore := runtime.NumGoroutine()
	m := newTestManager(t, 4, time.Minute, time.Minute)
	if s := m.Stats(); s.PortsInUse != 0 || s.Bridges != 0 {
		t.Fatalf("fresh manager stats %+v", s)
	}
	b1, err := m.NewBridge("c1", nil)
	if err != nil {
		t.Fatal(err)
	}
	b2, err := m.NewBridge("c2", nil)
	if err != nil {
		t.Fatal(err)
	}
	if s := m.Stats(); s.PortsInUse != 8 || s.Bridges != 2 || s.PortsTotal != 8 {
		t.Fatalf("stats %+v with two bridges", s)
	}
	if _, err := m.NewBridge("c3", nil); !errors.Is(err, ErrNoPorts) {
		t.Fatalf("third bridge: %v, want ErrNoPorts", err)
	}
	if s := m.Stats(); s.PortsInUse != 8 || s.Bridges != 2 || s.PortsTotal != 8 {
		t.Fatalf("failed NewBridge leaked: %+v", s)
	}
	b1.Start(nil)
	b1.Start(nil) // idempotent
	for deadline := time.Now().Add(2 * time.Second); relayGoroutines() != readersPerCall(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d relay goroutines, want %d", relayGoroutines(), readersPerCall())
		}
	}

	var wg sync.WaitGroup
	for range 4 { // concurrent and repeated Close
		wg.Go(b1.Close)
	}
	wg.Wait()
	b2.Close() // never started
	b2.Start(nil)
	checkNoRelayGoroutines(t)
	for deadline := time.Now().Add(time.Second); runtime.NumGoroutine() > goroutinesBefore; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines after Close, %d before", runtime.NumGoroutine(), goroutinesBefore)
		}
	}
	if s := m.Stats(); s.PortsInUse != 0 || s.Bridges != 0 {
		t.Fatalf("stats %+v after Close", s)
	}
	if _, err := m.NewBridge("c4", nil); err != nil {
		t.Fatalf("ports not reusable after Close: %v", err)
	}
}

func TestNewManagerConfig(t *testing.T) {
	base := freePortRange(t, 4)
	for _, tt := range []struct {
		name       string
		bind, adv  string
		min, max   int
		negative   bool
		want       string // "" ok, else error substring
		advertised string
	}{
		{name: "bind is advertised", bind: "127.0.0.1", min: base, max: base + 3, advertised: "127.0.0.1"},
		{name: "advertise differs", bind: "0.0.0.0", adv: "203.0.113.7", min: base, max: base + 3, advertised: "203.0.113.7"},
		{name: "all interfaces", adv: "2001:db8::7", min: base, max: base + 3, advertised: "2001:db8::7"},
		{name: "nothing to advertise", bind: "0.0.0.0", min: base, max: base + 3, want: "advertise_ip"},
		{name: "empty", min: base, max: base + 3, want: "advertise_ip"},
		{name: "bad bind", bind: "localhost", min: base, max: base + 3, want: "bind_ip"},
		{name: "bad advertise", bind: "127.0.0.1", adv: "pbx.example", min: base, max: base + 3, want: "advertise_ip"},
		{name: "zero range", bind: "127.0.0.1", want: "port range"},
		{name: "inverted range", bind: "127.0.0.1", min: 40000, max: 30000, want: "port range"},
		{name: "negative duration", bind: "127.0.0.1", min: base, max: base + 3, negative: true, want: "negative"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := configsMedia(tt.bind, tt.adv, tt.min, tt.max)
			if tt.negative {
				cfg.RTPTimeout = -1
			}
			m, err := NewManager(cfg, nil)
			if tt.want != "" {
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("got %v, want error about %q", err, tt.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if m.advertise.String() != tt.advertised {
				t.Fatalf("advertise %s, want %s", m.advertise, tt.advertised)
			}
		})
	}
}

func configsMedia(bind, adv string, min, max int) configs.Media {
	return configs.Media{BindIP: bind, AdvertiseIP: adv, PortMin: min, PortMax: max}
}

// load is m's Stats without the range's size, which never changes.
