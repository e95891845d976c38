package media

import (
	"math/rand/v2"
	"testing"
	"time"
)

// playSim drives a playout buffer the way a paced direction does, on a
// simulated clock: packets arrive at their times, ticks run every frame
// (or when a talk spurt starts), and what each tick did is recorded.
type playSim struct {
	t     *testing.T
	p     *playout
	frame time.Duration
	sched time.Duration
	// What the ticks did.
	played                        []simFrame
	concealed, expanded, nothing  int
	concealedAt, expandedAt, late []time.Duration
	lateSeqs                      []uint16
	quietDrops                    int
}

type simFrame struct {
	seq   uint16
	media time.Duration // the packet's media time
	at    time.Duration // when it played
}

type simPacket struct {
	seq uint16
	ts  uint32
	at  time.Duration
}

func newPlaySim(t *testing.T, minD, maxD time.Duration) *playSim {
	p := newPlayout(minD, maxD, 8000, func([]byte) bool { return false })
	return &playSim{t: t, p: p, frame: 20 * time.Millisecond, sched: 10 * time.Millisecond}
}

// stream makes n packets of 20 ms at 8 kHz from start, each delayed by
// jitter(i) (order kept: never before the previous one).
func stream(n int, start time.Duration, seq0 uint16, jitter func(i int) time.Duration) []simPacket {
	out := make([]simPacket, n)
	last := time.Duration(0)
	for i := range out {
		at := start + time.Duration(i)*20*time.Millisecond + jitter(i)
		at = max(at, last)
		last = at
		out[i] = simPacket{seq: seq0 + uint16(i), ts: uint32(160 * i), at: at}
	}
	return out
}

// run plays pkts until the clock passes until.
func (s *playSim) run(pkts []simPacket, until time.Duration) {
	i := 0
	for s.sched < until {
		if i < len(pkts) && pkts[i].at <= s.sched {
			pk := pkts[i]
			i++
			buf := getBuf()
			buf.b[0] = byte(pk.seq)
			switch s.p.push(0x1234, pk.seq, pk.ts, 160, buf, 0, 160, pk.at) {
			case pushHeld:
			case pushCopied:
				putBuf(buf)
			case pushLate:
				s.late = append(s.late, pk.at)
				s.lateSeqs = append(s.lateSeqs, pk.seq)
				putBuf(buf)
			default:
				putBuf(buf)
			}
			continue
		}
		s.tick()
	}
}

func (s *playSim) tick() {
	act, sl, at := s.p.next(s.sched, 0, s.frame)
	switch act {
	case playNothing:
		s.nothing++
	case playWait:
		if at-s.sched < s.frame {
			s.sched = at
			return
		}
		s.nothing++
	case playExpand:
		s.expanded++
		s.expandedAt = append(s.expandedAt, s.sched)
	case playConceal:
		s.concealed++
		s.concealedAt = append(s.concealedAt, s.sched)
	case playFrame:
		s.played = append(s.played, simFrame{seq: sl.seq, media: s.p.media(sl.ts), at: s.sched})
		s.p.release(sl)
	}
	s.sched += s.frame
}

// delay is the mean of (play time − media time) over frames played in
// [from, to).
func (s *playSim) delay(from, to time.Duration) time.Duration {
	var sum time.Duration
	n := 0
	for _, f := range s.played {
		if f.at >= from && f.at < to {
			sum += f.at - f.media
			n++
		}
	}
	if n == 0 {
		s.t.Fatalf("no frame played in [%v, %v)", from, to)
	}
	return sum / time.Duration(n)
}

func countIn(ts []time.Duration, from, to time.Duration) int {
	n := 0
	for _, t := range ts {
		if t >= from && t < to {
			n++
		}
	}
	return n
}

// TestPlayoutTargetFollowsJitter: the buffer's target depth settles at
// the jitter of the stream (plus the margin), within the configured
// bounds, and once it has, nothing is late or concealed.
func TestPlayoutTargetFollowsJitter(t *testing.T) {
	for _, tt := range []struct {
		jitter         time.Duration
		wantLo, wantHi time.Duration
	}{
		{0, 20 * time.Millisecond, 20 * time.Millisecond}, // min
		{30 * time.Millisecond, 28 * time.Millisecond, 33 * time.Millisecond},
		{60 * time.Millisecond, 57 * time.Millisecond, 63 * time.Millisecond},
		{200 * time.Millisecond, 120 * time.Millisecond, 120 * time.Millisecond}, // max
	} {
		s := newPlaySim(t, 20*time.Millisecond, 120*time.Millisecond)
		rng := rand.New(rand.NewPCG(1, uint64(tt.jitter)))
		s.run(stream(200, 0, 100, func(int) time.Duration {
			return time.Duration(rng.Int64N(int64(tt.jitter) + 1))
		}), 4*time.Second)
		if got := s.p.target; got < tt.wantLo || got > tt.wantHi {
			t.Errorf("jitter 0..%v: target %v, want %v..%v", tt.jitter, got, tt.wantLo, tt.wantHi)
		}
		if tt.jitter <= 60*time.Millisecond {
			// After the first second the estimate holds every packet.
			if n := countIn(s.concealedAt, time.Second, 4*time.Second) + countIn(s.late, time.Second, 4*time.Second); n > 0 {
				t.Errorf("jitter 0..%v: %d frames concealed or late after the first second", tt.jitter, n)
			}
		}
		if n := len(s.played) + s.concealed; tt.jitter <= 60*time.Millisecond && n < 195 {
			t.Errorf("jitter 0..%v: %d frames played or concealed of 200", tt.jitter, n)
		}
	}
}

// TestPlayoutDrainsBack: a 10 s burst of 0..60 ms jitter raises the
// playout delay, and once it is over the delay comes back to what it was
// before (the buffer drains, dropping frames): it does not ratchet up.
func TestPlayoutDrainsBack(t *testing.T) {
	s := newPlaySim(t, 20*time.Millisecond, 120*time.Millisecond)
	rng := rand.New(rand.NewPCG(7, 7))
	const burstFrom, burstTo = 150, 650 // packets: 3 s to 13 s
	s.run(stream(1000, 0, 65000, func(i int) time.Duration {
		if i >= burstFrom && i < burstTo {
			return time.Duration(rng.Int64N(int64(60*time.Millisecond) + 1))
		}
		return 0
	}), 20*time.Second)
	before := s.delay(2*time.Second, 3*time.Second)
	during := s.delay(10*time.Second, 13*time.Second)
	after := s.delay(18*time.Second, 20*time.Second)
	t.Logf("playout delay: %v before the burst, %v during, %v after; %d expanded, %d dropped, %d concealed, %d late",
		before, during, after, s.expanded, s.p.compressed, s.concealed, len(s.late))
	if during-before < 30*time.Millisecond {
		t.Errorf("delay during the burst %v, before %v: the buffer did not grow to the jitter", during, before)
	}
	if d := after - before; d < -5*time.Millisecond || d > 5*time.Millisecond {
		t.Errorf("delay after the burst %v, before %v: did not drain back", after, before)
	}
	if s.p.compressed == 0 {
		t.Error("no frame was dropped to drain the buffer")
	}
}

// TestPlayoutLateAndLost: a packet that misses its playout time is
// concealed in its place and dropped when it comes (never played after
// the frame that replaced it); a lost one is concealed; reordering within
// the depth costs nothing.
func TestPlayoutLateAndLost(t *testing.T) {
	s := newPlaySim(t, 40*time.Millisecond, 120*time.Millisecond)
	pkts := stream(30, 0, 10, func(int) time.Duration { return 0 })
	// 15 arrives 10 ms after 16 (reordered, in time); 20 is lost; 25 is
	// 200 ms late.
	pkts[5].at = pkts[6].at + 10*time.Millisecond
	pkts[5], pkts[6] = pkts[6], pkts[5]
	pkts = append(pkts[:10], pkts[11:]...)
	late := pkts[14]
	late.at += 200 * time.Millisecond
	pkts = append(pkts[:14], pkts[15:]...)
	for i := 14; i < len(pkts); i++ {
		if pkts[i].at > late.at {
			pkts = append(pkts[:i], append([]simPacket{late}, pkts[i:]...)...)
			break
		}
	}
	s.run(pkts, time.Second)
	var seqs []uint16
	for _, f := range s.played {
		seqs = append(seqs, f.seq)
	}
	want := []uint16{}
	for q := uint16(10); q < 40; q++ {
		if q != 20 && q != 25 {
			want = append(want, q)
		}
	}
	if len(seqs) != len(want) {
		t.Fatalf("played %v, want %v", seqs, want)
	}
	for i := range want {
		if seqs[i] != want[i] {
			t.Fatalf("played %v, want %v", seqs, want)
		}
	}
	// (After the last packet a few more are concealed before the buffer
	// calls it a pause.)
	if n := countIn(s.concealedAt, 0, 600*time.Millisecond); n != 2 {
		t.Errorf("%d frames concealed, want 2 (the lost and the late one)", n)
	}
	if len(s.lateSeqs) != 1 || s.lateSeqs[0] != 25 || s.p.late != 1 {
		t.Errorf("late packets %v (counted %d), want [25]", s.lateSeqs, s.p.late)
	}
}

// TestPlayoutPauseAndStall: when the source stops sending (silence
// suppression: its timestamps jump on) the spurt ends after a little
// concealment, and the next packet starts a new spurt at the target
// delay; when the sender stalls and goes on where it left off (every
// packet late from then on), the buffer times the stream afresh instead
// of dropping it.
func TestPlayoutPauseAndStall(t *testing.T) {
	s := newPlaySim(t, 20*time.Millisecond, 120*time.Millisecond)
	talk1 := stream(50, 0, 0, func(int) time.Duration { return 0 })
	// One second of nothing, and the timestamps moved on by it.
	talk2 := stream(50, 2*time.Second, 50, func(int) time.Duration { return 0 })
	for i := range talk2 {
		talk2[i].ts += 160 * 100
	}
	// The sender stalls 300 ms, then goes on with the next timestamps.
	talk3 := stream(100, 3*time.Second+300*time.Millisecond, 100, func(int) time.Duration { return 0 })
	for i := range talk3 {
		talk3[i].ts = talk2[len(talk2)-1].ts + 160*uint32(i+1)
	}
	s.run(append(append(talk1, talk2...), talk3...), 6*time.Second)
	if n := countIn(s.concealedAt, time.Second, 2*time.Second); n > 5 {
		t.Errorf("%d frames concealed in the pause, want a few at most, then silence", n)
	}
	first := -1
	for i, f := range s.played {
		if f.seq == 50 {
			first = i
		}
	}
	if first < 0 {
		t.Fatal("the second talk spurt was not played")
	}
	if d := s.played[first].at - (2*time.Second + 0); d < 20*time.Millisecond-time.Millisecond || d > 20*time.Millisecond+time.Millisecond {
		t.Errorf("the second spurt started %v after its first packet, want the target (20ms)", d)
	}
	if n := countIn(timesOf(s.played), 4*time.Second, 5*time.Second); n < 48 {
		t.Errorf("%d frames played in the second after a sender's stall, want about 50", n)
	}
}

func timesOf(fs []simFrame) []time.Duration {
	out := make([]time.Duration, len(fs))
	for i, f := range fs {
		out[i] = f.at
	}
	return out
}
