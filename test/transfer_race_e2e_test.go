package test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/wagate/wagate/test/internal/metapeer"
)

// Transfers that meet the other things a contact centre's calls do: the
// transferring agent hanging up at once, the caller's media timeout.

// TestTransferRingsPastRTPTimeout: the agent REFERs the caller without
// holding first and hangs up as soon as it has the 202, as many phones'
// blind-transfer keys do; the target rings longer than media.rtp_timeout
// (2 s here, 30 s by default against a 60 s ring time) before it answers.
// Nobody is sending on the agent's side meanwhile, but the call is not
// silent to the caller (music on hold) and must not be ended for it: the
// target answers and talks to the caller.
func TestTransferRingsPastRTPTimeout(t *testing.T) {
	t.Parallel()
	c := startCtl(t, wagateOpts{RTPTimeout: "2s"})
	rc := c.call(t)
	mustHear(t, "the agent hears the caller", rc.pbx.Media, 8000, 1000, 500*time.Millisecond)

	ctx, cancel := context.WithTimeout(context.Background(), peerCallLimit)
	defer cancel()
	answered := answerAsync(ctx, c.pbx2, metapeer.AnswerSpec{Ring: 3 * time.Second})
	if code, warn := refer(t, rc.pbx.Dialog, c.target("2001")); code != 202 {
		t.Fatalf("REFER: %d (%s), want 202", code, warn)
	}
	hangup(t, rc.pbx, "the transferring agent")
	nc := waitAnswer(t, answered, "the transfer target (rings 3 s)")
	nc.Media.SetSource(newAgentTone())
	mustHear(t, "the caller hears the new agent", rc.meta.Media, 48000, newAgentHz, time.Second)
	mustHear(t, "the new agent hears the caller", nc.Media, 8000, 1000, time.Second)
	hangup(t, rc.meta, "the caller")
	waitBye(t, nc, "the new agent")
	c.w.waitIdle()
}

// TestTransferAPIDuringCallFlow: POST /v1/calls/{id}/transfer for a call
// whose call flow has not connected an agent yet (the caller is in the
// IVR) has no PBX leg to transfer: 409 saying so. It got 202 ("wagate is
// calling the target") before, while nothing was dialled: the transfer
// failed at once (488, recorded in the CDR), the caller's prompt was
// interrupted by music on hold, and the log said the caller was back
// with an agent it never had.
func TestTransferAPIDuringCallFlow(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var fs *flowService
	fs = newFlowService(t, e, func(r flowReq) flowReply {
		return flowReply{Body: flowJSON("ivr",
			action("playFile", map[string]any{"fileUrl": fs.fileURL("tone700.wav", toneWAV(700, 8000, 3*time.Second))}),
			action("hangup", nil))}
	})
	c := startCtlIn(t, e, wagateOpts{Route: fs.route("3s", "Sorry.")})
	mc := flowCall(t, c.w, c.meta)
	lc := waitLiveCall(t, c.e, "the call in its flow", func(lc liveCallDoc) bool { return lc.State == "confirmed" })
	code, body := callsAPI(t, c.e, "POST", "/v1/calls/"+lc.CallID+"/transfer", `{"endpoint":"pbx2","user":"2001"}`)
	if code != 409 || !strings.Contains(string(body), "no agent") {
		t.Errorf("transfer of a call in its call flow: %d %s, want 409 saying the call has no agent", code, body)
	}
	hangup(t, mc, "the caller")
	c.w.waitIdle()
	for _, te := range c.pbx2.UA.Trace() {
		if !te.Sent && te.Msg.Method == "INVITE" {
			t.Errorf("pbx2 got an INVITE: %s", te.Msg.RURI)
		}
	}
	if xs := cdrTransfers(t, cdrOfA(t, waitCDRs(t, c.e, 1), mc.Dialog.CallID)); len(xs) != 0 {
		t.Errorf("CDR transfers %+v, want none (nothing was transferred)", xs)
	}
}
