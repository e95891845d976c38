package media

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"
)

// event returns an RFC 4733 payload.
func event(code byte, end bool, duration uint16) []byte {
	b := []byte{code, 10, 0, 0} // volume 10
	if end {
		b[1] |= 0x80
	}
	binary.BigEndian.PutUint16(b[2:], duration)
	return b
}

func eventDuration(pkt []byte) uint16 { return binary.BigEndian.Uint16(pkt[14:]) }

func TestDTMFClassify(t *testing.T) {
	var s dtmfState
	for i, tt := range []struct {
		ssrc, ts uint32
		end      bool
		want     dtmfAction
	}{
		{1, 1000, false, dtmfStart},   // no marker needed: a new timestamp is a new event
		{1, 1000, false, dtmfForward}, // continuation
		{1, 1000, true, dtmfEnd},      // end: sent three times
		{1, 1000, true, dtmfDrop},     // the sender's own end copies
		{1, 1000, false, dtmfDrop},    // a late continuation of an ended event
		{1, 800, false, dtmfDrop},     // a straggler of an older event
		{1, 2000, true, dtmfStartEnd}, // a new event seen only by its end
		{1, 2000, true, dtmfDrop},
		{1, 3000, false, dtmfStart},
		{1, 4000, false, dtmfStart}, // the previous one never ended: a new one anyway
		// A new stream (the PBX's new phone) whose random timestamps are
		// behind the old one's: its keys are new events, not stragglers.
		{2, 500, false, dtmfStart},
		{2, 500, true, dtmfEnd},
		{2, 900, true, dtmfStartEnd},
		// The same stream restarting its timestamps far behind: a new
		// event too.
		{2, 1<<32 - 2*dtmfStragglerSpan, false, dtmfStart},
	} {
		if got := s.classify(tt.ssrc, tt.ts, tt.end); got != tt.want {
			t.Fatalf("packet %d (ssrc %d, ts %d, end %v): %d, want %d", i, tt.ssrc, tt.ts, tt.end, got, tt.want)
		}
	}
	if s.events != 7 {
		t.Fatalf("%d events, want 7", s.events)
	}
}

func TestScaleEventDuration(t *testing.T) {
	for _, tt := range []struct {
		in, out   int
		dur, want uint16
	}{
		{8000, 48000, 160, 960},
		{48000, 8000, 960, 160},
		{8000, 8000, 400, 400},
		{8000, 48000, 20000, 0xffff}, // saturates
	} {
		b := event(5, false, tt.dur)
		scaleEventDuration(b, tt.in, tt.out)
		if got := binary.BigEndian.Uint16(b[2:]); got != tt.want || b[0] != 5 || b[1] != 10 {
			t.Errorf("%d Hz → %d Hz: %d → %d, want %d", tt.in, tt.out, tt.dur, got, tt.want)
		}
	}
}

// TestDTMFTranscoded: an event from the PBX (8 kHz, a carrier that omits
// the marker and repeats the end) reaches Meta once, remapped to Meta's
// payload type, on Meta's stream clock (durations ×6), with the end sent
// three times; and back from Meta with durations ÷6.
func TestDTMFTranscoded(t *testing.T) {
	c := newWhatsAppCall(t, newTestManager(t, 2, 0, 0), pcmuAnswer)
	c.b.Start(nil)
	// Let silence start so the event lands inside a running stream.
	c.meta.recvSRTP(t)

	pbx := []struct {
		ts  uint32
		end bool
		dur uint16
	}{
		{8000, false, 160}, {8000, false, 320}, {8000, false, 480},
		{8000, true, 640}, {8000, true, 640}, {8000, true, 640},
		{8000, false, 480},                    // late, after the end
		{9600, false, 160}, {9600, true, 320}, // the next key, one end only
	}
	for i, p := range pbx {
		c.pbx.send(c.toB, rtpPacket(t, 101, uint16(300+i), p.ts, 0x9b, event(1, p.end, p.dur)))
	}
	var got []hdr
	var durs []uint16
	var ends int
	var prev hdr
	for deadline := time.Now().Add(3 * time.Second); len(got) < 8 && time.Now().Before(deadline); {
		pkt := c.meta.recvSRTP(t)
		h := readHdr(pkt)
		if prev.ssrc != 0 && (h.seq != prev.seq+1 || h.ssrc != prev.ssrc) {
			t.Fatalf("Meta's stream %+v after %+v", h, prev)
		}
		prev = h
		if h.pt != 126 {
			continue // silence
		}
		got = append(got, h)
		durs = append(durs, eventDuration(pkt))
		if pkt[13]&0x80 != 0 {
			ends++
		}
	}
	// Event 1: 3 updates + 3 ends; event 2: 1 update + 3 ends.
	if len(got) != 8 {
		t.Fatalf("Meta got %d event packets: %+v", len(got), got)
	}
	for i := range 6 {
		if got[i].marker != (i == 0) {
			t.Fatalf("event 1 packet %d marker %v", i, got[i].marker)
		}
	}
	wantDurs := []uint16{960, 1920, 2880, 3840, 3840, 3840}
	for i, w := range wantDurs {
		if durs[i] != w || got[i].ts != got[0].ts {
			t.Fatalf("event 1 packet %d: duration %d ts %d, want %d at %d", i, durs[i], got[i].ts, w, got[0].ts)
		}
	}
	if !got[6].marker || got[6].ts == got[0].ts || durs[6] != 960 || durs[7] != 1920 || got[7].ts != got[6].ts {
		t.Fatalf("event 2: %+v durations %v", got[6:], durs[6:])
	}
	if ends != 4 { // event 1's three, and the first of event 2's
		t.Fatalf("%d end packets among the first 8", ends)
	}
	waitStats(t, c.b, "events", func(s BridgeStats) bool { return s.DTMFEvents == 2 })

	// Meta → PBX: 48 kHz durations become 8 kHz ones.
	for i, d := range []uint16{960, 1920, 2880} {
		c.meta.send(c.toA, c.meta.encrypt(t, rtpPacket(t, 126, uint16(10+i), 48000, 0x3e7a, event(9, i == 2, d))))
	}
	var toPBX []uint16
	for len(toPBX) < 5 {
		pkt := expect(t, c.pbx)
		if h := readHdr(pkt); h.pt != 101 || (len(toPBX) == 0) != h.marker || pkt[12] != 9 {
			t.Fatalf("PBX got %+v %x", h, pkt[12:])
		}
		toPBX = append(toPBX, eventDuration(pkt))
	}
	if want := []uint16{160, 320, 480, 480, 480}; !equalU16(toPBX, want) {
		t.Fatalf("PBX durations %v, want %v", toPBX, want)
	}
	if pkt := c.pbx.recv(100 * time.Millisecond); pkt != nil && readHdr(pkt).pt == 101 {
		t.Fatal("a fourth end packet")
	}
}

func equalU16(a, b []uint16) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestDTMFRelayed: relaying (same codec), events keep the input timing and
// durations; the end goes out three times whatever the sender sent, and
// the outgoing numbering stays gapless.
func TestDTMFRelayed(t *testing.T) {
	br := socketlessBridge(LegConfig{}, LegConfig{})
	if _, err := br.OfferB([]byte(sippOffer), []string{"PCMA"}); err != nil {
		t.Fatal(err)
	}
	if _, err := br.AnswerB(sdpOffer(6000, "RTP/AVP", "8 96", "rtpmap:96 telephone-event/8000")); err != nil {
		t.Fatal(err)
	}
	d := newTestDirection(br, SideA)
	from := netip.MustParseAddrPort("127.0.0.1:6000")
	seq := uint16(1)
	send := func(pt uint8, ts uint32, payload []byte) {
		d.feed(rtpPacket(t, pt, seq, ts, 0xAA, payload), from)
		seq++
	}
	send(8, 0, make([]byte, 160))
	send(101, 160, event(3, false, 160))
	send(101, 160, event(3, true, 320)) // only one end from the sender
	send(8, 320, make([]byte, 160))
	send(101, 480, event(4, false, 160))
	send(101, 480, event(4, true, 320))
	send(101, 480, event(4, true, 320)) // two copies of this end…
	send(101, 480, event(4, true, 320)) // …dropped, ours replace them
	send(8, 640, make([]byte, 160))

	wantPT := []uint8{8, 96, 96, 96, 96, 8, 96, 96, 96, 96, 8}
	if len(d.dst.pkts) != len(wantPT) {
		t.Fatalf("%d packets out, want %d", len(d.dst.pkts), len(wantPT))
	}
	first := readHdr(d.dst.pkts[0])
	for i, pkt := range d.dst.pkts {
		h := readHdr(pkt)
		if h.pt != wantPT[i] || h.seq != first.seq+uint16(i) {
			t.Fatalf("packet %d: %+v (first %+v)", i, h, first)
		}
		if h.pt == 96 && h.ts != first.ts+160 && h.ts != first.ts+480 {
			t.Fatalf("packet %d: event at ts %d, first audio %d", i, h.ts, first.ts)
		}
		isFirstOfEvent := i == 1 || i == 6
		if h.marker != isFirstOfEvent {
			t.Fatalf("packet %d marker %v", i, h.marker)
		}
	}
	if s := br.Stats(); s.DTMFEvents != 2 || s.AtoB != uint64(len(wantPT)) {
		t.Fatalf("stats %+v", s)
	}
}

// TestDTMFLongPress: a key held longer than the 16-bit duration field
// allows (8.19 s at 8 kHz) arrives as two segments, the second at a new
// timestamp 0xFFFF ticks on, with no end before it (RFC 4733 §2.5.1.3).
// It is one key press: OnDTMF hears it once, the call counts one event,
// and only its first packet carries the marker. A second press of the
// same key after the end is a key of its own. Before, the second segment
// was a new key: a caller holding 5 was heard typing 55.
func TestDTMFLongPress(t *testing.T) {
	br := socketlessBridge(LegConfig{}, LegConfig{})
	if _, err := br.OfferB([]byte(sippOffer), []string{"PCMA"}); err != nil {
		t.Fatal(err)
	}
	if _, err := br.AnswerB(sdpOffer(6000, "RTP/AVP", "8 96", "rtpmap:96 telephone-event/8000")); err != nil {
		t.Fatal(err)
	}
	rec := &keyRecorder{}
	br.OnDTMF(rec.key)
	d := newTestDirection(br, SideA)
	from := netip.MustParseAddrPort("127.0.0.1:6000")
	seq := uint16(1)
	send := func(ts uint32, payload []byte) {
		d.feed(rtpPacket(t, 101, seq, ts, 0xAA, payload), from)
		seq++
	}
	send(160, event(5, false, 400))
	send(160, event(5, false, 40000))
	send(160, event(5, false, 0xffff)) // the first segment is full…
	next := uint32(160 + 0xffff)
	send(next, event(5, false, 400)) // …and the press goes on
	send(next, event(5, true, 2000))
	send(next, event(5, true, 2000))
	later := next + 8000
	send(later, event(5, false, 400)) // the same key pressed again
	send(later, event(5, true, 800))

	if keys, _ := rec.snapshot(); keys != "55" {
		t.Errorf("OnDTMF heard %q, want \"55\": the long press once, then the second press", keys)
	}
	if s := br.Stats(); s.DTMFEvents != 2 {
		t.Errorf("%d DTMF events counted, want 2", s.DTMFEvents)
	}
	var markers []int
	for i, pkt := range d.dst.pkts {
		if readHdr(pkt).marker {
			markers = append(markers, i)
		}
	}
	// Out: 3 packets of the first segment, 1 + 3 end copies of the
	// second, 1 + 3 of the second press.
	if len(d.dst.pkts) != 11 || len(markers) != 2 || markers[0] != 0 || markers[1] != 7 {
		t.Errorf("%d packets out, markers on %v; want 11, markers on the first packet of each press (0 and 7)", len(d.dst.pkts), markers)
	}
}
