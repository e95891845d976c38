package b2bua

import (
	"testing"
	"time"
)

// TestHuntWrapUp: an agent whose call (reached through a list with
// wrap_up) ended is skipped by the next calls of the list until its
// wrap-up is over, then rung first again; with every agent in wrap-up a
// caller hears 486 and nobody rings.
func TestHuntWrapUp(t *testing.T) {
	h := startHuntFlow(t, "{hunt: seq}", `  - {name: seq, wrap_up: 2s, targets: [{endpoint: pbx, user: "1"}, {endpoint: pbx2, user: "2"}]}`)
	inv1, ok1, _ := h.answeredBy(h.pbx, "a")
	h.hangUp(inv1, ok1, h.pbx)
	h.cdrs.next(t)
	ended := time.Now()
	h.wantBusy("1@pbx", true) // wrapping up, though on no call
	// The list's first agent would ring first; it is wrapping up.
	if got := h.firstRung(); got != "pbx2" {
		t.Errorf("first target %s, want pbx2 (1@pbx is in wrap-up)", got)
	}
	// Now both agents wrap up: the caller hears busy at once.
	inv2, ok2, _ := h.answeredBy(h.pbx2, "b")
	h.hangUp(inv2, ok2, h.pbx2)
	h.cdrs.next(t)
	if time.Since(ended) < 2*time.Second {
		inv := h.metaCall()
		res := h.meta.response(486)
		h.meta.send(h.addr, ackFor(inv, res))
		cdr := h.cdrs.next(t)
		if len(cdr.Attempts) != 0 {
			t.Errorf("attempts %s, want none (nobody rang)", attemptsOf(cdr))
		}
	} else {
		t.Log("slow machine: the all-in-wrap-up call was not checked")
	}
	for _, p := range []*peer{h.pbx, h.pbx2} {
		select {
		case m := <-p.in:
			t.Errorf("%s got %s while in wrap-up", p.addr(), startLine(m))
		default:
		}
	}
	time.Sleep(time.Until(ended.Add(2*time.Second + 50*time.Millisecond)))
	h.wantBusy("1@pbx", false)
	if got := h.firstRung(); got != "pbx" {
		t.Errorf("first target %s, want pbx (its wrap-up is over)", got)
	}
}

// TestWrapUpPerAgent: wrap-up is the agent's, not the list's: an agent
// that left a call of list "sales" is busy for every list, for sales'
// wrap_up as the running configuration has it when the leg leaves; an
// extension dialled directly gives no wrap-up; an agent on two calls
// wraps up until the later end allows.
func TestWrapUpPerAgent(t *testing.T) {
	var hs huntState
	wrap := 10 * time.Second
	free := hs.answered("1@pbx", func() time.Duration { return wrap })
	direct := hs.answered("2@pbx", nil)
	wrap = 30 * time.Second // a reload while the call is up
	before := time.Now()
	free()
	direct()
	until := hs.wrapsUntil("1@pbx", time.Now())
	if d := until.Sub(before); d < 30*time.Second || d > 31*time.Second {
		t.Errorf("wrap-up ends %v after the call, want the reloaded 30s", d)
	}
	if !hs.busy("1@pbx") {
		t.Error("agent in wrap-up not busy")
	}
	if hs.busy("2@pbx") || !hs.wrapsUntil("2@pbx", time.Now()).IsZero() {
		t.Error("an agent dialled directly (no list) wraps up")
	}
	if !hs.wrapsUntil("1@pbx", until).IsZero() || hs.wrapsUntil("1@pbx", until.Add(-time.Millisecond)).IsZero() {
		t.Error("wrap-up does not end exactly at its end")
	}
	// A shorter wrap-up of a second call does not cut the first short.
	short := hs.answered("1@pbx", func() time.Duration { return time.Second })
	short()
	if got := hs.wrapsUntil("1@pbx", time.Now()); !got.Equal(until) {
		t.Errorf("wrap-up ends %v, want the longer %v kept", got, until)
	}
}

// TestWrapUpOfReload: the wrap-up an agent gets is its list's in the
// configuration running when its leg leaves (a reload during the call
// applies), or the one it answered with when a reload removed the list.
func TestWrapUpOfReload(t *testing.T) {
	h := startHuntFlow(t, "{hunt: seq}", `  - {name: seq, wrap_up: 2s, targets: [{endpoint: pbx, user: "1"}]}`)
	wrap := h.srv.wrapUpOf(h.edge.Config().HuntList("seq"))
	if got := wrap(); got != 2*time.Second {
		t.Errorf("wrap-up %v, want the list's 2s", got)
	}
	if h.srv.wrapUpOf(nil) != nil {
		t.Error("an extension dialled directly has a wrap-up")
	}
	reload := func(list string) {
		h.edge.Reload(parseConfig(t, `
endpoints:
  - {name: pbx, kind: pbx, host: 127.0.0.3, source_cidrs: [127.0.0.3/32]}
hunt_lists:
  - {`+list+`, targets: [{endpoint: pbx, user: "1"}]}
`))
	}
	reload("name: seq, wrap_up: 45s")
	if got := wrap(); got != 45*time.Second {
		t.Errorf("wrap-up after a reload %v, want the reloaded 45s", got)
	}
	reload("name: other, wrap_up: 5s")
	if got := wrap(); got != 2*time.Second {
		t.Errorf("wrap-up of a list a reload removed %v, want the 2s it was answered with", got)
	}
}
