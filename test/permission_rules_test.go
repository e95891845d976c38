package test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The permission rules issue 10 found wrong or missing, each through the
// real binary (one node, the embedded store).

// ruleOpts are permOpts with Meta's webhook on.
func ruleOpts(e *env, limits string) wagateOpts {
	o := permOpts(e, limits)
	o.APIExtra += fmt.Sprintf(", webhook: {app_secret: {value: %q}, verify_token: {value: verify}}", webhookSecret)
	return o
}

// metaRefuses runs Meta answering the next calls with code and reason, and
// the dialer's calls, each expecting a non-2xx final.
func metaRefuses(t *testing.T, e *env, w *wagate, name, user, code, reason string, calls int) {
	t.Helper()
	tmpl, err := os.ReadFile(filepath.Join(sippDir, "bic_meta_code.xml.tmpl"))
	if err != nil {
		t.Fatal(err)
	}
	scenario := filepath.Join(e.dir, "bic_meta_"+name+".xml")
	if err := os.WriteFile(scenario, []byte(strings.Replace(string(tmpl), "SIP/2.0 CODE REASON", "SIP/2.0 "+code+" "+reason, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	meta := e.startSipp(sippSpec{Name: "meta_" + name, Scenario: scenario, Peer: e.Meta, Calls: calls})
	e.runSipp(sippSpec{Name: "dialer_" + name, Scenario: "bic_dialer_expect.xml", Peer: e.Dialer, Remote: w.SIPAddr, Calls: calls,
		Args: append(bicArgs(user, phoneNumberID, businessNumber), "-key", "expect_code", "any", "-l", "1", "-r", "5")})
	meta.requireOK()
}

// metaAnswers runs one call that Meta answers.
func metaAnswers(t *testing.T, e *env, w *wagate, name, user string) *sippProc {
	t.Helper()
	meta := e.startSipp(sippSpec{Name: "meta_" + name, Scenario: "uas.xml", Peer: e.Meta, Calls: 1})
	e.runSipp(sippSpec{Name: "dialer_" + name, Scenario: "bic_dialer.xml", Peer: e.Dialer, Remote: w.SIPAddr, Calls: 1,
		Args: bicArgs(user, phoneNumberID, businessNumber, "-d", "100")})
	meta.requireOK()
	return meta
}

// requestPermission POSTs …/requests and returns the code and its answer.
func requestPermission(t *testing.T, e *env, user string) (int, struct {
	Allowed   bool `json:"allowed"`
	ErrorCode int  `json:"error_code"`
}, http.Header) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.apiBase()+"/v1/permissions/"+phoneNumberID+"/"+user+"/requests", nil)
	req.Header.Set("Authorization", "Bearer "+apiToken)
	res, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var doc struct {
		Allowed   bool `json:"allowed"`
		ErrorCode int  `json:"error_code"`
	}
	_ = json.NewDecoder(res.Body).Decode(&doc)
	return res.StatusCode, doc, res.Header
}

// TestRuleUICResetsRequests (rule 1): an answered user-initiated call
// resets the permission-request limits, as Meta does.
func TestRuleUICResetsRequests(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := e.startWagate(ruleOpts(e, ""))
	if code, _, _ := requestPermission(t, e, waUser); code != 200 {
		t.Fatalf("first request: %d", code)
	}
	if code, doc, _ := requestPermission(t, e, waUser); code != 429 || doc.ErrorCode != 138009 {
		t.Fatalf("second request: %d %+v", code, doc)
	}
	pbx := e.startSipp(sippSpec{Name: "pbx", Scenario: "uas.xml", Peer: e.PBX, Calls: 1})
	e.runSipp(sippSpec{Name: "meta_uic", Scenario: "uac.xml", Peer: e.Meta, Remote: w.SIPAddr, Calls: 1,
		Args: callArgs(businessNumber, waUser, "-d", "200")})
	pbx.requireOK()
	w.waitIdle()
	deadline := time.Now().Add(3 * time.Second)
	for {
		if p, ok := getPermission(t, e.apiBase(), waUser); ok && p.Requests24h == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the answered user-initiated call did not reset the request counters")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code, _, _ := requestPermission(t, e, waUser); code != 200 {
		t.Errorf("request after an answered UIC: %d, want 200", code)
	}
}

// TestRule408NotUnanswered (rule 2): Meta's 408 (an RTP timeout) is not
// the user's doing and does not count toward revocation; 480 does. With
// the revocation at 2, three 408s leave the permission, two 480s revoke it.
func TestRule408NotUnanswered(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := e.startWagate(ruleOpts(e, "consecutive_unanswered_max: 2, consecutive_unanswered_nudge: 1"))
	grantPermission(t, e, waUser, "temporary")
	metaRefuses(t, e, w, "408", waUser, "408", "Request Timeout", 3)
	if p, _ := getPermission(t, e.apiBase(), waUser); p.Status != "temporary" || p.UnansweredStreak != 0 {
		t.Fatalf("after three 408s: %+v", p)
	}
	metaAnswers(t, e, w, "after408", waUser)
	metaRefuses(t, e, w, "480", waUser, "480", "Temporarily Unavailable", 2)
	silent := listenUDP(t, e.Meta.Addr())
	res := expectDialerRejected(t, e, w, "revoked", "403")
	checkRejection(t, res, "403", "No Approved Call Permission Found", "", "138006")
	silent.expectSilence(t, "the Meta peer", 300*time.Millisecond)
}

// TestRuleMeta403Learned (rule 3): Meta's own 403 No Approved Call
// Permission Found is relayed and learned: the pair loses its permission
// here, so the next call is refused without reaching Meta; the status says
// so.
func TestRuleMeta403Learned(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := e.startWagate(ruleOpts(e, ""))
	grantPermission(t, e, waUser, "permanent")
	metaRefuses(t, e, w, "403", waUser, "403", "No Approved Call Permission Found", 1)
	silent := listenUDP(t, e.Meta.Addr())
	res := expectDialerRejected(t, e, w, "learned", "403")
	checkRejection(t, res, "403", "No Approved Call Permission Found", "", "138006")
	silent.expectSilence(t, "the Meta peer", 300*time.Millisecond)
	if p, _ := getPermission(t, e.apiBase(), waUser); p.Status != "no_permission" || p.Source != "meta:no_permission" {
		t.Errorf("after Meta's 403: %+v", p)
	}
	if s := w.status(); s.Permissions == nil || s.Permissions.LearnedNoPermission != 1 {
		t.Errorf("status: %+v", s.Permissions)
	}
}

// TestRuleMetaDailyCapLearned: Meta's 403 Business Initiated Connected
// Call Per Day Limit Hit (the user's connected calls of 24 h, by Meta's
// count) is relayed and learned: the next call to the user is refused
// here with the same 403, X-WABA-Error 138012 and a Retry-After (24 h: no
// connected call of the user is known here), without reaching Meta; the
// permission stays and another user is still called. It used to go to
// Meta again, every time the dialer retried.
func TestRuleMetaDailyCapLearned(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := e.startWagate(ruleOpts(e, ""))
	grantPermission(t, e, waUser, "permanent")
	metaRefuses(t, e, w, "cap", waUser, "403", "Business Initiated Connected Call Per Day Limit Hit", 1)
	silent := listenUDP(t, e.Meta.Addr())
	res := expectDialerRejected(t, e, w, "learned_cap", "403")
	checkRejection(t, res, "403", "Business Initiated Connected Call Per Day Limit Hit", "", "138012")
	if ra, err := strconv.Atoi(res.Header("Retry-After")); err != nil || ra < 86000 || ra > 86400 {
		t.Errorf("Retry-After %q, want about 86400 s", res.Header("Retry-After"))
	}
	silent.expectSilence(t, "the Meta peer", 300*time.Millisecond)
	if p, _ := getPermission(t, e.apiBase(), waUser); p.Status != "permanent" {
		t.Errorf("after Meta's daily cap: %+v, want the permission kept", p)
	}
	if s := w.status(); s.Permissions == nil || s.Permissions.LearnedDailyCap != 1 {
		t.Errorf("status: %+v", s.Permissions)
	}
}

// TestRuleDailyCapCleared (rule 3): an operator clears the daily cap
// wagate learned from Meta's 403 through DELETE …/connected_calls — with
// the full token only (the read-only one gets 403) — and the user's next
// call goes to Meta again, the permission untouched. Before, there was no
// way to: the route did not exist and the call stayed refused for 24 h.
func TestRuleDailyCapCleared(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const readToken = "read-only-e2e-token"
	opts := ruleOpts(e, "")
	opts.APIExtra += `, read_token: {value: "` + readToken + `"}`
	w := e.startWagate(opts)
	grantPermission(t, e, waUser, "permanent")
	metaRefuses(t, e, w, "cap", waUser, "403", "Business Initiated Connected Call Per Day Limit Hit", 1)
	res := expectDialerRejected(t, e, w, "learned_cap", "403")
	checkRejection(t, res, "403", "Business Initiated Connected Call Per Day Limit Hit", "", "138012")

	url := e.apiBase() + "/v1/permissions/" + phoneNumberID + "/" + waUser + "/connected_calls"
	req, err := http.NewRequest(http.MethodDelete, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+readToken)
	rres, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	rres.Body.Close()
	if rres.StatusCode != http.StatusForbidden {
		t.Errorf("clear with the read-only token: %d, want 403", rres.StatusCode)
	}
	if p, _ := getPermission(t, e.apiBase(), waUser); p.ConnectedCalls24h == 0 {
		t.Errorf("the read-only token's refused clear emptied the window: %+v", p)
	}
	code, body := apiCall(t, http.MethodDelete, url, "")
	var p permissionDoc
	if err := json.Unmarshal([]byte(body), &p); code != 200 || err != nil || p.Status != "permanent" || p.ConnectedCalls24h != 0 {
		t.Fatalf("clear: %d %s, want 200 with the permanent pair and 0 connected calls", code, body)
	}
	w.waitLogMsg("connected calls of the last 24 h cleared by an operator; the daily cap counts from zero", 0)
	metaAnswers(t, e, w, "after_clear", waUser)
}

// TestRuleBSUIDCallee (rule 4): a BIC to a business-scoped user id (up to
// 256 characters) goes to Meta as sip:<BSUID>@…; a webhook naming the
// phone number and the BSUID links them, so a grant applies to both and a
// later reject naming only the BSUID revokes the phone number's grant.
func TestRuleBSUIDCallee(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := e.startWagate(ruleOpts(e, ""))
	bsuid := "US." + strings.Repeat("a1B2_c", 40) // 243 characters
	now := time.Now().Unix()
	if code := postWebhook(t, e.apiBase(), replyJSON("wamid.link", strings.TrimPrefix(waUser, "+"), bsuid, "accept", true, now-60)); code != 200 {
		t.Fatalf("webhook: %d", code)
	}
	meta := metaAnswers(t, e, w, "bsuid", bsuid)
	inv, ok := findMsg(meta.messages(), false, "INVITE ")
	if !ok || !strings.HasPrefix(inv.StartLine(), "INVITE sip:"+bsuid+"@") {
		t.Errorf("Meta's INVITE: %q", inv.StartLine())
	}
	metaAnswers(t, e, w, "phone", waUser)
	if code := postWebhook(t, e.apiBase(), replyJSON("wamid.rej", "", bsuid, "reject", false, now-30)); code != 200 {
		t.Fatalf("webhook: %d", code)
	}
	silent := listenUDP(t, e.Meta.Addr())
	res := expectDialerRejected(t, e, w, "phone_revoked", "403")
	checkRejection(t, res, "403", "No Approved Call Permission Found", "", "138006")
	silent.expectSilence(t, "the Meta peer", 300*time.Millisecond)
}

// TestRuleWebhookReplayPersisted (rule 5): the ids of applied webhook
// messages survive a restart, so a replayed signed accept does not
// re-grant a pair revoked since; an accept older than the pair's last
// change is ignored whatever its id.
func TestRuleWebhookReplayPersisted(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	opts := ruleOpts(e, "")
	w := e.startWagate(opts)
	now := time.Now().Unix()
	accept := replyJSON("wamid.replay", strings.TrimPrefix(waUser, "+"), "", "accept", true, now-120)
	if code := postWebhook(t, e.apiBase(), accept); code != 200 {
		t.Fatalf("webhook: %d", code)
	}
	if code, body := apiCall(t, http.MethodDelete, e.apiBase()+"/v1/permissions/"+phoneNumberID+"/"+waUser, ""); code != 200 {
		t.Fatalf("revoke: %d %s", code, body)
	}
	w.drain()
	<-w.exited
	w = e.startWagate(opts)
	if code := postWebhook(t, e.apiBase(), accept); code != 200 {
		t.Fatalf("replay: %d", code)
	}
	older := replyJSON("wamid.other", strings.TrimPrefix(waUser, "+"), "", "accept", true, now-60)
	if code := postWebhook(t, e.apiBase(), older); code != 200 {
		t.Fatalf("older accept: %d", code)
	}
	if p, _ := getPermission(t, e.apiBase(), waUser); p.Status != "no_permission" {
		t.Errorf("after the replay and an older accept: %+v", p)
	}
	if s := w.status(); s.Permissions.ReplayedMessages != 1 || s.Permissions.StaleReplies != 1 {
		t.Errorf("status: %+v", s.Permissions)
	}
}

// TestRuleWebhookTooOldRefused (rule 5): a signed delivery older than
// wagate remembers applied message ids — here the user's "always allow"
// of 8 days ago, replayed to a wagate that no longer knows the pair
// (the user may have revoked since and the revocation lapsed) — is not
// applied: no grant, the dialer's BIC is refused without reaching Meta,
// and the refusal is answered 200 (Meta would retry anything else),
// logged and counted in /v1/status and /metrics. An 8-day-old
// account_update is not applied either. Before, the accept granted the
// pair and the call went to Meta.
func TestRuleWebhookTooOldRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := e.startWagate(ruleOpts(e, ""))
	sent := time.Now().Add(-8 * 24 * time.Hour)
	if code := postWebhook(t, e.apiBase(), replyJSON("wamid.8days", strings.TrimPrefix(waUser, "+"), "", "accept", true, sent.Unix())); code != 200 {
		t.Fatalf("webhook: %d, want 200", code)
	}
	if code := postWebhook(t, e.apiBase(), accountUpdateSentJSON(time.Now().Add(7*24*time.Hour), sent)); code != 200 {
		t.Fatalf("account_update: %d, want 200", code)
	}
	if p, ok := getPermission(t, e.apiBase(), waUser); ok {
		t.Errorf("an 8-day-old accept was applied: %+v", p)
	}
	if code, body := apiCall(t, http.MethodGet, e.apiBase()+"/v1/restrictions", ""); code != 200 || strings.Contains(body, "RESTRICTED") {
		t.Errorf("an 8-day-old account_update was applied: %d %s", code, body)
	}
	silent := listenUDP(t, e.Meta.Addr())
	res := expectDialerRejected(t, e, w, "too_old", "403")
	checkRejection(t, res, "403", "No Approved Call Permission Found", "", "138006")
	silent.expectSilence(t, "the Meta peer", 300*time.Millisecond)
	line := w.waitLogMsg("webhook: message older than wagate can tell a replay from a first delivery; ignored", 0)
	if line.str("field") != "call_permission_reply" || line.str("message_id") != "wamid.8days" || line.str("level") != "WARN" {
		t.Errorf("log line: %v", line)
	}
	if s := w.status(); s.API == nil || s.API.WebhookTooOld["call_permission_reply"] != 1 || s.API.WebhookTooOld["account_update"] != 1 {
		t.Errorf("status api: %+v", s.API)
	}
	m := scrapeMetrics(t, e)
	if v, _ := metricValue(m, "wagate_meta_webhook_too_old_total", `field="call_permission_reply"`); v != 1 {
		t.Errorf(`wagate_meta_webhook_too_old_total{field="call_permission_reply"} = %v, want 1`, v)
	}
}

// TestRuleRequestCodes (rule 6): the permission-request endpoint answers
// with Meta's codes: 138009 for a request over the limits, 138017 for a
// user whose permission is already permanent.
func TestRuleRequestCodes(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.startWagate(ruleOpts(e, ""))
	if code, doc, _ := requestPermission(t, e, waUser); code != 200 || !doc.Allowed {
		t.Fatalf("first request: %d %+v", code, doc)
	}
	code, doc, h := requestPermission(t, e, waUser)
	if code != 429 || doc.ErrorCode != 138009 || h.Get("Retry-After") == "" {
		t.Errorf("second request: %d %+v %v", code, doc, h)
	}
	const perm = "+447700900999"
	grantPermission(t, e, perm, "permanent")
	if code, doc, _ := requestPermission(t, e, perm); code != 409 || doc.ErrorCode != 138017 {
		t.Errorf("request for a permanent pair: %d %+v", code, doc)
	}
}

// TestRuleAccountUpdateRestricts (rule 7): Meta's account_update pausing
// business-initiated calling for a number makes wagate refuse the number's
// BICs itself, with 138013 and Retry-After until the pause ends.
func TestRuleAccountUpdateRestricts(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := e.startWagate(ruleOpts(e, ""))
	grantPermission(t, e, waUser, "permanent")
	until := time.Now().Add(7 * 24 * time.Hour)
	if code := postWebhook(t, e.apiBase(), accountUpdateJSON(until)); code != 200 {
		t.Fatalf("webhook: %d", code)
	}
	silent := listenUDP(t, e.Meta.Addr())
	res := expectDialerRejected(t, e, w, "restricted", "403")
	checkRejection(t, res, "403", "Business Initiated Calling Restricted", "", "138013")
	if ra, err := strconv.Atoi(res.Header("Retry-After")); err != nil || ra < 7*24*3600-60 || ra > 7*24*3600 {
		t.Errorf("Retry-After %q, want the seconds until the pause ends", res.Header("Retry-After"))
	}
	silent.expectSilence(t, "the Meta peer", 300*time.Millisecond)
	if code, body := apiCall(t, http.MethodGet, e.apiBase()+"/v1/restrictions", ""); code != 200 || !strings.Contains(body, "RESTRICTED_BUSINESS_INITIATED_CALLING") {
		t.Errorf("GET /v1/restrictions: %d %s", code, body)
	}
}

// TestRuleAccountUpdateReplayAfterLift: the operator lifts Meta's pause
// (DELETE /v1/restrictions/{id}); Meta redelivers the same account_update
// (it has no message id), or someone replays the signed delivery. The
// number stays unpaused and the dialer's next call reaches Meta; before,
// the replay paused the number for another week. A new pause Meta sends
// in the lift's second (a week from then, later than the one lifted)
// applies: it used to be ignored, and the dialer's calls went on to Meta,
// which refuses them.
func TestRuleAccountUpdateReplayAfterLift(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := e.startWagate(ruleOpts(e, ""))
	grantPermission(t, e, waUser, "permanent")
	sent := time.Now().Add(-time.Minute)
	pause := accountUpdateSentJSON(sent.Add(7*24*time.Hour), sent)
	if code := postWebhook(t, e.apiBase(), pause); code != 200 {
		t.Fatalf("webhook: %d", code)
	}
	again := time.Now().Truncate(time.Second) // Meta's clock: the lift's second, or just before it
	if code, body := apiCall(t, http.MethodDelete, e.apiBase()+"/v1/restrictions/"+phoneNumberID, ""); code != 204 {
		t.Fatalf("lift: %d %s", code, body)
	}
	if code := postWebhook(t, e.apiBase(), pause); code != 200 {
		t.Fatalf("the replayed webhook: %d, want 200 (acknowledged, not applied)", code)
	}
	if code, body := apiCall(t, http.MethodGet, e.apiBase()+"/v1/restrictions", ""); code != 200 || strings.Contains(body, "RESTRICTED_BUSINESS_INITIATED_CALLING") {
		t.Errorf("GET /v1/restrictions after the replay: %d %s, want no pause", code, body)
	}
	metaAnswers(t, e, w, "after_replay", waUser)
	w.waitIdle()

	if code := postWebhook(t, e.apiBase(), accountUpdateSentJSON(again.Add(7*24*time.Hour), again)); code != 200 {
		t.Fatalf("webhook: %d", code)
	}
	res := expectDialerRejected(t, e, w, "paused_again", "403")
	checkRejection(t, res, "403", "Business Initiated Calling Restricted", "", "138013")
}

// TestRuleAccountUpdateOutOfOrder: Meta's account_updates reach wagate
// out of order (Meta retries; several nodes). A pause Meta sent an hour
// ago, and a lift it sent half an hour ago, arrive after the pause it sent
// a minute ago: both are ignored, logged and counted, and the dialer's
// call is still refused with Retry-After to the newest pause's end.
// Before, the last delivered won: the late lift unpaused the number, and
// wagate placed calls that Meta refuses.
func TestRuleAccountUpdateOutOfOrder(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := e.startWagate(ruleOpts(e, ""))
	grantPermission(t, e, waUser, "permanent")
	newer := time.Now().Add(-time.Minute)
	older, lift := newer.Add(-time.Hour), newer.Add(-30*time.Minute)
	for _, b := range [][]byte{
		accountUpdateSentJSON(newer.Add(7*24*time.Hour), newer),
		accountUpdateSentJSON(older.Add(7*24*time.Hour), older), // a shorter pause, sent before
		accountUpdateSentJSON(lift, lift),                       // Meta's lift (expired), sent before
	} {
		if code := postWebhook(t, e.apiBase(), b); code != 200 {
			t.Fatalf("webhook: %d", code)
		}
	}
	res := expectDialerRejected(t, e, w, "out_of_order", "403")
	checkRejection(t, res, "403", "Business Initiated Calling Restricted", "", "138013")
	want := int(time.Until(newer.Add(7 * 24 * time.Hour)).Seconds())
	if ra, err := strconv.Atoi(res.Header("Retry-After")); err != nil || ra < want-60 || ra > want+60 {
		t.Errorf("Retry-After %q, want about %d s: the newest pause's end", res.Header("Retry-After"), want)
	}
	line := w.waitLogMsg("webhook: account_update ignored: Meta sent it before the update in force (a late delivery)", 0)
	if line.str("phone_number_id") != phoneNumberID || line.str("level") != "WARN" {
		t.Errorf("log line: %v", line)
	}
	w.waitLogCount("webhook: account_update ignored: Meta sent it before the update in force (a late delivery)", 2, reloadLimit)
	m := scrapeMetrics(t, e)
	if v, _ := metricValue(m, "wagate_permission_webhook_ignored_total", `why="stale_account_update"`); v != 2 {
		t.Errorf(`wagate_permission_webhook_ignored_total{why="stale_account_update"} = %v, want 2`, v)
	}
}

// TestRuleLimitZeroDisables (rule 8): a limit of 0 turns its rule off, as
// docs/api.md says, and the config is accepted: with the revocation at 0,
// five unanswered calls in a row leave the permission in place.
func TestRuleLimitZeroDisables(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := e.startWagate(ruleOpts(e, "consecutive_unanswered_max: 0, consecutive_unanswered_nudge: 0, connected_calls_per_user_24h: 0"))
	grantPermission(t, e, waUser, "temporary")
	metaRefuses(t, e, w, "480", waUser, "480", "Temporarily Unavailable", 5)
	metaAnswers(t, e, w, "still", waUser)
}

// TestRuleLocalRefusalNotCounted: a call wagate admits and then refuses
// itself (here its own sip.max_calls) never reached Meta, so it does not
// use one of the number's new calls of the day. With 2 allowed, a call up,
// one refused locally and one more placed after it: the third reaches
// Meta and is answered (it used to get 503 with X-WABA-Error 138005).
func TestRuleLocalRefusalNotCounted(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	o := ruleOpts(e, "new_calls_per_number_24h: 2")
	o.SIPExtra = "\n  max_calls: 1"
	w := e.startWagate(o)
	const user2 = "+447700900124"
	grantPermission(t, e, waUser, "permanent")
	grantPermission(t, e, user2, "permanent")
	dialer2 := e.newPeer("dialer2", 4) // a second dialer socket on the dialer's address

	meta := e.startSipp(sippSpec{Name: "meta", Scenario: "uas.xml", Peer: e.Meta, Calls: 2})
	held := e.startSipp(sippSpec{Name: "dialer_held", Scenario: "bic_dialer.xml", Peer: e.Dialer, Remote: w.SIPAddr, Calls: 1,
		Args: bicArgs(waUser, phoneNumberID, businessNumber, "-d", "3000")})
	deadline := time.Now().Add(10 * time.Second)
	for w.status().Calls != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the first call never came up")
		}
		time.Sleep(50 * time.Millisecond)
	}
	d := e.runSipp(sippSpec{Name: "dialer_full", Scenario: "bic_dialer_expect.xml", Peer: dialer2, Remote: w.SIPAddr, Calls: 1,
		Args: append(bicArgs(user2, phoneNumberID, businessNumber), "-key", "expect_code", "503")})
	if res, ok := findMsg(d.messages(), false, "SIP/2.0 503"); !ok {
		t.Fatal("the call over sip.max_calls got no 503")
	} else if h := res.Header("X-WABA-Error"); h != "" {
		t.Fatalf("the call over sip.max_calls was refused by the permission gate (X-WABA-Error %s), not by max_calls", h)
	}
	held.requireOK()
	w.waitIdle()

	e.runSipp(sippSpec{Name: "dialer_after", Scenario: "bic_dialer.xml", Peer: e.Dialer, Remote: w.SIPAddr, Calls: 1,
		Args: bicArgs(user2, phoneNumberID, businessNumber, "-d", "100")})
	meta.requireOK()
	w.waitIdle()
}
