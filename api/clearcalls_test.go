package api

import (
	"strings"
	"testing"

	"github.com/wagate/wagate/permissions"
)

// TestClearConnectedCalls: DELETE …/connected_calls frees a user wagate
// learned Meta's daily cap for: the next call is admitted, the permission
// stays. The read-only token may not (403, nothing changed); an unknown
// pair is 404. Before, there was no such route (404) and the cap held for
// up to 24 h whatever the operator knew.
func TestClearConnectedCalls(t *testing.T) {
	const readToken = "read-only-token-0815"
	f := newFixture(t, func(o *Options) { o.ReadToken = readToken })
	if err := f.cache.Grant(kerry, true, epoch, "api"); err != nil {
		t.Fatal(err)
	}
	d, tk := f.cache.Admit(kerry)
	if !d.Allowed() {
		t.Fatalf("first call: %v", d.Verdict)
	}
	tk.Finish(permissions.MetaDailyCap)
	if d, _ := f.cache.Admit(kerry); d.Verdict != permissions.DailyCapHit {
		t.Fatalf("after Meta's cap: %v, want DailyCapHit", d.Verdict)
	}
	path := userPath + "/connected_calls"
	if r := f.do(t, "DELETE", path, readToken, nil, nil); r.code != 403 || !strings.Contains(r.errorText(t), "read-only token") {
		t.Errorf("with the read-only token: %d %s, want 403", r.code, r.body)
	}
	if d, _ := f.cache.Admit(kerry); d.Verdict != permissions.DailyCapHit {
		t.Fatalf("the read-only token's refused clear changed something: %v", d.Verdict)
	}
	r := f.api(t, "DELETE", path, "")
	var doc entryDoc
	r.json(t, &doc)
	if r.code != 200 || doc.Status != "permanent" || doc.ConnectedCalls24h != 0 {
		t.Fatalf("clear: %d %s, want 200 with the permanent pair and 0 connected calls", r.code, r.body)
	}
	d, tk = f.cache.Admit(kerry)
	if !d.Allowed() {
		t.Fatalf("after the clear: %v, want allowed", d.Verdict)
	}
	tk.Finish(permissions.Failed)
	if r := f.api(t, "DELETE", "/v1/permissions/"+testNumberID+"/+16505550000/connected_calls", ""); r.code != 404 {
		t.Errorf("unknown pair: %d %s, want 404", r.code, r.body)
	}
	if r := f.api(t, "GET", path, ""); r.code != 405 || r.header.Get("Allow") != "DELETE" {
		t.Errorf("GET: %d Allow %q, want 405 Allow DELETE", r.code, r.header.Get("Allow"))
	}
}
