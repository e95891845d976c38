package media

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"
)

// TestPacedTimestampJump: 2 s into continuous speech toward WhatsApp the
// PBX's source changes (music on hold to the agent, through an SBC that
// keeps the SSRC and the numbering) and its timestamps jump, back or
// ahead. The user hears the speech on without a gap: the new timeline
// is timed afresh at once, as a new SSRC is. Before, a jump back made
// every packet after it 'late' until ten in a row retimed the stream
// (about 300 ms chopped: concealment, dropped and compressed frames,
// two silence frames); a jump ahead put silence in and stretched the
// playout to its maximum for the next 2 s.
func TestPacedTimestampJump(t *testing.T) {
	for _, tc := range []struct {
		name string
		seq  int
		ts   int64
	}{
		{"back", 0, -5_000_000},
		{"ahead", 0, 5_000_000},
		{"both ahead", 5000, 5_000_000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newPacedCall(t, pcmuAnswer(6000), "PCMU")
			speech := pcmuSpeech(t, 200, 10*time.Millisecond, 3)
			for _, a := range speech[100:] {
				binary.BigEndian.PutUint16(a.pkt[2:], uint16(int(binary.BigEndian.Uint16(a.pkt[2:]))+tc.seq))
				binary.BigEndian.PutUint32(a.pkt[4:], uint32(int64(binary.BigEndian.Uint32(a.pkt[4:]))+tc.ts))
			}
			c.run(speech, 4*time.Second)
			started, silent := -1, 0
			for i, pkt := range c.d.dst.pkts {
				s := bytes.Equal(pkt[12:], testOpusSilence)
				if !s && started < 0 {
					started = i
				}
				if s && started >= 0 && i < started+195 {
					silent++
				}
			}
			p := c.d.pl
			if silent > 0 || p.late+p.concealed+p.expanded+p.compressed > 1 {
				t.Errorf("%d silence frames inside the speech; %d late, %d concealed, %d expanded, %d compressed",
					silent, p.late, p.concealed, p.expanded, p.compressed)
			}
		})
	}
}
