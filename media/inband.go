package media

import (
	"time"

	"github.com/wagate/wagate/codec"
)

// In-band keys on a call wagate answered itself (AnswerLocal): while no B
// is connected and an OnDTMF hook is set, A's G.711 audio goes through a
// DTMFDetector, and the keys it finds are reported as RFC 4733 ones are.
//
// Detection runs the whole time wagate is the far end, not only while a
// flow captures digits: keys typed during a prompt barge in, as RFC 4733
// keys do, and a capture that started the detector only then would miss
// the first 25 ms of a key pressed as the question begins. The engine
// already ignores keys pressed before its question. It costs 0.3–2.7 µs
// per 20 ms frame (BenchmarkDTMFDetect). Once B is connected the keys are
// B's to hear, in the relayed audio, and nothing is detected. Opus audio
// is not looked at: WhatsApp sends its keys as RFC 4733 events.
//
// A sender may send a key both ways (a gateway that puts the event in
// and leaves the tone in the audio). Each key is reported once: the
// first RFC 4733 event from a side turns its detector off for good (the
// sender has shown it uses events), and an event for the key the
// detector has just reported (within inbandEcho) is not reported again.

// inbandEcho is how long after an in-band key the same key's RFC 4733
// event is taken as the same press.
const inbandEcho = time.Second

// inbandState is a direction's in-band detection, guarded by its lock.
type inbandState struct {
	det     *DTMFDetector
	pcm     []int16
	off     bool // RFC 4733 events seen from this side
	have    bool
	lastSeq uint16
	key     rune          // the last key detected in-band
	at      time.Duration // when
}

// inband feeds a G.711 payload (sequence seq) of an unrouted direction to
// its detector. Called with d.mu held.
func (d *direction) inband(f codecFmt, seq uint16, body []byte, now time.Duration) {
	s := &d.inb
	if s.off || f.name == "opus" || f.rate != dtmfRate {
		return
	}
	fn := d.b.dtmfFn.Load()
	if fn == nil {
		return
	}
	if s.have && int16(seq-s.lastSeq) <= 0 {
		return // a duplicate or a late packet: the detector has moved on
	}
	s.have, s.lastSeq = true, seq
	if s.det == nil {
		s.det = new(DTMFDetector)
		s.pcm = make([]int16, 0, maxSilence)
	}
	s.pcm = codec.DecodeG711(f.name, body, s.pcm[:0])
	s.det.Write(s.pcm, func(k rune) {
		s.key, s.at = k, now
		d.b.inbandKeys.Add(1)
		(*fn)(d.side, k)
	})
}

// eventSeen notes an RFC 4733 key k from this side at now and reports
// whether it is new (not the in-band key just reported for the same
// press). Called with d.mu held.
func (d *direction) eventSeen(k rune, now time.Duration) bool {
	s := &d.inb
	s.off = true
	if s.det != nil {
		s.det = nil
		s.pcm = nil
	}
	if s.key == k && now-s.at < inbandEcho {
		s.key = 0
		return false
	}
	return true
}
