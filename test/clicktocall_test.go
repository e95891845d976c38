package test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wagate/wagate/test/internal/audio"
	"github.com/wagate/wagate/test/internal/metapeer"
	"github.com/wagate/wagate/test/internal/rtppeer"
	"github.com/wagate/wagate/test/internal/sipua"
)

// Click-to-call (POST /v1/calls) through the real binary: the Go Meta
// peer (Opus over SDES-SRTP) answers the business-initiated leg, a Go
// G.711 peer at the pbx endpoint plays the agent.

// c2cBody is a click-to-call of waUser from businessNumber for agent 1001.
func c2cBody(extra string) string {
	return `{"business_number":"` + businessNumber + `","user":"` + waUser + `","agent":{"endpoint":"pbx","extension":"1001"` + extra + `}}`
}

// c2cEnv starts wagate with permissions, the API token and events posted
// to a receiver, and the two Go peers.
func c2cEnv(t *testing.T, ringTimeout string) (*env, *wagate, *receiver, *metapeer.Peer, *metapeer.Peer) {
	t.Helper()
	return c2cEnvWith(t, ringTimeout, nil)
}

// c2cEnvWith is c2cEnv with the config changed by mod first.
func c2cEnvWith(t *testing.T, ringTimeout string, mod func(*env, *wagateOpts)) (*env, *wagate, *receiver, *metapeer.Peer, *metapeer.Peer) {
	t.Helper()
	return c2cEnvMeta(t, ringTimeout, metapeer.Config{}, mod)
}

// c2cEnvMeta is c2cEnvWith with the Meta peer configured by metaCfg.
func c2cEnvMeta(t *testing.T, ringTimeout string, metaCfg metapeer.Config, mod func(*env, *wagateOpts)) (*env, *wagate, *receiver, *metapeer.Peer, *metapeer.Peer) {
	t.Helper()
	e := newEnv(t)
	rx := newReceiver(t, e)
	o := permOpts(e, "")
	o.MetaEncryption, o.MetaCodecs, o.RingTimeout = "sdes", bicMetaCodecs, ringTimeout
	o.Extra += "\n" + eventsYAML(rx)
	if mod != nil {
		mod(e, &o)
	}
	w := e.startWagate(o)
	meta := newGoPeer(t, e.Meta, metaCfg)
	agent := newGoPeer(t, e.PBX, metapeer.Config{Profile: metapeer.ProfileG711})
	return e, w, rx, meta, agent
}

// postC2C sends POST /v1/calls with an optional Idempotency-Key.
func postC2C(t *testing.T, e *env, body, key string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest("POST", e.apiBase()+"/v1/calls", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+apiToken)
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	res, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("POST /v1/calls: %v", err)
	}
	defer res.Body.Close()
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := res.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return res.StatusCode, res.Header, []byte(b.String())
}

type c2cDoc struct {
	liveCallDoc
	Origin string `json:"origin"`
}

// startC2C posts a click-to-call that must start, and returns it.
func startC2C(t *testing.T, e *env, body, key string) c2cDoc {
	t.Helper()
	code, hdr, b := postC2C(t, e, body, key)
	var doc c2cDoc
	if code != 202 || json.Unmarshal(b, &doc) != nil || doc.Origin != "click_to_call" || doc.Direction != "BIC" ||
		len(doc.CallID) != 24 || hdr.Get("Location") != "/v1/calls/"+doc.CallID {
		t.Fatalf("POST /v1/calls: %d %v %s", code, hdr, b)
	}
	return doc
}

// firstRecv is when ua first received a message satisfying ok.
func firstRecv(ua *sipua.UA, ok func(*sipua.Msg) bool) (time.Time, *sipua.Msg) {
	for _, e := range ua.Trace() {
		if !e.Sent && ok(e.Msg) {
			return e.At, e.Msg
		}
	}
	return time.Time{}, nil
}

func firstSent(ua *sipua.UA, ok func(*sipua.Msg) bool) time.Time {
	for _, e := range ua.Trace() {
		if e.Sent && ok(e.Msg) {
			return e.At
		}
	}
	return time.Time{}
}

func isInvite(m *sipua.Msg) bool { return m.Request && m.Method == "INVITE" }

// waitRinging waits until rx got call.ringing for callID: wagate has
// taken the user's 180, so what the test does next comes after it.
func waitRinging(t *testing.T, rx *receiver, callID string) {
	t.Helper()
	rx.waitUntil(t, "call.ringing of "+callID, func(evs []rxEvent) bool {
		return slices.ContainsFunc(ofCall(evs, callID), func(ev rxEvent) bool { return ev.Type == "call.ringing" })
	})
}

// invites counts the INVITEs (not retransmissions) ua received.
func invites(ua *sipua.UA) int {
	branches := map[string]bool{}
	for _, e := range ua.Trace() {
		if !e.Sent && isInvite(e.Msg) {
			branches[e.Msg.Branch()] = true
		}
	}
	return len(branches)
}

// c2cEvents waits for the call's call.ended and returns its event types
// in order.
func c2cEvents(t *testing.T, rx *receiver, callID string) ([]string, []rxEvent) {
	t.Helper()
	evs := rx.waitUntil(t, "call.ended of "+callID, func(evs []rxEvent) bool {
		return slices.ContainsFunc(ofCall(evs, callID), func(ev rxEvent) bool { return ev.Type == "call.ended" })
	})
	mine := ofCall(evs, callID)
	var got []string
	for _, ev := range mine {
		typ := ev.Type
		if typ == "call.progress" {
			var d struct {
				Step string `json:"step"`
			}
			_ = json.Unmarshal(ev.Data, &d)
			typ += ":" + d.Step
		}
		got = append(got, typ)
	}
	return got, mine
}

// c2cCDR returns the call's CDR as GET /v1/cdrs/{id} serves it.
func c2cCDR(t *testing.T, e *env, callID string) (cdrDoc, string) {
	t.Helper()
	body := storedCDR(t, e, callID)
	var c cdrDoc
	if json.Unmarshal(body, &c) != nil {
		t.Fatalf("GET /v1/cdrs/%s: %s", callID, body)
	}
	c.raw = body
	var o struct {
		Origin string `json:"origin"`
	}
	_ = json.Unmarshal(body, &o)
	return c, o.Origin
}

// storedCDR is GET /v1/cdrs/{id}'s 200 body, waiting for it a while:
// the events store writes the record in its next batch after the call
// ends, which a test that saw the call end (waitIdle) but no event of it
// may overtake.
func storedCDR(t *testing.T, e *env, callID string) []byte {
	t.Helper()
	code, body := callsAPI(t, e, "GET", "/v1/cdrs/"+callID, "")
	for deadline := time.Now().Add(5 * time.Second); code == 404 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		code, body = callsAPI(t, e, "GET", "/v1/cdrs/"+callID, "")
	}
	if code != 200 {
		t.Fatalf("GET /v1/cdrs/%s: %d %s", callID, code, body)
	}
	return body
}

// TestClickToCallAnswered: with a permission, POST /v1/calls rings the
// agent (X-WABA headers naming the session, business and user); when the
// agent answers, wagate places the BIC to Meta (SDES, no X-WABA header)
// and the agent hears ringback (440+480 Hz) until the user answers; then
// audio flows both ways, GET shows the call, DELETE hangs up both legs,
// and the events and the CDR tell the story.
func TestClickToCallAnswered(t *testing.T) {
	t.Parallel()
	e, w, rx, meta, agent := c2cEnv(t, "")
	grantPermission(t, e, waUser, "temporary")
	ctx, cancel := context.WithTimeout(context.Background(), peerCallLimit)
	defer cancel()
	agentAns := answerAsync(ctx, agent, metapeer.AnswerSpec{Ring: 300 * time.Millisecond})
	metaAns := answerAsync(ctx, meta, metapeer.AnswerSpec{Ring: 2 * time.Second})

	posted := time.Now()
	doc := startC2C(t, e, strings.Replace(c2cBody(""), "{", `{"campaign_id":"spring-24","callback_data":"order 4711",`, 1), "")
	if doc.State != "calling" || doc.A.Endpoint != "pbx" || doc.B.Endpoint != "meta" || doc.User != waUser {
		t.Errorf("POST answered %+v", doc)
	}
	acall := waitAnswer(t, agentAns, "the agent")
	mcall := waitAnswer(t, metaAns, "the Meta peer")

	agentInv, inv := firstRecv(agent.UA, isInvite)
	agentOK := firstSent(agent.UA, func(m *sipua.Msg) bool { return !m.Request && m.Status == 200 })
	metaInv, minv := firstRecv(meta.UA, isInvite)
	if inv == nil || minv == nil || agentOK.IsZero() {
		t.Fatal("no INVITE in the peers' traces")
	}
	t.Logf("POST → agent's INVITE %v; agent's 200 → Meta's INVITE %v", agentInv.Sub(posted).Round(time.Microsecond), metaInv.Sub(agentOK).Round(time.Microsecond))
	if !metaInv.After(agentOK) {
		t.Errorf("Meta's INVITE (%v) came before the agent answered (%v)", metaInv, agentOK)
	}
	for h, want := range map[string]string{"X-WABA-Session": doc.CallID, "X-WABA-Origin": "click-to-call", "X-WABA-Business-Number": businessNumber,
		"X-WABA-User": waUser, "X-WABA-Phone-Number-ID": phoneNumberID, "X-WABA-Direction": "BIC"} {
		if got := inv.Get(h); got != want {
			t.Errorf("agent's INVITE %s: %q, want %q", h, got, want)
		}
	}
	if !strings.Contains(inv.RURI, "1001@") || !strings.Contains(inv.Get("From"), waUser) {
		t.Errorf("agent's INVITE %s From %s", inv.RURI, inv.Get("From"))
	}
	for _, hd := range minv.Headers {
		if strings.HasPrefix(strings.ToLower(hd.Name), "x-waba") {
			t.Errorf("Meta's INVITE carries %s", hd.Name)
		}
	}
	if !strings.Contains(minv.RURI, waUser) || !strings.Contains(minv.Get("From"), businessNumber) || mcall.RemoteSDP.Proto != "RTP/SAVP" {
		t.Errorf("Meta's INVITE %s From %s proto %s", minv.RURI, minv.Get("From"), mcall.RemoteSDP.Proto)
	}

	// Ringback: what the agent heard between its answer and Meta's.
	ring := acall.Media.Recording()
	acall.Media.ResetRecording()
	mcall.Media.ResetRecording()
	if len(ring) < 8000 {
		t.Errorf("the agent got %d samples of ringback, want ≥ 1 s", len(ring))
	} else {
		seg := ring[:8000] // the first second is "on"
		p440, p480 := audio.Goertzel(seg, 8000, 440), audio.Goertzel(seg, 8000, 480)
		if p440 < 0.3 || p480 < 0.3 || audio.DBFS(seg) < -30 {
			t.Errorf("ringback: %.2f of the energy at 440 Hz, %.2f at 480 Hz, %.1f dBFS; want ≥ 0.3 each, ≥ -30 dBFS", p440, p480, audio.DBFS(seg))
		}
	}

	acall.Media.SetSource(rtppeer.NewTone(1000, toneAmp, 8000))
	mcall.Media.SetSource(rtppeer.NewTone(700, toneAmp, 48000))
	live := waitLiveCall(t, e, "the call confirmed with media both ways", func(lc liveCallDoc) bool {
		return lc.State == "confirmed" && lc.A.Received.Packets > 0 && lc.B.Received.Packets > 0
	})
	if live.CallID != doc.CallID || live.A.SIPCallID != acall.Dialog.CallID || live.B.SIPCallID != mcall.Dialog.CallID || live.B.Codec != "opus" || live.A.Codec != "PCMU" {
		t.Errorf("live call %+v", live)
	}
	// 2 s of tone each way counted in packets, and its tail waited for
	// (a loaded machine stalls the senders: wall time says nothing).
	playFor(t, 2*time.Second, play{acall.Media, rtppeer.NewTone(1000, toneAmp, 8000)}, play{mcall.Media, rtppeer.NewTone(700, toneAmp, 48000)})
	// wagate's first RTCP report to Meta comes 1.25–3.75 s after its
	// answer (half a jittered 5 s interval, RFC 3550 §6.2): wait for it
	// rather than end the call before it is due.
	for deadline := time.Now().Add(4 * time.Second); mcall.Media.Stats().RTCPReceived == 0 && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	checkWhatsAppStream(t, "click-to-call, toward Meta", mcall)
	checkTone(t, "agent's tone at the WhatsApp user", mcall.Media.Recording(), 48000, 1000, 1500*time.Millisecond)
	checkTone(t, "WhatsApp user's tone at the agent", acall.Media.Recording(), 8000, 700, 1500*time.Millisecond)

	code, body := callsAPI(t, e, "DELETE", "/v1/calls/"+doc.CallID, `{"reason":"crm done"}`)
	if code != 202 || !strings.Contains(string(body), `"sent":"bye"`) {
		t.Fatalf("DELETE: %d %s", code, body)
	}
	waitBye(t, mcall, "the Meta peer")
	waitBye(t, acall, "the agent")
	w.waitIdle()

	got, _ := c2cEvents(t, rx, doc.CallID)
	want := []string{"call.started", "call.progress:agent_ringing", "call.progress:agent_answered", "call.ringing", "call.answered", "call.ended"}
	if !slices.Equal(got, want) {
		t.Errorf("events %v, want %v", got, want)
	}
	cdr, origin := c2cCDR(t, e, doc.CallID)
	checkCDR(t, "click-to-call", cdr, cdrWant{direction: "BIC", outcome: "answered", code: 200, hangupBy: "api", cause: "api hangup: crm done",
		permission: "allowed", routed: true, user: waUser, aEndpoint: "pbx", bEndpoint: "meta", ringing: true, answered: true,
		campaign: "spring-24", callback: "order 4711"})
	if origin != "click_to_call" || cdr.A.SIPCallID != acall.Dialog.CallID || cdr.B.SIPCallID != mcall.Dialog.CallID || cdr.A.Codec != "PCMU" || cdr.B.Encryption != "sdes" {
		t.Errorf("CDR origin %q legs %+v %+v", origin, cdr.A, cdr.B)
	}
}

// TestClickToCallNoPermission: without a permission the POST is refused
// at once with what a dialer gets for the same call (403 No Approved Call
// Permission Found, 138006), and neither the agent nor Meta hears of it.
func TestClickToCallNoPermission(t *testing.T) {
	t.Parallel()
	e, w, rx, meta, agent := c2cEnv(t, "")
	dialer := newGoPeer(t, e.Dialer, metapeer.Config{Profile: metapeer.ProfileG711})

	start := time.Now()
	code, _, b := postC2C(t, e, c2cBody(""), "")
	took := time.Since(start)
	var ref struct {
		Error      string `json:"error"`
		SIPCode    int    `json:"sip_code"`
		SIPReason  string `json:"sip_reason"`
		WABAError  int    `json:"waba_error"`
		Permission string `json:"permission"`
	}
	if code != 403 || json.Unmarshal(b, &ref) != nil || ref.WABAError != 138006 || ref.Permission != "no_permission" {
		t.Fatalf("POST without permission: %d %s", code, b)
	}
	t.Logf("refused in %v", took.Round(time.Microsecond))

	// The dialer's INVITE for the same call gets the same code and reason.
	ctx, cancel := context.WithTimeout(context.Background(), peerCallLimit)
	defer cancel()
	_, err := dialer.Call(ctx, metapeer.CallSpec{Target: w.SIPAddr, To: waUser, From: businessNumber})
	var se *sipua.StatusError
	if !errors.As(err, &se) || se.Code != ref.SIPCode || se.Reason != ref.SIPReason {
		t.Errorf("dialer's BIC: %v; the API said %d %q", err, ref.SIPCode, ref.SIPReason)
	}
	time.Sleep(300 * time.Millisecond)
	if n, m := invites(agent.UA), invites(meta.UA); n != 0 || m != 0 {
		t.Errorf("%d INVITEs reached the agent and %d Meta", n, m)
	}
	evs := rx.waitUntil(t, "two call.refused", func(evs []rxEvent) bool { return len(ofType(evs, "call.refused")) == 2 })
	var cdr cdrDoc
	for _, ev := range ofType(evs, "call.refused") {
		var c cdrDoc
		var o struct {
			Origin string `json:"origin"`
		}
		_ = json.Unmarshal(ev.Data, &o)
		if json.Unmarshal(ev.Data, &c) == nil && o.Origin == "click_to_call" {
			cdr, cdr.raw = c, ev.Data
		}
	}
	checkCDR(t, "refused click-to-call", cdr, cdrWant{direction: "BIC", outcome: "refused", code: 403, hangupBy: "wagate",
		permission: "no_permission", wabaError: 138006, routed: true, user: waUser, aEndpoint: "pbx", bEndpoint: "meta"})
}

// TestClickToCallAgentNoAnswer: an agent that rings past its ring time is
// cancelled and no BIC is placed; a busy agent ends the call with its
// 486. Each call's events stop at the agent, and its CDR says why.
func TestClickToCallAgentNoAnswer(t *testing.T) {
	t.Parallel()
	e, w, rx, meta, agent := c2cEnv(t, "")
	grantPermission(t, e, waUser, "temporary")
	ctx, cancel := context.WithTimeout(context.Background(), peerCallLimit)
	defer cancel()

	doc := startC2C(t, e, c2cBody(`,"ring_timeout":1`), "")
	in, err := agent.UA.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	in.Ring()
	select {
	case <-in.Cancelled():
	case <-time.After(replyLimit): // the default ring time is 60 s
		t.Fatalf("the agent was not cancelled within %v of a 1 s ring time", replyLimit)
	}
	got, _ := c2cEvents(t, rx, doc.CallID)
	if want := []string{"call.started", "call.progress:agent_ringing", "call.ended"}; !slices.Equal(got, want) {
		t.Errorf("events %v, want %v", got, want)
	}
	cdr, _ := c2cCDR(t, e, doc.CallID)
	checkCDR(t, "agent no answer", cdr, cdrWant{direction: "BIC", outcome: "unanswered", code: 480, hangupBy: "wagate", cause: "agent no answer",
		permission: "allowed", routed: true, user: waUser, aEndpoint: "pbx", bEndpoint: "meta"})

	busy := startC2C(t, e, c2cBody(""), "")
	if _, _, err := agent.Answer(ctx, metapeer.AnswerSpec{Reject: 486}); !errors.Is(err, metapeer.ErrRejected) {
		t.Fatal(err)
	}
	if got, _ := c2cEvents(t, rx, busy.CallID); !slices.Equal(got, []string{"call.started", "call.ended"}) {
		t.Errorf("busy agent: events %v", got)
	}
	cdr, _ = c2cCDR(t, e, busy.CallID)
	checkCDR(t, "agent busy", cdr, cdrWant{direction: "BIC", outcome: "busy", code: 486, hangupBy: "a", cause: "agent 486",
		permission: "allowed", routed: true, user: waUser, aEndpoint: "pbx", bEndpoint: "meta"})
	w.waitIdle()
	if n := invites(meta.UA); n != 0 {
		t.Errorf("%d INVITEs reached Meta", n)
	}
}

// c2cUserRinging places a click-to-call whose agent answers, and returns
// once the user's phone rings and wagate has taken its 180 (the call's
// call.ringing): the 180 and what the test does next reach wagate on two
// sockets, and a loaded machine may take the second first.
func c2cUserRinging(ctx context.Context, t *testing.T, e *env, rx *receiver, meta, agent *metapeer.Peer) (c2cDoc, *metapeer.Call, *sipua.Incoming) {
	t.Helper()
	agentAns := answerAsync(ctx, agent, metapeer.AnswerSpec{})
	doc := startC2C(t, e, c2cBody(""), "")
	acall := waitAnswer(t, agentAns, "the agent")
	in, err := meta.UA.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	in.Ring()
	waitRinging(t, rx, doc.CallID)
	return doc, acall, in
}

// TestClickToCallUserNoAnswer: the agent answers, the user does not
// (Meta's 480): the agent gets a BYE, and the call's record and
// call.ended say the user did not answer.
func TestClickToCallUserNoAnswer(t *testing.T) {
	t.Parallel()
	e, w, rx, meta, agent := c2cEnv(t, "")
	grantPermission(t, e, waUser, "temporary")
	ctx, cancel := context.WithTimeout(context.Background(), peerCallLimit)
	defer cancel()
	doc, acall, in := c2cUserRinging(ctx, t, e, rx, meta, agent)
	in.Reject(480, "Temporarily Unavailable")
	waitBye(t, acall, "the agent")
	w.waitIdle()
	got, evs := c2cEvents(t, rx, doc.CallID)
	// (The agent answered at once: no agent_ringing.)
	if want := []string{"call.started", "call.progress:agent_answered", "call.ringing", "call.ended"}; !slices.Equal(got, want) {
		t.Errorf("events %v, want %v", got, want)
	}
	cdr, _ := c2cCDR(t, e, doc.CallID)
	checkCDR(t, "user no answer", cdr, cdrWant{direction: "BIC", outcome: "unanswered", code: 480, hangupBy: "b", cause: "b-leg 480",
		permission: "allowed", routed: true, user: waUser, aEndpoint: "pbx", bEndpoint: "meta", ringing: true})
	checkEndEvent(t, "user no answer", evs, cdr, "call.ended")
}

// TestClickToCallIdempotentRetry: a POST retried with its Idempotency-Key
// gets the same call and dials the agent once; DELETE before the answer
// cancels the agent.
func TestClickToCallIdempotentRetry(t *testing.T) {
	t.Parallel()
	e, w, rx, _, agent := c2cEnv(t, "")
	grantPermission(t, e, waUser, "temporary")
	ctx, cancel := context.WithTimeout(context.Background(), peerCallLimit)
	defer cancel()
	first := startC2C(t, e, c2cBody(""), "crm-42")
	in, err := agent.UA.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	in.Ring()
	code, hdr, b := postC2C(t, e, c2cBody(""), "crm-42")
	var again c2cDoc
	if code != 202 || json.Unmarshal(b, &again) != nil || again.CallID != first.CallID || hdr.Get("Idempotent-Replayed") != "true" {
		t.Errorf("retry: %d %v %s", code, hdr, b)
	}
	if code, _, b := postC2C(t, e, c2cBody(`,"ring_timeout":5`), "crm-42"); code != 422 {
		t.Errorf("same key, other body: %d %s", code, b)
	}
	time.Sleep(300 * time.Millisecond)
	if n := invites(agent.UA); n != 1 {
		t.Errorf("the agent got %d INVITEs, want 1", n)
	}
	if code, body := callsAPI(t, e, "DELETE", "/v1/calls/"+first.CallID, ""); code != 202 || !strings.Contains(string(body), `"sent":"cancel"`) {
		t.Errorf("DELETE: %d %s", code, body)
	}
	select {
	case <-in.Cancelled():
	case <-time.After(replyLimit):
		t.Fatal("the agent got no CANCEL after DELETE")
	}
	w.waitIdle()
	if got, _ := c2cEvents(t, rx, first.CallID); !slices.Equal(got, []string{"call.started", "call.progress:agent_ringing", "call.ended"}) {
		t.Errorf("events %v", got)
	}
	cdr, _ := c2cCDR(t, e, first.CallID)
	checkCDR(t, "deleted before the agent answered", cdr, cdrWant{direction: "BIC", outcome: "cancelled", code: 487, hangupBy: "api", cause: "api hangup",
		permission: "allowed", routed: true, user: waUser, aEndpoint: "pbx", bEndpoint: "meta"})
}

// TestClickToCallBadBodies: bodies the configuration cannot serve are 400s
// naming the field, and nothing is dialled.
func TestClickToCallBadBodies(t *testing.T) {
	t.Parallel()
	e, _, _, meta, agent := c2cEnv(t, "")
	for _, tc := range []struct{ body, want string }{
		{`{"business_number":"+15550100009","user":"` + waUser + `","agent":{"endpoint":"pbx","extension":"1001"}}`, "business_number: is not a configured business number"},
		{`{"business_number":"` + businessNumber + `","user":"12","agent":{"endpoint":"pbx","extension":"1001"}}`, "user: must be"},
		{`{"business_number":"` + businessNumber + `","user":"` + waUser + `","agent":{"endpoint":"nope","extension":"1001"}}`, "agent.endpoint: is not a configured endpoint"},
		{`{"business_number":"` + businessNumber + `","user":"` + waUser + `","agent":{"endpoint":"dialer","extension":"1001"}}`, "agent.endpoint: is a dialer endpoint"},
		{`{"business_number":"` + businessNumber + `","user":"` + waUser + `","agent":{"endpoint":"pbx","extension":"10 01"}}`, "agent.extension: must be"},
		{`{"business_number":"` + businessNumber + `","user":"` + waUser + `"}`, "agent: required"},
		{`{"business_number":"` + businessNumber + `","user":"` + waUser + `","agent":{"endpoint":"pbx","extension":"1001"},"campaign":"x"}`, `unknown field "campaign"`},
		{`{"business_number":"` + businessNumber + `","user":"` + waUser + `","agent":{"endpoint":"pbx","extension":"1001"},"campaign_id":"a b"}`, "campaign_id: must be"},
	} {
		code, _, b := postC2C(t, e, tc.body, "")
		var doc struct {
			Error string `json:"error"`
		}
		if code != 400 || json.Unmarshal(b, &doc) != nil || !strings.Contains(doc.Error, tc.want) {
			t.Errorf("%s: %d %s, want 400 with %q", tc.body, code, b, tc.want)
		}
	}
	time.Sleep(200 * time.Millisecond)
	if n, m := invites(agent.UA), invites(meta.UA); n != 0 || m != 0 {
		t.Errorf("%d INVITEs reached the agent and %d Meta", n, m)
	}
}

// TestClickToCallAgentHangsUpWhileUserRings: the agent gives up while the
// user's phone rings: Meta gets a CANCEL, and the record says the agent
// ended a call that was never answered.
func TestClickToCallAgentHangsUpWhileUserRings(t *testing.T) {
	t.Parallel()
	e, w, rx, meta, agent := c2cEnv(t, "")
	grantPermission(t, e, waUser, "temporary")
	ctx, cancel := context.WithTimeout(context.Background(), peerCallLimit)
	defer cancel()
	doc, acall, in := c2cUserRinging(ctx, t, e, rx, meta, agent)
	hangup(t, acall, "the agent")
	select {
	case <-in.Cancelled():
	case <-time.After(replyLimit):
		t.Fatal("Meta got no CANCEL after the agent hung up")
	}
	w.waitIdle()
	got, _ := c2cEvents(t, rx, doc.CallID)
	if want := []string{"call.started", "call.progress:agent_answered", "call.ringing", "call.ended"}; !slices.Equal(got, want) {
		t.Errorf("events %v, want %v", got, want)
	}
	cdr, _ := c2cCDR(t, e, doc.CallID)
	checkCDR(t, "agent hung up", cdr, cdrWant{direction: "BIC", outcome: "cancelled", code: 487, hangupBy: "a", cause: "bye",
		permission: "allowed", routed: true, user: waUser, aEndpoint: "pbx", bEndpoint: "meta", ringing: true})
}

// TestClickToCallDTLS: with Meta keying by DTLS (its default), the user's
// leg is keyed after Meta's answer (ICE, then the handshake) although the
// bridge started at the agent's, and tones cross both ways.
func TestClickToCallDTLS(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rx := newReceiver(t, e)
	o := permOpts(e, "")
	o = dtlsOpts(o)
	o.Extra += "\n" + eventsYAML(rx)
	e.startWagate(o)
	meta := newGoPeer(t, e.Meta, metapeer.Config{DTLS: true})
	agent := newGoPeer(t, e.PBX, metapeer.Config{Profile: metapeer.ProfileG711})
	grantPermission(t, e, waUser, "temporary")
	ctx, cancel := context.WithTimeout(context.Background(), peerCallLimit)
	defer cancel()
	agentAns := answerAsync(ctx, agent, metapeer.AnswerSpec{})
	metaAns := answerAsync(ctx, meta, metapeer.AnswerSpec{Ring: 500 * time.Millisecond})
	doc := startC2C(t, e, c2cBody(""), "")
	acall := waitAnswer(t, agentAns, "the agent")
	mcall := waitAnswer(t, metaAns, "the Meta peer")
	if !strings.Contains(string(mcall.Remote), " UDP/TLS/RTP/SAVPF ") {
		t.Errorf("offer to Meta is not DTLS:\n%s", mcall.Remote)
	}
	waitKeyed(t, mcall, "click-to-call")
	acall.Media.ResetRecording()
	playFor(t, 2*time.Second, play{acall.Media, rtppeer.NewTone(1000, toneAmp, 8000)}, play{mcall.Media, rtppeer.NewTone(700, toneAmp, 48000)})
	checkTone(t, "agent's tone at the WhatsApp user (DTLS)", mcall.Media.Recording(), 48000, 1000, 1500*time.Millisecond)
	checkTone(t, "WhatsApp user's tone at the agent (DTLS)", acall.Media.Recording(), 8000, 700, 1500*time.Millisecond)
	hangup(t, acall, "the agent")
	waitBye(t, mcall, "the Meta peer")
	if got, _ := c2cEvents(t, rx, doc.CallID); len(got) == 0 || got[len(got)-1] != "call.ended" {
		t.Errorf("events %v", got)
	}
}

// TestClickToCallKill9WhileUserRings: wagate is killed with SIGKILL while
// a click-to-call's agent is up and the user's phone rings. After the
// restart the agent, whose call wagate had answered, gets its BYE (not
// left in a dead call), the user's phone a CANCEL of the INVITE it rings
// for (before, it rang on: the user answered a call nobody was on), and
// the call its record.
func TestClickToCallKill9WhileUserRings(t *testing.T) {
	t.Parallel()
	var o wagateOpts
	e, w, rx, meta, agent := c2cEnvWith(t, "", func(_ *env, opts *wagateOpts) { o = *opts })
	grantPermission(t, e, waUser, "temporary")
	ctx, cancel := context.WithTimeout(context.Background(), peerCallLimit)
	defer cancel()
	doc, acall, in := c2cUserRinging(ctx, t, e, rx, meta, agent)
	w.kill()

	e.startWagate(o)
	waitBye(t, acall, "the agent")
	select {
	case <-in.Cancelled(): // matched by the INVITE's branch
	case <-time.After(replyLimit):
		t.Errorf("the user's phone was not cancelled within %v of the restart", replyLimit)
	}
	cdrs := waitCDRs(t, e, 1)
	if c := cdrs[0]; c.CallID != doc.CallID || c.Outcome != "failed" || c.Cause != "wagate restarted while the call was ringing" || c.A.Endpoint != "pbx" {
		t.Errorf("CDR after the restart: want call %s failed, ended by the restart, agent at pbx:\n%s", doc.CallID, c.raw)
	}
}

// TestClickToCallUserByeAtOnce: the user hangs up as soon as it has
// wagate's ACK. Its BYE must get 200 and end the call: the agent gets
// BYE and nothing is left (before: 481, and the agent stayed up without
// the user, its ports held until the media timeout). Racy by nature:
// run it with -count.
func TestClickToCallUserByeAtOnce(t *testing.T) {
	t.Parallel()
	e, w, _, meta, agent := c2cEnv(t, "")
	grantPermission(t, e, waUser, "temporary")
	ctx, cancel := context.WithTimeout(context.Background(), peerCallLimit)
	defer cancel()
	agentAns := answerAsync(ctx, agent, metapeer.AnswerSpec{})
	metaAns := answerAsync(ctx, meta, metapeer.AnswerSpec{})
	startC2C(t, e, c2cBody(""), "")
	acall := waitAnswer(t, agentAns, "the agent")
	mcall := waitAnswer(t, metaAns, "the Meta peer")
	<-mcall.Dialog.Acked()
	if code, err := mcall.Dialog.Bye(ctx); err != nil || code != 200 {
		t.Errorf("the user's BYE at once after the ACK: %d %v, want 200", code, err)
	}
	mcall.Media.Close()
	waitBye(t, acall, "the agent")
	w.waitIdle()
}

// TestClickToCallAgentByeAtOnce: the agent hangs up as soon as it has
// wagate's ACK, before the user is called or before Meta's first
// provisional response. Its BYE must get 200 and end the call: the user
// is not called, or is cancelled, never connected; nothing is left.
// Before: the BYE could get 481 and the call went on without the agent;
// and a call that ended before the user's INVITE, or before Meta's 180,
// left the user's phone ringing with nobody to cancel it. Racy by
// nature: run it with -count.
func TestClickToCallAgentByeAtOnce(t *testing.T) {
	t.Parallel()
	e, w, _, meta, agent := c2cEnv(t, "")
	grantPermission(t, e, waUser, "temporary")
	ctx, cancel := context.WithTimeout(context.Background(), peerCallLimit)
	defer cancel()
	agentAns := answerAsync(ctx, agent, metapeer.AnswerSpec{})
	metaAns := answerAsync(ctx, meta, metapeer.AnswerSpec{Ring: 3 * time.Second})
	startC2C(t, e, c2cBody(""), "")
	acall := waitAnswer(t, agentAns, "the agent")
	<-acall.Dialog.Acked()
	if code, err := acall.Dialog.Bye(ctx); err != nil || code != 200 {
		t.Errorf("the agent's BYE at once after the ACK: %d %v, want 200", code, err)
	}
	acall.Media.Close()
	select {
	case r := <-metaAns:
		if r.err == nil {
			t.Errorf("the user was connected to a call whose agent had hung up")
			r.call.Hangup(ctx)
		}
	case <-time.After(5 * time.Second):
	}
	w.waitIdle()
}

// TestClickToCallReinviteWhileUserRings: while the user's phone rings the
// agent's PBX re-INVITEs, moving its media to a new port (a session
// refresh or a media server taking over). wagate answers 200 from its
// same address (before: 491 until the user answered, which can end a
// session-timer PBX's call), plays the ringback to the new port, and once
// the user answers the agent's new stream and the user hear each other.
func TestClickToCallReinviteWhileUserRings(t *testing.T) {
	t.Parallel()
	e, w, rx, meta, agent := c2cEnv(t, "")
	grantPermission(t, e, waUser, "temporary")
	ctx, cancel := context.WithTimeout(context.Background(), peerCallLimit)
	defer cancel()
	answerNow := make(chan struct{})
	answer := sync.OnceFunc(func() { close(answerNow) })
	defer answer()
	agentAns := answerAsync(ctx, agent, metapeer.AnswerSpec{})
	metaAns := answerAsync(ctx, meta, metapeer.AnswerSpec{RingUntil: answerNow})
	doc := startC2C(t, e, c2cBody(""), "")
	acall := waitAnswer(t, agentAns, "the agent")
	waitRinging(t, rx, doc.CallID)

	s, err := rtppeer.Listen(rtppeer.Config{IP: e.PBX.IP, Codec: rtppeer.PCMU, EventPT: 101})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	offer := rtppeer.Desc{IP: e.PBX.IP, Port: s.Port(), Codecs: []rtppeer.Codec{rtppeer.PCMU}, EventPT: 101, Ptime: 20}.Marshal()
	sdp, err := rtppeer.ParseSDP([]byte(reinvite(t, acall, offer)))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := sdp.Addr().String(), sdpAddr(t, acall.Remote); got != want {
		t.Errorf("wagate answered the re-INVITE from %s, want its same address %s", got, want)
	}
	if err := s.Start(sdp.Addr(), nil); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(replyLimit); s.Stats().Received < 10; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the agent's new port got %d packets of ringback, want 10", s.Stats().Received)
		}
	}
	answer()
	mcall := waitAnswer(t, metaAns, "the Meta peer")
	s.SetSource(rtppeer.NewTone(1000, toneAmp, 8000))
	mcall.Media.SetSource(rtppeer.NewTone(700, toneAmp, 48000))
	mustHear(t, "the user hears the agent's new stream", mcall.Media, 48000, 1000, 1500*time.Millisecond)
	mustHear(t, "the agent's new stream hears the user", s, 8000, 700, 1500*time.Millisecond)
	hangup(t, mcall, "the user")
	waitBye(t, acall, "the agent")
	w.waitIdle()
}
