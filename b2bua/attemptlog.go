package b2bua

import (
	"time"

	"github.com/wagate/wagate/events"
)

// A call's record lists its B-leg attempts, but a queue that rings its
// agents for an hour would list thousands: the record keeps the first
// attemptsHead (how the call began) and the latest ones, up to
// maxRecordedAttempts in all, and counts those left out between them.
// The latest are room enough for a whole parallel ring (maxHuntTargets).
const (
	maxRecordedAttempts = 60
	attemptsHead        = 10
)

// attemptLog is a call's attempts for its record (under the call's mu).
type attemptLog struct {
	// placed is the highest attempt number noted: a new hunt numbers its
	// attempts (and so its B-leg Call-IDs) on from it.
	placed int
	list   []events.Attempt
	nums   []int // the attempt number of each entry of list
	// omitted counts the attempts dropped from between the head and the
	// latest ones.
	omitted int
}

// note records attempt n, or updates it when it is listed already; an
// update of an attempt dropped earlier is ignored.
func (l *attemptLog) note(n int, a events.Attempt) {
	if n <= l.placed {
		for i := len(l.nums) - 1; i >= 0; i-- {
			if l.nums[i] == n {
				l.list[i] = a
				return
			}
		}
		return
	}
	l.placed = n
	if len(l.list) == maxRecordedAttempts {
		// Drop the oldest after the head that has its result: one still
		// ringing (a parallel ring's) may yet be the one that answers.
		i := attemptsHead
		for j := attemptsHead; j < len(l.list); j++ {
			if r := l.list[j].Result; r != events.AttemptRinging && r != events.AttemptAnswered {
				i = j
				break
			}
		}
		l.list = append(l.list[:i], l.list[i+1:]...)
		l.nums = append(l.nums[:i], l.nums[i+1:]...)
		l.omitted++
	}
	l.list = append(l.list, a)
	l.nums = append(l.nums, n)
}

// final is a copy of the listed attempts, in order, for the record of a
// call that ended at end: an attempt still ringing then was given up on
// with the call (its CANCEL sent), whether or not the hunt that placed it
// has marked it so yet — that hunt runs on its own goroutine and may come
// to it only after the record is built.
func (l *attemptLog) final(end time.Time) []events.Attempt {
	out := append([]events.Attempt(nil), l.list...)
	for i := range out {
		if out[i].Result == events.AttemptRinging {
			out[i].Result = events.AttemptCancelled
			if out[i].EndedAt.IsZero() {
				out[i].EndedAt = end
			}
		}
	}
	return out
}

// late records the answered attempt whose B-leg Call-ID is callID as
// late: its 2xx won, but A had gone as it came (the CANCEL/200 race), so
// it was hung up without a call.
func (l *attemptLog) late(callID string) {
	for i := len(l.list) - 1; i >= 0; i-- {
		if l.list[i].SIPCallID == callID && l.list[i].Result == events.AttemptAnswered {
			l.list[i].Result = events.AttemptLate
			return
		}
	}
}
