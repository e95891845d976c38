package media

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// jbRecorder writes what a jitter buffer delivers as "ts/lost" tokens.
type jbRecorder struct{ out []string }

func (r *jbRecorder) deliver(ts uint32, payload []byte, lost int) {
	tok := fmt.Sprint(ts)
	if lost > 0 {
		tok += fmt.Sprintf("(-%d)", lost)
	}
	if string(payload) != fmt.Sprint(ts) {
		tok += "!payload"
	}
	r.out = append(r.out, tok)
}

func TestJitterBuffer(t *testing.T) {
	const ms = time.Millisecond
	type step struct {
		seq   uint16 // 0xffff with flush: flush at at
		at    time.Duration
		flush bool
		want  jbResult
	}
	p := func(seq uint16, at time.Duration, want jbResult) step { return step{seq: seq, at: at, want: want} }
	f := func(at time.Duration) step { return step{at: at, flush: true} }
	for _, tt := range []struct {
		name  string
		steps []step
		out   string // delivered, in order
		due   bool   // something still held at the end
	}{
		{name: "in order passes at once", steps: []step{p(10, 0, jbDelivered), p(11, 20*ms, jbDelivered), p(12, 40*ms, jbDelivered)}, out: "10 11 12"},
		{name: "swap reordered", steps: []step{p(10, 0, jbDelivered), p(12, 20*ms, jbHeld), p(11, 25*ms, jbDelivered), p(13, 40*ms, jbDelivered)}, out: "10 11 12 13"},
		{name: "loss given up after depth", steps: []step{p(10, 0, jbDelivered), p(12, 40*ms, jbHeld), p(13, 60*ms, jbHeld), f(99 * ms), f(100 * ms)}, out: "10 12(-1) 13"},
		{name: "late after giving up", steps: []step{p(10, 0, jbDelivered), p(12, 40*ms, jbHeld), f(100 * ms), p(11, 110*ms, jbLate)}, out: "10 12(-1)"},
		{name: "duplicates", steps: []step{p(10, 0, jbDelivered), p(10, 1*ms, jbLate), p(12, 40*ms, jbHeld), p(12, 41*ms, jbDuplicate)}, out: "10", due: true},
		{name: "jump beyond the buffer", steps: []step{p(10, 0, jbDelivered), p(12, 40*ms, jbHeld), p(30, 60*ms, jbDelivered), p(31, 80*ms, jbDelivered)}, out: "10 12(-1) 30(-17) 31"},
		{name: "sequence wrap", steps: []step{p(65534, 0, jbDelivered), p(0, 20*ms, jbHeld), p(65535, 21*ms, jbDelivered), p(1, 40*ms, jbDelivered)}, out: "65534 65535 0 1"},
		{name: "restart far behind", steps: []step{p(5000, 0, jbDelivered), p(5001, 20*ms, jbDelivered), p(10, 40*ms, jbDelivered), p(11, 60*ms, jbDelivered)}, out: "5000 5001 10 11"},
		{name: "two gaps", steps: []step{p(1, 0, jbDelivered), p(3, 20*ms, jbHeld), p(6, 40*ms, jbHeld), f(80 * ms), f(100 * ms)}, out: "1 3(-1) 6(-2)"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var r jbRecorder
			j := newJitterBuffer(60*ms, r.deliver)
			for i, s := range tt.steps {
				if s.flush {
					j.flush(s.at)
					continue
				}
				if got := j.push(s.seq, uint32(s.seq), []byte(fmt.Sprint(s.seq)), s.at); got != s.want {
					t.Fatalf("step %d (seq %d): %d, want %d; delivered %v", i, s.seq, got, s.want, r.out)
				}
			}
			if got := strings.Join(r.out, " "); got != tt.out {
				t.Fatalf("delivered %q, want %q", got, tt.out)
			}
			if _, due := j.due(); due != tt.due {
				t.Fatalf("held at end: %v, want %v", due, tt.due)
			}
		})
	}
}

func TestJitterBufferDue(t *testing.T) {
	var r jbRecorder
	j := newJitterBuffer(60*time.Millisecond, r.deliver)
	j.push(1, 1, []byte("1"), 0)
	j.push(3, 3, []byte("3"), 10*time.Millisecond)
	j.push(4, 4, []byte("4"), 30*time.Millisecond)
	if at, ok := j.due(); !ok || at != 70*time.Millisecond {
		t.Fatalf("due %s %v, want 70ms (first held + depth)", at, ok)
	}
	j.reset() // a new SSRC: what is held goes out first
	if got := strings.Join(r.out, " "); got != "1 3(-1) 4" {
		t.Fatalf("after reset: %q", got)
	}
	if j.push(100, 100, []byte("100"), time.Second) != jbDelivered {
		t.Fatal("numbering not restarted")
	}
	if len(j.slots)&(len(j.slots)-1) != 0 {
		t.Fatalf("%d slots: not a power of two", len(j.slots))
	}
}

func TestJitterBufferOff(t *testing.T) {
	var r jbRecorder
	j := newJitterBuffer(0, r.deliver)
	for _, seq := range []uint16{1, 3, 2, 4} {
		j.push(seq, uint32(seq), []byte(fmt.Sprint(seq)), 0)
	}
	if got := strings.Join(r.out, " "); got != "1 3(-1) 4" {
		t.Fatalf("delivered %q", got)
	}
	if _, due := j.due(); due {
		t.Fatal("something held with reordering off")
	}
}
