package test

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// Signed events end to end: a real HTTP receiver on the test's /24 checks
// every delivery's X-Wagate-Signature with its own HMAC; events of a call
// arrive in order; a receiver that is down, refusing or hanging loses
// nothing, even across a kill -9 of wagate (docs/events.md, "Delivery").

// placeUICs runs n user-initiated calls (SIPp, one at a time, each held
// 200 ms) and waits until their CDRs are committed; it returns them.
func placeUICs(t *testing.T, e *env, w *wagate, name string, n int) []cdrDoc {
	t.Helper()
	pbx := e.startSipp(sippSpec{Name: "pbx_" + name, Scenario: "uas.xml", Peer: e.PBX, Calls: n, Args: ringArgs})
	e.runSipp(sippSpec{Name: "meta_" + name, Scenario: "uac.xml", Peer: e.Meta, Remote: w.SIPAddr, Calls: n,
		Args: callArgs(businessNumber, waUser, "-d", "200", "-l", "1")})
	pbx.requireOK()
	return waitCDRs(t, e, n)
}

// checkAllDelivered checks that each call of cdrs got its four events
// exactly once by id, call.ended carrying the CDR, and that no call's
// events arrived out of order. It returns the number of redeliveries.
func checkAllDelivered(t *testing.T, rx *receiver, cdrs []cdrDoc) int {
	t.Helper()
	evs := rx.waitUntil(t, fmt.Sprintf("the events of %d calls", len(cdrs)), func(evs []rxEvent) bool {
		for _, c := range cdrs {
			if len(ofCall(evs, c.CallID)) < 4 {
				return false
			}
		}
		return true
	})
	for _, c := range cdrs {
		if got := strings.Join(types(ofCall(evs, c.CallID)), " "); got != "call.started call.ringing call.answered call.ended" {
			t.Errorf("call %s: events %s, want call.started call.ringing call.answered call.ended", c.CallID, got)
		}
		checkEndEvent(t, "call "+c.CallID, evs, c, "call.ended")
	}
	checkCallOrder(t, evs)
	rx.checkSigned(t)
	// A redelivery is the same event: same id, same body.
	first := map[string][]byte{}
	dups := 0
	for _, ev := range evs {
		b, seen := first[ev.ID]
		if !seen {
			first[ev.ID] = ev.body
			continue
		}
		dups++
		if !bytes.Equal(b, ev.body) {
			t.Errorf("event %s delivered twice with different bodies:\n%s\n%s", ev.ID, b, ev.body)
		}
	}
	return dups
}

// subscriberStats reads the subscriber's counters from /v1/status.
func subscriberStats(t *testing.T, e *env) (delivered, failed uint64) {
	t.Helper()
	res, body := apiGet(t, e, "/v1/status", "")
	var doc struct {
		Events *struct {
			Subscribers []struct {
				Name      string `json:"name"`
				Delivered uint64 `json:"delivered"`
				Failed    uint64 `json:"failed_attempts"`
			} `json:"subscribers"`
		} `json:"events"`
	}
	if res.StatusCode != http.StatusOK || json.Unmarshal(body, &doc) != nil || doc.Events == nil || len(doc.Events.Subscribers) != 1 {
		t.Fatalf("/v1/status: %s %s: want events with one subscriber", res.Status, body)
	}
	return doc.Events.Subscribers[0].Delivered, doc.Events.Subscribers[0].Failed
}

// TestEventsReceiverDownThenBack: calls end while the receiver is down
// (connections refused), then while it answers 503; when it takes events
// again every event arrives, once, and each call's in order.
func TestEventsReceiverDownThenBack(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rx := newReceiver(t, e)
	rx.down()
	w := e.startWagate(wagateOpts{APIExtra: tokenAPI, Extra: eventsYAML(rx)})

	cdrs := placeUICs(t, e, w, "down", 3)
	if _, failed := subscriberStats(t, e); failed == 0 {
		t.Errorf("no failed attempt counted while the receiver was down")
	}
	rx.setMode(rxRefuse)
	rx.up()
	deadline := time.Now().Add(deliveryLimit)
	for rx.refusedCount() < 3 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if len(rx.all()) != 0 {
		t.Fatalf("the receiver took %d events while refusing them", len(rx.all()))
	}
	rx.setMode(rxTake)
	if dups := checkAllDelivered(t, rx, cdrs); dups != 0 {
		t.Errorf("%d redeliveries, want none (every 2xx reached wagate)", dups)
	}
	w.waitIdle()
}

// TestEventsKill9MidDelivery: the receiver holds every delivery (they are
// in flight), calls end and their CDRs are committed, wagate is killed
// with SIGKILL and restarted on the same data directory: every event of
// every committed call arrives — those the receiver took from the killed
// wagate again (same id, same body), the rest for the first time — and
// each call's in order.
func TestEventsKill9MidDelivery(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rx := newReceiver(t, e)
	rx.setMode(rxHold)
	o := wagateOpts{APIExtra: tokenAPI, Extra: eventsYAML(rx)}
	w := e.startWagate(o)

	cdrs := placeUICs(t, e, w, "before_kill", 3)
	deadline := time.Now().Add(deliveryLimit)
	for rx.holdingCount() == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if rx.holdingCount() == 0 {
		t.Fatal("no delivery in flight to kill wagate in the middle of")
	}
	w.kill()
	rx.setMode(rxTake) // the held requests are answered, to a dead wagate

	e.startWagate(o)
	if dups := checkAllDelivered(t, rx, cdrs); dups == 0 {
		t.Errorf("no event delivered twice: the deliveries held when wagate was killed were taken, so they must come again")
	}
}

// TestEventsPermissionChanged: every change of a call permission is one
// permission.changed event with the status before and after, the expiry
// and who made it: a grant through the API, a user-initiated call
// (callback permission), Meta's webhook accepting and then rejecting, the
// unanswered streak (2 here), and a temporary grant's expiry, noticed by
// the next business-initiated call to the user.
func TestEventsPermissionChanged(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rx := newReceiver(t, e)
	const appSecret = "meta-app-secret-e2e"
	o := permOpts(e, "consecutive_unanswered_max: 2, consecutive_unanswered_nudge: 1")
	o.APIExtra += `, webhook: {app_secret: {value: "` + appSecret + `"}, verify_token: {value: "verify-e2e"}}`
	o.Extra += "\n" + eventsYAML(rx)
	w := e.startWagate(o)
	const userA, userB, userC, userD = "+447700900201", "+447700900202", "+447700900203", "+447700900204"

	type change struct {
		user, status, previous, source string
		expires                        time.Time // zero: none; checked to the second
		roughly                        bool      // expires checked within a minute
	}
	var want []change

	// a: the API grants a temporary permission that lapses in 3 s.
	expA := time.Now().Add(3 * time.Second).Truncate(time.Second).UTC()
	res, body := apiDo(t, e, http.MethodPut, "/v1/permissions/"+phoneNumberID+"/"+userA,
		`{"status":"temporary","expires_at":"`+expA.Format(time.RFC3339)+`"}`)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("PUT permission: %s %s", res.Status, body)
	}
	want = append(want, change{userA, "temporary", "no_permission", "api", expA, false})

	// b: a user-initiated call grants the caller 168 h.
	pbx := e.startSipp(sippSpec{Name: "pbx_uic", Scenario: "uas.xml", Peer: e.PBX, Calls: 1})
	e.runSipp(sippSpec{Name: "meta_uic", Scenario: "uac.xml", Peer: e.Meta, Remote: w.SIPAddr, Calls: 1,
		Args: callArgs(businessNumber, userB, "-d", "100")})
	pbx.requireOK()
	want = append(want, change{userB, "temporary", "no_permission", "uic", time.Now().Add(168 * time.Hour), true})

	// c: Meta's webhook: the user accepts permanently, then rejects.
	webhook := func(response string, permanent bool) {
		t.Helper()
		body := fmt.Sprintf(`{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{`+
			`"metadata":{"phone_number_id":%q},"messages":[{"id":"wamid.%s","from":%q,"type":"interactive","interactive":{`+
			`"type":"call_permission_reply","call_permission_reply":{"response":%q,"is_permanent":%v,"response_source":"user_action"}}}]}}]}]}`,
			phoneNumberID, response, strings.TrimPrefix(userC, "+"), response, permanent)
		m := hmac.New(sha256.New, []byte(appSecret))
		m.Write([]byte(body))
		req, err := http.NewRequest(http.MethodPost, e.apiBase()+"/webhook/meta", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(m.Sum(nil)))
		res, err := httpClient.Do(req)
		if err != nil {
			t.Fatalf("webhook: %v", err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Fatalf("webhook %s: %s", response, res.Status)
		}
	}
	webhook("accept", true)
	webhook("reject", false)
	want = append(want,
		change{userC, "permanent", "no_permission", "webhook:user_action", time.Time{}, false},
		change{userC, "no_permission", "permanent", "webhook:reject:user_action", time.Time{}, false})

	// d: two unanswered business-initiated calls revoke a permission.
	grantPermission(t, e, userD, "permanent")
	want = append(want, change{userD, "permanent", "no_permission", "api", time.Time{}, false})
	meta := e.startSipp(sippSpec{Name: "meta_480", Scenario: "bic_meta_480.xml", Peer: e.Meta, Calls: 2})
	e.runSipp(sippSpec{Name: "dialer_480", Scenario: "bic_dialer_expect.xml", Peer: e.Dialer, Remote: w.SIPAddr, Calls: 2,
		Args: append(bicArgs(userD, phoneNumberID, businessNumber), "-key", "expect_code", "480", "-l", "1")})
	meta.requireOK()
	want = append(want, change{userD, "no_permission", "permanent", "unanswered", time.Time{}, false})

	// e: once A's grant has lapsed, the next call to A is refused and the
	// lapse is reported.
	time.Sleep(time.Until(expA.Add(100 * time.Millisecond)))
	e.runSipp(sippSpec{Name: "dialer_expired", Scenario: "bic_dialer_expect.xml", Peer: e.Dialer, Remote: w.SIPAddr, Calls: 1,
		Args: append(bicArgs(userA, phoneNumberID, businessNumber), "-key", "expect_code", "403")})
	want = append(want, change{userA, "no_permission", "temporary", "expired", expA, false})

	evs := rx.waitUntil(t, fmt.Sprintf("%d permission.changed events", len(want)), func(evs []rxEvent) bool {
		return len(ofType(evs, "permission.changed")) >= len(want)
	})
	time.Sleep(300 * time.Millisecond) // anything more would show up now
	evs = rx.all()
	type pc struct {
		PhoneNumberID string    `json:"phone_number_id"`
		User          string    `json:"user"`
		Status        string    `json:"status"`
		Previous      string    `json:"previous_status"`
		ExpiresAt     time.Time `json:"expires_at"`
		Source        string    `json:"source"`
	}
	var got []pc
	var stamps []time.Time
	for _, ev := range ofType(evs, "permission.changed") {
		var p pc
		if err := json.Unmarshal(ev.Data, &p); err != nil {
			t.Fatalf("permission.changed %s: %v", ev.Data, err)
		}
		if ev.CallID != "" || p.PhoneNumberID != phoneNumberID {
			t.Errorf("permission.changed %s: call_id %q, phone_number_id %q", ev.body, ev.CallID, p.PhoneNumberID)
		}
		got = append(got, p)
		stamps = append(stamps, ev.Timestamp)
	}
	// Events without a call have no delivery order: put them in the order
	// they happened.
	idx := make([]int, len(got))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(i, j int) bool { return stamps[idx[i]].Before(stamps[idx[j]]) })
	var gotS, wantS []string
	for _, i := range idx {
		p := got[i]
		gotS = append(gotS, fmt.Sprintf("%s %s→%s by %s", p.User, p.Previous, p.Status, p.Source))
	}
	for _, c := range want {
		wantS = append(wantS, fmt.Sprintf("%s %s→%s by %s", c.user, c.previous, c.status, c.source))
	}
	if strings.Join(gotS, "\n") != strings.Join(wantS, "\n") {
		t.Fatalf("permission.changed events:\n%s\nwant:\n%s", strings.Join(gotS, "\n"), strings.Join(wantS, "\n"))
	}
	for k, i := range idx {
		p, c := got[i], want[k]
		switch {
		case c.expires.IsZero():
			if !p.ExpiresAt.IsZero() {
				t.Errorf("%s: expires_at %v, want none", wantS[k], p.ExpiresAt)
			}
		case c.roughly:
			if absDur(p.ExpiresAt.Sub(c.expires)) > time.Minute {
				t.Errorf("%s: expires_at %v, want about %v", wantS[k], p.ExpiresAt, c.expires)
			}
		case !p.ExpiresAt.Equal(c.expires):
			t.Errorf("%s: expires_at %v, want %v", wantS[k], p.ExpiresAt, c.expires)
		}
	}
	rx.checkSigned(t)
	w.waitIdle()
}

// TestEventsDamagedDatabase: wagate is stopped and its events database is
// found damaged at the next start (here: overwritten, not a database any
// more). wagate used to refuse to start ("events store failed"): no calls
// at all because of the call records. Now it starts, keeps the damaged
// file beside the new one and says so in its log, and the next call gets
// its CDR and its events.
func TestEventsDamagedDatabase(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rx := newReceiver(t, e)
	o := wagateOpts{APIExtra: tokenAPI, Extra: eventsYAML(rx)}
	w := e.startWagate(o)
	checkAllDelivered(t, rx, placeUICs(t, e, w, "before", 1))
	w.terminate()

	db := filepath.Join(e.dir, "data", "events.db")
	if err := os.WriteFile(db, bytes.Repeat([]byte("not sqlite "), 1000), 0o640); err != nil {
		t.Fatal(err)
	}
	w = e.startWagate(o)
	w.waitLogMsg("events database damaged: moved aside and replaced by a new one holding what could be read; sqlite3 <damaged_file> .recover may find more", 0)
	if kept, _ := filepath.Glob(db + ".corrupt-*"); len(kept) != 1 {
		t.Errorf("damaged file kept as %v, want one events.db.corrupt-…", kept)
	}
	before := len(rx.all())
	cdrs := placeUICs(t, e, w, "after", 1)
	evs := rx.waitUntil(t, "the new call's events", func(evs []rxEvent) bool { return len(evs) >= before+4 })
	checkEndEvent(t, "call after the damage", evs, cdrs[0], "call.ended")
	rx.checkSigned(t)
}

// TestEventsBacklogBound: with the receiver down, events.max_pending (4
// here) bounds what wagate keeps for it: three calls' twelve events leave
// four kept and eight counted as backlog_full in /v1/status; every CDR is
// stored. When the receiver is back it gets the four kept.
func TestEventsBacklogBound(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rx := newReceiver(t, e)
	rx.down()
	w := e.startWagate(wagateOpts{APIExtra: tokenAPI, Extra: eventsYAML(rx) + "  max_pending: 4\n"})
	placeUICs(t, e, w, "bounded", 3) // fails unless all 3 CDRs are stored

	read := func() (pending int64, full uint64) {
		res, body := apiGet(t, e, "/v1/status", "")
		var doc struct {
			Events *struct {
				Subscribers []struct {
					Pending     int64  `json:"pending"`
					BacklogFull uint64 `json:"backlog_full"`
				} `json:"subscribers"`
			} `json:"events"`
		}
		if res.StatusCode != http.StatusOK || json.Unmarshal(body, &doc) != nil || doc.Events == nil || len(doc.Events.Subscribers) != 1 {
			t.Fatalf("/v1/status: %s %s", res.Status, body)
		}
		return doc.Events.Subscribers[0].Pending, doc.Events.Subscribers[0].BacklogFull
	}
	if pending, full := read(); pending != 4 || full != 8 {
		t.Errorf("pending %d, backlog_full %d; want 4 and 8", pending, full)
	}
	rx.up()
	evs := rx.waitUntil(t, "the four kept events", func(evs []rxEvent) bool { return len(evs) >= 4 })
	deadline := time.Now().Add(deliveryLimit)
	for pending, _ := read(); pending != 0 && time.Now().Before(deadline); pending, _ = read() {
		time.Sleep(50 * time.Millisecond)
	}
	if pending, _ := read(); pending != 0 || len(rx.all()) != 4 {
		t.Errorf("after the receiver came back: %d still pending, %d delivered (%s); want 0 and the 4 kept", pending, len(rx.all()), strings.Join(types(evs), " "))
	}
	rx.checkSigned(t)
}

// TestEventsSIGTERMWithHangingReceiver: the receiver holds every delivery
// (never answers, within a 60 s attempt timeout) when wagate is stopped
// with SIGTERM after calls ended: wagate exits cleanly, with no "events
// store close" error, the CDRs are on disk, and after the next start
// every event arrives (the held ones again, same id).
func TestEventsSIGTERMWithHangingReceiver(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rx := newReceiver(t, e)
	rx.setMode(rxHold)
	// An attempt timeout longer than wagate waits for attempts at a stop
	// (10 s): the wait uses all of it.
	o := wagateOpts{APIExtra: tokenAPI, Extra: strings.Replace(eventsYAML(rx), "timeout: 5s", "timeout: 60s", 1)}
	w := e.startWagate(o)
	cdrs := placeUICs(t, e, w, "before_stop", 2)
	deadline := time.Now().Add(deliveryLimit)
	for rx.holdingCount() == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if rx.holdingCount() == 0 {
		t.Fatal("no delivery in flight at the stop")
	}
	w.terminate() // fails the test unless wagate exits 0 within stopLimit
	log, _ := os.ReadFile(w.logPath)
	if strings.Contains(string(log), "events store close") {
		t.Errorf("closing the events store failed:\n%s", log)
	}
	rx.setMode(rxTake)
	w = e.startWagate(o)
	if got := waitCDRs(t, e, 2); len(got) != 2 {
		t.Fatalf("%d CDRs after the restart, want 2", len(got))
	}
	checkAllDelivered(t, rx, cdrs)
}
