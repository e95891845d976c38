package b2bua

import (
	"fmt"
	"testing"
	"time"

	"github.com/wagate/wagate/events"
)

// TestAttemptLogCapped: a call that places a thousand attempts (a queue
// ringing its agents for long) keeps the first attemptsHead and the
// latest ones in its record, maxRecordedAttempts in all, counts the rest,
// and numbers on from the highest attempt placed; a late update of a
// listed attempt lands on it, one of a dropped attempt is ignored.
func TestAttemptLogCapped(t *testing.T) {
	var l attemptLog
	const total = 1000
	for n := 1; n <= total; n++ {
		l.note(n, events.Attempt{User: fmt.Sprint(n), Result: events.AttemptRinging})
		l.note(n, events.Attempt{User: fmt.Sprint(n), Result: events.AttemptBusy, SIPCode: 486})
	}
	recs := l.final(time.Time{})
	if len(recs) != maxRecordedAttempts || l.omitted != total-maxRecordedAttempts || l.placed != total {
		t.Fatalf("%d attempts listed, %d omitted, %d placed; want %d, %d, %d", len(recs), l.omitted, l.placed,
			maxRecordedAttempts, total-maxRecordedAttempts, total)
	}
	for i, a := range recs {
		want := i + 1
		if i >= attemptsHead {
			want = total - maxRecordedAttempts + i + 1
		}
		if a.User != fmt.Sprint(want) || a.Result != events.AttemptBusy {
			t.Fatalf("entry %d is attempt %s (%s), want attempt %d, busy", i, a.User, a.Result, want)
		}
	}
	l.note(5, events.Attempt{User: "5", Result: events.AttemptCancelled})
	l.note(500, events.Attempt{User: "500", Result: events.AttemptCancelled})
	if recs := l.final(time.Time{}); recs[4].Result != events.AttemptCancelled || len(recs) != maxRecordedAttempts || l.omitted != total-maxRecordedAttempts {
		t.Errorf("updates of attempts 5 (listed) and 500 (dropped): entry 4 %+v, %d listed, %d omitted", recs[4], len(recs), l.omitted)
	}
}

// TestAttemptLogKeepsRinging: once the record is full, attempts still
// ringing (a parallel ring's) are not the ones dropped while some with a
// result are: the one that then answers is in the record.
func TestAttemptLogKeepsRinging(t *testing.T) {
	var l attemptLog
	for n := 1; n <= attemptsHead; n++ {
		l.note(n, events.Attempt{User: fmt.Sprint(n), Result: events.AttemptNoAnswer})
	}
	// A parallel ring of 50 agents (the most a hunt list has) fills the
	// record; three of the last reject, three others redirect (new
	// attempts); then the first agent rung answers.
	first := attemptsHead + 1
	for n := first; n < first+50; n++ {
		l.note(n, events.Attempt{User: fmt.Sprint(n), Result: events.AttemptRinging})
	}
	for n := first + 47; n < first+50; n++ {
		l.note(n, events.Attempt{User: fmt.Sprint(n), Result: events.AttemptBusy, SIPCode: 486})
	}
	for n := first + 50; n < first+53; n++ {
		l.note(n, events.Attempt{User: fmt.Sprint(n), Result: events.AttemptRinging})
	}
	l.note(first, events.Attempt{User: fmt.Sprint(first), Result: events.AttemptAnswered, SIPCode: 200})
	answered := 0
	for _, a := range l.final(time.Time{}) {
		if a.Result == events.AttemptAnswered {
			answered++
		}
	}
	if answered != 1 || len(l.final(time.Time{})) != maxRecordedAttempts || l.omitted != 3 {
		t.Errorf("record of %d attempts (%d omitted) has %d answered, want the answering agent listed", len(l.final(time.Time{})), l.omitted, answered)
	}
}

// TestAttemptLogFinal: in the record of a call that is over, an attempt
// still noted as ringing is cancelled (the call's end gave up on it, even
// when the hunt that placed it has not said so yet), ending when the call
// did; the others keep their results and times.
func TestAttemptLogFinal(t *testing.T) {
	var l attemptLog
	start := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	end := start.Add(30 * time.Second)
	l.note(1, events.Attempt{User: "1", Result: events.AttemptBusy, SIPCode: 486, StartedAt: start, EndedAt: start.Add(time.Second)})
	l.note(2, events.Attempt{User: "2", Result: events.AttemptRinging, StartedAt: start.Add(2 * time.Second)})
	recs := l.final(end)
	if recs[0].Result != events.AttemptBusy || !recs[0].EndedAt.Equal(start.Add(time.Second)) {
		t.Errorf("a busy attempt became %+v", recs[0])
	}
	if recs[1].Result != events.AttemptCancelled || !recs[1].EndedAt.Equal(end) {
		t.Errorf("an attempt ringing when the call ended is %s ending %v, want cancelled at %v", recs[1].Result, recs[1].EndedAt, end)
	}
	if l.list[1].Result != events.AttemptRinging {
		t.Errorf("final changed the log itself: %+v", l.list[1])
	}
}
