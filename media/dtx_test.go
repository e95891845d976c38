package media

import (
	"bytes"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wagate/wagate/codec"
)

// TestWhatsAppSilenceDTX: with the default media.silence (dtx), a
// WhatsApp leg whose other side says nothing gets a first frame of
// silence at once and then one every 400 ms, each timestamped at its own
// time in one stream (sequence numbers without gaps, no marker). Audio
// from the PBX does not wait for the next silence frame; when it stops,
// ten frames of silence 20 ms apart follow before the gaps begin again.
// Besides the watcher of dtxAttempts, the test's PBX notes how late it
// sends against its 20 ms schedule (a pause mid-spurt rightly starts the
// hangover early), and each frame toward Meta how late it came (wagate
// rightly marks a frame its starved pacer sent over 100 ms late).
func TestWhatsAppSilenceDTX(t *testing.T) {
	dtxAttempts(t, func(r *dtxRun) {
		silenceDTXRun(t, r)
	})
}

func silenceDTXRun(t *testing.T, r *dtxRun) {
	c := newWhatsAppCall(t, newTestManager(t, 2, 0, 0), pcmuAnswer)
	defer c.b.Close()
	silence := c.b.m.opusSilence
	c.b.Start(nil)
	fatalf := r.fatalf

	type got struct {
		h      hdr
		silent bool
		at     time.Time
	}
	next := func() got {
		t.Helper()
		pkt, at := c.meta.recvSRTPAt(t)
		if pkt == nil {
			fatalf("no packet toward Meta within 2 s")
		}
		return got{readHdr(pkt), bytes.Equal(pkt[12:], silence), at}
	}
	// came notes how much later than want after prev a frame came.
	came := func(prev, cur got, want time.Duration) { r.late(cur.at.Sub(prev.at) - want) }
	step := func(prev, cur got, ts uint32, what string) {
		if ts != 0 {
			came(prev, cur, time.Duration(ts)*time.Second/48000)
		}
		if cur.h.seq != prev.h.seq+1 || cur.h.ssrc != prev.h.ssrc || cur.h.pt != 111 {
			fatalf("%s: %+v after %+v: not the next packet of the stream", what, cur.h, prev.h)
		}
		// A DTX frame's time is rounded up to the pacer's 10 ms grid.
		if d := cur.h.ts - prev.h.ts; ts != 0 && (d < ts || ts == 400*48 && d > ts+10*48 || ts != 400*48 && d != ts) {
			fatalf("%s: timestamp moved %d, want %d", what, d, ts)
		}
	}

	first := next()
	if !first.silent {
		fatalf("the first packet toward Meta is not silence")
	}
	prev := first
	for i := range 2 {
		p := next()
		came(prev, p, 400*time.Millisecond)
		if !p.silent || p.h.marker {
			fatalf("DTX frame %d: silent %v, marker %v", i, p.silent, p.h.marker)
		}
		// Due 400 ms after the one before; the pacer never sends early
		// (the upper bound only catches a stall).
		if gap := p.at.Sub(prev.at); gap < 300*time.Millisecond {
			fatalf("DTX frame %d came %v after the one before, want about 400 ms", i, gap)
		}
		step(prev, p, 400*48, "DTX frame")
		prev = p
	}

	// Three talk spurts from the PBX, each starting just after a DTX
	// frame: 350 ms before the next one would be due. A talk spurt that
	// waited for it would start 350 ms or more after its first packet; a
	// loaded machine may stall one spurt, not all three.
	var fastest time.Duration = time.Hour
	seq := uint16(100)
	pbxEpoch := time.Now()
	var spurtTS uint32
	for spurt := range 3 {
		r.sleepUntil(prev.at.Add(50 * time.Millisecond))
		sentAt := time.Now()
		for i := range 10 {
			// A PBX's own DTX: the timestamp follows its clock over the
			// pause, the first packet of a spurt has the marker.
			seq++
			if i == 0 {
				spurtTS = uint32(time.Since(pbxEpoch).Milliseconds() * 8)
			}
			ts := spurtTS + uint32(160*i)
			pkt := rtpPacket(t, 0, seq, ts, 0x9b, codec.EncodeG711("PCMU", tone(1000, 8000, 160, int(ts)), nil))
			if i == 0 {
				pkt[1] |= 0x80
			}
			c.pbx.send(c.toB, pkt)
			r.sleepUntil(sentAt.Add(time.Duration(i+1) * 20 * time.Millisecond))
			if i == 0 {
				p := next()
				if p.silent {
					came(prev, p, 400*time.Millisecond) // a DTX frame: how late?
					fatalf("spurt %d: silence before the audio: %+v after %+v, %v after the PBX sent", spurt, p.h, prev.h, p.at.Sub(sentAt))
				}
				if !p.h.marker || int32(p.h.ts-prev.h.ts) <= 960 {
					fatalf("spurt %d: first audio %+v after %+v: want the marker and the timestamp moved on over the gap", spurt, p.h, prev.h)
				}
				step(prev, p, 0, "first audio")
				fastest = min(fastest, p.at.Sub(sentAt))
				prev = p
			}
		}
		// The rest of the spurt, then the hangover, then the gap.
		audio, hang := 1, 0
		for resumed := false; !resumed; {
			p := next()
			switch {
			case !p.silent && hang == 0:
				step(prev, p, 960, "audio")
				audio++
			case p.silent && hang < dtxHangover:
				step(prev, p, 960, "hangover silence")
				hang++
			case p.silent:
				step(prev, p, 400*48, "first DTX frame after the hangover")
				if gap := p.at.Sub(prev.at); gap < 300*time.Millisecond {
					fatalf("spurt %d: DTX resumed %v after the hangover's last frame", spurt, gap)
				}
				resumed = true
			default:
				fatalf("spurt %d: audio after %d frames of hangover", spurt, hang)
			}
			prev = p
		}
		if audio < 8 {
			fatalf("spurt %d: %d of 10 audio frames reached Meta", spurt, audio)
		}
	}
	if fastest > 250*time.Millisecond {
		fatalf("audio after a DTX frame reached Meta %v after the PBX sent it at best of three spurts: it waited for the next silence frame", fastest)
	}
	t.Logf("audio after a DTX frame reached Meta %v after the PBX sent it (best of three)", fastest.Round(time.Millisecond))
}

// TestWhatsAppDTXRelayTimestamp: relaying Opus with a deep playout
// buffer (jitter_buffer.min 60 ms, so the first packets of a talk spurt
// wait and the buffer may stretch before the first frame goes), audio
// that starts in a DTX gap goes out with the marker, the next sequence
// number, and a timestamp moved on over the whole pause: the WhatsApp
// side's jitter buffer must see the spurt on time, not 300 ms late.
func TestWhatsAppDTXRelayTimestamp(t *testing.T) {
	dtxAttempts(t, func(r *dtxRun) {
		m := newTestManager(t, 2, 0, 0)
		m.jbMin = 60 * time.Millisecond
		c := newWhatsAppCall(t, m, func(port int) []byte {
			return sdpOffer(port, "RTP/AVP", "111", "rtpmap:111 opus/48000/2", "ptime:20")
		}, "opus")
		defer c.b.Close()
		if rt := c.b.routeBA.Load(); rt.mode != modeRelay {
			t.Fatalf("mode %d, want relay", rt.mode)
		}
		c.b.Start(nil)
		prev, prevAt := intoDTXGap(t, c, opusSilence)
		// One 20 ms CELT frame by its TOC byte (config 31, one frame), the
		// rest whatever: relayed, never decoded.
		pbxOpus := []byte("\xf8 opus from the PBX")
		r.sleepUntil(prevAt.Add(250 * time.Millisecond))
		pkts := make([][]byte, 15)
		for i := range pkts {
			pkts[i] = rtpPacket(t, 111, uint16(500+i), uint32(7000+960*i), 0x55, pbxOpus)
		}
		pkts[0][1] |= 0x80
		sent := make(chan struct{})
		go func() { // arrivals are read meanwhile, at their time
			defer close(sent)
			start := time.Now()
			for i, p := range pkts {
				_, _ = c.pbx.conn.WriteToUDPAddrPort(p, c.toB)
				r.sleepUntil(start.Add(time.Duration(i+1) * 20 * time.Millisecond))
			}
		}()
		defer func() { <-sent }()
		for {
			pkt, at := c.meta.recvSRTPAt(t)
			if pkt == nil {
				r.fatalf("the PBX's audio never reached Meta")
			}
			h := readHdr(pkt)
			if !bytes.Equal(pkt[12:], pbxOpus) {
				prev, prevAt = h, at
				continue // a silence frame due before the audio
			}
			gap := at.Sub(prevAt)
			moved := time.Duration(h.ts-prev.ts) * time.Second / 48000
			if !h.marker || h.seq != prev.seq+1 {
				r.fatalf("first audio %+v after %+v: want the marker and the next sequence number", h, prev)
			}
			// The timestamp follows the time between the two packets; the
			// arrival stamps (the kernel's) differ from wagate's clock by a
			// few ms either way.
			if moved < gap-40*time.Millisecond || moved > gap+40*time.Millisecond {
				r.fatalf("first audio's timestamp moved %v over a pause of %v", moved, gap.Round(time.Millisecond))
			}
			t.Logf("timestamp moved %v over %v", moved, gap.Round(time.Millisecond))
			return
		}
	})
}

// TestWhatsAppDTXPlayback: a prompt started in a DTX gap, 80 ms before the
// next silence frame would be due, starts now and on time: its first frame
// is timestamped at its own time (not at the silence frame's), and the
// frames after it follow 20 ms apart.
func TestWhatsAppDTXPlayback(t *testing.T) {
	dtxAttempts(t, func(r *dtxRun) {
		c, prev, prevAt := r.pcmuCallInDTXGap(t, 320*time.Millisecond)
		defer c.b.Close()
		asked := time.Now()
		if _, err := c.b.Play(SideA, &toneSource{freq: 1000, frames: 20}, time.Time{}); err != nil {
			t.Fatal(err)
		}
		var first hdr
		var firstAt time.Time
		for i := 0; i < 3; i++ {
			pkt, at := c.meta.recvSRTPAt(t)
			if pkt == nil {
				r.fatalf("the prompt never reached Meta")
			}
			h := readHdr(pkt)
			if bytes.Equal(pkt[12:], c.b.m.opusSilence) {
				// A loaded machine may oversleep past the next silence
				// frame's due time (400 ms after prev): that frame was due
				// before Play and is no fault. One due after Play is.
				due := time.Duration(h.ts-prev.ts) * time.Second / 48000
				if i == 0 && prevAt.Add(due).Before(asked.Add(10*time.Millisecond)) {
					prev, prevAt = h, at
					i--
					continue
				}
				r.fatalf("silence %+v while a prompt plays", h)
			}
			switch i {
			case 0:
				moved := time.Duration(h.ts-prev.ts) * time.Second / 48000
				gap := at.Sub(prevAt)
				if !h.marker || moved < gap-40*time.Millisecond || moved > gap+40*time.Millisecond {
					r.fatalf("the prompt's first frame %+v: marker %v, timestamp moved %v over %v", h, h.marker, moved, gap.Round(time.Millisecond))
				}
				if d := at.Sub(asked); d > 60*time.Millisecond {
					t.Logf("first frame %v after Play (a loaded machine?)", d)
				}
				first, firstAt = h, at
			default:
				// Media time and arrival agree: no hole after the first frame.
				media := time.Duration(h.ts-first.ts) * time.Second / 48000
				if late := at.Sub(firstAt) - media; late > 50*time.Millisecond {
					r.fatalf("frame %d of the prompt came %v after its media time", i+1, late.Round(time.Millisecond))
				}
			}
		}
	})
}

// TestWhatsAppDTXEvent: a key pressed on the PBX side in a DTX gap goes
// to WhatsApp timestamped where the stream stands now, not where the last
// silence frame ended up to 400 ms before (a receiver may cut short or
// drop an event that seems to start in the past).
func TestWhatsAppDTXEvent(t *testing.T) {
	dtxAttempts(t, func(r *dtxRun) {
		c, prev, prevAt := r.pcmuCallInDTXGap(t, 250*time.Millisecond)
		defer c.b.Close()
		c.pbx.send(c.toB, rtpPacket(t, 101, 300, 8000, 0x9b, event(5, false, 160)))
		for {
			pkt, at := c.meta.recvSRTPAt(t)
			if pkt == nil {
				r.fatalf("the event never reached Meta")
			}
			h := readHdr(pkt)
			if h.pt != 126 {
				prev, prevAt = h, at
				continue
			}
			moved := time.Duration(h.ts-prev.ts) * time.Second / 48000
			gap := at.Sub(prevAt)
			if !h.marker || h.seq != prev.seq+1 || moved < gap-40*time.Millisecond || moved > gap+40*time.Millisecond {
				r.fatalf("event %+v after %+v: marker %v, timestamp moved %v over %v", h, prev, h.marker, moved, gap.Round(time.Millisecond))
			}
			return
		}
	})
}

// pcmuCallInDTXGap starts a call from Meta to a PCMU PBX, waits for the
// first DTX frame toward Meta (the header and arrival it returns), and
// sleeps until after it: the call is then that far into a 400 ms gap.
// The caller closes the call's bridge.
func (r *dtxRun) pcmuCallInDTXGap(t *testing.T, after time.Duration) (*whatsAppCall, hdr, time.Time) {
	t.Helper()
	c := newWhatsAppCall(t, newTestManager(t, 2, 0, 0), pcmuAnswer)
	c.b.Start(nil)
	prev, prevAt := intoDTXGap(t, c, c.b.m.opusSilence)
	r.sleepUntil(prevAt.Add(after))
	return c, prev, prevAt
}

// intoDTXGap waits for the first silence frame toward Meta and the first
// DTX frame after it, and returns the latter's header and arrival: the
// call is then at the start of a 400 ms gap.
func intoDTXGap(t *testing.T, c *whatsAppCall, silence []byte) (hdr, time.Time) {
	t.Helper()
	var h hdr
	var at time.Time
	for range 2 {
		pkt, arrived := c.meta.recvSRTPAt(t)
		if pkt == nil || !bytes.Equal(pkt[12:], silence) {
			t.Fatal("no silence toward Meta")
		}
		h, at = readHdr(pkt), arrived
	}
	return h, at
}

// A DTX test's checks hold on a machine that runs the test's goroutines,
// and wagate's pacer, when they are due. A busy machine (CI's, beside the
// suite's other packages) can stall either for 100 ms and more, and then
// a check can fail for the stall, not for wagate. dtxAttempts runs a test
// up to three times; a watcher goroutine notes how late its own 2 ms
// sleeps wake, and a run may note lateness of its own (dtxRun.late). A
// run that finds fault while anything ran over stallLimit late is void;
// a run on time that finds fault fails the test; three void runs skip it
// with the figures.
func dtxAttempts(t *testing.T, run func(r *dtxRun)) {
	t.Helper()
	const attempts = 3
	var voids []string
	for range attempts {
		fault, stall := dtxAttempt(run)
		if fault == "" {
			return
		}
		if stall <= stallLimit {
			t.Fatal(fault)
		}
		t.Logf("void run: the machine stalled the test or wagate's pacer %v; it would have reported: %s", stall.Round(time.Millisecond), fault)
		voids = append(voids, stall.Round(time.Millisecond).String())
	}
	t.Skipf("the machine stalled the test or wagate's pacer in %d runs (%s): it cannot drive the check", attempts, strings.Join(voids, ", "))
}

// stallLimit is how late a run's watched wake-ups may come for its
// checks to count: a playout buffer rides out that much without ending a
// talk spurt, and it is well inside the ±40 ms the timestamp checks allow.
const stallLimit = 15 * time.Millisecond

// dtxRun is one run of a DTX test.
type dtxRun struct {
	stall atomic.Int64 // ns: the latest wake-up or frame noted
}

// dtxFault carries a failed check out of a run.
type dtxFault string

// fatalf ends the run with a fault.
func (r *dtxRun) fatalf(format string, args ...any) { panic(dtxFault(fmt.Sprintf(format, args...))) }

// late notes that something came d late.
func (r *dtxRun) late(d time.Duration) {
	for {
		cur := r.stall.Load()
		if int64(d) <= cur || r.stall.CompareAndSwap(cur, int64(d)) {
			return
		}
	}
}

// sleepUntil sleeps to due and notes how late it woke.
func (r *dtxRun) sleepUntil(due time.Time) {
	time.Sleep(time.Until(due))
	r.late(time.Since(due))
}

// dtxAttempt is one run, with the watcher beside it.
func dtxAttempt(run func(r *dtxRun)) (fault string, stall time.Duration) {
	r := &dtxRun{}
	stop, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		tick := time.NewTimer(time.Hour)
		defer tick.Stop()
		for {
			due := time.Now().Add(2 * time.Millisecond)
			tick.Reset(2 * time.Millisecond)
			select {
			case <-stop:
				return
			case <-tick.C:
				r.late(time.Since(due))
			}
		}
	}()
	defer func() {
		close(stop)
		<-stopped
		stall = time.Duration(r.stall.Load())
		if v := recover(); v != nil {
			f, ok := v.(dtxFault)
			if !ok {
				panic(v)
			}
			fault = string(f)
		}
	}()
	run(r)
	return "", 0
}
