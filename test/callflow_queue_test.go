package test

import (
	"testing"
	"time"

	"github.com/wagate/wagate/test/internal/audio"
	"github.com/wagate/wagate/test/internal/metapeer"
)

// TestCallFlowQueue: a queue (the flow's "queue" action) over a hunt list
// of two agents (Go UAS). The first two calls take one agent each; the
// third waits: it hears its place in line ("You are number 1 in the
// queue", speech) and the hold music (the built-in tune's 523 Hz note),
// and nobody rings for it. When the first caller hangs up, the third is
// connected to that agent within the queue's retry second; the summary
// says connected through the queue.
func TestCallFlowQueue(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p2 := e.newPeer("pbx2", 5)
	a1 := startAgent(t, "a1", e.PBX, agentAnswers)
	a2 := startAgent(t, "a2", p2, agentAnswers)
	fs := newFlowService(t, e, func(r flowReq) flowReply {
		return flowReply{Body: flowJSON("queue",
			action("queue", map[string]any{"destination": "team", "announceEvery": 5000, "limitTime": 60000}),
			action("say", map[string]any{"text": "Nobody is free."}),
			action("hangup", nil))}
	})
	w := e.startWagate(wagateOpts{MetaEncryption: "sdes", Route: fs.route("3s", "Sorry."),
		EndpointsExtra: pbxEndpoint("pbx2", p2, ""),
		Extra:          `hunt_lists: [{name: team, targets: [{endpoint: pbx, user: "1001"}, {endpoint: pbx2, user: "2001"}]}]`})
	meta := newGoPeer(t, e.Meta, metapeer.Config{KeepFrames: true})

	c1 := flowCall(t, w, meta)
	a1.one("ACK")
	c2 := flowCall(t, w, meta)
	a2.one("ACK")
	if n := len(a1.got("INVITE")); n != 1 {
		t.Errorf("the busy first agent got %d INVITEs for two calls, want 1", n)
	}

	c3 := flowCall(t, w, meta)
	h := waitHeard(t, c3, "its place in line, then the hold music", flowLimit, func(h heard) bool {
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
		t.Errorf("the waiting caller heard %d ms of speech before the music, want its place in line (about 1.5 s)", speech*20)
	}
	if n := len(a1.got("INVITE")) + len(a2.got("INVITE")); n != 2 {
		t.Errorf("the agents got %d INVITEs while both were busy, want 2 (none for the waiting call)", n)
	}

	freed := time.Now()
	hangup(t, c1, "the first caller")
	deadline := time.Now().Add(5 * time.Second)
	for len(a1.got("INVITE")) < 2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	invs := a1.got("INVITE")
	if len(invs) != 2 {
		t.Fatalf("the freed agent got %d INVITEs, want a second one for the waiting call", len(invs))
	}
	t.Logf("agent freed → the waiting call rang it after %v", invs[1].at.Sub(freed).Round(time.Millisecond))
	if d := invs[1].at.Sub(freed); d > 2500*time.Millisecond {
		t.Errorf("the waiting call rang the freed agent %v after it was free, want within about a second", d)
	}
	// The callers hang up once wagate has logged the third connect (the
	// summaries must say connected), not after a fixed wait.
	w.waitLogCount("call flow connected", 3, flowLimit)
	hangup(t, c3, "the third caller")
	hangup(t, c2, "the second caller")
	var sum3 flowReq
	for i := 1; i <= 3; i++ {
		s := fs.wait(t, "summary", "", i)
		if len(s.Connects) == 1 && s.Connects[0].DestinationType == "queue" && s.Outcome == "connected" {
			sum3 = s
		} else {
			t.Errorf("summary %d: outcome %q, connects %+v; want connected through the queue", i, s.Outcome, s.Connects)
		}
	}
	if sum3.CDR == nil || sum3.CDR.Outcome != "answered" {
		t.Errorf("a queued call's record: %+v", sum3.CDR)
	}
	fs.checkSigned(t)
	s := w.waitIdle()
	w.expectCounts(s, 3, 3)
}
