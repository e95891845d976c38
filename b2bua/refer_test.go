package b2bua

import (
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
	"github.com/wagate/wagate/configs"
)

func TestParseReferToValue(t *testing.T) {
	for _, tc := range []struct {
		in      string
		user    string
		host    string
		callID  string // Replaces' Call-ID, "" for a blind transfer
		wantErr string
	}{
		{in: "<sip:2001@127.0.0.3>", user: "2001", host: "127.0.0.3"},
		{in: "sip:2001@pbx.example.com:5060", user: "2001", host: "pbx.example.com"},
		{in: "<sips:*72#@[::1]>", user: "*72#", host: "[::1]"},
		{in: "<sip:1001@10.0.0.1?Replaces=abc%40host%3Bto-tag%3Dt1%3Bfrom-tag%3Df1>", user: "1001", host: "10.0.0.1", callID: "abc@host"},
		{in: "", wantErr: "does not parse"},
		{in: "<tel:+15550100>", wantErr: "scheme"},
		{in: "<sip:@127.0.0.3>", wantErr: "not an extension"},
		{in: "<sip:20 01@127.0.0.3>", wantErr: ""}, // the parser may split it; whatever it yields must be checked
		{in: "<sip:2001;x@127.0.0.3>", wantErr: ""},
		{in: "<sip:" + strings.Repeat("1", 65) + "@127.0.0.3>", wantErr: "not an extension"},
		{in: "<sip:2001@127.0.0.3?Replaces=abc%3Bto-tag%3Dt1>", wantErr: "to-tag and a from-tag"},
		{in: "<sip:2001@127.0.0.3?Replaces=%3Bto-tag%3Dt1%3Bfrom-tag%3Df1>", wantErr: "Call-ID"},
		{in: "<sip:2001@127.0.0.3?Replaces=a%ZZ>", wantErr: "percent"},
		{in: "<sip:2001@127.0.0.3>\r\nX: y", wantErr: "control"},
		{in: "<sip:2001@" + strings.Repeat("h", maxReferTo) + ">", wantErr: "bytes"},
	} {
		rt, err := parseReferToValue(tc.in)
		if tc.wantErr == "" && (strings.Contains(tc.in, " ") || strings.Contains(tc.in, ";x")) {
			// Either refused, or what was accepted is a valid extension.
			if err == nil && !validExtension(rt.uri.User) {
				t.Errorf("%q: accepted user %q", tc.in, rt.uri.User)
			}
			continue
		}
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%q: error %v, want one saying %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		if rt.uri.User != tc.user || rt.uri.Host != tc.host {
			t.Errorf("%q: user %q host %q, want %q %q", tc.in, rt.uri.User, rt.uri.Host, tc.user, tc.host)
		}
		switch {
		case tc.callID == "" && rt.replaces != nil:
			t.Errorf("%q: Replaces %+v on a blind transfer", tc.in, rt.replaces)
		case tc.callID != "" && (rt.replaces == nil || rt.replaces.callID != tc.callID || rt.replaces.toTag != "t1" || rt.replaces.fromTag != "f1"):
			t.Errorf("%q: Replaces %+v, want Call-ID %q to-tag t1 from-tag f1", tc.in, rt.replaces, tc.callID)
		}
	}
}

func TestParseReferToCount(t *testing.T) {
	req := sip.NewRequest(sip.REFER, sip.Uri{Scheme: "sip", Host: "127.0.0.1"})
	if _, err := parseReferTo(req); err == nil || !strings.Contains(err.Error(), "no Refer-To") {
		t.Errorf("no Refer-To: %v", err)
	}
	req.AppendHeader(sip.NewHeader("Refer-To", "<sip:2001@127.0.0.3>"))
	if _, err := parseReferTo(req); err != nil {
		t.Errorf("one Refer-To: %v", err)
	}
	req.AppendHeader(sip.NewHeader("r", "<sip:2002@127.0.0.3>"))
	if _, err := parseReferTo(req); err == nil || !strings.Contains(err.Error(), "2 Refer-To") {
		t.Errorf("two Refer-To (one compact): %v", err)
	}
}

func TestResolveTarget(t *testing.T) {
	cfg := &configs.Config{
		SIP: configs.SIP{Host: "127.0.0.1"},
		Endpoints: []configs.Endpoint{
			{Name: "pbx", Kind: configs.KindPBX, Host: "127.0.0.3", Port: 5060,
				Transfer: &configs.Transfer{Allow: []configs.TransferRule{{Endpoint: "pbx", Users: []string{"2???"}}, {Endpoint: "pbx2"}, {Hunt: "team"}}}},
			{Name: "pbx2", Kind: configs.KindPBX, Host: "127.0.0.5", Port: 5060},
			{Name: "meta", Kind: configs.KindWhatsApp, Host: "127.0.0.2", Port: 5060},
		},
		HuntLists: []configs.HuntList{{Name: "team"}, {Name: "night"}},
	}
	from := &cfg.Endpoints[0]
	for _, tc := range []struct {
		uri, ep, hunt, why string
	}{
		{uri: "sip:team@127.0.0.1", hunt: "team"},
		{uri: "sip:night@127.0.0.1", why: "may not transfer to hunt list night"},
		{uri: "sip:2001@127.0.0.3", ep: "pbx"},
		{uri: "sip:2001@127.0.0.3:5060", ep: "pbx"},
		{uri: "sip:2001@127.0.0.1", ep: "pbx"}, // wagate's own host: the transferring pbx
		{uri: "sip:9999@127.0.0.5", ep: "pbx2"},
		{uri: "sip:3001@127.0.0.3", why: "may not transfer to 3001@pbx"},
		{uri: "sip:20011@127.0.0.3", why: "may not transfer"},
		{uri: "sip:2001@127.0.0.3:5070", why: "not a configured pbx"},
		{uri: "sip:2001@127.0.0.2", why: "not a configured pbx"}, // Meta is no transfer target
		{uri: "sip:2001@198.51.100.7", why: "not a configured pbx"},
	} {
		var u sip.Uri
		if err := sip.ParseUri(tc.uri, &u); err != nil {
			t.Fatal(err)
		}
		got, why := resolveTarget(cfg, from, u)
		if tc.why != "" {
			if !strings.Contains(why, tc.why) || got != (Target{}) {
				t.Errorf("%s: allowed (%v) or why %q, want refused with %q", tc.uri, got, why, tc.why)
			}
			continue
		}
		if why != "" || got.Endpoint != tc.ep || got.Hunt != tc.hunt {
			t.Errorf("%s: %v %q, want endpoint %q hunt %q", tc.uri, got, why, tc.ep, tc.hunt)
		}
	}
	// A dialer has no pbx of its own: wagate's host then needs exactly one
	// allowed pbx.
	dialer := &configs.Endpoint{Name: "dialer", Kind: configs.KindDialer, Transfer: from.Transfer}
	var u sip.Uri
	_ = sip.ParseUri("sip:2001@127.0.0.1", &u)
	if _, why := resolveTarget(cfg, dialer, u); !strings.Contains(why, "several pbx endpoints") {
		t.Errorf("dialer to wagate's host with two allowed pbxs: %q", why)
	}
}

// FuzzParseReferTo: any Refer-To value either fails with an error or
// yields a sip/sips URI with a host and an extension or a complete
// Replaces; never a panic.
func FuzzParseReferTo(f *testing.F) {
	for _, s := range []string{
		"<sip:2001@127.0.0.3>",
		"sip:2001@pbx.example.com:5060;transport=udp",
		"<sip:1001@10.0.0.1?Replaces=abc%40host%3Bto-tag%3Dt1%3Bfrom-tag%3Df1%3Bearly-only>",
		"<sip:1001@10.0.0.1?Replaces=abc;to-tag=1;from-tag=2>",
		"\"x\" <sips:*72#@[::1]:5061>;method=INVITE",
		"<tel:+1555>", "<sip:%00@h>", "<sip:a@b?Replaces=%>",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		rt, err := parseReferToValue(v)
		if err != nil {
			if rt != nil {
				t.Fatalf("%q: error and a result", v)
			}
			return
		}
		if s := strings.ToLower(rt.uri.Scheme); s != "sip" && s != "sips" {
			t.Fatalf("%q: scheme %q accepted", v, rt.uri.Scheme)
		}
		if !validURIHost(rt.uri.Host) || rt.uri.Host == "" {
			t.Fatalf("%q: host %q accepted", v, rt.uri.Host)
		}
		if rt.replaces == nil && !validExtension(rt.uri.User) {
			t.Fatalf("%q: user %q accepted", v, rt.uri.User)
		}
		if r := rt.replaces; r != nil && (!validWord(r.callID) || !validWord(r.toTag) || !validWord(r.fromTag)) {
			t.Fatalf("%q: Replaces %+v accepted", v, r)
		}
	})
}
