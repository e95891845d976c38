package media

import (
	"fmt"
	"testing"

	"github.com/pion/rtcp"
)

// TestSRTPSequenceWrap: streams that start just before the 16-bit wrap,
// cross it with loss and reordering, and jump ahead (a gap after hold)
// decrypt on every suite: the rollover counter follows (RFC 3711 §3.3.1).
// SRTCP goes on past many reports.
func TestSRTPSequenceWrap(t *testing.T) {
	for _, suite := range srtpSuites {
		for _, start := range []uint16{65530, 65535, 0, 32767} {
			t.Run(fmt.Sprintf("%s/start%d", suite.name, start), func(t *testing.T) {
				k, err := newLocalKey(1, suite, "")
				if err != nil {
					t.Fatal(err)
				}
				out, err := newSRTPOut(k)
				if err != nil {
					t.Fatal(err)
				}
				in, err := newSRTPIn(k)
				if err != nil {
					t.Fatal(err)
				}
				seqs := []uint16{}
				s := start
				add := func(n int, step uint16) {
					for range n {
						seqs = append(seqs, s)
						s += step
					}
				}
				add(20, 1)
				s += 150 // loss
				add(10, 1)
				s += 20000    // a long gap (hold, DTX) but under 2^15
				add(50000, 1) // every start crosses a wrap
				// reorder: swap neighbours every 50
				for i := 50; i+1 < len(seqs); i += 50 {
					seqs[i], seqs[i+1] = seqs[i+1], seqs[i]
				}
				dst := make([]byte, 0, 512)
				for i, q := range seqs {
					pkt := rtpPacket(t, 111, q, uint32(i)*960, 0x5151, []byte("payload"))
					enc, err := out.rtp(dst, pkt)
					if err != nil {
						t.Fatal(err)
					}
					buf := append([]byte(nil), enc...)
					if _, r := in.rtp(buf); r != keep {
						t.Fatalf("packet %d (seq %d) dropped: %v", i, q, r)
					}
				}
				rr, _ := rtcp.Marshal([]rtcp.Packet{&rtcp.ReceiverReport{SSRC: 0x5151}})
				for i := range 3000 {
					enc, err := out.rtcp(dst, rr)
					if err != nil {
						t.Fatal(err)
					}
					buf := append([]byte(nil), enc...)
					if _, r := in.rtcp(buf); r != keep {
						t.Fatalf("SRTCP %d dropped: %v", i, r)
					}
				}
			})
		}
	}
}
