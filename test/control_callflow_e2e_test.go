package test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/wagate/wagate/test/internal/audio"
	"github.com/wagate/wagate/test/internal/metapeer"
)

// TestCallFlowAgentHoldTransfer: the agent a call flow's connect reached
// is controlled as on any call. It holds (answered recvonly; the caller
// hears music on hold past rtp_timeout, the agent gets nothing), resumes
// (both hear each other), then blind-transfers by REFER to 2001@pbx2: the
// new agent's INVITE carries the X-WABA headers, the caller and the new
// agent hear each other, the first agent is hung up, and Meta gets no SIP
// at all; the call record names the transfer.
func TestCallFlowAgentHoldTransfer(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	fs := newFlowService(t, e, func(r flowReq) flowReply {
		return flowReply{Body: flowJSON("agent", action("connect", map[string]any{"destination": "1001", "timeout": 10000}))}
	})
	moh := filepath.Join(t.TempDir(), "moh.wav")
	if err := audio.WriteWAV(moh, 8000, audio.Tone(mohHz, toneAmp, 8000, 0, 16000)); err != nil {
		t.Fatal(err)
	}
	c := startCtlIn(t, e, wagateOpts{Route: fs.route("3s", "Sorry."), RTPTimeout: "2s", RTPStartTimeout: "2s",
		MediaExtra: ", music_on_hold: " + moh})

	ctx, cancel := context.WithTimeout(context.Background(), peerCallLimit)
	defer cancel()
	answered := answerAsync(ctx, c.pbx, metapeer.AnswerSpec{})
	mc := flowCall(t, c.w, c.meta)
	mc.Media.SetSource(metaTone())
	pc := waitAnswer(t, answered, "the flow's agent")
	pc.Media.SetSource(pbxTone())
	if pc.Dialog.Invite.Get("X-WABA-Session") == "" {
		t.Errorf("the flow's agent INVITE lacks X-WABA-Session")
	}
	mustHear(t, "the caller hears the agent", mc.Media, 48000, 440, 1500*time.Millisecond)
	mustHear(t, "the agent hears the caller", pc.Media, 8000, 1000, time.Second)

	orig := pc.Local
	if ans := reinvite(t, pc, withDirection(t, orig, "sendonly", "")); direction(ans) != "recvonly" {
		t.Errorf("hold answered a=%s, want recvonly:\n%s", direction(ans), ans)
	}
	from := time.Now()
	pc.Media.SetSource(nil)
	before := pc.Media.Stats().Received
	mustHear(t, "hold: the caller hears music on hold", mc.Media, 48000, mohHz, 3*time.Second)
	checkStream(t, "hold", mc.Media, from, time.Now())
	if got := pc.Media.Stats().Received - before; got > 3 {
		t.Errorf("hold: wagate sent the holding agent %d packets", got)
	}
	if ans := reinvite(t, pc, orig); direction(ans) != "sendrecv" {
		t.Errorf("resume answered a=%s, want sendrecv", direction(ans))
	}
	pc.Media.SetSource(pbxTone())
	mustHear(t, "after the resume: the caller hears the agent", mc.Media, 48000, 440, time.Second)
	mustHear(t, "after the resume: the agent hears the caller", pc.Media, 8000, 1000, time.Second)

	answered2 := answerAsync(ctx, c.pbx2, metapeer.AnswerSpec{})
	if code, warn := refer(t, pc.Dialog, c.target("2001")); code != 202 {
		t.Fatalf("REFER: %d (%s), want 202", code, warn)
	}
	nc := waitAnswer(t, answered2, "the new agent (pbx2)")
	nc.Media.SetSource(newAgentTone())
	if nc.Dialog.Invite.Get("X-WABA-Session") == "" {
		t.Errorf("the new agent's INVITE lacks X-WABA-Session")
	}
	waitBye(t, pc, "the first agent")
	mustHear(t, "the new agent hears the caller", nc.Media, 8000, 1000, 1500*time.Millisecond)
	mustHear(t, "the caller hears the new agent", mc.Media, 48000, newAgentHz, 1500*time.Millisecond)

	hangup(t, mc, "the caller")
	waitBye(t, nc, "the new agent")
	checkNoSIPToMeta(t, c.meta, time.Now())
	c.w.waitIdle()

	cdr := cdrOfA(t, waitCDRs(t, c.e, 1), mc.Dialog.CallID)
	xs := cdrTransfers(t, cdr)
	if cdr.B.Endpoint != "pbx2" || cdr.B.SIPCallID != nc.Dialog.CallID || len(xs) != 1 {
		t.Fatalf("CDR b %+v transfers %+v, want b = the new agent's leg and one transfer", cdr.B, xs)
	}
	if x := xs[0]; x.Kind != "blind" || x.By != "pbx" || x.Target != "2001@pbx2" || !x.Connected ||
		x.From.SIPCallID != pc.Dialog.CallID || x.To.SIPCallID != nc.Dialog.CallID {
		t.Errorf("CDR transfer %+v", x)
	}
}
