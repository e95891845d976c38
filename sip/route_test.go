package sip

import (
	"testing"

	"github.com/emiago/sipgo/sip"
	"github.com/wagate/wagate/configs"
)

func testConfig(t testing.TB) *configs.Config {
	t.Helper()
	cfg, err := configs.Default()
	if err != nil {
		t.Fatalf("default config: %v", err)
	}
	return cfg
}

func parseReq(t testing.TB, raw string) *sip.Request {
	t.Helper()
	msg, err := sip.ParseMessage([]byte(raw))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return msg.(*sip.Request)
}

func invite(ruri, from string) string {
	return "INVITE " + ruri + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 127.0.0.2:5060;branch=z9hG4bK1\r\n" +
		"From: <" + from + ">;tag=1\r\n" +
		"To: <" + ruri + ">\r\n" +
		"Call-ID: c1\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
}

func TestRoute(t *testing.T) {
	cfg := testConfig(t)
	tests := []struct {
		name     string
		endpoint string
		ruri     string
		from     string
		wantCode int
		wantDir  Direction
		wantURI  string
		wantFrom string
	}{
		{"UIC to business number", "meta", "sip:+15550100001@127.0.0.1", "sip:+447700900123@wa.meta.vc", 0, UIC, "sip:1001@127.0.0.3:5060", "sip:+447700900123@127.0.0.1"},
		{"UIC without plus", "meta", "sip:15550100001@127.0.0.1", "sip:+447700900123@wa.meta.vc", 0, UIC, "sip:1001@127.0.0.3:5060", ""},
		{"UIC hidden number keeps a safe user id", "meta", "sip:+15550100001@127.0.0.1", "sip:US.13491208655302741918@wa.meta.vc", 0, UIC, "", "sip:US.13491208655302741918@127.0.0.1"},
		{"UIC unknown business number", "meta", "sip:+15550199999@127.0.0.1", "sip:+447700900123@wa.meta.vc", 404, "", "", ""},
		{"BIC to WhatsApp user", "dialer", "sip:+447700900123@127.0.0.1", "sip:+15550100001@127.0.0.4", 0, BIC, "sip:+447700900123@127.0.0.2:5060", "sip:+15550100001@127.0.0.1"},
		{"BIC callee without plus", "dialer", "sip:447700900123@127.0.0.1", "sip:+15550100001@127.0.0.4", 0, BIC, "sip:+447700900123@127.0.0.2:5060", ""},
		{"BIC callee not E.164", "dialer", "sip:1234@127.0.0.1", "sip:+15550100001@127.0.0.4", 484, "", "", ""},
		{"BIC callee with letters", "dialer", "sip:+4477009abc@127.0.0.1", "sip:+15550100001@127.0.0.4", 484, "", "", ""},
		{"BIC from unknown business", "dialer", "sip:+447700900123@127.0.0.1", "sip:+15550100002@127.0.0.4", 403, "", "", ""},
		{"BIC from endpoint not allowed for number", "pbx", "sip:+447700900123@127.0.0.1", "sip:+15550100001@127.0.0.3", 403, "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ep := cfg.Endpoint(tt.endpoint)
			d, rej := Route(cfg, ep, parseReq(t, invite(tt.ruri, tt.from)))
			if tt.wantCode != 0 {
				if rej == nil || rej.Code != tt.wantCode {
					t.Fatalf("got %+v, %+v; want rejection %d", d, rej, tt.wantCode)
				}
				return
			}
			if rej != nil {
				t.Fatalf("rejected %d %s: %s", rej.Code, rej.Reason, rej.Log)
			}
			if d.Dir != tt.wantDir {
				t.Errorf("direction %s, want %s", d.Dir, tt.wantDir)
			}
			if got := d.Target.String(); tt.wantURI != "" && got != tt.wantURI {
				t.Errorf("target %s, want %s", got, tt.wantURI)
			}
			if got := d.BFrom.String(); tt.wantFrom != "" && got != tt.wantFrom {
				t.Errorf("from %s, want %s", got, tt.wantFrom)
			}
		})
	}
}

// FuzzRoute feeds arbitrary request URIs and From users to routing: it must
// never panic, and anything it routes must name a configured endpoint and
// a target whose user is safe to put in a SIP URI.
func FuzzRoute(f *testing.F) {
	cfg := testConfig(f)
	for _, s := range [][2]string{
		{"+15550100001", "+447700900123"},
		{"15550100001", "US.1234"},
		{"+447700900123", "+15550100001"},
		{"", ""},
		{"+1555010000\x00", "a\r\nb"},
		{"%2B15550100001", "+15550100001;x=y"},
	} {
		f.Add(s[0], s[1], true)
		f.Add(s[0], s[1], false)
	}
	f.Fuzz(func(t *testing.T, ruser, fuser string, fromMeta bool) {
		req := sip.NewRequest(sip.INVITE, sip.Uri{Scheme: "sip", User: ruser, Host: "127.0.0.1"})
		req.AppendHeader(&sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: fuser, Host: "x"}, Params: sip.NewParams()})
		ep := cfg.Endpoint("dialer")
		if fromMeta {
			ep = cfg.Endpoint("meta")
		}
		d, rej := Route(cfg, ep, req)
		if (d == nil) == (rej == nil) {
			t.Fatalf("route must decide exactly one of route or rejection: %v %v", d, rej)
		}
		if d == nil {
			return
		}
		if cfg.Endpoint(d.BEP.Name) == nil {
			t.Fatalf("routed to unknown endpoint %q", d.BEP.Name)
		}
		for _, u := range []string{d.Target.User, d.BFrom.User} {
			for i := 0; i < len(u); i++ {
				if c := u[i]; c <= ' ' || c == '@' || c == ';' || c == '>' || c == '<' || c == '"' || c >= 0x7f {
					t.Fatalf("unsafe user %q", u)
				}
			}
		}
	})
}

// TestRouteCallFlow: a number whose route is a call flow routes to its
// fallback extension until the flow connects elsewhere (Retarget), and
// the decision carries the flow.
func TestRouteCallFlow(t *testing.T) {
	cfg := testConfig(t)
	num := cfg.NumberByE164("+15550100001")
	num.Route = configs.Route{CallFlow: &configs.CallFlow{URL: "http://127.0.0.1:9/flow",
		Fallback: configs.FallbackRoute{Endpoint: "pbx", User: "2000"}}}
	d, rej := Route(cfg, cfg.Endpoint("meta"), parseReq(t, invite("sip:+15550100001@127.0.0.1", "sip:+447700900123@wa.meta.vc")))
	if rej != nil {
		t.Fatalf("refused: %+v", rej)
	}
	if d.CallFlow != num.Route.CallFlow || d.BEP.Name != "pbx" || d.Target.String() != "sip:2000@127.0.0.3:5060" {
		t.Fatalf("decision: flow %v, B %s, target %s", d.CallFlow, d.BEP.Name, d.Target.String())
	}
	d.Retarget(cfg.Endpoint("pbx"), "1002")
	if d.Target.String() != "sip:1002@127.0.0.3:5060" || d.BTo.String() != "sip:1002@127.0.0.3:5060" {
		t.Fatalf("retargeted: %s, To %s", d.Target.String(), d.BTo.String())
	}
}
