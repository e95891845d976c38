package test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/wagate/wagate/test/internal/metapeer"
)

// TestCallFlowCallersInMenuLeavePBXFree: the pbx endpoint takes at most
// one call (max_calls: 1: one channel). Callers listening to the menu
// use none of it: a second caller arrives while the first hears the
// greeting, and is answered and hears it too (it was refused with 503
// while the PBX was idle). The cap holds where the PBX is used: a third
// caller's connect reaches the agent, and a fourth's connect, while that
// call is up, is not placed — its flow goes on (a sorry message, hangup)
// and the agent sees one INVITE. The call records name the extension
// the connected caller reached, and none for the others (they named the
// fallback extension, which was never rung).
func TestCallFlowCallersInMenuLeavePBXFree(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const menu = "Welcome. Please hold while we find the right person for your call, it will only take a moment."
	var n atomic.Int32
	fs := newFlowService(t, e, func(r flowReq) flowReply {
		switch n.Add(1) {
		case 1, 2:
			return flowReply{Body: flowJSON("menu", action("say", map[string]any{"text": menu}), action("hangup", nil))}
		case 3:
			return flowReply{Body: flowJSON("agent", action("connect", map[string]any{"destination": "1001", "timeout": 10000}))}
		}
		return flowReply{Body: flowJSON("busy",
			action("connect", map[string]any{"destination": "1001", "timeout": 10000}),
			action("say", map[string]any{"text": "Sorry."}),
			action("hangup", nil))}
	})
	w := e.startWagate(wagateOpts{MetaEncryption: "sdes", Route: fs.route("3s", "Sorry."), PBXExtra: ", max_calls: 1"})
	meta := newGoPeer(t, e.Meta, metapeer.Config{KeepFrames: true})

	first := flowCall(t, w, meta)
	waitHeard(t, first, "the menu (first caller)", flowLimit, func(h heard) bool { return h.loudFrom(0) >= 0 })
	ctx, cancel := context.WithTimeout(context.Background(), peerCallLimit)
	second, err := meta.Call(ctx, metapeer.CallSpec{Target: w.SIPAddr, To: businessNumber, From: waUser})
	cancel()
	if err != nil {
		t.Fatalf("a second caller while the first hears the menu, the PBX idle: %v; want it answered", err)
	}
	waitHeard(t, second, "the menu (second caller)", flowLimit, func(h heard) bool { return h.loudFrom(0) >= 0 })
	waitBye(t, first, "the first caller")
	waitBye(t, second, "the second caller")

	agent := e.startSipp(sippSpec{Name: "agent", Scenario: "uas.xml", Peer: e.PBX, Calls: 1})
	third := flowCall(t, w, meta)
	w.waitLogCount("call flow connected", 1, flowLimit)
	fourth := flowCall(t, w, meta)
	waitBye(t, fourth, "the fourth caller (the PBX full)")
	hangup(t, third, "the connected caller")
	agent.requireOK()

	var sums []flowReq
	for i := 1; i <= 4; i++ {
		sums = append(sums, fs.wait(t, "summary", "", i))
	}
	var busy *flowReq
	for i := range sums {
		if sums[i].Outcome == "hangup" && len(sums[i].Connects) == 1 {
			busy = &sums[i]
		}
	}
	if busy == nil || busy.Connects[0].Answered || !strings.Contains(busy.Connects[0].Error, "max_calls") {
		t.Errorf("the fourth caller's summary: %+v; want its connect unanswered: the pbx is at its max_calls", busy)
	}
	// The records name the extension a caller reached, and none for the
	// callers who reached nobody (not the fallback, never rung).
	for i, sum := range sums {
		if sum.CDR == nil {
			t.Errorf("summary %d without its call record", i+1)
			continue
		}
		b := sum.CDR.B
		switch {
		case sum.Outcome == "connected":
			if b.Endpoint != "pbx" || b.User != "1001" || b.SIPCallID == "" {
				t.Errorf("the connected caller's record: b %+v, want pbx 1001", b)
			}
		case b.Endpoint != "" || b.User != "" || b.SIPCallID != "":
			t.Errorf("record of a caller who reached no extension (outcome %s): b %+v, want none", sum.Outcome, b)
		}
	}
	fs.checkSigned(t)
	s := w.waitIdle()
	w.expectCounts(s, 4, 4)
}
