package api

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wagate/wagate/events"
)

// changePayload is a Meta webhook with one change of field.
func changePayload(field, value string) []byte {
	return []byte(`{"object":"whatsapp_business_account","entry":[{"id":"WABA_ID","time":1749416383,"changes":[{"field":"` + field + `","value":` + value + `}]}]}`)
}

// settingsPayload is Meta's account_settings_update of a number's calling
// settings.
func settingsPayload(keying, sipStatus string) []byte {
	return changePayload("account_settings_update", `{"timestamp":1749416400,"type":"phone_number_settings","phone_number_settings":{
"phone_number_id":"`+testNumberID+`","calling":{"status":"ENABLED","srtp_key_exchange_protocol":"`+keying+`","sip":{"status":"`+sipStatus+`",
"servers":[{"hostname":"sip.example.com","port":5061}]}}}}`)
}

// callsPayload is Meta's calls webhook with one call event.
func callsPayload(wacid, event, extra string) []byte {
	return changePayload("calls", `{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550001111","phone_number_id":"`+testNumberID+`"},
"contacts":[{"profile":{"name":"Kerry"},"wa_id":"447700900001"}],"calls":[{"id":"`+wacid+`","from":"447700900001","to":"15550001111",
"event":"`+event+`","direction":"USER_INITIATED","timestamp":"1749416500"`+extra+`}]}`)
}

type settingsRecorder struct {
	mu  sync.Mutex
	got []MetaSettingsUpdate
	err error
}

func (s *settingsRecorder) apply(u MetaSettingsUpdate) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.got = append(s.got, u)
	return s.err
}

type callsRecorder struct {
	mu  sync.Mutex
	got []events.MetaCall
	err error
}

func (c *callsRecorder) RecordMetaCall(_ context.Context, m events.MetaCall) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return c.err
	}
	c.got = append(c.got, m)
	return nil
}

func TestWebhookSettingsUpdate(t *testing.T) {
	rec := &settingsRecorder{}
	f := newFixture(t, func(o *Options) { o.MetaSettings = rec.apply })
	if r := f.deliver(t, settingsPayload("DTLS", "ENABLED")); r.code != 200 {
		t.Fatalf("signed settings update: %d %s", r.code, r.body)
	}
	want := MetaSettingsUpdate{PhoneNumberID: testNumberID, SRTPKeyExchange: "dtls", SIPStatus: "ENABLED", At: time.Unix(1749416400, 0).UTC()}
	if len(rec.got) != 1 || rec.got[0] != want {
		t.Fatalf("handed %+v, want %+v", rec.got, want)
	}
	// A change that says nothing about calling is not handed on.
	if r := f.deliver(t, changePayload("account_settings_update", `{"phone_number_settings":{"phone_number_id":"1","messaging":{"x":1}}}`)); r.code != 200 {
		t.Fatal(r.code)
	}
	// A keying Meta does not have is logged, not handed on.
	if r := f.deliver(t, settingsPayload("ZRTP", "ENABLED")); r.code != 200 {
		t.Fatal(r.code)
	}
	if len(rec.got) != 1 {
		t.Fatalf("handed %+v", rec.got)
	}
	if st := (&Server{wh: f.wh}).Stats(); st.WebhookSettingsUpdates != 1 {
		t.Errorf("settings updates counted %d, want 1", st.WebhookSettingsUpdates)
	}
	// When the handler could not keep it, Meta is asked to deliver again.
	rec.err = errors.New("disk full")
	if r := f.deliver(t, settingsPayload("SDES", "ENABLED")); r.code != 500 {
		t.Errorf("unkept settings update answered %d, want 500", r.code)
	}
}

func TestWebhookCallsReports(t *testing.T) {
	rec := &callsRecorder{}
	f := newFixture(t, func(o *Options) { o.MetaCalls = rec })
	if r := f.deliver(t, callsPayload("wacid.HBgLMTU1NTAxMDAwMDEVAgARGA", "connect", `,"session":{"sdp_type":"offer","sdp":"v=0"}`)); r.code != 200 {
		t.Fatal(r.code, r.body)
	}
	if r := f.deliver(t, callsPayload("wacid.HBgLMTU1NTAxMDAwMDEVAgARGA", "terminate",
		`,"status":"Completed","start_time":"1749416390","end_time":"1749416480","duration":90`)); r.code != 200 {
		t.Fatal(r.code, r.body)
	}
	// Events wagate has no use for are acknowledged and dropped.
	if r := f.deliver(t, callsPayload("wacid.other", "ringing", "")); r.code != 200 {
		t.Fatal(r.code)
	}
	if len(rec.got) != 2 {
		t.Fatalf("stored %+v", rec.got)
	}
	c, term := rec.got[0], rec.got[1]
	if c.WACallID != "wacid.HBgLMTU1NTAxMDAwMDEVAgARGA" || c.Event != "connect" || c.PhoneNumberID != testNumberID || c.Direction != "USER_INITIATED" {
		t.Errorf("connect: %+v", c)
	}
	if term.Event != "terminate" || term.Status != "COMPLETED" || term.DurationS == nil || *term.DurationS != 90 ||
		!term.StartedAt.Equal(time.Unix(1749416390, 0)) || !term.EndedAt.Equal(time.Unix(1749416480, 0)) ||
		!term.ReportedAt.Equal(time.Unix(1749416500, 0)) {
		t.Errorf("terminate: %+v", term)
	}
	// A store failure asks Meta to deliver again; no store at all (CDRs
	// off) does not.
	rec.err = errors.New("disk full")
	if r := f.deliver(t, callsPayload("wacid.x", "terminate", `,"status":"FAILED"`)); r.code != 500 {
		t.Errorf("unstored report answered %d, want 500", r.code)
	}
	rec.err = events.ErrNoCDRStore
	if r := f.deliver(t, callsPayload("wacid.x", "terminate", `,"status":"FAILED"`)); r.code != 200 {
		t.Errorf("report without a CDR store answered %d, want 200", r.code)
	}
}

// TestWebhookMetaPayloadsForgedRefused: Meta's account payloads, unsigned or
// signed with another secret or for another body, are refused with 401
// and reach neither handler.
func TestWebhookMetaPayloadsForgedRefused(t *testing.T) {
	set, calls := &settingsRecorder{}, &callsRecorder{}
	f := newFixture(t, func(o *Options) { o.MetaSettings, o.MetaCalls = set.apply, calls })
	for name, body := range map[string][]byte{
		"settings": settingsPayload("SDES", "ENABLED"),
		"calls":    callsPayload("wacid.forged", "terminate", `,"status":"COMPLETED","duration":5`),
		"account_update": accountUpdatePayload(`{"phone_number_id":"` + testNumberID +
			`","event":"RESTRICTED_BUSINESS_INITIATED_CALLING","expiration":1782000000}`),
	} {
		for how, sig := range map[string]string{
			"unsigned":       "",
			"other secret":   sign([]byte("not-the-secret"), body),
			"other body":     sign([]byte(testAppSecret), append([]byte(" "), body...)),
			"truncated":      sign([]byte(testAppSecret), body)[:40],
			"no sha256= tag": strings.TrimPrefix(sign([]byte(testAppSecret), body), "sha256="),
		} {
			hdr := map[string]string{"Content-Type": "application/json"}
			if sig != "" {
				hdr["X-Hub-Signature-256"] = sig
			}
			if r := f.do(t, "POST", "/webhook/meta", "", body, hdr); r.code != 401 {
				t.Errorf("%s %s: %d, want 401", name, how, r.code)
			}
		}
	}
	if len(set.got) != 0 || len(calls.got) != 0 {
		t.Fatalf("forged deliveries applied: %+v %+v", set.got, calls.got)
	}
	if rs, _ := f.cache.Restrictions(); len(rs) != 0 {
		t.Fatalf("forged account_update restricted the number: %+v", rs)
	}
}

func TestParseMetaCallsBounds(t *testing.T) {
	long := strings.Repeat("a", maxWACallID+1)
	for name, tc := range map[string]struct {
		body []byte
		ok   bool
	}{
		"call_created":         {callsPayload("wacid.1", "call_created", ""), true},
		"no id":                {callsPayload("", "terminate", ""), false},
		"id too long":          {callsPayload(long, "terminate", ""), false},
		"id with a space":      {callsPayload("wacid 1", "terminate", ""), false},
		"negative duration":    {callsPayload("wacid.1", "terminate", `,"duration":-4`), false},
		"duration of a year":   {callsPayload("wacid.1", "terminate", `,"duration":31536000`), false},
		"duration as a string": {callsPayload("wacid.1", "terminate", `,"duration":"12"`), true},
		"status with a quote":  {callsPayload("wacid.1", "terminate", `,"status":"A\"B"`), false},
	} {
		t.Run(name, func(t *testing.T) {
			cs, _ := parseMetaCalls(tc.body)
			if got := len(cs) == 1; got != tc.ok {
				t.Fatalf("parsed %+v, want ok=%v", cs, tc.ok)
			}
		})
	}
}

func TestParseSettingsUpdatesSpellings(t *testing.T) {
	for in, want := range map[string]string{"DTLS": "dtls", "sdes": "sdes", "SDES-SRTP": "sdes", "DTLS-SRTP": "dtls"} {
		us, skipped := parseSettingsUpdates(settingsPayload(in, "ENABLED"))
		if len(us) != 1 || us[0].SRTPKeyExchange != want {
			t.Errorf("%s: %+v %v", in, us, skipped)
		}
	}
	// Only SIP's status, at the value's top level, with the id in metadata.
	us, _ := parseSettingsUpdates(changePayload("account_settings_update", `{"metadata":{"phone_number_id":"42"},"calling":{"sip":{"status":"disabled"}}}`))
	if len(us) != 1 || us[0].PhoneNumberID != "42" || us[0].SIPStatus != "DISABLED" || us[0].SRTPKeyExchange != "" {
		t.Errorf("sip only: %+v", us)
	}
	if us, _ := parseSettingsUpdates(changePayload("account_settings_update", `{"calling":{"srtp_key_exchange_protocol":"DTLS"}}`)); len(us) != 0 {
		t.Errorf("update without a number: %+v", us)
	}
}

// FuzzParseMetaWebhooks: the parsers of the newer webhooks never panic,
// and what they return is bounded and well-formed.
func FuzzParseMetaWebhooks(f *testing.F) {
	f.Add(settingsPayload("DTLS", "ENABLED"))
	f.Add(settingsPayload("SDES", "DISABLED"))
	f.Add(callsPayload("wacid.1", "terminate", `,"status":"COMPLETED","duration":90,"start_time":"1749416390","end_time":1749416480`))
	f.Add(callsPayload("wacid.1", "connect", `,"session":{"sdp":"v=0"}`))
	f.Add(changePayload("calls", `{"calls":[1,"x",{"id":7}]}`))
	f.Add(changePayload("account_settings_update", `[{"calling":null}]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		us, _ := parseSettingsUpdates(body)
		for _, u := range us {
			if u.PhoneNumberID == "" || (u.SRTPKeyExchange != "" && u.SRTPKeyExchange != "dtls" && u.SRTPKeyExchange != "sdes") || len(u.SIPStatus) > maxMetaField {
				t.Fatalf("update %+v", u)
			}
		}
		cs, _ := parseMetaCalls(body)
		for _, c := range cs {
			if c.WACallID == "" || len(c.WACallID) > maxWACallID || len(c.Status) > maxMetaField ||
				(c.DurationS != nil && (*c.DurationS < 0 || *c.DurationS > maxMetaSeconds)) {
				t.Fatalf("call %+v", c)
			}
			switch c.Event {
			case "call_created", "connect", "terminate":
			default:
				t.Fatalf("event %q", c.Event)
			}
		}
	})
}
