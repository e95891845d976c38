package codec

import "testing"

// FuzzWrite feeds arbitrary payloads (libopus and G.711 must take any
// bytes a peer sends) with arbitrary loss counts: no panic, no error other
// than a reported bad packet, and never more output than the input can
// account for.
func FuzzWrite(f *testing.F) {
	f.Add([]byte{0x78, 0x01, 0x02}, uint8(0), true)
	f.Add([]byte{0x03}, uint8(3), true)
	f.Add([]byte{0xff, 0xfe, 0xfd, 0xfc}, uint8(255), false)
	f.Add([]byte{}, uint8(1), true)
	f.Fuzz(func(t *testing.T, payload []byte, lost uint8, fromOpus bool) {
		in, out := pcmu20, opus20
		if fromOpus {
			in, out = opus20, pcma20
		}
		tc, err := NewTranscoder(in, out, DefaultOptions())
		if err != nil {
			t.Fatal(err)
		}
		defer tc.Close()
		total := 0
		emit := func(frame []byte, n int) {
			if len(frame) == 0 || n <= 0 {
				t.Fatalf("empty frame (%d bytes, %d samples)", len(frame), n)
			}
			total += n
		}
		_ = tc.Write(payload, int(lost), emit)
		// Everything in 8 kHz samples: each missing packet is at most
		// 120 ms, the packet itself at most 120 ms (Opus) or its length.
		maxIn := (MaxConcealPackets + 1) * maxDecoded8k
		if !fromOpus {
			maxIn = MaxConcealPackets*maxDecoded8k + len(payload)
		}
		if got := total * pcmRate / tc.Out().Rate; got > maxIn {
			t.Fatalf("%d samples out for %d bytes, %d lost", got, len(payload), lost)
		}
		tc.Silence(emit)
	})
}
