package sip

import (
	"strings"
	"testing"
	"time"
)

func TestRouteClickToCall(t *testing.T) {
	cfg := testConfig(t)
	ok := ClickToCall{Business: "+15550100001", User: "447700900123", AgentEndpoint: "pbx", AgentUser: "1001"}
	d, as, fe := RouteClickToCall(cfg, ok)
	if fe != nil || len(as) != 1 {
		t.Fatal(fe, as)
	}
	a := as[0]
	if d.Dir != BIC || d.User != "+447700900123" || d.BEP.Name != "meta" || d.Target.String() != "sip:+447700900123@127.0.0.2:5060" ||
		d.BFrom.String() != "sip:+15550100001@127.0.0.1" || d.BIC == nil || d.BIC.Callee != d.User {
		t.Errorf("decision %+v", d)
	}
	if a.URI.String() != "sip:1001@127.0.0.3:5060" || a.From.String() != "sip:+447700900123@127.0.0.1" || a.RingTimeout != cfg.SIP.RingTimeout.D() || a.Name() != "1001@pbx" {
		t.Errorf("agent %+v", a)
	}
	ok.AgentRing = 7 * time.Second
	if _, as, _ := RouteClickToCall(cfg, ok); as[0].RingTimeout != 7*time.Second {
		t.Errorf("ring %v", as[0].RingTimeout)
	}
	for _, tc := range []struct {
		mod   func(*ClickToCall)
		field string
	}{
		{func(r *ClickToCall) { r.Business = "15550100001x" }, "business_number"},
		{func(r *ClickToCall) { r.Business = "+15550100002" }, "business_number"},
		{func(r *ClickToCall) { r.User = "1234" }, "user"},
		{func(r *ClickToCall) { r.User = "+4477<sip:x>" }, "user"},
		{func(r *ClickToCall) { r.AgentEndpoint = "meta" }, "agent.endpoint"},
		{func(r *ClickToCall) { r.AgentEndpoint = "dialer" }, "agent.endpoint"},
		{func(r *ClickToCall) { r.AgentEndpoint = "" }, "agent.endpoint"},
		{func(r *ClickToCall) { r.AgentUser = "1001@evil.example" }, "agent.extension"},
		{func(r *ClickToCall) { r.AgentUser = strings.Repeat("1", 65) }, "agent.extension"},
		{func(r *ClickToCall) { r.CampaignID = "spring 24" }, "campaign_id"},
		{func(r *ClickToCall) { r.CallbackData = "a\x01" }, "callback_data"},
		{func(r *ClickToCall) { r.AgentHunt = "sales" }, "agent.hunt"},
		{func(r *ClickToCall) { r.AgentEndpoint, r.AgentUser, r.AgentHunt = "", "", "nope" }, "agent.hunt"},
	} {
		r := ok
		tc.mod(&r)
		if _, _, fe := RouteClickToCall(cfg, r); fe == nil || fe.Field != tc.field {
			t.Errorf("%+v: %v, want an error about %s", r, fe, tc.field)
		}
	}
}

// FuzzRouteClickToCall: any strings either route to the configured
// endpoints with a URI user of safe characters, or name the bad field.
func FuzzRouteClickToCall(f *testing.F) {
	f.Add("+15550100001", "+447700900123", "pbx", "1001")
	f.Add("+15550100001", "US.1234", "pbx", "*72#")
	f.Add("", "", "", "")
	cfg := testConfig(f)
	f.Fuzz(func(t *testing.T, business, user, ep, ext string) {
		d, as, fe := RouteClickToCall(cfg, ClickToCall{Business: business, User: user, AgentEndpoint: ep, AgentUser: ext})
		if fe != nil {
			if fe.Field == "" || fe.Msg == "" {
				t.Fatalf("empty field error %+v", fe)
			}
			return
		}
		a := as[0]
		if a.EP.Name != "pbx" || d.BEP.Name != "meta" || a.User != ext || sanitizeUser(ext) != ext || strings.ContainsAny(a.URI.String(), "<>\" \r\n") {
			t.Fatalf("routed %q %q %q %q to %s / %s", business, user, ep, ext, a.URI.String(), d.Target.String())
		}
	})
}
