package permissions

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestNotSentGivesRateBack: a call wagate admitted and then refused itself
// before its INVITE left (no ports, draining, its own limits) does not use
// one of the number's new calls of the day, also after a restart: a
// contact centre near the cap keeps every call Meta would take.
func TestNotSentGivesRateBack(t *testing.T) {
	lim := DefaultLimits()
	lim.NewCallsPerNumber24h = 3
	e := open(t, lim)
	users := []Key{key("+16505550001"), key("+16505550002"), key("+16505550003"), key("+16505550004")}
	for _, k := range users {
		mustGrant(t, e.c, k, true)
	}
	_, tk := admit(t, e.c, users[0], Allow)
	tk.Finish(Failed) // sent to Meta, failed there: it counts
	_, tk = admit(t, e.c, users[1], Allow)
	tk.Finish(NotSent)
	tk.Finish(NotSent) // idempotent: gives back one call, not two
	_, tk = admit(t, e.c, users[2], Allow)
	tk.Finish(NotSent)

	e.clock.Advance(time.Minute)
	e.reopen(t)
	// One call of 3 used: two more are Meta's to take.
	for _, k := range users[1:3] {
		_, tk = admit(t, e.c, k, Allow)
		tk.Finish(Unanswered)
	}
	admit(t, e.c, users[3], NumberRateCap)

	// A connected call was seen by Meta whatever the caller says.
	lim.NewCallsPerNumber24h = 4
	e.c.SetLimits(lim)
	_, tk = admit(t, e.c, users[3], Allow)
	tk.Connected()
	tk.Finish(NotSent)
	admit(t, e.c, users[0], NumberRateCap)
}

// TestNotSentBurstStaysUnderCap: calls admitted and given back from many
// goroutines at once never let more calls reach Meta than the number's
// cap, and every call given back is free for another.
func TestNotSentBurstStaysUnderCap(t *testing.T) {
	const cap, workers, tries = 40, 8, 60
	lim := DefaultLimits()
	lim.NewCallsPerNumber24h = cap
	e := open(t, lim)
	for g := range workers {
		mustGrant(t, e.c, key(fmt.Sprintf("+165055501%02d", g)), true)
	}
	var sent, admitted atomic.Int64
	var wg sync.WaitGroup
	for g := range workers {
		wg.Go(func() {
			k := key(fmt.Sprintf("+165055501%02d", g))
			for i := range tries {
				d, tk := e.c.Admit(k)
				if !d.Allowed() {
					if d.Verdict != NumberRateCap {
						t.Errorf("admit: %v", d.Verdict)
					}
					continue
				}
				admitted.Add(1)
				if (g+i)%2 == 0 {
					tk.Finish(NotSent)
					continue
				}
				sent.Add(1)
				tk.Finish(Failed)
			}
		})
	}
	wg.Wait()
	if s := sent.Load(); s > cap {
		t.Fatalf("%d calls reached Meta, the cap is %d", s, cap)
	}
	if admitted.Load() <= sent.Load() {
		t.Fatalf("no call was given back (%d admitted, %d sent)", admitted.Load(), sent.Load())
	}
	// What was given back is free: the number takes exactly cap - sent more.
	free := 0
	for range cap + 1 {
		d, tk := e.c.Admit(key("+16505550100"))
		if !d.Allowed() {
			break
		}
		free++
		tk.Finish(Failed)
	}
	if want := cap - int(sent.Load()); free != want {
		t.Errorf("after the burst the number took %d more calls, want %d (cap %d, %d sent)", free, want, cap, sent.Load())
	}
}
