package media

import (
	"encoding/binary"
	"net/netip"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wagate/wagate/codec"
	"gopkg.in/hraban/opus.v2"
)

// BenchmarkBridgeLoopback sends one RTP packet A→B through a started
// bridge per op and waits for it at B: socket read, checks, rewrite and
// socket write, as on a live call. allocs/op counts the whole process
// (bridge goroutine included) and must be 0.
func BenchmarkBridgeLoopback(b *testing.B) {
	m := newTestManager(b, 2, 0, 0)
	a, bp := newPeer(b), newPeer(b)
	br, err := m.NewBridge("bench", testLogger(b))
	if err != nil {
		b.Fatal(err)
	}
	defer br.Close()
	if _, err := br.OfferB(sdpOffer(a.port(), "RTP/AVP", "0"), []string{"PCMU"}); err != nil {
		b.Fatal(err)
	}
	answerA, err := br.AnswerB(sdpOffer(bp.port(), "RTP/AVP", "0"))
	if err != nil {
		b.Fatal(err)
	}
	toA := mustParseB(b, answerA)
	br.Start(nil)

	pkt := rtpPacket(b, 0, 1, 160, 42, make([]byte, 160))
	buf := make([]byte, 2048)
	_ = bp.conn.SetReadDeadline(time.Time{})
	b.ReportAllocs()
	b.SetBytes(int64(len(pkt)))
	for b.Loop() {
		if _, err := a.conn.WriteToUDPAddrPort(pkt, toA); err != nil {
			b.Fatal(err)
		}
		if _, _, err := bp.conn.ReadFromUDPAddrPort(buf); err != nil {
			b.Fatal(err)
		}
	}
}

func mustParseB(b *testing.B, body []byte) netip.AddrPort {
	d, err := ParseSDP(body)
	if err != nil {
		b.Fatal(err)
	}
	return d.Media[0].Addr()
}

// BenchmarkBridgeMemory reports what a started, idle bridge costs in Go
// heap and stacks (buffers, sockets' poll descriptors, two goroutines).
// Kernel socket buffers are not process memory and not counted; RSS is not
// reported because in-process RSS deltas are dominated by heap reuse.
func BenchmarkBridgeMemory(b *testing.B) {
	const n = 1000
	m := newTestManager(b, 2*n, time.Hour, time.Hour)
	for b.Loop() {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		bridges := make([]*Bridge, n)
		for i := range bridges {
			br, err := m.NewBridge("mem", nil)
			if err != nil {
				b.Fatal(err)
			}
			br.Start(nil)
			bridges[i] = br
		}
		time.Sleep(100 * time.Millisecond) // let every relay goroutine block in its read
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapInuse+after.StackInuse-before.HeapInuse-before.StackInuse)/n, "heap+stack-B/bridge")
		for _, br := range bridges {
			br.Close()
		}
	}
}

// BenchmarkParseSDP parses Meta's offer.
func BenchmarkParseSDP(b *testing.B) {
	body := []byte(metaOffer)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseSDP(body); err != nil {
			b.Fatal(err)
		}
	}
}

// benchDirection is a socketless direction of a negotiated bridge, whose
// output goes nowhere; feed gives it packets as if read from from.
type benchDirection struct {
	d    *direction
	from netip.AddrPort
}

func newBenchDirection(b testing.TB, a, bcfg LegConfig, offer, answer []byte, side Side) *benchDirection {
	br := socketlessBridge(a, bcfg)
	if _, err := br.Offer(offer); err != nil {
		b.Fatal(err)
	}
	if _, err := br.AnswerB(answer); err != nil {
		b.Fatal(err)
	}
	d := newDirection(br, side, &br.routeAB, &br.aToB)
	if side == SideB {
		d = newDirection(br, side, &br.routeBA, &br.bToA)
	}
	w := &nopWriter{}
	d.toDst, d.toSrc, d.toSrcRTCP = w, w, w
	b.Cleanup(d.closeStages)
	rt := d.route.Load()
	return &benchDirection{d: d, from: rt.from.rtp}
}

func (bd *benchDirection) feed(pkt []byte) {
	feedAt(bd.d, pkt, bd.from, bd.d.clock())
}

// feedPaced gives a paced direction one packet at simulated time now and
// runs its play job for every tick due by then: the whole per-packet work
// of a paced direction (buffer, playout, codec, send).
func (bd *benchDirection) feedPaced(pkt []byte, now time.Duration) {
	if bd.d.playAt == 0 {
		bd.d.playAt = now + time.Millisecond // this loop runs the job, not the pacer
	}
	feedAt(bd.d, pkt, bd.from, now)
	for bd.d.playAt > 0 && bd.d.playAt <= now {
		tickAt(bd.d, bd.d.playAt)
	}
}

// BenchmarkRelayPacket is the per-packet work of a plain relay between
// read and write: source check, validation, payload-type mapping, header
// re-origination, RTP statistics. It must not allocate.
func BenchmarkRelayPacket(b *testing.B) {
	bd := newBenchDirection(b, LegConfig{}, LegConfig{Codecs: []string{"PCMU"}},
		sdpOffer(4000, "RTP/AVP", "0"), sdpOffer(6000, "RTP/AVP", "0"), SideA)
	pkt := rtpPacket(b, 0, 1, 160, 42, make([]byte, 160))
	b.ReportAllocs()
	b.SetBytes(int64(len(pkt)))
	for i := 0; b.Loop(); i++ {
		binary.BigEndian.PutUint16(pkt[2:], uint16(i))
		binary.BigEndian.PutUint32(pkt[4:], uint32(i*160))
		bd.feed(pkt)
	}
}

// BenchmarkTranscodePacket is the per-packet work of transcoding, without
// sockets: RTP in, playout buffer, a play tick, codec.Transcoder, RTP out
// (SRTP toward Meta). PCMU→Opus is the PBX→WhatsApp direction, Opus→PCMU
// the other. allocs/op covers the media package and the codec together
// (and pion/srtp's HMAC tag toward Meta).
func BenchmarkTranscodePacket(b *testing.B) {
	meta := LegConfig{Encryption: EncryptionSDES, WhatsApp: true, Codecs: []string{"opus"}}
	pbx := LegConfig{Codecs: []string{"PCMU"}}
	b.Run("PCMU-to-Opus-SRTP", func(b *testing.B) {
		bd := newBenchDirection(b, meta, pbx, []byte(metaOffer), sdpOffer(6000, "RTP/AVP", "0"), SideB)
		bd.from = netip.MustParseAddrPort("127.0.0.1:6000")
		// 1 kHz at 8 kHz repeats every 8 samples: one payload fits all.
		pkt := append(rtpPacket(b, 0, 1, 160, 42, nil), codec.EncodeG711("PCMU", tone(1000, 8000, 160, 0), nil)...)
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			binary.BigEndian.PutUint16(pkt[2:], uint16(i))
			binary.BigEndian.PutUint32(pkt[4:], uint32(i*160))
			bd.feedPaced(pkt, time.Duration(i)*20*time.Millisecond)
		}
	})
	b.Run("Opus-to-PCMU", func(b *testing.B) {
		bd := newBenchDirection(b, LegConfig{Codecs: []string{"opus"}}, pbx, []byte(metaPlainOffer), sdpOffer(6000, "RTP/AVP", "0"), SideA)
		enc, _ := opus.NewEncoder(48000, 1, opus.AppVoIP)
		frames := make([][]byte, 50)
		for i := range frames {
			buf := make([]byte, 1500)
			n, _ := enc.Encode(tone(1000, 48000, 960, 960*i), buf)
			frames[i] = buf[:n]
		}
		hdr := rtpPacket(b, 111, 0, 0, 42, nil)
		pkt := make([]byte, 0, 1500)
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			pkt = append(append(pkt[:0], hdr...), frames[i%len(frames)]...)
			binary.BigEndian.PutUint16(pkt[2:], uint16(i))
			binary.BigEndian.PutUint32(pkt[4:], uint32(i*960))
			bd.feedPaced(pkt, time.Duration(i)*20*time.Millisecond)
		}
	})
}

// BenchmarkSRTPPacket is the per-packet work between two SDES legs:
// authenticate and decrypt, relay, encrypt. pion/srtp's HMAC-SHA1 path
// allocates its tag (hmac Sum(nil)) once per packet each way; GCM does not.
func BenchmarkSRTPPacket(b *testing.B) {
	for _, suite := range []*srtpSuite{srtpSuites[0], lookupSuite("AEAD_AES_128_GCM")} {
		b.Run(suite.name, func(b *testing.B) {
			sdes := LegConfig{Encryption: EncryptionSDES, Codecs: []string{"opus"}}
			key := keyB64(suite.keyLen+suite.saltLen, true)
			offer := strings.Replace(strings.Replace(metaOffer, "AES_CM_128_HMAC_SHA1_80", suite.name, 1),
				"WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^31|1:1", key, 1)
			tag := slices.Index(srtpSuites, suite) + 1
			answer := sdpOffer(6000, "RTP/SAVP", "111", "rtpmap:111 opus/48000/2",
				"crypto:"+strconv.Itoa(tag)+" "+suite.name+" inline:"+key)
			bd := newBenchDirection(b, sdes, sdes, []byte(offer), answer, SideA)
			k := mustCryptoKey(b, "1 "+suite.name+" inline:"+key)
			ctx, err := k.newContext(nil)
			if err != nil {
				b.Fatal(err)
			}
			// Encrypted ahead, outside the timer: replay protection needs
			// every packet to be new.
			const batch = 1 << 12
			pkts := make([][]byte, batch)
			seq := uint16(0)
			refill := func() {
				for i := range pkts {
					p := rtpPacket(b, 111, seq, uint32(seq)*960, 42, make([]byte, 60))
					seq++
					if pkts[i], err = ctx.EncryptRTP(pkts[i][:0], p, nil); err != nil {
						b.Fatal(err)
					}
				}
			}
			refill()
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				if i%batch == 0 && i > 0 {
					b.StopTimer()
					refill()
					b.StartTimer()
				}
				bd.feed(pkts[i%batch])
			}
			if s := bd.d.b.Stats(); s.DroppedAuth+s.DroppedReplay > 0 {
				b.Fatalf("dropped %+v", s)
			}
		})
	}
}
