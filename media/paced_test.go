package media

import (
	"bytes"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/wagate/wagate/codec"
	"gopkg.in/hraban/opus.v2"
)

// pacedCall is the PBX→WhatsApp direction of a socketless bridge (Meta on
// plain RTP so its output can be read), driven on a simulated clock: the
// test feeds packets at their arrival times and runs the play job at the
// times it asks for.
type pacedCall struct {
	t    *testing.T
	br   *Bridge
	d    *testDirection
	from netip.AddrPort
	next time.Duration // the play job's next run
}

func newPacedCall(t *testing.T, pbxAnswer []byte, codecsB ...string) *pacedCall {
	t.Helper()
	br, d := pacedDirection(t, SideB, pbxAnswer, codecsB...)
	d.silenceFrom, d.playAt = 0, 20*time.Millisecond
	return &pacedCall{t: t, br: br, d: d, from: netip.MustParseAddrPort("127.0.0.1:6000"), next: 20 * time.Millisecond}
}

// newPacedCallFromWhatsApp is the other direction of the same bridge
// with a PCMU PBX: WhatsApp (A) → PBX, transcoded.
func newPacedCallFromWhatsApp(t *testing.T) *pacedCall {
	t.Helper()
	br, d := pacedDirection(t, SideA, pcmuAnswer(6000), "PCMU")
	return &pacedCall{t: t, br: br, d: d, from: br.routeAB.Load().from.rtp}
}

// pacedDirection is the direction from side of a socketless bridge whose
// PBX answered pbxAnswer, its play job the test's to run.
func pacedDirection(t *testing.T, side Side, pbxAnswer []byte, codecsB ...string) (*Bridge, *testDirection) {
	t.Helper()
	br := socketlessBridge(LegConfig{WhatsApp: true, Codecs: []string{"opus"}}, LegConfig{Codecs: codecsB})
	if _, err := br.Offer([]byte(metaPlainOffer)); err != nil {
		t.Fatal(err)
	}
	if _, err := br.AnswerB(pbxAnswer); err != nil {
		t.Fatal(err)
	}
	d := newTestDirection(br, side)
	t.Cleanup(d.closeStages)
	// As Start does, without the shared pacer: the test runs the job
	// (this one is cancelled, so Play and wakePlay wake nothing real).
	d.playJob = br.m.pacer.Schedule(time.Time{}, d.playTick)
	d.playJob.Cancel()
	return br, d
}

type arrival struct {
	at  time.Duration
	pkt []byte
}

// run delivers arrivals and runs the play job until the clock reaches
// until.
func (c *pacedCall) run(arrivals []arrival, until time.Duration) {
	i := 0
	for {
		if i < len(arrivals) && (c.next == 0 || arrivals[i].at <= c.next) {
			feedAt(c.d.direction, arrivals[i].pkt, c.from, arrivals[i].at)
			if c.next == 0 {
				c.d.mu.Lock()
				c.next = c.d.playAt // woken
				c.d.mu.Unlock()
				if c.next == 0 {
					c.next = arrivals[i].at
				}
			}
			i++
			continue
		}
		if c.next == 0 || c.next >= until {
			return
		}
		c.next = tickAt(c.d.direction, c.next)
	}
}

// pcmuSpeech is continuous speech-like audio (a harmonic buzz whose pitch
// and loudness wander, never quiet) as 20 ms PCMU packets.
func pcmuSpeech(t *testing.T, n int, jitter time.Duration, seed uint64) []arrival {
	rng := rand.New(rand.NewPCG(seed, seed))
	out := make([]arrival, n)
	last := time.Duration(0)
	pcm := make([]int16, 160)
	phase := 0.0
	for i := range out {
		for k := range pcm {
			s := float64(i*160 + k)
			f0 := 120 + 40*sinF(s/8000*0.7)
			phase += f0 / 8000
			amp := 6000 + 3000*sinF(s/8000*2.1)
			v := 0.0
			for h := 1; h <= 8; h++ {
				v += sinF(phase*float64(h)) / float64(h)
			}
			pcm[k] = int16(amp * v / 2)
		}
		at := time.Duration(i)*20*time.Millisecond + time.Duration(rng.Int64N(int64(jitter)+1))
		at = max(at, last)
		last = at
		out[i] = arrival{at: at, pkt: rtpPacket(t, 0, uint16(40000+i), uint32(160*i), 0x9b, codec.EncodeG711("PCMU", pcm, nil))}
	}
	return out
}

// TestPacedNoSilenceUnderJitter: the PBX sends 4 s of continuous speech,
// each packet 0..30 ms late (order kept). Toward WhatsApp every 20 ms
// leaves exactly one Opus packet, numbered without a gap; once the speech
// has started none of them is silence (the old relay put a silence frame
// in front of every packet more than ptime + 20 ms late); every one
// decodes to speech; nothing is late or concealed once the buffer has
// measured the jitter.
func TestPacedNoSilenceUnderJitter(t *testing.T) {
	c := newPacedCall(t, pcmuAnswer(6000), "PCMU")
	speech := pcmuSpeech(t, 200, 30*time.Millisecond, 3)
	c.run(speech, 4*time.Second)
	out := c.d.dst.pkts
	if len(out) < 195 {
		t.Fatalf("%d packets toward WhatsApp in 4 s, want 200", len(out))
	}
	dec, err := opus.NewDecoder(48000, 1)
	if err != nil {
		t.Fatal(err)
	}
	pcm := make([]int16, 5760)
	started, silenceAfter, quiet := -1, 0, 0
	for i, pkt := range out {
		h := readHdr(pkt)
		if h.pt != 111 {
			t.Fatalf("packet %d: PT %d", i, h.pt)
		}
		if i > 0 {
			prev := readHdr(out[i-1])
			if h.seq != prev.seq+1 {
				t.Fatalf("packet %d: sequence %d after %d", i, h.seq, prev.seq)
			}
			if h.ts != prev.ts+960 && !h.marker {
				t.Fatalf("packet %d: timestamp %d after %d without the marker", i, h.ts, prev.ts)
			}
		}
		silence := bytes.Equal(pkt[12:], testOpusSilence)
		if !silence && started < 0 {
			started = i
		}
		n, err := dec.Decode(pkt[12:], pcm)
		if err != nil || n != 960 {
			t.Fatalf("packet %d decodes to %d samples: %v", i, n, err)
		}
		// The tail after the last input packet fades into silence.
		if started >= 0 && i < started+190 {
			if silence {
				silenceAfter++
			} else if i > started+2 && rms(pcm[:n]) < 300 {
				quiet++
			}
		}
	}
	s := c.d.pl
	t.Logf("%d packets, speech from %d; %d concealed, %d expanded, %d compressed, %d late; target %v",
		len(out), started, s.concealed, s.expanded, s.compressed, s.late, s.target)
	if silenceAfter > 0 {
		t.Errorf("%d silence frames inside continuous speech", silenceAfter)
	}
	if quiet > 0 {
		t.Errorf("%d frames inside the speech decode to near silence", quiet)
	}
	// A couple while the estimate grows to the jitter, at the start.
	if s.late+s.concealed > 4 {
		t.Errorf("%d late and %d concealed: the buffer did not hold 0..30 ms of jitter", s.late, s.concealed)
	}
}

// TestPacedRelayTowardWhatsApp: relaying (PCMU on both legs, Meta on plain
// RTP as in the SIPp load setup), silence comes first, then the PBX's
// packets are played out unchanged under our header on the 20 ms clock,
// and when the PBX pauses silence resumes; a late packet is dropped, not
// played after the silence.
func TestPacedRelayTowardWhatsApp(t *testing.T) {
	br := socketlessBridge(LegConfig{WhatsApp: true, Codecs: []string{"PCMU"}}, LegConfig{Codecs: []string{"PCMU"}})
	if _, err := br.Offer(sdpOffer(5000, "RTP/AVP", "0", "rtpmap:0 PCMU/8000")); err != nil {
		t.Fatal(err)
	}
	if _, err := br.AnswerB(pcmuAnswer(6000)); err != nil {
		t.Fatal(err)
	}
	d := newTestDirection(br, SideB)
	t.Cleanup(d.closeStages)
	d.silenceFrom, d.playAt = 0, 20*time.Millisecond
	c := &pacedCall{t: t, br: br, d: d, from: netip.MustParseAddrPort("127.0.0.1:6000"), next: 20 * time.Millisecond}
	var arr []arrival
	for i := range 20 {
		payload := bytes.Repeat([]byte{byte(0x10 + i)}, 160)
		arr = append(arr, arrival{at: 200*time.Millisecond + time.Duration(i)*20*time.Millisecond, pkt: rtpPacket(t, 0, uint16(i), uint32(160*i), 0x77, payload)})
	}
	// Packet 20 comes after the PBX has gone quiet and silence resumed.
	arr = append(arr, arrival{at: 900 * time.Millisecond, pkt: rtpPacket(t, 0, 20, 160*20, 0x77, bytes.Repeat([]byte{0x55}, 160))})
	c.run(arr, 1200*time.Millisecond)
	var kinds []byte
	var relayed []byte
	for _, pkt := range d.dst.pkts {
		if pkt[12] == 0xff {
			kinds = append(kinds, 's')
			continue
		}
		kinds = append(kinds, 'a')
		relayed = append(relayed, pkt[12])
	}
	got := string(kinds)
	t.Logf("%s", got)
	if want := "ssssssssssaaaaaaaaaaaaaaaaaaaasss"; len(got) < len(want) || got[:len(want)] != want {
		t.Errorf("silence/audio sequence %q, want it to start %q", got, want)
	}
	for i, b := range relayed {
		if b != byte(0x10+i) {
			t.Fatalf("relayed payloads %x: out of order or altered", relayed)
		}
	}
	if len(relayed) != 20 {
		t.Errorf("%d packets relayed, want 20 (the late one dropped)", len(relayed))
	}
	if n := d.pl.late; n != 1 {
		t.Errorf("%d packets dropped late, want 1", n)
	}
}

// TestPacedZeroAllocs: the per-packet path of a paced direction (a packet
// read into the playout buffer, a tick that plays it out) allocates
// nothing, relayed or transcoded, and neither does the per-packet path of
// an immediate relay. (Plain RTP: pion/srtp's HMAC-SHA1 allocates its
// tag per packet, see BenchmarkSRTPPacket.)
func TestPacedZeroAllocs(t *testing.T) {
	for _, tt := range []struct {
		name    string
		meta    string
		payload func(i int) []byte
	}{
		{"relay PCMU toward WhatsApp", "PCMU", func(int) []byte { return bytes.Repeat([]byte{0x42}, 160) }},
		{"transcode PCMU to Opus toward WhatsApp", "opus", func(i int) []byte {
			return codec.EncodeG711("PCMU", tone(1000, 8000, 160, 160*i), nil)
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			offer := []byte(metaPlainOffer)
			if tt.meta == "PCMU" {
				offer = sdpOffer(5000, "RTP/AVP", "0", "rtpmap:0 PCMU/8000")
			}
			br := socketlessBridge(LegConfig{WhatsApp: true, Codecs: []string{tt.meta}}, LegConfig{Codecs: []string{"PCMU"}})
			if _, err := br.Offer(offer); err != nil {
				t.Fatal(err)
			}
			if _, err := br.AnswerB(pcmuAnswer(6000)); err != nil {
				t.Fatal(err)
			}
			d := newDirection(br, SideB, &br.routeBA, &br.bToA)
			w := &nopWriter{}
			d.toDst, d.toSrc, d.toSrcRTCP = w, w, w
			t.Cleanup(d.closeStages)
			from := netip.MustParseAddrPort("127.0.0.1:6000")
			pkts := make([][]byte, 64)
			for i := range pkts {
				pkts[i] = rtpPacket(t, 0, uint16(i), uint32(160*i), 0x9b, tt.payload(i))
			}
			d.playAt = time.Millisecond
			now, i := time.Duration(0), 0
			step := func() {
				p := pkts[i%len(pkts)]
				binary.BigEndian.PutUint16(p[2:], uint16(i))
				binary.BigEndian.PutUint32(p[4:], uint32(160*i))
				feedAt(d, p, from, now)
				now += 20 * time.Millisecond
				for d.playAt > 0 && d.playAt <= now {
					tickAt(d, d.playAt)
				}
				i++
			}
			for range 100 { // warm up: codec state, pools, the buffer's estimate
				step()
			}
			if n := testing.AllocsPerRun(200, step); n != 0 {
				t.Errorf("%.1f allocations per packet", n)
			}
			if w.n < 250 {
				t.Errorf("%d packets written for 300 in", w.n)
			}
		})
	}
	t.Run("immediate relay", func(t *testing.T) {
		bd := newBenchDirection(t, LegConfig{}, LegConfig{Codecs: []string{"PCMU"}},
			sdpOffer(4000, "RTP/AVP", "0"), sdpOffer(6000, "RTP/AVP", "0"), SideA)
		pkt := rtpPacket(t, 0, 1, 160, 42, make([]byte, 160))
		i := 0
		step := func() {
			binary.BigEndian.PutUint16(pkt[2:], uint16(i))
			binary.BigEndian.PutUint32(pkt[4:], uint32(i*160))
			bd.feed(pkt)
			i++
		}
		step()
		if n := testing.AllocsPerRun(200, step); n != 0 {
			t.Errorf("%.1f allocations per packet", n)
		}
	})
}

// sinF is sin(2πx): x in cycles.
func sinF(x float64) float64 { return math.Sin(2 * math.Pi * x) }
