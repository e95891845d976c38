package test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/wagate/wagate/test/internal/metapeer"
	"github.com/wagate/wagate/test/internal/sipua"
)

// Call detail records end to end: every way a call can end leaves exactly
// one CDR with the right fields, read back through GET /v1/cdrs, and the
// subscriber's call.ended or call.refused event carries the same record
// (docs/events.md). Each test runs its calls one after the other against
// its own wagate, whose events go to a receiver on the test's /24.

// ringArgs make uas.xml ring 200 ms before answering: wagate's SIP stack
// handles responses concurrently, so a 200 right behind the 180 can
// overtake it, and the call then never rang as far as wagate knows.
var ringArgs = []string{"-d", "200"}

// TestCDRUIC: user-initiated calls answered (BYE from the caller),
// cancelled while ringing, refused by a busy agent, to an unknown number
// (404, refused by wagate) and ended by the media timeout (SIPp sends no
// RTP; media.rtp_start_timeout 2s).
func TestCDRUIC(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rx := newReceiver(t, e)
	w := e.startWagate(wagateOpts{APIExtra: tokenAPI, Extra: eventsYAML(rx), RTPStartTimeout: "2s", RTPTimeout: "2s"})

	type flow struct {
		name       string
		pbx, meta  string // scenarios
		metaArgs   []string
		pbxArgs    []string
		want       cdrWant
		event      string
		bLegCallID bool // the PBX got an INVITE
	}
	answered := cdrWant{direction: "UIC", outcome: "answered", code: 200, hangupBy: "a", cause: "bye",
		routed: true, user: waUser, aEndpoint: "meta", bEndpoint: "pbx", ringing: true, answered: true}
	cancelled := cdrWant{direction: "UIC", outcome: "cancelled", code: 487, hangupBy: "a", cause: "cancelled by a",
		routed: true, user: waUser, aEndpoint: "meta", bEndpoint: "pbx", ringing: true}
	busy := cdrWant{direction: "UIC", outcome: "busy", code: 486, hangupBy: "b", cause: "b-leg 486",
		routed: true, user: waUser, aEndpoint: "meta", bEndpoint: "pbx"}
	unknown := cdrWant{direction: "UIC", outcome: "refused", code: 404, hangupBy: "wagate", cause: "business number not configured",
		aEndpoint: "meta"}
	timeout := cdrWant{direction: "UIC", outcome: "answered", code: 200, hangupBy: "wagate", cause: "rtp timeout",
		routed: true, user: waUser, aEndpoint: "meta", bEndpoint: "pbx", ringing: true, answered: true}
	flows := []flow{
		{name: "answered", pbx: "uas.xml", pbxArgs: ringArgs, meta: "uac.xml", metaArgs: callArgs(businessNumber, waUser, "-d", "700"),
			want: answered, event: "call.ended", bLegCallID: true},
		{name: "cancel", pbx: "uas_ring.xml", meta: "uac_cancel.xml", metaArgs: callArgs(businessNumber, waUser),
			want: cancelled, event: "call.ended", bLegCallID: true},
		{name: "busy", pbx: "uas_486.xml", meta: "uac_expect.xml", metaArgs: expectArgs(businessNumber, waUser, "486"),
			want: busy, event: "call.ended", bLegCallID: true},
		{name: "unknown_number", meta: "uac_expect.xml", metaArgs: expectArgs("+15550100999", waUser, "404"),
			want: unknown, event: "call.refused"},
		{name: "media_timeout", pbx: "uas.xml", pbxArgs: ringArgs, meta: "uac_wait_bye.xml", metaArgs: callArgs(businessNumber, waUser),
			want: timeout, event: "call.ended", bLegCallID: true},
	}
	type placed struct {
		f           flow
		aID, bID    string
		wacid       string
		start, done time.Time
	}
	var calls []placed
	for _, f := range flows {
		var pbx *sippProc
		if f.pbx != "" {
			pbx = e.startSipp(sippSpec{Name: "pbx_" + f.name, Scenario: f.pbx, Peer: e.PBX, Calls: 1, Args: f.pbxArgs})
		}
		start := time.Now()
		meta := e.runSipp(sippSpec{Name: "meta_" + f.name, Scenario: f.meta, Peer: e.Meta, Remote: w.SIPAddr, Calls: 1, Args: f.metaArgs})
		p := placed{f: f, aID: sippCallID(t, meta), start: start, done: time.Now()}
		if pbx != nil {
			pbx.requireOK()
			if inv, ok := findMsg(pbx.messages(), false, "INVITE "); ok {
				p.bID, p.wacid = inv.Header("Call-ID"), inv.Header("X-WABA-Call-ID")
			}
		}
		calls = append(calls, p)
		w.waitIdle()
	}

	cdrs := waitCDRs(t, e, len(flows))
	evs := waitEnded(t, rx, cdrs)
	for _, p := range calls {
		c := cdrOfA(t, cdrs, p.aID)
		checkCDR(t, p.f.name, c, p.f.want)
		checkEndEvent(t, p.f.name, evs, c, p.f.event)
		if c.CreatedAt.Before(p.start.Add(-time.Second)) || c.EndedAt.After(p.done.Add(time.Second)) {
			t.Errorf("%s: CDR times %v–%v outside the call's %v–%v", p.f.name, c.CreatedAt, c.EndedAt, p.start, p.done)
		}
		if p.f.bLegCallID {
			if p.bID == "" || c.B.SIPCallID != p.bID {
				t.Errorf("%s: b.sip_call_id %q, want the PBX's INVITE Call-ID %q", p.f.name, c.B.SIPCallID, p.bID)
			}
			if p.wacid == "" || c.WACallID != p.wacid {
				t.Errorf("%s: wa_call_id %q, want the X-WABA-Call-ID the PBX got %q", p.f.name, c.WACallID, p.wacid)
			}
			// A codec is agreed only by an answer; SIPp offers PCMU.
			codec := ""
			if p.f.want.answered {
				codec = "PCMU"
			}
			if c.A.Codec != codec || c.A.Encryption != "none" || c.B.Codec != codec || c.B.Encryption != "none" {
				t.Errorf("%s: legs %+v %+v, want codec %q, no encryption on both", p.f.name, c.A, c.B, codec)
			}
		} else if c.B.SIPCallID != "" || c.WACallID != "" {
			t.Errorf("%s: b.sip_call_id %q wa_call_id %q for a call refused before routing", p.f.name, c.B.SIPCallID, c.WACallID)
		}
		if p.f.name == "media_timeout" && c.TalkMS < 1900 {
			t.Errorf("media_timeout: talk_ms %d, want ≥ the 2 s rtp_start_timeout", c.TalkMS)
		}
		if p.f.event == "call.ended" {
			want := []string{"call.started", "call.ringing", "call.answered", "call.ended"}
			switch p.f.name {
			case "cancel":
				want = []string{"call.started", "call.ringing", "call.ended"}
			case "busy":
				want = []string{"call.started", "call.ended"}
			}
			if got := types(ofCall(evs, c.CallID)); strings.Join(got, " ") != strings.Join(want, " ") {
				t.Errorf("%s: events %v, want %v", p.f.name, got, want)
			}
		}
	}
	checkCallOrder(t, rx.all())
	rx.checkSigned(t)

	// One bad filter each, named in the 400 (the api tests cover the rest).
	for q, param := range map[string]string{"from=yesterday": "from", "direction=sideways": "direction", "limit=0": "limit", "colour=blue": "colour"} {
		res, body := apiDo(t, e, http.MethodGet, "/v1/cdrs?"+q, "")
		var doc struct{ Error string }
		if res.StatusCode != http.StatusBadRequest || json.Unmarshal(body, &doc) != nil || !strings.Contains(doc.Error, param) {
			t.Errorf("GET /v1/cdrs?%s: %s %s, want 400 with an error naming %s", q, res.Status, body, param)
		}
	}
	res, body := apiGet(t, e, "/v1/cdrs", "")
	if res.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET /v1/cdrs without the token: %s %s, want 401", res.Status, body)
	}
	res, body = apiDo(t, e, http.MethodGet, "/v1/cdrs?direction=UIC&outcome=busy", "")
	var page struct{ CDRs []cdrDoc }
	if res.StatusCode != http.StatusOK || json.Unmarshal(body, &page) != nil || len(page.CDRs) != 1 || page.CDRs[0].SIPCode != 486 {
		t.Errorf("GET /v1/cdrs?direction=UIC&outcome=busy: %s %s, want the busy call alone", res.Status, body)
	}
}

// TestCDRBIC: business-initiated calls with permissions on: answered (with
// campaign and callback data), busy at Meta, and refused by wagate for
// each reason a dialer can meet — no permission (403, 138006), the user
// already in a call (486, 138003), the number's concurrency cap (503,
// 138002, at 1 call here), a callee that is not E.164 (484) and a
// malformed X-WABA header (400).
func TestCDRBIC(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rx := newReceiver(t, e)
	o := permOpts(e, "concurrent_calls_per_number: 1")
	o.Extra += "\n" + eventsYAML(rx)
	w := e.startWagate(o)
	const user2, user3 = "+447700900124", "+447700900125"
	grantPermission(t, e, waUser, "permanent")
	grantPermission(t, e, user2, "temporary")
	dialer2 := e.newPeer("dialer2", 4) // a second dialer socket on the dialer's address

	bic := func(user string) cdrWant {
		return cdrWant{direction: "BIC", routed: true, user: user, aEndpoint: "dialer", bEndpoint: "meta",
			campaign: "spring-2026", callback: "crm:4711"}
	}
	refusedBy := func(w cdrWant, code, metaErr int, verdict string) cdrWant {
		w.outcome, w.code, w.hangupBy, w.wabaError, w.permission = "refused", code, "wagate", metaErr, verdict
		w.campaign = "" // bic_dialer_expect.xml sends no campaign
		return w
	}
	type check struct {
		name, aID, event string
		want             cdrWant
	}
	var checks []check

	// A call up for 2.5 s; meanwhile the same user is busy and the number
	// at its concurrency cap.
	meta := e.startSipp(sippSpec{Name: "meta", Scenario: "uas.xml", Peer: e.Meta, Calls: 1, Args: ringArgs})
	held := e.startSipp(sippSpec{Name: "dialer_held", Scenario: "bic_dialer.xml", Peer: e.Dialer, Remote: w.SIPAddr, Calls: 1,
		Args: bicArgs(waUser, phoneNumberID, businessNumber, "-d", "2500")})
	rx.waitUntil(t, "call.answered of the held call", func(evs []rxEvent) bool { return len(ofType(evs, "call.answered")) == 1 })
	rejected := func(name string, p peer, user, pnid, code string) string {
		d := e.runSipp(sippSpec{Name: name, Scenario: "bic_dialer_expect.xml", Peer: p, Remote: w.SIPAddr, Calls: 1,
			Args: append(bicArgs(user, pnid, businessNumber), "-key", "expect_code", code)})
		return sippCallID(t, d)
	}
	checks = append(checks,
		check{"user busy", rejected("dialer_busy", dialer2, waUser, phoneNumberID, "486"), "call.refused",
			refusedBy(bic(waUser), 486, 138003, "user_busy")},
		check{"concurrency cap", rejected("dialer_cap", dialer2, user2, phoneNumberID, "503"), "call.refused",
			refusedBy(bic(user2), 503, 138002, "concurrency_limit")})
	held.requireOK()
	meta.requireOK()
	answered := bic(waUser)
	answered.outcome, answered.code, answered.hangupBy, answered.cause, answered.permission = "answered", 200, "a", "bye", "allowed"
	answered.ringing, answered.answered = true, true
	checks = append(checks, check{"answered", sippCallID(t, held), "call.ended", answered})
	w.waitIdle()

	checks = append(checks,
		check{"no permission", rejected("dialer_noperm", e.Dialer, user3, phoneNumberID, "403"), "call.refused",
			refusedBy(bic(user3), 403, 138006, "no_permission")})
	// Refused before routing: no numbers, no permission verdict.
	pre := cdrWant{direction: "BIC", outcome: "refused", hangupBy: "wagate", aEndpoint: "dialer"}
	bad := pre
	bad.code, bad.cause = 484, "callee is neither an E.164 number nor a BSUID"
	checks = append(checks, check{"callee not E.164", rejected("dialer_484", e.Dialer, "12345", phoneNumberID, "484"), "call.refused", bad})
	bad = pre
	bad.code, bad.cause = 400, "malformed X-WABA-Phone-Number-ID"
	checks = append(checks, check{"malformed header", rejected("dialer_400", e.Dialer, waUser, "10000000000000x", "400"), "call.refused", bad})

	// Meta's user is busy: the call was placed (allowed) and failed.
	metaBusy := e.startSipp(sippSpec{Name: "meta_busy", Scenario: "uas_486.xml", Peer: e.Meta, Calls: 1})
	busy := bic(waUser)
	busy.campaign = ""
	busy.outcome, busy.code, busy.hangupBy, busy.cause, busy.permission = "busy", 486, "b", "b-leg 486", "allowed"
	checks = append(checks, check{"busy at meta", rejected("dialer_metabusy", e.Dialer, waUser, phoneNumberID, "486"), "call.ended", busy})
	metaBusy.requireOK()
	w.waitIdle()

	cdrs := waitCDRs(t, e, len(checks))
	evs := waitEnded(t, rx, cdrs)
	for _, ck := range checks {
		c := cdrOfA(t, cdrs, ck.aID)
		checkCDR(t, ck.name, c, ck.want)
		checkEndEvent(t, ck.name, evs, c, ck.event)
	}
	checkCallOrder(t, rx.all())
	rx.checkSigned(t)
}

// TestCDRDrain: SIGTERM with a call up and -drain-timeout 3s: an INVITE
// during the drain is refused (503), the call is hung up when the drain
// ends, and after a restart on the same data directory both CDRs are
// there and their events are delivered (the sink wrote them on the way
// out; delivering what was pending resumes at start-up).
func TestCDRDrain(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rx := newReceiver(t, e)
	o := wagateOpts{APIExtra: tokenAPI, Extra: eventsYAML(rx), Args: []string{"-drain-timeout", "3s"}}
	w := e.startWagate(o)

	pbx := e.startSipp(sippSpec{Name: "pbx", Scenario: "uas.xml", Peer: e.PBX, Calls: 1, Args: ringArgs})
	meta := e.startSipp(sippSpec{Name: "meta", Scenario: "uac_wait_bye.xml", Peer: e.Meta, Remote: w.SIPAddr, Calls: 1,
		Args: callArgs(businessNumber, waUser)})
	rx.waitUntil(t, "call.answered", func(evs []rxEvent) bool { return len(ofType(evs, "call.answered")) == 1 })

	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		w.terminate()
	}()
	// While draining: a new call is refused. It is placed once wagate
	// has taken the signal (it stops admitting, then logs "draining"),
	// not after a fixed wait a loaded machine may outrun.
	meta2 := e.newPeer("meta2", 2)
	w.waitLogMsg("draining", 0)
	late := e.runSipp(sippSpec{Name: "meta_late", Scenario: "uac_expect.xml", Peer: meta2, Remote: w.SIPAddr, Calls: 1,
		Args: expectArgs(businessNumber, waUser, "503")})
	meta.requireOK() // BYE from wagate when the drain ended
	pbx.requireOK()
	<-stopped

	e.startWagate(o) // the same data directory: the events database is kept
	cdrs := waitCDRs(t, e, 2)
	c := cdrOfA(t, cdrs, sippCallID(t, meta))
	checkCDR(t, "drained call", c, cdrWant{direction: "UIC", outcome: "answered", code: 200, hangupBy: "wagate", cause: "shutdown",
		routed: true, user: waUser, aEndpoint: "meta", bEndpoint: "pbx", ringing: true, answered: true})
	if c.TalkMS < 2500 {
		t.Errorf("talk_ms %d: the call was hung up before the 3 s drain timeout", c.TalkMS)
	}
	r := cdrOfA(t, cdrs, sippCallID(t, late))
	checkCDR(t, "INVITE while draining", r, cdrWant{direction: "UIC", outcome: "refused", code: 503, hangupBy: "wagate", cause: "draining",
		aEndpoint: "meta"})
	evs := waitEnded(t, rx, cdrs)
	checkEndEvent(t, "drained call", evs, c, "call.ended")
	checkEndEvent(t, "INVITE while draining", evs, r, "call.refused")
	checkCallOrder(t, rx.all())
	rx.checkSigned(t)
}

// TestCDRMediaAndRecording: a UIC between the Go Meta peer (Opus over
// SDES-SRTP) and the Go PBX (PCMU), tones both ways, recorded: the CDR
// counts packets and bytes both ways and names each leg's codec and
// encryption; recording.ready names the CDR's recording and arrives
// after call.ended.
func TestCDRMediaAndRecording(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rx := newReceiver(t, e)
	dir := t.TempDir()
	o := recOpts(dir)
	o.APIExtra = tokenAPI
	o.Extra += eventsYAML(rx)
	w := e.startWagate(o)
	meta, pbx := newMetaPBX(t, e)

	ctx, cancel := context.WithTimeout(context.Background(), peerCallLimit)
	defer cancel()
	answered := answerAsync(ctx, pbx, metapeer.AnswerSpec{Ring: 300 * time.Millisecond})
	mc, err := meta.Call(ctx, metapeer.CallSpec{Target: w.SIPAddr, To: businessNumber, From: waUser})
	if err != nil {
		t.Fatalf("UIC: %v", err)
	}
	pc := waitAnswer(t, answered, "the PBX")
	// 1.5 s each way counted in packets, and its tail waited for: the
	// packet counts below are of what was sent, not of what a loaded
	// machine let the senders send in 1.5 s of wall time.
	playFor(t, 1500*time.Millisecond, play{mc.Media, metaTone()}, play{pc.Media, pbxTone()})
	hangup(t, mc, "meta")
	waitBye(t, pc, "the PBX")
	w.waitIdle()

	cdrs := waitCDRs(t, e, 1)
	c := cdrOfA(t, cdrs, mc.Dialog.CallID)
	checkCDR(t, "media call", c, cdrWant{direction: "UIC", outcome: "answered", code: 200, hangupBy: "a", cause: "bye",
		routed: true, user: waUser, aEndpoint: "meta", bEndpoint: "pbx", ringing: true, answered: true})
	if c.RingMS < 250 {
		t.Errorf("ring_ms %d, want about the PBX's 300 ms of ringing", c.RingMS)
	}
	if c.A.Codec != "opus" || c.A.Encryption != "sdes" || c.B.Codec != "PCMU" || c.B.Encryption != "none" {
		t.Errorf("legs a=%+v b=%+v, want opus/sdes toward WhatsApp and PCMU/none toward the PBX", c.A, c.B)
	}
	for name, d := range map[string]cdrMediaDir{"a_to_b": c.Media.AtoB, "b_to_a": c.Media.BtoA} {
		// 1.5 s of 20 ms packets is 75; allow for the start and the end.
		if d.Packets < 50 || d.Bytes < d.Packets*12 || d.SRTPAuthFailures != 0 {
			t.Errorf("media.%s %+v: want ≥ 50 packets of ≥ 12 bytes, no SRTP failures", name, d)
		}
	}
	if !strings.HasPrefix(c.WACallID, "wacid.") {
		t.Errorf("wa_call_id %q, want Meta's x-wa-meta-wacid", c.WACallID)
	}
	if c.RecordingID == "" {
		t.Fatalf("no recording_id in the CDR of a recorded call: %s", c.raw)
	}

	evs := rx.waitUntil(t, "recording.ready", func(evs []rxEvent) bool { return len(ofType(evs, "recording.ready")) == 1 })
	checkEndEvent(t, "media call", evs, c, "call.ended")
	got := types(ofCall(evs, c.CallID))
	if want := "call.started call.ringing call.answered call.ended recording.ready"; strings.Join(got, " ") != want {
		t.Errorf("events of the call: %v, want %s", got, want)
	}
	ev := ofType(evs, "recording.ready")[0]
	var rec struct {
		RecordingID string    `json:"recording_id"`
		CallID      string    `json:"call_id"`
		SIPCallID   string    `json:"sip_call_id"`
		File        string    `json:"file"`
		Bytes       int64     `json:"bytes"`
		DurationMS  int64     `json:"duration_ms"`
		StartedAt   time.Time `json:"started_at"`
		EndedAt     time.Time `json:"ended_at"`
		Error       string    `json:"error"`
	}
	if err := json.Unmarshal(ev.Data, &rec); err != nil {
		t.Fatal(err)
	}
	if ev.CallID != c.CallID || rec.CallID != c.CallID || rec.RecordingID != c.RecordingID || rec.SIPCallID != c.A.SIPCallID || rec.Error != "" {
		t.Errorf("recording.ready %s does not name the CDR's call %s, recording %s and A Call-ID", ev.Data, c.CallID, c.RecordingID)
	}
	wav, err := readRecWAV(dir + "/" + rec.File)
	if err != nil {
		t.Fatalf("recording.ready file %q: %v", rec.File, err)
	}
	if rec.Bytes != wav.Size || rec.DurationMS < c.TalkMS-300 || rec.DurationMS > c.TalkMS+300 {
		t.Errorf("recording.ready bytes %d duration_ms %d, want the file's %d bytes and about talk_ms %d", rec.Bytes, rec.DurationMS, wav.Size, c.TalkMS)
	}
	if rec.StartedAt.Before(c.AnsweredAt.Add(-time.Second)) || rec.EndedAt.Before(rec.StartedAt.Add(-wallClockStep())) || rec.EndedAt.After(c.EndedAt.Add(time.Second)) {
		t.Errorf("recording times %v–%v, call answered %v ended %v", rec.StartedAt, rec.EndedAt, c.AnsweredAt, c.EndedAt)
	}
	checkCallOrder(t, rx.all())
	rx.checkSigned(t)
}

// TestCDRAfterKill9: a recorded business-initiated call (campaign and
// callback data from the dialer) is up when wagate is killed with SIGKILL.
// After the restart its one CDR — written from the journal of live
// dialogs, ended by the restart — still carries what a dialer or CRM
// matches it by: the campaign and callback data, the callee, when it rang,
// and the recording, the same one the repaired recording's
// recording.ready names.
func TestCDRAfterKill9(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rx := newReceiver(t, e)
	dir := t.TempDir()
	o := wagateOpts{MetaEncryption: "sdes", APIExtra: tokenAPI,
		Extra: fmt.Sprintf("recording: {enabled: true, directory: %q}\n", dir) + eventsYAML(rx)}
	w := e.startWagate(o)

	meta := newGoPeer(t, e.Meta, metapeer.Config{})
	dialer := newGoPeer(t, e.Dialer, metapeer.Config{Profile: metapeer.ProfileG711})
	ctx, cancel := context.WithTimeout(context.Background(), peerCallLimit)
	defer cancel()
	answered := answerAsync(ctx, meta, metapeer.AnswerSpec{Ring: 300 * time.Millisecond})
	dc, err := dialer.Call(ctx, metapeer.CallSpec{Target: w.SIPAddr, To: waUser, From: businessNumber,
		Headers: []sipua.Header{{Name: "X-WABA-Campaign-ID", Value: "spring-2026"}, {Name: "X-WABA-Callback-Data", Value: "crm:4711"}}})
	if err != nil {
		t.Fatalf("BIC: %v", err)
	}
	mc := waitAnswer(t, answered, "the Meta peer")
	w.waitLogMsg("recording", 0)
	rx.waitUntil(t, "call.answered", func(evs []rxEvent) bool { return len(ofType(evs, "call.answered")) == 1 })
	time.Sleep(1500 * time.Millisecond) // a second of audio in the file
	w.kill()

	e.startWagate(o)
	// Both peers get the restarted wagate's BYE.
	waitBye(t, dc, "the dialer")
	waitBye(t, mc, "the Meta peer")
	cdrs := waitCDRs(t, e, 1)
	c := cdrOfA(t, cdrs, dc.Dialog.CallID)
	want := cdrWant{direction: "BIC", outcome: "answered", code: 200, hangupBy: "wagate", cause: "wagate restarted while the call was up",
		routed: true, user: waUser, aEndpoint: "dialer", bEndpoint: "meta", campaign: "spring-2026", callback: "crm:4711",
		ringing: true, answered: true}
	checkCDR(t, "call up at the kill", c, want)
	var b struct {
		B struct {
			User string `json:"user"`
		} `json:"b"`
	}
	if json.Unmarshal(c.raw, &b); b.B.User != waUser {
		t.Errorf("b.user %q, want the WhatsApp user %s\nCDR: %s", b.B.User, waUser, c.raw)
	}
	if c.RecordingID == "" {
		t.Errorf("no recording_id in the CDR of a recorded call that a crash ended: %s", c.raw)
	}
	evs := rx.waitUntil(t, "call.ended and recording.ready", func(evs []rxEvent) bool {
		return len(ofType(evs, "call.ended")) >= 1 && len(ofType(evs, "recording.ready")) >= 1
	})
	checkEndEvent(t, "call up at the kill", evs, c, "call.ended")
	var rec struct {
		RecordingID string `json:"recording_id"`
		Error       string `json:"error"`
	}
	if ready := ofType(evs, "recording.ready"); len(ready) != 1 || json.Unmarshal(ready[0].Data, &rec) != nil ||
		rec.RecordingID != c.RecordingID || rec.Error == "" {
		t.Errorf("recording.ready %s: want one, naming the CDR's recording %q, with the repair's error", ready[0].Data, c.RecordingID)
	}
	rx.checkSigned(t)
}

// TestCDRAfterKill9WhileRinging: wagate is killed with SIGKILL while a
// UIC rings at the PBX. Its subscriber had call.started and call.ringing:
// after the restart the call gets its CDR and call.ended (outcome failed,
// ended by the restart), so no CRM is left with a call that never ends.
func TestCDRAfterKill9WhileRinging(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rx := newReceiver(t, e)
	o := wagateOpts{MetaEncryption: "sdes", APIExtra: tokenAPI, Extra: eventsYAML(rx)}
	w := e.startWagate(o)
	meta, pbx := newMetaPBX(t, e)
	ctx, cancel := context.WithTimeout(context.Background(), peerCallLimit)
	defer cancel()
	// The PBX rings far longer than the test; the caller's call is left
	// to its context when wagate dies.
	answerAsync(ctx, pbx, metapeer.AnswerSpec{Ring: time.Minute})
	callerDone := make(chan struct{})
	go func() {
		defer close(callerDone)
		c, err := meta.Call(ctx, metapeer.CallSpec{Target: w.SIPAddr, To: businessNumber, From: waUser})
		if err == nil {
			c.Media.Close()
		}
	}()
	evs := rx.waitUntil(t, "call.ringing", func(evs []rxEvent) bool { return len(ofType(evs, "call.ringing")) == 1 })
	callID := ofType(evs, "call.ringing")[0].CallID
	w.kill()

	e.startWagate(o)
	cdrs := waitCDRs(t, e, 1)
	c := cdrs[0]
	if c.CallID != callID || c.Outcome != "failed" || c.HangupBy != "wagate" || c.Cause != "wagate restarted while the call was ringing" ||
		!c.AnsweredAt.IsZero() || c.RingingAt.IsZero() || c.BusinessNumber != businessNumber || c.User != waUser ||
		c.A.Endpoint != "meta" || c.B.Endpoint != "pbx" {
		t.Errorf("CDR of the call ringing at the kill: want call %s, outcome failed, hangup_by wagate, the restart's cause, rung and not answered, its numbers and endpoints:\n%s", callID, c.raw)
	}
	evs = rx.waitUntil(t, "call.ended", func(evs []rxEvent) bool { return len(ofType(evs, "call.ended")) == 1 })
	checkEndEvent(t, "call ringing at the kill", evs, c, "call.ended")
	checkCallOrder(t, rx.all())
	rx.checkSigned(t)
	cancel()
	<-callerDone
}
