package media

import (
	"testing"
	"time"
)

// TestBridgeLive: while a call runs, Live shows each leg's codec and
// remote address, and A's packets, loss and bytes as they move; after
// Close it shows the final counters.
func TestBridgeLive(t *testing.T) {
	c := newCall(t, 0, 0)

	r := c.b.Live()
	if r.A.Codec != "opus" || r.B.Codec != "opus" || r.A.Encryption != "none" || r.B.Encryption != "none" {
		t.Errorf("legs before media: %+v %+v", r.A, r.B)
	}
	if r.A.Remote != c.a.addr() || r.B.Remote != c.bp.addr() {
		t.Errorf("remotes %v %v, want %v %v", r.A.Remote, r.B.Remote, c.a.addr(), c.bp.addr())
	}
	if r.AtoB.Packets != 0 || r.BtoA.Packets != 0 {
		t.Errorf("packets before any media: %+v", r)
	}

	// 20 packets, 20 ms apart, with sequence 1010 missing.
	seq, ts := uint16(1000), uint32(50000)
	sent := 0
	for range 20 {
		if seq != 1010 {
			c.a.send(c.toA, rtpPacket(t, 111, seq, ts, 0xA1, []byte("opus frame")))
			expect(t, c.bp)
			sent++
		}
		seq++
		ts += 960
		time.Sleep(20 * time.Millisecond)
	}
	// The relay publishes on a packet at most every 250 ms: keep sending
	// (in sequence, so the loss stays 1) until what it shows has caught
	// up with the burst.
	var first LiveReport
	deadline := time.Now().Add(5 * time.Second)
	for {
		c.a.send(c.toA, rtpPacket(t, 111, seq, ts, 0xA1, []byte("opus frame")))
		expect(t, c.bp)
		sent++
		seq++
		ts += 960
		r = c.b.Live()
		if r.AtoB.Packets >= 19 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Live never showed the burst: %+v", r.AtoB)
		}
		time.Sleep(100 * time.Millisecond)
	}
	first = r
	if first.AtoB.Lost != 1 || first.AtoB.Bytes == 0 || first.AtoB.Forwarded < 19 || first.BtoA.Packets != 0 {
		t.Errorf("live A→B %+v, B→A %+v; want 1 lost, bytes and forwarded counted, nothing from B", first.AtoB, first.BtoA)
	}

	// It moves: more packets later show higher counts.
	for range 4 {
		time.Sleep(100 * time.Millisecond)
		c.a.send(c.toA, rtpPacket(t, 111, seq, ts, 0xA1, []byte("opus frame")))
		expect(t, c.bp)
		sent++
		seq++
		ts += 960
	}
	if r = c.b.Live(); r.AtoB.Packets <= first.AtoB.Packets || r.AtoB.Lost != 1 {
		t.Errorf("after more packets: %+v, before %+v", r.AtoB, first.AtoB)
	}

	c.b.Close()
	if r = c.b.Live(); r.AtoB.Packets != uint64(sent) || r.AtoB.Lost != 1 || r.A.Codec != "opus" {
		t.Errorf("after Close: %+v, want %d packets, 1 lost", r, sent)
	}
}
