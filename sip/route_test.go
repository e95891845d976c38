package sip

import (
	"strings"
	"testing"
	"time"

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
		if d == nil && rej == nil {
			t.Fatalf("route decided neither a route nor a rejection")
		}
		if rej != nil {
			if d != nil && (d.BEP != nil || len(d.Callees) > 0) {
				t.Fatalf("a rejection came with callees: %+v", d)
			}
			return
		}
		if len(d.Callees) == 0 || d.BEP != d.Callees[0].EP {
			t.Fatalf("routed without callees, or BEP is not the first: %+v", d)
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
// fallback extension, the decision carries the flow, and a flow's
// connect finds its callees as a route's (Callees).
func TestRouteCallFlow(t *testing.T) {
	cfg := testConfig(t)
	num := cfg.NumberByE164("+15550100001")
	num.Route = configs.Route{CallFlow: &configs.CallFlow{URL: "http://127.0.0.1:9/flow",
		Fallback: configs.FallbackRoute{Endpoint: "pbx", User: "2000"}}}
	d, rej := Route(cfg, cfg.Endpoint("meta"), parseReq(t, invite("sip:+15550100001@127.0.0.1", "sip:+447700900123@wa.meta.vc")))
	if rej != nil {
		t.Fatalf("refused: %+v", rej)
	}
	if d.CallFlow != num.Route.CallFlow || d.BEP.Name != "pbx" || d.Target.String() != "sip:2000@127.0.0.3:5060" || len(d.Callees) != 1 {
		t.Fatalf("decision: flow %v, B %s, target %s, callees %d", d.CallFlow, d.BEP.Name, d.Target.String(), len(d.Callees))
	}
	callees, hunt, rej := Callees(cfg, configs.Route{Endpoint: "pbx", User: "1002"})
	if rej != nil || hunt != nil || len(callees) != 1 || callees[0].URI.String() != "sip:1002@127.0.0.3:5060" || callees[0].To.String() != "sip:1002@127.0.0.3:5060" {
		t.Fatalf("callees of 1002@pbx: %+v, %v, %+v", callees, hunt, rej)
	}
	if _, _, rej := Callees(cfg, configs.Route{Hunt: "nosuch"}); rej == nil || rej.Code != 503 {
		t.Fatalf("an unknown hunt list: %+v, want 503", rej)
	}
}

// TestRouteHuntHoursBlocklist: the routing decisions of issue 14 — hunt
// lists, business hours and blocklists — at an injected time.
func TestRouteHuntHoursBlocklist(t *testing.T) {
	cfg, err := configs.Parse([]byte(`
sip: {ring_timeout: 30s}
endpoints:
  - {name: meta, kind: whatsapp, host: 127.0.0.2, source_cidrs: [127.0.0.2]}
  - {name: pbx, kind: pbx, host: 127.0.0.3, source_cidrs: [127.0.0.3]}
  - {name: pbx2, kind: pbx, host: 127.0.0.5, source_cidrs: [127.0.0.5]}
hunt_lists:
  - name: day
    strategy: parallel
    targets: [{endpoint: pbx, user: "1001", ring_timeout: 10s}, {endpoint: pbx2, user: "2001"}]
  - name: night
    targets: [{endpoint: pbx2, user: "9000"}]
blocklist: {callers: ["+447700900666"]}
numbers:
  - number: "+15550100001"
    phone_number_id: "1"
    route: {hunt: day}
    hours:
      timezone: America/New_York
      weekly: [{days: [mon-fri], from: "09:00", to: "17:00"}]
      after_hours: {hunt: night}
    blocklist: {callers: ["US.13491208655302741918"], code: 403}
  - number: "+15550100002"
    phone_number_id: "2"
    route: {endpoint: pbx, user: "1002"}
    hours:
      timezone: UTC
      weekly: [{days: [sat], from: "10:00", to: "12:00"}]
`), "route.yaml")
	if err != nil {
		t.Fatal(err)
	}
	monday10 := time.Date(2025, 6, 2, 14, 0, 0, 0, time.UTC) // 10:00 in New York
	monday20 := time.Date(2025, 6, 3, 0, 0, 0, 0, time.UTC)  // 20:00 in New York
	meta := cfg.Endpoint("meta")
	for _, tt := range []struct {
		name, ruri, from string
		extra            string
		now              time.Time
		wantCode         int
		wantCallees      string // "1001@pbx 10s, 2001@pbx2 30s"
		wantAfter        bool
	}{
		{"in hours: the day list, each target's ring time", "+15550100001", "+447700900123", "", monday10, 0, "1001@pbx 10s, 2001@pbx2 30s", false},
		{"after hours: the night list", "+15550100001", "+447700900123", "", monday20, 0, "9000@pbx2 30s", true},
		{"closed without after_hours: 480", "+15550100002", "+447700900123", "", monday10, 480, "", false},
		{"global blocklist: 603 before any route", "+15550100001", "+447700900666", "", monday10, 603, "", false},
		{"global blocklist applies to every number", "+15550100002", "447700900666", "", monday10, 603, "", false},
		{"number blocklist by BSUID header", "+15550100001", "+447700900123", "x-wa-meta-user-id: US.13491208655302741918\r\n", monday10, 403, "", false},
		{"number blocklist by BSUID in From", "+15550100001", "US.13491208655302741918", "", monday10, 403, "", false},
		{"a number's blocklist is its own", "+15550100002", "US.13491208655302741918", "", time.Date(2025, 6, 7, 11, 0, 0, 0, time.UTC), 0, "1002@pbx 30s", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			raw := invite("sip:"+tt.ruri+"@127.0.0.1", "sip:"+tt.from+"@wa.meta.vc")
			raw = strings.Replace(raw, "Max-Forwards: 70\r\n", "Max-Forwards: 70\r\n"+tt.extra, 1)
			d, rej := RouteAt(cfg, meta, parseReq(t, raw), tt.now)
			if tt.wantCode != 0 {
				if rej == nil || rej.Code != tt.wantCode {
					t.Fatalf("got %+v, %+v; want rejection %d", d, rej, tt.wantCode)
				}
				if d == nil || d.Number == nil || d.User == "" {
					t.Errorf("the rejection does not name the number and caller for the record: %+v", d)
				}
				return
			}
			if rej != nil {
				t.Fatalf("rejected %d: %s", rej.Code, rej.Log)
			}
			var got []string
			for _, c := range d.Callees {
				got = append(got, c.Name()+" "+c.RingTimeout.String())
			}
			if s := strings.Join(got, ", "); s != tt.wantCallees {
				t.Errorf("callees %s, want %s", s, tt.wantCallees)
			}
			if d.AfterHours != tt.wantAfter {
				t.Errorf("after hours %v, want %v", d.AfterHours, tt.wantAfter)
			}
			if d.BEP != d.Callees[0].EP || d.Target.String() != d.Callees[0].URI.String() {
				t.Errorf("BEP/Target are not the first callee's")
			}
		})
	}
}
