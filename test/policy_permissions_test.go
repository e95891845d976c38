package test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The call-permission gate end to end: wagate with permissions enabled,
// permissions granted through the HTTP API, and SIPp as dialer and Meta.
// These need cmd/wagate to wire the permission cache into the SIP server
// (sip.Server.SetPermissionGate) and the API (api.Options.Permissions).

const apiToken = "t0ken-for-policy-tests"

// permOpts enables permissions with a store in the test's directory, the
// API token, and the given limits (YAML flow-map entries, may be "").
func permOpts(e *env, limits string) wagateOpts {
	return wagateOpts{
		NumberExtra: withDigest,
		APIExtra:    fmt.Sprintf(", token: {value: %q}", apiToken),
		Extra: fmt.Sprintf("permissions: {enabled: true, store: %q, limits: {%s}}",
			filepath.Join(e.dir, "p.db"), limits),
	}
}

// grantPermission PUTs a permission for the user through the API.
func grantPermission(t *testing.T, e *env, user, status string) {
	t.Helper()
	u := fmt.Sprintf("http://%s/v1/permissions/%s/%s", net.JoinHostPort(e.WagateIP, strconv.Itoa(e.APIPort)),
		phoneNumberID, url.PathEscape(user))
	req, err := http.NewRequest(http.MethodPut, u, strings.NewReader(`{"status":"`+status+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+apiToken)
	req.Header.Set("Content-Type", "application/json")
	res, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("PUT %s: %v", u, err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(res.Body, 4096))
	if res.StatusCode/100 != 2 {
		t.Fatalf("PUT %s: %s: %s (is the permission API wired in cmd/wagate?)", u, res.Status, body)
	}
}

// expectDialerRejected runs one dialer call that must end with code and
// returns the response.
func expectDialerRejected(t *testing.T, e *env, w *wagate, name, code string) sipMsg {
	t.Helper()
	d := e.runSipp(sippSpec{Name: name, Scenario: "bic_dialer_expect.xml", Peer: e.Dialer, Remote: w.SIPAddr, Calls: 1,
		Args: append(bicArgs(waUser, phoneNumberID, businessNumber), "-key", "expect_code", code)})
	res, ok := findMsg(d.messages(), false, "SIP/2.0 "+code)
	if !ok {
		t.Fatalf("%s: no %s received", name, code)
	}
	return res
}

// TestPolicyPermissionMissing: without a permission the dialer gets
// 403 No Approved Call Permission Found with X-WABA-Error 138006, and no
// INVITE reaches Meta.
func TestPolicyPermissionMissing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := e.startWagate(permOpts(e, ""))
	meta := listenUDP(t, e.Meta.Addr())

	res := expectDialerRejected(t, e, w, "dialer", "403")
	checkRejection(t, res, "403", "No Approved Call Permission Found", "", "138006")
	meta.expectSilence(t, "the Meta peer", 500*time.Millisecond)
	s := w.waitIdle()
	w.expectCounts(s, 0, 0)
}

// TestPolicyPermissionGranted: a permission granted through the API lets
// the call through to Meta, which challenges it (407, wa.meta.vc) and
// checks the credentials, then answers.
func TestPolicyPermissionGranted(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := e.startWagate(permOpts(e, ""))
	grantPermission(t, e, waUser, "temporary")

	meta := e.startSipp(sippSpec{Name: "meta", Scenario: "bic_meta_auth.xml", Peer: e.Meta, Calls: 1})
	dialer := e.runSipp(sippSpec{Name: "dialer", Scenario: "bic_dialer.xml", Peer: e.Dialer, Remote: w.SIPAddr, Calls: 1,
		Args: bicArgs(waUser, phoneNumberID, businessNumber, "-d", "300")})
	meta.requireOK()
	checkAnswer(t, e, dialer)
	if invites := checkRetriedInvite(t, meta, "Proxy-Authorization"); len(invites) == 2 {
		checkDigest(t, invites[1], "Proxy-Authorization", metaDigestUser, metaPassword)
	}
	s := w.waitIdle()
	w.expectCounts(s, 1, 1)
}

// TestPolicyPermissionDailyCap: once the user had the maximum connected
// calls in 24 hours (configured at 3 to keep the test short; Meta's is
// 100, the rule is the same) the next call gets 403 Business Initiated
// Connected Call Per Day Limit Hit with X-WABA-Error 138012 and a
// Retry-After, and does not reach Meta.
func TestPolicyPermissionDailyCap(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := e.startWagate(permOpts(e, "connected_calls_per_user_24h: 3"))
	grantPermission(t, e, waUser, "permanent")

	meta := e.startSipp(sippSpec{Name: "meta", Scenario: "uas.xml", Peer: e.Meta, Calls: 3})
	e.runSipp(sippSpec{Name: "dialer", Scenario: "bic_dialer.xml", Peer: e.Dialer, Remote: w.SIPAddr, Calls: 3,
		Args: bicArgs(waUser, phoneNumberID, businessNumber, "-d", "200", "-l", "1", "-r", "2")})
	meta.requireOK()

	silent := listenUDP(t, e.Meta.Addr())
	res := expectDialerRejected(t, e, w, "dialer4", "403")
	checkRejection(t, res, "403", "Business Initiated Connected Call Per Day Limit Hit", "", "138012")
	ra, err := strconv.Atoi(res.Header("Retry-After"))
	if err != nil || ra <= 0 || ra > 24*3600 {
		t.Errorf("Retry-After %q, want seconds until the oldest call leaves the 24 h window", res.Header("Retry-After"))
	}
	silent.expectSilence(t, "the Meta peer", 500*time.Millisecond)
	s := w.waitIdle()
	w.expectCounts(s, 3, 3)
}

// TestPolicyPermissionUnansweredRevokes: four unanswered calls in a row
// (480 from Meta) revoke the permission: the fifth attempt gets 403 No
// Approved Call Permission Found and does not reach Meta.
func TestPolicyPermissionUnansweredRevokes(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := e.startWagate(permOpts(e, ""))
	grantPermission(t, e, waUser, "temporary")

	meta := e.startSipp(sippSpec{Name: "meta", Scenario: "bic_meta_480.xml", Peer: e.Meta, Calls: 4})
	e.runSipp(sippSpec{Name: "dialer", Scenario: "bic_dialer_expect.xml", Peer: e.Dialer, Remote: w.SIPAddr, Calls: 4,
		Args: append(bicArgs(waUser, phoneNumberID, businessNumber), "-key", "expect_code", "480", "-l", "1", "-r", "2")})
	meta.requireOK()

	silent := listenUDP(t, e.Meta.Addr())
	res := expectDialerRejected(t, e, w, "dialer5", "403")
	checkRejection(t, res, "403", "No Approved Call Permission Found", "", "138006")
	silent.expectSilence(t, "the Meta peer", 500*time.Millisecond)
	s := w.waitIdle()
	w.expectCounts(s, 4, 4)
}

// TestPolicyUICGrantsPermission: a user-initiated call to a number with
// callback_permission grants a temporary permission, so a business call
// back to that user goes through.
func TestPolicyUICGrantsPermission(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := e.startWagate(permOpts(e, ""))

	// Before: refused.
	expectDialerRejected(t, e, w, "dialer_before", "403")

	pbx := e.startSipp(sippSpec{Name: "pbx", Scenario: "uas.xml", Peer: e.PBX, Calls: 1})
	e.runSipp(sippSpec{Name: "meta_uic", Scenario: "uac.xml", Peer: e.Meta, Remote: w.SIPAddr, Calls: 1,
		Args: callArgs(businessNumber, waUser, "-d", "200")})
	pbx.requireOK()

	meta := e.startSipp(sippSpec{Name: "meta_bic", Scenario: "uas.xml", Peer: e.Meta, Calls: 1})
	e.runSipp(sippSpec{Name: "dialer_after", Scenario: "bic_dialer.xml", Peer: e.Dialer, Remote: w.SIPAddr, Calls: 1,
		Args: bicArgs(waUser, phoneNumberID, businessNumber, "-d", "200")})
	meta.requireOK()
	s := w.waitIdle()
	w.expectCounts(s, 2, 2)
}
