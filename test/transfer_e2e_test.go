package test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/wagate/wagate/test/internal/metapeer"
	"github.com/wagate/wagate/test/internal/rtppeer"
	"github.com/wagate/wagate/test/internal/sipua"
)

// Transfer through the real binary (docs/sip.md, "Transfer"): the Go Meta
// peer is the WhatsApp caller (Opus over SDES-SRTP), the Go G.711 peer at
// the pbx endpoint is the first agent, which sends REFER, and another at a
// second pbx endpoint (pbx2, 127.0.N.5) is the transfer target. Audio is
// checked both ways after each transfer; the Meta peer must see no SIP
// message at all until it hangs up.

// Tones of the transfer tests: the WhatsApp caller 1 kHz, the first agent
// 440 Hz, the new agent 1.5 kHz.
const newAgentHz = 1500

func newAgentTone() rtppeer.Source { return rtppeer.NewTone(newAgentHz, toneAmp, 8000) }

// transferHearLimit bounds the silence the caller hears after the new
// agent's first packet. The target is 100 ms (a packet time plus the
// playout buffer's 20 ms: 20–40 ms unloaded), but the two ends are
// stamped by two goroutines of this process (the new agent's sender,
// the caller's reader) with a -race wagate between them, on two cores
// make test keeps busy: -race runs at load 15 measured up to 77 ms
// (docs/performance.md). 150 ms of slack on top keeps the check on what
// the caller notices, a stream that does not switch to the new agent at
// once (music on hold played on, media waiting for the NOTIFY or a
// re-INVITE), without failing on a core that was busy for a moment.
const transferHearLimit = 100*time.Millisecond + 150*time.Millisecond

// ctl is a wagate whose pbx endpoint may transfer to users 2* of pbx2,
// 1* of itself and the hunt list team (2101@pbx2, then 2102@pbx2), with
// the three Go peers; the hunt list all rings 2201@pbx2 and 2202@pbx2 at
// once.
type ctl struct {
	e               *env
	w               *wagate
	pbx2Addr        peer
	meta, pbx, pbx2 *metapeer.Peer
}

func startCtl(t *testing.T, o wagateOpts) *ctl {
	t.Helper()
	return startCtlIn(t, newEnv(t), o)
}

// startCtlIn is startCtl in an env the test prepared (an events receiver).
func startCtlIn(t *testing.T, e *env, o wagateOpts) *ctl {
	t.Helper()
	p2 := e.newPeer("pbx2", 5)
	if o.MetaEncryption == "" {
		o.MetaEncryption = "sdes"
	}
	o.APIExtra += tokenAPI
	o.PBXExtra += `, transfer: {allow: [{endpoint: pbx2, users: ["2*"]}, {endpoint: pbx, users: ["1*"]}, {hunt: team}]}`
	o.Extra += "hunt_lists:\n  - {name: team, strategy: sequential, targets: [{endpoint: pbx2, user: \"2101\"}, {endpoint: pbx2, user: \"2102\"}]}\n" +
		"  - {name: all, strategy: parallel, targets: [{endpoint: pbx2, user: \"2201\"}, {endpoint: pbx2, user: \"2202\"}]}\n"
	o.EndpointsExtra += fmt.Sprintf("\n  - {name: pbx2, kind: pbx, host: %s, port: %d, transport: udp, source_cidrs: [%s/32], codecs: [PCMU, PCMA]}",
		p2.IP, p2.Port, p2.IP)
	c := &ctl{e: e, pbx2Addr: p2}
	c.w = e.startWagate(o)
	c.meta = newGoPeer(t, e.Meta, metapeer.Config{KeepFrames: true, DTLS: o.MetaEncryption == "dtls"})
	c.pbx = newGoPeer(t, e.PBX, metapeer.Config{Profile: metapeer.ProfileG711})
	c.pbx2 = newGoPeer(t, p2, metapeer.Config{Profile: metapeer.ProfileG711})
	return c
}

// call places a UIC answered by the first agent, both sides sending their
// tone.
func (c *ctl) call(t *testing.T) recCall {
	t.Helper()
	rc := placeUIC(t, c.w, c.meta, c.pbx)
	rc.meta.Media.SetSource(metaTone())
	rc.pbx.Media.SetSource(pbxTone())
	return rc
}

// target is a Refer-To for user at pbx2.
func (c *ctl) target(user string) string {
	return fmt.Sprintf("<sip:%s@%s>", user, c.pbx2Addr.Addr())
}

// refer sends a REFER on d and returns the response code.
func refer(t *testing.T, d *sipua.Dialog, referTo string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), peerCallLimit)
	defer cancel()
	hs := []sipua.Header{{Name: "Referred-By", Value: "<sip:1001@pbx>"}}
	if referTo != "" {
		hs = append(hs, sipua.Header{Name: "Refer-To", Value: referTo})
	}
	res, err := d.Request(ctx, "REFER", hs, "", nil)
	if err != nil {
		t.Fatalf("REFER: %v", err)
	}
	return res.Status, res.Get("Warning")
}

// waitNotifies waits for the NOTIFY that ends a REFER's subscription on d
// and returns every NOTIFY's sipfrag status line, checking their shape.
func waitNotifies(t *testing.T, d *sipua.Dialog) []string {
	t.Helper()
	deadline := time.Now().Add(peerCallLimit)
	for {
		ns := d.Received("NOTIFY")
		done := len(ns) > 0 && strings.HasPrefix(ns[len(ns)-1].Get("Subscription-State"), "terminated")
		if done || time.Now().After(deadline) {
			var lines []string
			for _, n := range ns {
				if !strings.HasPrefix(n.Get("Event"), "refer") || !strings.HasPrefix(n.Get("Content-Type"), "message/sipfrag") {
					t.Errorf("NOTIFY Event %q Content-Type %q, want refer and message/sipfrag", n.Get("Event"), n.Get("Content-Type"))
				}
				lines = append(lines, strings.TrimSpace(string(n.Body)))
			}
			if !done {
				t.Fatalf("no final NOTIFY within %v; got %q", peerCallLimit, lines)
			}
			return lines
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkNoSIPToMeta fails when wagate sent the Meta peer any request before
// until: Meta refuses re-INVITE, UPDATE and REFER, so transfers and holds
// must not reach it.
func checkNoSIPToMeta(t *testing.T, mp *metapeer.Peer, until time.Time) {
	t.Helper()
	checkNoSIPToMetaSince(t, mp, time.Time{}, until)
}

// checkNoSIPToMetaSince is checkNoSIPToMeta for the requests after since
// (a BIC's INVITE and ACK come before).
func checkNoSIPToMetaSince(t *testing.T, mp *metapeer.Peer, since, until time.Time) {
	t.Helper()
	for _, te := range mp.UA.Trace() {
		// An ACK only ever answers an INVITE's 2xx: on a BIC, Meta's own
		// 200 (retransmitted while the ACK was on its way). A re-INVITE
		// from wagate would show as the INVITE.
		if !te.Sent && te.Msg.Request && te.Msg.Method != "ACK" && te.At.After(since) && te.At.Before(until) {
			t.Errorf("the WhatsApp side got a %s from wagate during the call", te.Msg.Method)
		}
	}
}

// mustHear waits until s has received d of audio (d at least, 10 s more
// at most), then checks that the recording (reset first) holds a tone of
// hz for half of it.
func mustHear(t *testing.T, what string, s *rtppeer.Session, rate int, hz float64, d time.Duration) {
	t.Helper()
	s.ResetRecording()
	time.Sleep(d)
	// d of audio received, not d of wall time: a machine that stalled
	// the path delivers it late (gaps are checked where they matter, by
	// arrival times).
	want := int(int64(rate) * int64(d) / int64(time.Second))
	for deadline := time.Now().Add(10 * time.Second); len(s.Recording()) < want && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	checkTone(t, what, s.Recording(), rate, hz, d/2)
}

// maxArrivalGap is the longest time between two packets the session got
// between from and to (KeepFrames).
func maxArrivalGap(s *rtppeer.Session, from, to time.Time) time.Duration {
	gap, _ := arrivalGap(s, from, to)
	return gap
}

// arrivalGap is maxArrivalGap and when (after from) the gap began.
func arrivalGap(s *rtppeer.Session, from, to time.Time) (gap, at time.Duration) {
	var last time.Time
	for _, f := range s.Frames() {
		if f.At.Before(from) || f.At.After(to) {
			continue
		}
		if !last.IsZero() && f.At.Sub(last) > gap {
			gap, at = f.At.Sub(last), last.Sub(from)
		}
		last = f.At
	}
	return gap, at
}

// firstLoud is the arrival of the first frame at or above activeDBFS after
// from.
func firstLoud(s *rtppeer.Session, from time.Time) time.Time {
	for _, f := range s.Frames() {
		if !f.At.Before(from) && f.DBFS >= activeDBFS {
			return f.At
		}
	}
	return time.Time{}
}

type transferDoc struct {
	Kind      string `json:"kind"`
	By        string `json:"by"`
	Target    string `json:"target"`
	From      cdrLeg `json:"from"`
	To        cdrLeg `json:"to"`
	Connected bool   `json:"connected"`
	SIPCode   int    `json:"sip_code"`
	LatencyMS int64  `json:"latency_ms"`
	Joined    string `json:"joined_call_id"`
}

func cdrTransfers(t *testing.T, c cdrDoc) []transferDoc {
	t.Helper()
	var v struct {
		Transfers []transferDoc `json:"transfers"`
	}
	if err := json.Unmarshal(c.raw, &v); err != nil {
		t.Fatalf("CDR transfers: %v", err)
	}
	return v.Transfers
}

// TestTransferBlindUIC: the agent holds the WhatsApp caller (a=sendonly)
// and REFERs it to user 2001 of pbx2, as a phone's transfer key does. wagate answers 202, NOTIFYs 100, 180 and 200 in
// message/sipfrag, calls 2001, moves the caller's media to it and BYEs
// the first agent; the caller's 1 kHz reaches the new agent and the new
// agent's 1.5 kHz reaches the caller, with no SIP toward Meta. Measured:
// REFER to the new agent's first packet from wagate, and the silence the
// caller hears after the new agent's first packet.
func TestTransferBlindUIC(t *testing.T) {
	t.Parallel()
	c := startCtl(t, wagateOpts{})
	rc := c.call(t)
	mustHear(t, "the first agent hears the caller", rc.pbx.Media, 8000, 1000, 1200*time.Millisecond)

	// As phones do: hold first (the caller hears music on hold), then REFER.
	if ans := reinvite(t, rc.pbx, withDirection(t, rc.pbx.Local, "sendonly", "")); direction(ans) != "recvonly" {
		t.Errorf("hold answered a=%s, want recvonly", direction(ans))
	}
	rc.pbx.Media.SetSource(nil)

	ctx, cancel := context.WithTimeout(context.Background(), peerCallLimit)
	defer cancel()
	answered := answerAsync(ctx, c.pbx2, metapeer.AnswerSpec{Ring: 300 * time.Millisecond})
	referAt := time.Now()
	if code, warn := refer(t, rc.pbx.Dialog, c.target("2001")); code != 202 {
		t.Fatalf("REFER: %d (%s), want 202", code, warn)
	}
	nc := waitAnswer(t, answered, "the new agent (pbx2)")
	nc.Media.SetSource(newAgentTone())
	if got := nc.Dialog.Invite.Get("X-WABA-Session"); got == "" || nc.Dialog.Invite.Get("X-WABA-Direction") != "UIC" {
		t.Errorf("the new agent's INVITE lacks the X-WABA headers: session %q direction %q", got, nc.Dialog.Invite.Get("X-WABA-Direction"))
	}
	waitBye(t, rc.pbx, "the first agent")
	if n := waitNotifies(t, rc.pbx.Dialog); strings.Join(n, "|") != "SIP/2.0 100 Trying|SIP/2.0 180 Ringing|SIP/2.0 200 OK" {
		t.Errorf("NOTIFY sipfrags %q, want 100 Trying, 180 Ringing, 200 OK", n)
	}

	mustHear(t, "the new agent hears the caller", nc.Media, 8000, 1000, 1500*time.Millisecond)
	mustHear(t, "the caller hears the new agent", rc.meta.Media, 48000, newAgentHz, 1500*time.Millisecond)

	first := nc.Media.Stats().FirstRecv
	sent := nc.Media.Stats().FirstSent
	loud := firstLoud(rc.meta.Media, sent)
	gap := maxArrivalGap(rc.meta.Media, referAt, time.Now())
	t.Logf("transfer latency: REFER → new agent's first packet from wagate %v (its ring 300 ms included); new agent's first packet → the caller hears it %v; longest gap between packets toward WhatsApp during the transfer %v",
		first.Sub(referAt).Round(time.Millisecond), loud.Sub(sent).Round(time.Millisecond), gap.Round(time.Millisecond))
	if loud.IsZero() || loud.Sub(sent) > transferHearLimit {
		t.Errorf("the caller heard the new agent %v after its first packet, want under %v (target 100 ms)", loud.Sub(sent), transferHearLimit)
	}
	if !loud.IsZero() {
		checkStream(t, "during the transfer", rc.meta.Media, referAt, loud)
	}

	hangup(t, rc.meta, "the caller")
	waitBye(t, nc, "the new agent")
	checkNoSIPToMeta(t, c.meta, time.Now())
	c.w.waitIdle()

	cdr := cdrOfA(t, waitCDRs(t, c.e, 1), rc.meta.Dialog.CallID)
	xs := cdrTransfers(t, cdr)
	if cdr.B.Endpoint != "pbx2" || cdr.B.SIPCallID != nc.Dialog.CallID || len(xs) != 1 {
		t.Fatalf("CDR b %+v transfers %+v, want b = the new agent's leg and one transfer", cdr.B, xs)
	}
	x := xs[0]
	if x.Kind != "blind" || x.By != "pbx" || x.Target != "2001@pbx2" || !x.Connected || x.SIPCode != 200 ||
		x.From.SIPCallID != rc.pbx.Dialog.CallID || x.To.SIPCallID != nc.Dialog.CallID || x.To.Endpoint != "pbx2" {
		t.Errorf("CDR transfer %+v", x)
	}
}

// TestTransferFailedReturnsCaller: the target is busy (486): the agent's
// REFER ends with a NOTIFY "486", the caller is back with the agent (both
// hear each other again) and nothing was sent to Meta. Then the agent
// transfers again and hangs up at once; the target rejects; the caller
// goes to the number's fallback route (pbx2 user 2999).
func TestTransferFailedReturnsCaller(t *testing.T) {
	t.Parallel()
	c := startCtl(t, wagateOpts{NumberExtra: `, fallback: {endpoint: pbx2, user: "2999"}`})
	rc := c.call(t)

	ctx, cancel := context.WithTimeout(context.Background(), peerCallLimit)
	defer cancel()
	rejected := answerAsync(ctx, c.pbx2, metapeer.AnswerSpec{Reject: 486})
	if code, warn := refer(t, rc.pbx.Dialog, c.target("2001")); code != 202 {
		t.Fatalf("REFER: %d (%s), want 202", code, warn)
	}
	<-rejected
	if n := waitNotifies(t, rc.pbx.Dialog); len(n) == 0 || n[len(n)-1] != "SIP/2.0 486 Rejected" {
		t.Errorf("NOTIFY sipfrags %q, want the last to be the target's 486", n)
	}
	mustHear(t, "the caller is back with the agent", rc.meta.Media, 48000, 440, 1500*time.Millisecond)
	mustHear(t, "the agent hears the caller again", rc.pbx.Media, 8000, 1000, 1500*time.Millisecond)

	// Second try: the agent hangs up while the target rings, then the
	// target gives up.
	if code, warn := refer(t, rc.pbx.Dialog, c.target("2002")); code != 202 {
		t.Fatalf("second REFER: %d (%s), want 202", code, warn)
	}
	in, err := c.pbx2.UA.Accept(ctx)
	if err != nil {
		t.Fatalf("the second target got no INVITE: %v", err)
	}
	in.Ring()
	hangup(t, rc.pbx, "the first agent")
	in.Reject(480, "Temporarily Unavailable")
	fallback := waitAnswer(t, answerAsync(ctx, c.pbx2, metapeer.AnswerSpec{}), "the fallback route (2999@pbx2)")
	fallback.Media.SetSource(newAgentTone())
	if u := sipua.URIUser(fallback.Dialog.Invite.RURI); u != "2999" {
		t.Errorf("fallback INVITE to user %q, want 2999", u)
	}
	mustHear(t, "the caller hears the fallback agent", rc.meta.Media, 48000, newAgentHz, 1500*time.Millisecond)
	mustHear(t, "the fallback agent hears the caller", fallback.Media, 8000, 1000, 1500*time.Millisecond)

	checkNoSIPToMeta(t, c.meta, time.Now())
	hangup(t, fallback, "the fallback agent")
	waitBye(t, rc.meta, "the caller")
	c.w.waitIdle()
	cdr := cdrOfA(t, waitCDRs(t, c.e, 1), rc.meta.Dialog.CallID)
	var got []string
	for _, x := range cdrTransfers(t, cdr) {
		got = append(got, fmt.Sprintf("%s %s %d %v", x.Kind, x.Target, x.SIPCode, x.Connected))
	}
	want := "blind 2001@pbx2 486 false|blind 2002@pbx2 480 false|fallback 2999@pbx2 200 true"
	if strings.Join(got, "|") != want {
		t.Errorf("CDR transfers %q, want %q", got, want)
	}
}

// TestTransferRefused: REFERs that must not dial anything. A target the
// endpoint's transfer.allow does not list, a host that is no pbx
// endpoint, the transferring agent itself, and a REFER from the WhatsApp
// side get 403; a malformed Refer-To or Replaces, or none, gets 400. pbx2
// gets no INVITE, and the call goes on with audio both ways.
func TestTransferRefused(t *testing.T) {
	t.Parallel()
	c := startCtl(t, wagateOpts{})
	rc := c.call(t)
	self := fmt.Sprintf("<sip:%s@%s>", sipua.URIUser(rc.pbx.Dialog.LocalURI), c.e.PBX.Addr())
	for _, tc := range []struct {
		what, referTo string
		code          int
		warn          string
	}{
		{"user not allowed", c.target("3001"), 403, "may not transfer to 3001@pbx2"},
		{"host no pbx", "<sip:2001@198.51.100.7>", 403, "not a configured pbx"},
		{"Meta as target", fmt.Sprintf("<sip:2001@%s>", c.e.Meta.Addr()), 403, "not a configured pbx"},
		{"to itself", self, 403, "itself"},
		{"no Refer-To", "", 400, "no Refer-To"},
		{"tel URI", "<tel:+15550100999>", 400, "scheme"},
		{"bad user", "<sip:20%0d01@" + c.pbx2Addr.Addr() + ">", 400, "extension"},
		{"Replaces without tags", "<sip:x@" + c.e.WagateIP + "?Replaces=abc%3Bto-tag%3Dx>", 400, "to-tag and a from-tag"},
	} {
		code, warn := refer(t, rc.pbx.Dialog, tc.referTo)
		if code != tc.code || !strings.Contains(warn, tc.warn) {
			t.Errorf("%s: %d (Warning %q), want %d with a Warning saying %q", tc.what, code, warn, tc.code, tc.warn)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), peerCallLimit)
	defer cancel()
	res, err := rc.meta.Dialog.Request(ctx, "REFER", []sipua.Header{{Name: "Refer-To", Value: c.target("2001")}}, "", nil)
	if err != nil || res.Status != 403 {
		t.Errorf("REFER from the WhatsApp side: %v %v, want 403", res, err)
	}
	for _, te := range c.pbx2.UA.Trace() {
		if !te.Sent && te.Msg.Method == "INVITE" {
			t.Errorf("a refused REFER dialled pbx2: %s", te.Msg.RURI)
		}
	}
	mustHear(t, "the caller still hears the agent", rc.meta.Media, 48000, 440, time.Second)
	mustHear(t, "the agent still hears the caller", rc.pbx.Media, 8000, 1000, time.Second)
	hangup(t, rc.meta, "the caller")
	waitBye(t, rc.pbx, "the agent")
	checkNoSIPToMeta(t, c.meta, time.Now())
	c.w.waitIdle()
}

// TestTransferAttended: the agent has two WhatsApp callers through wagate
// (two UICs to extension 1001) and sends REFER on the first whose
// Refer-To carries Replaces naming its dialog of the second. wagate
// answers 202, NOTIFYs 200, hangs up both of the agent's legs and joins
// the two callers: each hears the other's tone, neither gets a SIP
// message, and when one hangs up the other gets BYE. Each CDR records the
// attended transfer and the call it was joined to.
func TestTransferAttended(t *testing.T) {
	t.Parallel()
	c := startCtl(t, wagateOpts{})
	rc1, m2, meta2, d2, referAt := c.attendedJoin(t)
	mustHear(t, "the first caller hears the second", rc1.meta.Media, 48000, 700, 1500*time.Millisecond)
	mustHear(t, "the second caller hears the first", m2.Media, 48000, 1000, 1500*time.Millisecond)
	checkStream(t, "toward the first caller during the join", rc1.meta.Media, referAt, time.Now())
	checkStream(t, "toward the second caller during the join", m2.Media, referAt, time.Now())
	checkNoSIPToMeta(t, c.meta, time.Now())
	checkNoSIPToMeta(t, meta2, time.Now())

	hangup(t, rc1.meta, "the first caller")
	waitBye(t, m2, "the second caller")
	c.w.waitIdle()
	cdrs := waitCDRs(t, c.e, 2)
	c1, c2 := cdrOfA(t, cdrs, rc1.meta.Dialog.CallID), cdrOfA(t, cdrs, m2.Dialog.CallID)
	for _, x := range []struct {
		what     string
		cdr      cdrDoc
		other    string
		agentLeg string
		hangupBy string
	}{{"first call", c1, c2.CallID, rc1.pbx.Dialog.CallID, "a"}, {"second call", c2, c1.CallID, d2.CallID, "wagate"}} {
		xs := cdrTransfers(t, x.cdr)
		if len(xs) != 1 || xs[0].Kind != "attended" || !xs[0].Connected || xs[0].Joined != x.other || xs[0].From.SIPCallID != x.agentLeg {
			t.Errorf("%s: CDR transfers %+v, want one attended transfer joined to %s from leg %s", x.what, xs, x.other, x.agentLeg)
		}
		if x.cdr.HangupBy != x.hangupBy {
			t.Errorf("%s: CDR hangup_by %q cause %q, want %q", x.what, x.cdr.HangupBy, x.cdr.Cause, x.hangupBy)
		}
	}
}

// replacesURI is a Refer-To at host whose Replaces names the dialog
// callID with the REFER's sender's tag fromTag and its peer's toTag.
func replacesURI(host, callID, toTag, fromTag string) string {
	replaces := fmt.Sprintf("%s;to-tag=%s;from-tag=%s", callID, toTag, fromTag)
	return fmt.Sprintf("<sip:1001@%s?Replaces=%s>", host, strings.NewReplacer("@", "%40", ";", "%3B", "=", "%3D").Replace(replaces))
}

// attendedJoin places two UICs to the agent (extension 1001), the second
// caller (meta2, on Meta's address) sending 700 Hz, and joins them with
// the agent's REFER with Replaces; it returns once the agent's two legs
// got their BYEs.
func (c *ctl) attendedJoin(t *testing.T) (rc1 recCall, m2 *metapeer.Call, meta2 *metapeer.Peer, d2 *sipua.Dialog, referAt time.Time) {
	t.Helper()
	const user2 = "+447700900124"
	meta2 = newGoPeer(t, peer{Name: "meta2", IP: c.e.Meta.IP, Port: freeUDPPort(t, c.e.Meta.IP)}, metapeer.Config{KeepFrames: true})
	rc1 = c.call(t)
	ctx, cancel := context.WithTimeout(context.Background(), peerCallLimit)
	defer cancel()
	answered := answerAsync(ctx, c.pbx, metapeer.AnswerSpec{})
	m2, err := meta2.Call(ctx, metapeer.CallSpec{Target: c.w.SIPAddr, To: businessNumber, From: user2})
	if err != nil {
		t.Fatalf("second UIC: %v", err)
	}
	p2 := waitAnswer(t, answered, "the agent (second call)")
	m2.Media.SetSource(rtppeer.NewTone(700, toneAmp, 48000))
	mustHear(t, "the agent hears the second caller", p2.Media, 8000, 700, time.Second)

	d2 = p2.Dialog
	referTo := replacesURI(c.e.WagateIP, d2.CallID, d2.RemoteTag, d2.LocalTag)
	referAt = time.Now()
	if code, warn := refer(t, rc1.pbx.Dialog, referTo); code != 202 {
		t.Fatalf("REFER with Replaces: %d (%s), want 202", code, warn)
	}
	if n := waitNotifies(t, rc1.pbx.Dialog); len(n) == 0 || n[len(n)-1] != "SIP/2.0 200 OK" {
		t.Errorf("NOTIFY sipfrags %q, want the last to be 200 OK", n)
	}
	waitBye(t, rc1.pbx, "the agent's first call")
	waitBye(t, p2, "the agent's second call")
	return rc1, m2, meta2, d2, referAt
}

// TestTransferAttendedSurvivesReload: two callers joined by an attended
// transfer stay a call wagate can end after a SIGHUP moves the WhatsApp
// endpoint to another address: the second caller's BYE from the old one
// is taken, and the first caller gets its BYE.
func TestTransferAttendedSurvivesReload(t *testing.T) {
	t.Parallel()
	c := startCtl(t, wagateOpts{})
	rc1, m2, _, _, _ := c.attendedJoin(t)
	c.e.rewriteConfig("source_cidrs: ["+c.e.Meta.IP+"/32]", "source_cidrs: ["+c.e.ip(30)+"/32]")
	skip := len(c.w.logLines())
	c.w.hup()
	c.w.waitLogMsg("config reloaded", skip)
	hangup(t, m2, "the second caller")
	waitBye(t, rc1.meta, "the first caller")
	c.w.waitIdle()
}

// TestTransferToHuntList: a REFER to sip:team@<wagate> rings the hunt
// list team: its first target is busy (486), the second answers; the
// caller then talks to it, the agent gets NOTIFY 200 and BYE, and the
// CDR's transfer names the list and the target that answered.
func TestTransferToHuntList(t *testing.T) {
	t.Parallel()
	c := startCtl(t, wagateOpts{})
	rc := c.call(t)
	if code, warn := refer(t, rc.pbx.Dialog, fmt.Sprintf("<sip:team@%s>", c.e.WagateIP)); code != 202 {
		t.Fatalf("REFER to the hunt list: %d (%s), want 202", code, warn)
	}
	ctx, cancel := context.WithTimeout(context.Background(), peerCallLimit)
	defer cancel()
	in, err := c.pbx2.UA.Accept(ctx)
	if err != nil {
		t.Fatalf("the hunt list's first target got no INVITE: %v", err)
	}
	if u := sipua.URIUser(in.Req.RURI); u != "2101" {
		t.Errorf("first INVITE to %q, want 2101", u)
	}
	in.Reject(486, "Busy Here")
	nc := waitAnswer(t, answerAsync(ctx, c.pbx2, metapeer.AnswerSpec{}), "the hunt list's second target")
	nc.Media.SetSource(newAgentTone())
	if u := sipua.URIUser(nc.Dialog.Invite.RURI); u != "2102" {
		t.Errorf("second INVITE to %q, want 2102", u)
	}
	waitBye(t, rc.pbx, "the first agent")
	if n := waitNotifies(t, rc.pbx.Dialog); n[len(n)-1] != "SIP/2.0 200 OK" {
		t.Errorf("NOTIFY sipfrags %q, want the last 200 OK", n)
	}
	mustHear(t, "the caller hears the hunt list's agent", rc.meta.Media, 48000, newAgentHz, 1500*time.Millisecond)
	mustHear(t, "the hunt list's agent hears the caller", nc.Media, 8000, 1000, 1500*time.Millisecond)
	checkNoSIPToMeta(t, c.meta, time.Now())
	hangup(t, rc.meta, "the caller")
	waitBye(t, nc, "the hunt list's agent")
	c.w.waitIdle()
	var v struct {
		B         cdrLeg `json:"b"`
		Transfers []struct {
			Hunt, Target string
			Connected    bool
		} `json:"transfers"`
	}
	cdr := cdrOfA(t, waitCDRs(t, c.e, 1), rc.meta.Dialog.CallID)
	if err := json.Unmarshal(cdr.raw, &v); err != nil {
		t.Fatal(err)
	}
	if len(v.Transfers) != 1 || v.Transfers[0].Hunt != "team" || v.Transfers[0].Target != "2102@pbx2" || !v.Transfers[0].Connected || v.B.SIPCallID != nc.Dialog.CallID {
		t.Errorf("CDR b %+v transfers %+v, want one connected transfer to hunt team answered by 2102@pbx2", v.B, v.Transfers)
	}
}
