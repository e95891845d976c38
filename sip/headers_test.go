package sip

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/emiago/sipgo/sip"
)

// headersYAML has two business numbers; the dialer may use only the first.
const headersYAML = `
sip:
  listen: [{transport: udp, address: "127.0.0.1:5072"}]
  host: 127.0.0.1
endpoints:
  - {name: meta, kind: whatsapp, host: 127.0.0.2, port: 5060, transport: udp, media_encryption: none, source_cidrs: [127.0.0.2/32]}
  - {name: pbx, kind: pbx, host: 127.0.0.3, port: 5060, transport: udp, source_cidrs: [127.0.0.3/32]}
  - {name: dialer, kind: dialer, host: 127.0.0.4, port: 5060, transport: udp, source_cidrs: [127.0.0.4/32]}
  - {name: dialer2, kind: dialer, host: 127.0.0.5, port: 5060, transport: udp, source_cidrs: [127.0.0.5/32]}
numbers:
  - {number: "+15550100001", phone_number_id: "100000000000001", route: {endpoint: pbx, user: "1001"}, dialers: [dialer], callback_permission: true}
  - {number: "+15550100002", phone_number_id: "100000000000002", route: {endpoint: pbx, user: "1002"}, dialers: [dialer2]}
`

// bicRequest is a dialer's INVITE to ruriUser with From fromUser and the
// extra header lines.
func bicRequest(ruriUser, fromUser, extra string) string {
	return "INVITE sip:" + ruriUser + "@127.0.0.1:5072 SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 127.0.0.4:5060;branch=z9hG4bK1\r\n" +
		"From: <sip:" + fromUser + "@127.0.0.4>;tag=1\r\n" +
		"To: <sip:" + ruriUser + "@127.0.0.1:5072>\r\n" +
		"Call-ID: c1\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n" +
		extra +
		"Content-Length: 0\r\n\r\n"
}

func TestCheckBIC(t *testing.T) {
	cfg := parseConfig(t, headersYAML)
	const (
		user = "+447700900123"
		pnid = "X-WABA-Phone-Number-ID: 100000000000001\r\n"
		bn   = "X-WABA-Business-Number: +15550100001\r\n"
	)
	tests := []struct {
		name        string
		endpoint    string
		ruri, from  string
		extra       string
		wantCode    int
		wantWarning string // substring
		wantNumber  string
		wantData    string
		wantCamp    string
	}{
		{name: "from user only", ruri: user, from: "+15550100001", wantNumber: "+15550100001"},
		{name: "from user without plus", ruri: "447700900123", from: "15550100001", wantNumber: "+15550100001"},
		{name: "phone number id", ruri: user, from: "agent42", extra: pnid, wantNumber: "+15550100001"},
		{name: "business number header", ruri: user, from: "agent42", extra: bn, wantNumber: "+15550100001"},
		{name: "both agree", ruri: user, from: "+15550100001", extra: pnid + bn, wantNumber: "+15550100001"},
		{name: "lower-case names", ruri: user, from: "x", extra: strings.ToLower(pnid + bn), wantNumber: "+15550100001"},
		{name: "odd case and spaces before the colon", ruri: user, from: "x", extra: "x-WaBa-phone-NUMBER-id  : 100000000000001\r\n", wantNumber: "+15550100001"},
		{name: "folded value", ruri: user, from: "x", extra: "X-WABA-Campaign-ID: spring\r\n 2026\r\n" + pnid, wantCode: 400, wantWarning: "X-WABA-Campaign-ID"},
		{name: "same header twice, same value", ruri: user, from: "x", extra: pnid + strings.ToLower(pnid), wantNumber: "+15550100001"},
		{name: "callback data and campaign", ruri: user, from: "x", extra: pnid + "X-WABA-Callback-Data: order 1234; ünïcode ok\r\nX-WABA-Campaign-ID: spring-2026_a:b/c@d+e=f~g.h\r\n",
			wantNumber: "+15550100001", wantData: "order 1234; ünïcode ok", wantCamp: "spring-2026_a:b/c@d+e=f~g.h"},
		{name: "callback data of 512 characters", ruri: user, from: "x", extra: pnid + "X-WABA-Callback-Data: " + strings.Repeat("é", 512) + "\r\n", wantNumber: "+15550100001", wantData: strings.Repeat("é", 512)},

		{name: "callee not E.164", ruri: "1234", from: "+15550100001", wantCode: 484},
		{name: "callee with letters", ruri: "+4477009abc12", from: "+15550100001", wantCode: 484},
		{name: "callee too long", ruri: "+4477009001234567", from: "+15550100001", wantCode: 484},
		{name: "callee starts with 0", ruri: "+0447700900123", from: "+15550100001", wantCode: 484},
		{name: "callee BSUID with a bad character", ruri: "US.12%3B4", from: "+15550100001", wantCode: 484},
		{name: "callee BSUID over 256 characters", ruri: "US." + strings.Repeat("a", 254), from: "+15550100001", wantCode: 484},
		{name: "callee BSUID without its dot", ruri: "US12345", from: "+15550100001", wantCode: 484},
		{name: "unknown from user", ruri: user, from: "+15550100999", wantCode: 403},
		{name: "unknown phone number id", ruri: user, from: "x", extra: "X-WABA-Phone-Number-ID: 999\r\n", wantCode: 403},
		{name: "number of another dialer", ruri: user, from: "x", extra: "X-WABA-Phone-Number-ID: 100000000000002\r\n", wantCode: 403},
		{name: "endpoint not a dialer of the number", endpoint: "dialer2", ruri: user, from: "x", extra: pnid, wantCode: 403},
		{name: "headers disagree", ruri: user, from: "x", extra: pnid + "X-WABA-Business-Number: +15550100002\r\n", wantCode: 400, wantWarning: "X-WABA-Business-Number"},
		{name: "business number unknown but id known", ruri: user, from: "x", extra: pnid + "X-WABA-Business-Number: +15550100999\r\n", wantCode: 400, wantWarning: "X-WABA-Business-Number"},
		{name: "from names another of our numbers", ruri: user, from: "+15550100002", extra: pnid, wantCode: 400, wantWarning: "From"},
		{name: "from is some other caller id", ruri: user, from: "+4420790001234", extra: pnid, wantNumber: "+15550100001"},
		{name: "duplicate with different values", ruri: user, from: "x", extra: pnid + "x-waba-phone-number-id: 100000000000002\r\n", wantCode: 400, wantWarning: "X-WABA-Phone-Number-ID"},
		{name: "phone number id not digits", ruri: user, from: "x", extra: "X-WABA-Phone-Number-ID: 1000000000000O1\r\n", wantCode: 400, wantWarning: "X-WABA-Phone-Number-ID"},
		{name: "phone number id with a comma", ruri: user, from: "x", extra: "X-WABA-Phone-Number-ID: 100000000000001, 100000000000002\r\n", wantCode: 400, wantWarning: "X-WABA-Phone-Number-ID"},
		{name: "phone number id too long", ruri: user, from: "x", extra: "X-WABA-Phone-Number-ID: " + strings.Repeat("1", 33) + "\r\n", wantCode: 400},
		{name: "empty phone number id", ruri: user, from: "x", extra: "X-WABA-Phone-Number-ID:\r\n" + bn, wantCode: 400, wantWarning: "X-WABA-Phone-Number-ID"},
		{name: "business number malformed", ruri: user, from: "x", extra: "X-WABA-Business-Number: +1555-0100001\r\n", wantCode: 400, wantWarning: "X-WABA-Business-Number"},
		{name: "callback data too long", ruri: user, from: "x", extra: pnid + "X-WABA-Callback-Data: " + strings.Repeat("a", 513) + "\r\n", wantCode: 400, wantWarning: "X-WABA-Callback-Data"},
		{name: "callback data with a control character", ruri: user, from: "x", extra: pnid + "X-WABA-Callback-Data: a\x01b\r\n", wantCode: 400, wantWarning: "X-WABA-Callback-Data"},
		{name: "callback data with NUL", ruri: user, from: "x", extra: pnid + "X-WABA-Callback-Data: a\x00b\r\n", wantCode: 400, wantWarning: "X-WABA-Callback-Data"},
		{name: "callback data not UTF-8", ruri: user, from: "x", extra: pnid + "X-WABA-Callback-Data: a\xffb\r\n", wantCode: 400, wantWarning: "X-WABA-Callback-Data"},
		{name: "callback data with a C1 control", ruri: user, from: "x", extra: pnid + "X-WABA-Callback-Data: a\u0085b\r\n", wantCode: 400},
		{name: "campaign id too long", ruri: user, from: "x", extra: pnid + "X-WABA-Campaign-ID: " + strings.Repeat("c", 65) + "\r\n", wantCode: 400, wantWarning: "X-WABA-Campaign-ID"},
		{name: "campaign id with a space", ruri: user, from: "x", extra: pnid + "X-WABA-Campaign-ID: a b\r\n", wantCode: 400, wantWarning: "X-WABA-Campaign-ID"},
		{name: "campaign id with a quote", ruri: user, from: "x", extra: pnid + "X-WABA-Campaign-ID: a\"b\r\n", wantCode: 400},
		{name: "campaign id with a semicolon", ruri: user, from: "x", extra: pnid + "X-WABA-Campaign-ID: a;b=c\r\n", wantCode: 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			epName := tt.endpoint
			if epName == "" {
				epName = "dialer"
			}
			req := parseReq(t, bicRequest(tt.ruri, tt.from, tt.extra))
			info, rej := checkBIC(cfg, cfg.Endpoint(epName), req)
			if tt.wantCode != 0 {
				if rej == nil || rej.Code != tt.wantCode {
					t.Fatalf("got %+v, %+v; want %d", info, rej, tt.wantCode)
				}
				if tt.wantCode == 403 && rej.Reason != "Business Number Not Authorized" {
					t.Errorf("403 reason %q", rej.Reason)
				}
				if tt.wantCode == 400 && (rej.Warning == "" || !strings.Contains(rej.Warning, tt.wantWarning)) {
					t.Errorf("warning %q does not name %s", rej.Warning, tt.wantWarning)
				}
				return
			}
			if rej != nil {
				t.Fatalf("rejected %d %s (%s; warning %q)", rej.Code, rej.Reason, rej.Log, rej.Warning)
			}
			if info.Number.Number != tt.wantNumber || info.Callee != "+447700900123" {
				t.Errorf("number %s callee %s", info.Number.Number, info.Callee)
			}
			if info.CallbackData != tt.wantData || info.CampaignID != tt.wantCamp {
				t.Errorf("callback %q campaign %q", info.CallbackData, info.CampaignID)
			}
		})
	}
}

// metaInvite is Meta's INVITE for a UIC with extra header lines.
func metaInvite(callID, fromUser, extra string) string {
	return "INVITE sip:+15550100001@127.0.0.1:5072;transport=tls SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 127.0.0.2:5060;branch=z9hG4bK1\r\n" +
		"From: <sip:" + fromUser + "@wa.meta.vc>;tag=1\r\n" +
		"To: <sip:+15550100001@127.0.0.1>\r\n" +
		"Call-ID: " + callID + "\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n" +
		extra +
		"Content-Length: 0\r\n\r\n"
}

func TestCollectUIC(t *testing.T) {
	cfg := parseConfig(t, headersYAML)
	num := cfg.NumberByE164("+15550100001")
	const wacid = "wacid.HBgLMTU1NTAxMDAwMDEVAgARGCBBRkM1QTQ1RjNCNjM0RjM1OEU1NDQ1RjJENDE1RTJGQQA="
	tests := []struct {
		name    string
		callID  string
		from    string
		extra   string
		want    map[string]string // header → value; "" = absent
		dropped string
	}{
		{name: "wacid header, revealed number, CTA payload", callID: "outgoing:" + wacid, from: "+447700900123",
			extra: "x-wa-meta-wacid: " + wacid + "\r\nX-WA-META-USER-ID: US.13491208655302741918\r\nx-wa-meta-cta-payload: promo=spring 2026&x=1\r\nx-wa-meta-user-name: Alice\r\n",
			want: map[string]string{
				"X-WABA-Call-ID": wacid, "X-WABA-Direction": "UIC", "X-WABA-Phone-Number-ID": "100000000000001",
				"X-WABA-Business-Number": "+15550100001", "X-WABA-User": "+447700900123", "X-WABA-User-ID": "US.13491208655302741918",
				"X-WABA-Payload": "promo%3Dspring%202026%26x%3D1", "X-WABA-Payload-Source": "cta", "X-WABA-Session": "sess1",
			}},
		{name: "wacid derived from the Call-ID", callID: "outgoing:" + wacid, from: "447700900123",
			want: map[string]string{"X-WABA-Call-ID": wacid, "X-WABA-User": "+447700900123", "X-WABA-User-ID": "", "X-WABA-Payload": "", "X-WABA-Payload-Source": ""}},
		{name: "wacid derived from a Call-ID with a host", callID: wacid + "@meta", from: "+447700900123",
			want: map[string]string{"X-WABA-Call-ID": wacid}},
		{name: "plain Call-ID used whole", callID: "1-2345@127.0.0.2", from: "+447700900123",
			want: map[string]string{"X-WABA-Call-ID": "1-2345@127.0.0.2"}},
		{name: "hidden number: the BSUID in From", callID: "outgoing:" + wacid, from: "US.13491208655302741918",
			want: map[string]string{"X-WABA-User": "", "X-WABA-User-ID": "US.13491208655302741918"}},
		{name: "deeplink payload", callID: "c", from: "+447700900123", extra: "X-Wa-Meta-Deeplink-Payload: ref/abc?q=é\r\n",
			want: map[string]string{"X-WABA-Payload": "ref%2Fabc%3Fq%3D%C3%A9", "X-WABA-Payload-Source": "deeplink"}},
		{name: "CTA wins over deeplink", callID: "c", from: "+447700900123", extra: "x-wa-meta-deeplink-payload: d\r\nx-wa-meta-cta-payload: c\r\n",
			want: map[string]string{"X-WABA-Payload": "c", "X-WABA-Payload-Source": "cta"}, dropped: "x-wa-meta-deeplink-payload"},
		{name: "payload too long is dropped", callID: "c", from: "+447700900123", extra: "x-wa-meta-cta-payload: " + strings.Repeat("p", 513) + "\r\n",
			want: map[string]string{"X-WABA-Payload": "", "X-WABA-Payload-Source": ""}, dropped: "x-wa-meta-cta-payload"},
		{name: "payload of 512 characters is kept", callID: "c", from: "+447700900123", extra: "x-wa-meta-cta-payload: " + strings.Repeat("p", 512) + "\r\n",
			want: map[string]string{"X-WABA-Payload": strings.Repeat("p", 512)}},
		{name: "malformed wacid falls back to the Call-ID", callID: "outgoing:" + wacid, from: "+447700900123", extra: "x-wa-meta-wacid: wacid.<script>\r\n",
			want: map[string]string{"X-WABA-Call-ID": wacid}, dropped: "x-wa-meta-wacid"},
		{name: "conflicting duplicate user id is dropped", callID: "c", from: "+447700900123", extra: "x-wa-meta-user-id: US.1\r\nx-wa-meta-user-id: US.2\r\n",
			want: map[string]string{"X-WABA-User-ID": ""}, dropped: "x-wa-meta-user-id"},
		{name: "user id with odd characters is dropped", callID: "c", from: "+447700900123", extra: "x-wa-meta-user-id: US.1;evil=1\r\n",
			want: map[string]string{"X-WABA-User-ID": ""}, dropped: "x-wa-meta-user-id"},
		// BSUIDs run to 256 characters (what a BIC may call and the
		// permission cache keys): a long one is the caller's id all the same.
		{name: "user id of 256 characters is kept", callID: "c", from: "+447700900123", extra: "x-wa-meta-user-id: US." + strings.Repeat("7", 253) + "\r\n",
			want: map[string]string{"X-WABA-User-ID": "US." + strings.Repeat("7", 253)}},
		{name: "hidden number: a BSUID of 256 characters in From", callID: "c", from: "US." + strings.Repeat("8", 253),
			want: map[string]string{"X-WABA-User": "", "X-WABA-User-ID": "US." + strings.Repeat("8", 253)}},
		{name: "user id over 256 characters is dropped", callID: "c", from: "+447700900123", extra: "x-wa-meta-user-id: US." + strings.Repeat("7", 254) + "\r\n",
			want: map[string]string{"X-WABA-User-ID": ""}, dropped: "x-wa-meta-user-id"},
		{name: "phone number id of another number is reported", callID: "c", from: "+447700900123", extra: "x-wa-meta-phone-number-id: 100000000000002\r\n",
			want: map[string]string{"X-WABA-Phone-Number-ID": "100000000000001"}, dropped: "x-wa-meta-phone-number-id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := parseReq(t, metaInvite(tt.callID, tt.from, tt.extra))
			u := collectUIC(req, num)
			got := map[string]string{}
			for _, h := range u.Headers(num, "sess1") {
				if _, dup := got[h.Name()]; dup {
					t.Errorf("%s written twice", h.Name())
				}
				got[h.Name()] = h.Value()
				if strings.HasPrefix(strings.ToLower(h.Name()), "x-wa-meta") {
					t.Errorf("raw %s passed on", h.Name())
				}
			}
			for k, v := range tt.want {
				if got[k] != v {
					t.Errorf("%s = %q, want %q", k, got[k], v)
				}
			}
			if got["X-WABA-Session"] != "sess1" || got["X-WABA-Direction"] != "UIC" {
				t.Errorf("session/direction: %v", got)
			}
			if d := strings.Join(u.Dropped, ","); (tt.dropped == "") != (d == "") || !strings.Contains(d, tt.dropped) {
				t.Errorf("dropped %q, want %q", d, tt.dropped)
			}
		})
	}
}

func TestPercentEncode(t *testing.T) {
	for in, want := range map[string]string{
		"abc-._~XYZ09": "abc-._~XYZ09",
		"a b":          "a%20b",
		"100%":         "100%25",
		"é":            "%C3%A9",
		"a\r\nb":       "a%0D%0Ab",
		`"<>;,`:        "%22%3C%3E%3B%2C",
	} {
		if got := percentEncode(in); got != want {
			t.Errorf("percentEncode(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestReasonHeader(t *testing.T) {
	h := ReasonHeader(403, "No Approved Call Permission Found")
	if h.Name() != "Reason" || h.Value() != `SIP;cause=403;text="No Approved Call Permission Found"` {
		t.Errorf("%s: %s", h.Name(), h.Value())
	}
}

// ---------------------------------------------------------------------------
// Fuzzing: go test -fuzz FuzzBICHeaders ./sip/ (and FuzzUICHeaders)

// FuzzBICHeaders feeds arbitrary header lines (any names, cases, folding,
// duplicates, compact forms) through sipgo's parser and checkBIC. Whatever
// is accepted must satisfy the contract: a configured number this dialer
// may use, named by every business header present, an E.164 callee, and
// optional values within their formats.
func FuzzBICHeaders(f *testing.F) {
	seeds := [][2]string{
		{"+447700900123", "X-WABA-Phone-Number-ID: 100000000000001\r\n"},
		{"+447700900123", "X-WABA-Business-Number: +15550100001\r\nX-WABA-Callback-Data: x\r\n"},
		{"447700900123", "x-waba-phone-number-id: 100000000000001\r\nX-WABA-PHONE-NUMBER-ID: 100000000000002\r\n"},
		{"+447700900123", "X-WABA-Campaign-ID: a\r\n b\r\n"},
		{"+447700900123", "X-WABA-Callback-Data: \xc3\x28\r\n"},
		{"+447700900123", "f: <sip:+15550100002@127.0.0.4>;tag=2\r\n"},
		{"+447700900123", "X-WABA-Phone-Number-ID : 100000000000001\r\nX-WABA-Business-Number:\t+15550100001\r\n"},
		{"1234", ""},
	}
	for _, s := range seeds {
		f.Add(s[0], s[1])
	}
	cfg := parseConfig(f, headersYAML)
	ep := cfg.Endpoint("dialer")
	f.Fuzz(func(t *testing.T, ruriUser, extra string) {
		msg, err := sip.ParseMessage([]byte(bicRequest(ruriUser, "+15550100001", extra)))
		if err != nil {
			return
		}
		req, ok := msg.(*sip.Request)
		if !ok || req.From() == nil {
			return
		}
		info, rej := checkBIC(cfg, ep, req)
		if rej != nil {
			if !ValidHeaderValue(rej.Warning) || !ValidHeaderValue(rej.Reason) {
				t.Fatalf("rejection text could break the response: %+v", rej)
			}
			return
		}
		if info.Number == nil || !allowedDialer(info.Number, ep.Name) {
			t.Fatalf("accepted a number the dialer may not use: %+v", info)
		}
		if !isE164(info.Callee) || info.Callee[0] != '+' {
			t.Fatalf("callee %q", info.Callee)
		}
		for _, h := range req.Headers() {
			name := strings.ToLower(strings.TrimSpace(h.Name()))
			switch name {
			case "x-waba-phone-number-id":
				if h.Value() != info.Number.PhoneNumberID {
					t.Fatalf("accepted with %s: %q naming another number than %s", h.Name(), h.Value(), info.Number.Number)
				}
			case "x-waba-business-number":
				if strings.TrimPrefix(h.Value(), "+") != strings.TrimPrefix(info.Number.Number, "+") {
					t.Fatalf("accepted with %s: %q naming another number than %s", h.Name(), h.Value(), info.Number.Number)
				}
			}
		}
		if info.CallbackData != "" && (!utf8.ValidString(info.CallbackData) || utf8.RuneCountInString(info.CallbackData) > maxCallbackData || !ValidHeaderValue(info.CallbackData)) {
			t.Fatalf("callback data %q", info.CallbackData)
		}
		if info.CampaignID != "" && (len(info.CampaignID) > maxCampaignID || !isCampaignID(info.CampaignID)) {
			t.Fatalf("campaign id %q", info.CampaignID)
		}
	})
}

// FuzzUICHeaders feeds arbitrary header lines in Meta's INVITE and checks
// the X-WABA headers wagate would write toward the PBX: only names of the
// contract, each once, with values that are safe, within their formats and
// survive a round trip through the parser unchanged.
func FuzzUICHeaders(f *testing.F) {
	const wacid = "wacid.HBgLMTU1NTAxMDAwMDEVAgARGCBBRkM1QTQ1RjNCNjM0RjM1OEU1NDQ1RjJENDE1RTJGQQA="
	f.Add("outgoing:"+wacid, "+447700900123", "x-wa-meta-wacid: "+wacid+"\r\nx-wa-meta-cta-payload: a b\r\n")
	f.Add("c@h", "US.1234", "X-WA-META-USER-ID: US.1234\r\nx-wa-meta-deeplink-payload: \xe2\x80\xa8\r\n")
	f.Add("c", "+447700900123", "x-wa-meta-cta-payload: a\r\n\tb\r\nx-wa-meta-cta-payload: c\r\n")
	f.Add("c", "+447700900123", "X-WABA-Session: forged\r\nX-WABA-User: +1\r\n")
	cfg := parseConfig(f, headersYAML)
	num := cfg.NumberByE164("+15550100001")
	allowed := map[string]bool{}
	for _, h := range []string{hdrWABACallID, hdrWABADirection, hdrWABAPhoneNumberID, hdrWABABusinessNumber, hdrWABAUser, hdrWABAUserID, hdrWABAPayload, hdrWABAPayloadSource, hdrWABASession} {
		allowed[h] = true
	}
	f.Fuzz(func(t *testing.T, callID, fromUser, extra string) {
		msg, err := sip.ParseMessage([]byte(metaInvite(callID, fromUser, extra)))
		if err != nil {
			return
		}
		req, ok := msg.(*sip.Request)
		if !ok || req.From() == nil || req.CallID() == nil {
			return
		}
		hs := collectUIC(req, num).Headers(num, "sess1")
		out := sip.NewRequest(sip.INVITE, sip.Uri{Scheme: "sip", User: "1001", Host: "127.0.0.3"})
		seen := map[string]bool{}
		for _, h := range hs {
			if !allowed[h.Name()] || seen[h.Name()] {
				t.Fatalf("header %q written (twice: %v)", h.Name(), seen[h.Name()])
			}
			seen[h.Name()] = true
			v := h.Value()
			if v == "" || !ValidHeaderValue(v) || strings.TrimSpace(v) != v {
				t.Fatalf("%s: unsafe value %q", h.Name(), v)
			}
			switch h.Name() {
			case hdrWABAPayload:
				for i := 0; i < len(v); i++ {
					c := v[i]
					if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-._~%", c) >= 0) {
						t.Fatalf("payload %q not percent-encoded", v)
					}
				}
				if len(v) > 3*4*maxPayload {
					t.Fatalf("payload of %d bytes", len(v))
				}
			case hdrWABAUser:
				if !isE164(v) || v[0] != '+' {
					t.Fatalf("user %q", v)
				}
			case hdrWABAUserID:
				if !isUserID(v) {
					t.Fatalf("user id %q", v)
				}
			case hdrWABASession:
				if v != "sess1" {
					t.Fatalf("session %q taken from the request", v)
				}
			case hdrWABAPhoneNumberID:
				if v != num.PhoneNumberID {
					t.Fatalf("phone number id %q", v)
				}
			}
			out.AppendHeader(h)
		}
		// What wagate writes parses back to the same headers.
		out.AppendHeader(sip.NewHeader("Via", "SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKx"))
		back, err := sip.ParseMessage([]byte(out.String()))
		if err != nil {
			t.Fatalf("B-leg request does not parse: %v\n%s", err, out)
		}
		for _, h := range hs {
			got := back.(*sip.Request).GetHeaders(h.Name())
			if len(got) != 1 || got[0].Value() != h.Value() {
				t.Fatalf("%s did not round-trip: %v", h.Name(), got)
			}
		}
		for _, h := range back.(*sip.Request).Headers() {
			if strings.HasPrefix(strings.ToLower(h.Name()), "x-wa-meta") {
				t.Fatalf("raw %s in the B-leg", h.Name())
			}
		}
	})
}

// TestCheckBICCalleeBSUID: a business-scoped user id is a callee, up to 256
// characters, its country code upper-cased (Meta: INVITE sip:<BSUID>@wa.meta.vc).
func TestCheckBICCalleeBSUID(t *testing.T) {
	cfg := parseConfig(t, headersYAML)
	for in, want := range map[string]string{
		"US.13491208655302741918":        "US.13491208655302741918",
		"br.AbC-12_x":                    "BR.AbC-12_x",
		"US." + strings.Repeat("z", 253): "US." + strings.Repeat("z", 253),
	} {
		info, rej := checkBIC(cfg, cfg.Endpoint("dialer"), parseReq(t, bicRequest(in, "+15550100001", "")))
		if rej != nil {
			t.Fatalf("%s: rejected %d (%s)", in, rej.Code, rej.Log)
		}
		if info.Callee != want {
			t.Errorf("callee %q, want %q", info.Callee, want)
		}
	}
}
