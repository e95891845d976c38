// Audio on held calls (-audio): both sides send PCMU every 20 ms, each
// call at its own phase of the 20 ms grid as independent phones and PBX
// trunks would, so that wagate relays and paces real streams instead of
// only sending silence. SIPp's pcap playback does the same in run.sh's
// MEDIA=relay, but on a busy 2-core machine its thread per call sends in
// bursts, which fills the playout buffers toward WhatsApp with what a
// real PBX never sends at once.

package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/wagate/wagate/test/internal/rtppeer"
	"github.com/wagate/wagate/test/internal/sipua"
)

// audioStream is one call's stream from one side.
type audioStream struct {
	conn *net.UDPConn
	dst  *net.UDPAddr
	ssrc uint32
	seq  uint16
	ts   uint32
}

const (
	audioPtime   = 20 * time.Millisecond
	audioSamples = 160 // 20 ms at 8 kHz
)

// sendAudio sends a PCMU packet every 20 ms on every stream until ctx
// ends. Stream i is due at (i mod 20) ms into each period, so at N calls
// about N/10 packets leave each millisecond rather than all at once. It
// returns when the sender goroutine has stopped.
func sendAudio(ctx context.Context, streams []*audioStream) (wait func()) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		const phases = int(audioPtime / time.Millisecond)
		byPhase := make([][]*audioStream, phases)
		for i, s := range streams {
			byPhase[i%phases] = append(byPhase[i%phases], s)
		}
		pkt := make([]byte, 12+audioSamples)
		for i := range pkt[12:] {
			// A quiet tone-like PCMU pattern: not digital silence, so
			// nothing on the path could take it for a gap.
			pkt[12+i] = 0xF0 | byte(i%8)
		}
		start := time.Now()
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		next := 0 // the next phase slot (in ms since start) not yet sent
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			due := int(time.Since(start) / time.Millisecond)
			for ; next <= due; next++ {
				for _, s := range byPhase[next%phases] {
					pkt[0], pkt[1] = 0x80, 0 // V=2, PT 0 (PCMU)
					binary.BigEndian.PutUint16(pkt[2:], s.seq)
					binary.BigEndian.PutUint32(pkt[4:], s.ts)
					binary.BigEndian.PutUint32(pkt[8:], s.ssrc)
					_, _ = s.conn.WriteToUDP(pkt, s.dst)
					s.seq++
					s.ts += audioSamples
				}
			}
		}
	}()
	return wg.Wait
}

// audioStreams is a stream from each side of every call: Meta's from the
// receiver's socket (the address its SDP named) to wagate's A leg, the
// PBX's from its shared socket to wagate's B leg.
func audioStreams(meta []*sipua.Dialog, metaConn *net.UDPConn, pbx []*sipua.Dialog, pmu *sync.Mutex, pbxConn *net.UDPConn) ([]*audioStream, error) {
	pmu.Lock()
	pbx = slices.Clone(pbx)
	pmu.Unlock()
	var out []*audioStream
	add := func(d *sipua.Dialog, conn *net.UDPConn) error {
		sdp, err := rtppeer.ParseSDP(d.RemoteSDP)
		if err != nil {
			return fmt.Errorf("held: wagate's SDP in %s: %w", d.CallID, err)
		}
		out = append(out, &audioStream{conn: conn, dst: &net.UDPAddr{IP: net.ParseIP(sdp.IP), Port: sdp.Port},
			ssrc: rand.Uint32(), seq: uint16(rand.Uint32()), ts: rand.Uint32()})
		return nil
	}
	// Interleaved, so that a call's two streams fall at different phases.
	for i := range max(len(meta), len(pbx)) {
		if i < len(meta) {
			if err := add(meta[i], metaConn); err != nil {
				return nil, err
			}
		}
		if i < len(pbx) {
			if err := add(pbx[i], pbxConn); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}
