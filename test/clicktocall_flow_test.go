package test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/wagate/wagate/test/internal/audio"
	"github.com/wagate/wagate/test/internal/metapeer"
	"github.com/wagate/wagate/test/internal/rtppeer"
)

// A click-to-call started with "callflow": true runs the business
// number's call-flow route on the agent's leg: the agent hears the flow's
// prompt, and the flow's connect to a WhatsApp user places the BIC
// through the permission gate (docs/api.md, docs/callflow.md).

// c2cFlowBody is a click-to-call for agent 1001 that runs the number's
// call flow instead of calling a user.
const c2cFlowBody = `{"business_number":"` + businessNumber + `","callflow":true,"agent":{"endpoint":"pbx","extension":"1001"}}`

// c2cFlowEnv is c2cEnv with the number's route a call flow answered by
// script.
func c2cFlowEnv(t *testing.T, script func(*flowService, flowReq) flowReply) (*env, *wagate, *receiver, *flowService, *metapeer.Peer, *metapeer.Peer) {
	t.Helper()
	var fs *flowService
	e, w, rx, meta, agent := c2cEnvWith(t, "", func(e *env, o *wagateOpts) {
		fs = newFlowService(t, e, func(r flowReq) flowReply { return script(fs, r) })
		o.Route = fs.route("3s", "Sorry.")
	})
	return e, w, rx, fs, meta, agent
}

// promptFrames counts the 20 ms frames of rec (8 kHz) that are loud and
// mostly freq.
func promptFrames(rec []int16, freq float64) int {
	n := 0
	for off := 0; off+160 <= len(rec); off += 160 {
		f := rec[off : off+160]
		if audio.DBFS(f) > -30 && audio.Goertzel(f, 8000, freq) >= 0.5 {
			n++
		}
	}
	return n
}

// TestClickToCallFlowConnects: the agent answers, hears the flow's 600 Hz
// prompt, and the flow's connect calls the WhatsApp user (who has a
// permission); agent and user then hear each other's tones.
func TestClickToCallFlowConnects(t *testing.T) {
	t.Parallel()
	e, w, rx, fs, meta, agent := c2cFlowEnv(t, func(fs *flowService, r flowReq) flowReply {
		return flowReply{Body: flowJSON("to-user",
			action("playFile", map[string]any{"fileUrl": fs.fileURL("p600.wav", toneWAV(600, 8000, time.Second))}),
			action("connect", map[string]any{"destinationType": "whatsapp", "destination": waUser}))}
	})
	grantPermission(t, e, waUser, "temporary")
	ctx, cancel := context.WithTimeout(context.Background(), peerCallLimit)
	defer cancel()
	agentAns := answerAsync(ctx, agent, metapeer.AnswerSpec{Ring: 200 * time.Millisecond})
	metaAns := answerAsync(ctx, meta, metapeer.AnswerSpec{Ring: 1500 * time.Millisecond})

	doc := startC2C(t, e, c2cFlowBody, "")
	if doc.User != "" {
		t.Errorf("POST answered user %q before the flow named one", doc.User)
	}
	acall := waitAnswer(t, agentAns, "the agent")
	start := fs.wait(t, "start", doc.CallID, 1)
	if start.Direction != "BIC" || start.BusinessNumber != businessNumber || start.User != "" {
		t.Errorf("start request %+v", start)
	}
	_, inv := firstRecv(agent.UA, isInvite)
	if inv == nil || inv.Get("X-WABA-User") != "" || !strings.Contains(inv.Get("From"), businessNumber) {
		t.Errorf("agent's INVITE: %+v", inv)
	}

	// Everything the agent heard until Meta's INVITE came: the prompt
	// (then ringback). Meta hears of the call only after the prompt.
	var metaInv time.Time
	for deadline := time.Now().Add(flowLimit); metaInv.IsZero() && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		metaInv, _ = firstRecv(meta.UA, isInvite)
	}
	if metaInv.IsZero() {
		t.Fatal("the flow's connect placed no INVITE to Meta")
	}
	heardPrompt := acall.Media.Recording()
	if n := promptFrames(heardPrompt, 600); n < 40 || n > 55 {
		t.Errorf("the agent heard the 1 s 600 Hz prompt for %d ms before Meta's INVITE; level per 100 ms:\n%s", n*20, levelProfile(heardPrompt, 8000))
	} else {
		t.Logf("the agent heard the prompt for %d ms before the user's call", n*20)
	}
	_, minv := firstRecv(meta.UA, isInvite)
	if !strings.Contains(minv.RURI, waUser) || !strings.Contains(minv.Get("From"), businessNumber) {
		t.Errorf("Meta's INVITE %s From %s", minv.RURI, minv.Get("From"))
	}

	mcall := waitAnswer(t, metaAns, "the Meta peer")
	acall.Media.ResetRecording()
	mcall.Media.ResetRecording()
	acall.Media.SetSource(rtppeer.NewTone(1000, toneAmp, 8000))
	mcall.Media.SetSource(rtppeer.NewTone(700, toneAmp, 48000))
	waitLiveCall(t, e, "the flow's call confirmed with media both ways", func(lc liveCallDoc) bool {
		return lc.CallID == doc.CallID && lc.State == "confirmed" && lc.User == waUser && lc.A.Received.Packets > 0 && lc.B.Received.Packets > 0
	})
	// 2 s more of tone each way counted in packets, and its tail waited
	// for (a loaded machine stalls the senders: wall time says nothing).
	playFor(t, 2*time.Second, play{acall.Media, rtppeer.NewTone(1000, toneAmp, 8000)}, play{mcall.Media, rtppeer.NewTone(700, toneAmp, 48000)})
	checkTone(t, "agent's tone at the WhatsApp user", mcall.Media.Recording(), 48000, 1000, 1500*time.Millisecond)
	checkTone(t, "WhatsApp user's tone at the agent", acall.Media.Recording(), 8000, 700, 1500*time.Millisecond)

	code, body := callsAPI(t, e, "DELETE", "/v1/calls/"+doc.CallID, `{"reason":"done"}`)
	if code != 202 {
		t.Fatalf("DELETE: %d %s", code, body)
	}
	waitBye(t, mcall, "the Meta peer")
	waitBye(t, acall, "the agent")
	sum := fs.wait(t, "summary", doc.CallID, 1)
	if sum.Outcome != "connected" || len(sum.Connects) != 1 || !sum.Connects[0].Answered ||
		sum.Connects[0].DestinationType != "whatsapp" || sum.Connects[0].Destination != waUser {
		t.Errorf("summary: outcome %q connects %+v", sum.Outcome, sum.Connects)
	}
	fs.checkSigned(t)
	w.waitIdle()
	c2cEvents(t, rx, doc.CallID)
	cdr, origin := c2cCDR(t, e, doc.CallID)
	if origin != "click_to_call" || cdr.User != waUser || cdr.Permission != "allowed" || cdr.Outcome != "answered" {
		t.Errorf("CDR origin %q user %q permission %q outcome %q", origin, cdr.User, cdr.Permission, cdr.Outcome)
	}
}

// TestClickToCallFlowConnectRefused: without a permission the flow's
// connect is refused by the gate (Meta hears nothing); the flow goes on
// with its next action (a prompt the agent hears, then hangup), and the
// summary says why the connect failed (138006).
func TestClickToCallFlowConnectRefused(t *testing.T) {
	t.Parallel()
	e, w, rx, fs, meta, agent := c2cFlowEnv(t, func(fs *flowService, r flowReq) flowReply {
		return flowReply{Body: flowJSON("to-user",
			action("connect", map[string]any{"destinationType": "whatsapp", "destination": waUser}),
			action("playFile", map[string]any{"fileUrl": fs.fileURL("p600.wav", toneWAV(600, 8000, time.Second))}),
			action("hangup", nil))}
	})
	ctx, cancel := context.WithTimeout(context.Background(), peerCallLimit)
	defer cancel()
	agentAns := answerAsync(ctx, agent, metapeer.AnswerSpec{Ring: 200 * time.Millisecond})

	doc := startC2C(t, e, c2cFlowBody, "")
	acall := waitAnswer(t, agentAns, "the agent")
	waitBye(t, acall, "the agent (the flow's hangup)")
	if n := promptFrames(acall.Media.Recording(), 600); n < 40 {
		t.Errorf("the agent heard the prompt after the refused connect for %d ms, want ≈ 1 s", n*20)
	}
	sum := fs.wait(t, "summary", doc.CallID, 1)
	if len(sum.Connects) != 1 || sum.Connects[0].Answered || !strings.Contains(sum.Connects[0].Error, "138006") {
		t.Errorf("summary connects %+v, want one refused with 138006", sum.Connects)
	}
	// A connect that did not reach its target is an action done (the
	// flow goes on); its connects entry says why.
	var acts []string
	for _, a := range sum.Actions {
		acts = append(acts, a.Action+":"+a.Result)
	}
	if got, want := strings.Join(acts, " "), "connect:done playFile:done hangup:done"; got != want {
		t.Errorf("summary actions %q, want %q", got, want)
	}
	if sum.Outcome != "hangup" {
		t.Errorf("summary outcome %q, want hangup", sum.Outcome)
	}
	if n := invites(meta.UA); n != 0 {
		t.Errorf("%d INVITEs reached Meta", n)
	}
	w.waitIdle()
	c2cEvents(t, rx, doc.CallID)
	cdr, _ := c2cCDR(t, e, doc.CallID)
	if cdr.Permission != "no_permission" {
		t.Errorf("CDR permission %q, want no_permission", cdr.Permission)
	}
}

// TestClickToCallFlowDeleted: DELETE while the flow plays to the agent
// ends the call there: the agent gets a BYE, Meta hears nothing, and the
// summary says the call ended during the flow.
func TestClickToCallFlowDeleted(t *testing.T) {
	t.Parallel()
	e, w, rx, fs, meta, agent := c2cFlowEnv(t, func(fs *flowService, r flowReq) flowReply {
		return flowReply{Body: flowJSON("long",
			action("playFile", map[string]any{"fileUrl": fs.fileURL("p600.wav", toneWAV(600, 8000, 5*time.Second))}),
			action("connect", map[string]any{"destinationType": "whatsapp", "destination": waUser}))}
	})
	grantPermission(t, e, waUser, "temporary")
	ctx, cancel := context.WithTimeout(context.Background(), peerCallLimit)
	defer cancel()
	agentAns := answerAsync(ctx, agent, metapeer.AnswerSpec{Ring: 200 * time.Millisecond})
	doc := startC2C(t, e, c2cFlowBody, "")
	acall := waitAnswer(t, agentAns, "the agent")
	fs.wait(t, "start", doc.CallID, 1)
	time.Sleep(time.Second)
	code, body := callsAPI(t, e, "DELETE", "/v1/calls/"+doc.CallID, `{"reason":"crm closed"}`)
	if code != 202 {
		t.Fatalf("DELETE: %d %s", code, body)
	}
	deleted := time.Now()
	waitBye(t, acall, "the agent")
	if d := time.Since(deleted); d > 2*time.Second {
		t.Errorf("the agent's BYE came %v after DELETE", d)
	}
	sum := fs.wait(t, "summary", doc.CallID, 1)
	if sum.Outcome != "callerHungUp" || len(sum.Connects) != 0 {
		t.Errorf("summary outcome %q connects %+v, want callerHungUp and none", sum.Outcome, sum.Connects)
	}
	if n := invites(meta.UA); n != 0 {
		t.Errorf("%d INVITEs reached Meta", n)
	}
	w.waitIdle()
	c2cEvents(t, rx, doc.CallID)
	cdr, _ := c2cCDR(t, e, doc.CallID)
	if cdr.HangupBy != "api" || !strings.Contains(cdr.Cause, "crm closed") {
		t.Errorf("CDR hangup_by %q cause %q", cdr.HangupBy, cdr.Cause)
	}
}
