package test

import (
	"fmt"
	"testing"
	"time"

	"github.com/wagate/wagate/test/internal/audio"
	"github.com/wagate/wagate/test/internal/metapeer"
)

// queueTeam is a hunt list of one agent at pbx (1001) and one at pbx2
// (2001).
const queueTeam = `hunt_lists: [{name: team, targets: [{endpoint: pbx, user: "1001"}, {endpoint: pbx2, user: "2001"}]}]`

// heardPlaceThenMusic waits until c heard the built-in hold music and
// checks that speech (its place in line) came before it.
func heardPlaceThenMusic(t *testing.T, c *metapeer.Call, who string) {
	t.Helper()
	h := waitHeard(t, c, who+": its place in line, then the hold music", flowLimit, func(h heard) bool {
		_, end := h.toneFrames(0, 523.25, 10)
		return end > 0
	})
	music, _ := h.toneFrames(0, 523.25, 10)
	speech := 0
	for i := 0; i < music; i++ {
		if f := h.pcmOf(i, i+1); h.frames[i].DBFS > speechDBFS && audio.Goertzel(f, 48000, 523.25) < 0.3 {
			speech++
		}
	}
	if speech*20 < 600 {
		t.Errorf("%s heard %d ms of speech before the music, want its place in line (about 1.5 s)", who, speech*20)
	}
}

// TestQueueRoute: a number whose route is a queue (no web service) over a
// hunt list of two agents. The first two calls are connected at once, one
// agent each; the third is answered by wagate and waits hearing its
// place in line and the hold music, and nobody rings for it. When the
// first caller hangs up, the third is connected to the freed agent.
func TestQueueRoute(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p2 := e.newPeer("pbx2", 5)
	a1 := startAgent(t, "a1", e.PBX, agentAnswers)
	a2 := startAgent(t, "a2", p2, agentAnswers)
	w := e.startWagate(wagateOpts{MetaEncryption: "sdes",
		Route:          `{queue: {hunt: team, limit_time: 60s, announce_every: 5s}}`,
		EndpointsExtra: pbxEndpoint("pbx2", p2, ""),
		Extra:          queueTeam})
	meta := newGoPeer(t, e.Meta, metapeer.Config{KeepFrames: true})

	c1 := flowCall(t, w, meta)
	a1.one("ACK")
	c2 := flowCall(t, w, meta)
	a2.one("ACK")

	c3 := flowCall(t, w, meta)
	heardPlaceThenMusic(t, c3, "the third caller")
	if n := len(a1.got("INVITE")) + len(a2.got("INVITE")); n != 2 {
		t.Errorf("the agents got %d INVITEs while both were busy, want 2 (none for the waiting call)", n)
	}

	freed := time.Now()
	hangup(t, c1, "the first caller")
	deadline := time.Now().Add(5 * time.Second)
	for len(a1.got("ACK")) < 2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	invs := a1.got("INVITE")
	if len(invs) != 2 || len(a1.got("ACK")) != 2 {
		t.Fatalf("the freed agent got %d INVITEs and %d ACKs, want the waiting call connected to it", len(invs), len(a1.got("ACK")))
	}
	t.Logf("agent freed → the waiting call rang it after %v", invs[1].at.Sub(freed).Round(time.Millisecond))
	if d := invs[1].at.Sub(freed); d > 2500*time.Millisecond {
		t.Errorf("the waiting call rang the freed agent %v after it was free, want within about a second", d)
	}
	if n := len(a2.got("INVITE")); n != 1 {
		t.Errorf("the busy second agent got %d INVITEs, want 1", n)
	}
	time.Sleep(300 * time.Millisecond)
	hangup(t, c3, "the third caller")
	hangup(t, c2, "the second caller")
	s := w.waitIdle()
	w.expectCounts(s, 3, 3)
}

// queueLimitTime is TestQueueRouteLimitTime's limit_time. The caller must
// hear its place in line and then the hold music within it: with the first
// call's wait known, the announcement says the estimated wait too, about
// 3.5 s of speech rendered by espeak-ng at the call. Beside CPU hogs and
// the rest of the suite the speech stretched and a 5 s limit came before
// the music (the caller was put through to the fallback first). The
// announcement is not repeated before the limit either.
const queueLimitTime = 10 * time.Second

// TestQueueRouteLimitTime: with the only agent busy, a second caller waits
// hearing its place and the music, and after limit_time (queueLimitTime)
// is connected to the queue's fallback extension, not before.
func TestQueueRouteLimitTime(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p2 := e.newPeer("pbx2", 5)
	a1 := startAgent(t, "a1", e.PBX, agentAnswers)
	fb := startAgent(t, "fallback", p2, agentAnswers)
	w := e.startWagate(wagateOpts{MetaEncryption: "sdes",
		Route:          fmt.Sprintf(`{queue: {hunt: team, limit_time: %[1]s, announce_every: %[1]s, fallback: {endpoint: pbx2, user: "2999"}}}`, queueLimitTime),
		EndpointsExtra: pbxEndpoint("pbx2", p2, ""),
		Extra:          `hunt_lists: [{name: team, targets: [{endpoint: pbx, user: "1001"}]}]`})
	meta := newGoPeer(t, e.Meta, metapeer.Config{KeepFrames: true})

	c1 := flowCall(t, w, meta)
	a1.one("ACK")
	start := time.Now()
	c2 := flowCall(t, w, meta)
	heardPlaceThenMusic(t, c2, "the second caller")
	inv := fb.one("INVITE")
	fb.one("ACK")
	waited := inv.at.Sub(start)
	t.Logf("limit_time %v → fallback rung after %v", queueLimitTime, waited.Round(time.Millisecond))
	if waited < queueLimitTime || waited > queueLimitTime+3*time.Second {
		t.Errorf("the fallback rang %v after the call, want just after limit_time (%v)", waited, queueLimitTime)
	}
	if inv.user != "2999" {
		t.Errorf("the fallback INVITE went to %q, want 2999", inv.user)
	}
	if n := len(a1.got("INVITE")); n != 1 {
		t.Errorf("the busy agent got %d INVITEs, want 1", n)
	}
	hangup(t, c2, "the second caller")
	hangup(t, c1, "the first caller")
	s := w.waitIdle()
	w.expectCounts(s, 2, 2)
}

// closedToday is a number's hours that are closed all of yesterday, today
// and tomorrow (UTC), then after_hours: the route given.
func closedToday(afterHours string) string {
	now := time.Now().UTC()
	day := func(d int) string { return now.AddDate(0, 0, d).Format(time.DateOnly) }
	return fmt.Sprintf(`, hours: {timezone: UTC, weekly: [{days: [mon-sun], from: "00:00", to: "24:00"}], holidays: [%s, %s, %s], after_hours: %s}`,
		day(-1), day(0), day(1), afterHours)
}

// TestAfterHoursCallFlowAndQueue: outside business hours, a number whose
// after_hours route is a callflow runs the service's flow (its connect
// reaches the agent), and one whose after_hours route is a queue is
// answered by wagate and connected through the hunt list; the number's
// own route (an extension at pbx2) never rings.
func TestAfterHoursCallFlowAndQueue(t *testing.T) {
	t.Parallel()
	t.Run("callflow", func(t *testing.T) {
		e := newEnv(t)
		p2 := e.newPeer("pbx2", 5)
		a1 := startAgent(t, "a1", e.PBX, agentAnswers)
		own := startAgent(t, "own", p2, agentAnswers)
		fs := newFlowService(t, e, func(r flowReq) flowReply {
			return flowReply{Body: flowJSON("night", action("connect", map[string]any{"destination": "1001", "timeout": 10000}))}
		})
		w := e.startWagate(wagateOpts{MetaEncryption: "sdes", Route: `{endpoint: pbx2, user: "2001"}`,
			EndpointsExtra: pbxEndpoint("pbx2", p2, ""), NumberExtra: closedToday(fs.route("3s", "Sorry."))})
		meta := newGoPeer(t, e.Meta, metapeer.Config{})
		c := flowCall(t, w, meta)
		if inv := a1.one("INVITE"); inv.user != "1001" {
			t.Errorf("the after-hours flow's connect rang %q, want 1001", inv.user)
		}
		a1.one("ACK")
		fs.wait(t, "start", "", 1)
		hangup(t, c, "the caller")
		if s := fs.wait(t, "summary", "", 1); s.Outcome != "connected" {
			t.Errorf("summary outcome %q, want connected", s.Outcome)
		}
		if n := len(own.got("INVITE")); n != 0 {
			t.Errorf("the number's own route rang %d times after hours, want 0", n)
		}
		w.expectCounts(w.waitIdle(), 1, 1)
	})
	t.Run("queue", func(t *testing.T) {
		e := newEnv(t)
		p2 := e.newPeer("pbx2", 5)
		a1 := startAgent(t, "a1", e.PBX, agentAnswers)
		own := startAgent(t, "own", p2, agentAnswers)
		w := e.startWagate(wagateOpts{MetaEncryption: "sdes", Route: `{endpoint: pbx2, user: "2001"}`,
			EndpointsExtra: pbxEndpoint("pbx2", p2, ""),
			NumberExtra:    closedToday(`{queue: {hunt: night, limit_time: 30s}}`),
			Extra:          `hunt_lists: [{name: night, targets: [{endpoint: pbx, user: "1001"}]}]`})
		meta := newGoPeer(t, e.Meta, metapeer.Config{})
		c := flowCall(t, w, meta)
		if inv := a1.one("INVITE"); inv.user != "1001" {
			t.Errorf("the after-hours queue rang %q, want 1001", inv.user)
		}
		a1.one("ACK")
		hangup(t, c, "the caller")
		if n := len(own.got("INVITE")); n != 0 {
			t.Errorf("the number's own route rang %d times after hours, want 0", n)
		}
		w.expectCounts(w.waitIdle(), 1, 1)
	})
}
