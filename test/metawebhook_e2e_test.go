package test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/wagate/wagate/test/internal/metapeer"
	"github.com/wagate/wagate/test/internal/sipua"
)

// metaSettingsJSON is Meta's account_settings_update reporting the test
// number's SRTP keying.
func metaSettingsJSON(keying string) []byte {
	return []byte(fmt.Sprintf(`{"object":"whatsapp_business_account","entry":[{"id":"WABA","time":%d,"changes":[{"field":"account_settings_update",`+
		`"value":{"timestamp":%d,"phone_number_settings":{"phone_number_id":%q,"calling":{"status":"ENABLED","srtp_key_exchange_protocol":%q,`+
		`"sip":{"status":"ENABLED"}}}}}]}]}`, time.Now().Unix(), time.Now().Unix(), phoneNumberID, keying))
}

// metaTerminateJSON is Meta's calls webhook ending the call wacid.
func metaTerminateJSON(wacid string, duration int) []byte {
	now := time.Now().Unix()
	return []byte(fmt.Sprintf(`{"object":"whatsapp_business_account","entry":[{"id":"WABA","changes":[{"field":"calls","value":{`+
		`"messaging_product":"whatsapp","metadata":{"phone_number_id":%q},"calls":[{"id":%q,"event":"terminate","direction":"USER_INITIATED",`+
		`"timestamp":"%d","status":"COMPLETED","start_time":"%d","end_time":"%d","duration":%d}]}}]}]}`,
		phoneNumberID, wacid, now, now-int64(duration), now, duration))
}

// TestMetaWebhooksSettingsAndCalls, through the real binary: Meta's calls
// webhook (terminate) for a call wagate carried shows in that call's CDR
// (meta_status, meta_duration_s); account_settings_update reporting DTLS
// for a number wagate keys with SDES is counted as a mismatch and, with
// refuse_keying_mismatch, the number's next business-initiated call is
// refused with 488 before anything reaches Meta; reporting SDES again
// lets calls through. Unsigned deliveries of both are refused.
func TestMetaWebhooksSettingsAndCalls(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := e.startWagate(wagateOpts{MetaEncryption: "sdes", MetaCodecs: bicMetaCodecs, MetaExtra: ", refuse_keying_mismatch: true",
		APIExtra: tokenAPI + `, webhook: {app_secret: {value: "` + webhookSecret + `"}, verify_token: {value: "verify-e2e"}}`})
	meta := newGoPeer(t, e.Meta, metapeer.Config{})
	pbx := newGoPeer(t, e.PBX, metapeer.Config{Profile: metapeer.ProfileG711})
	dialer := newGoPeer(t, e.Dialer, metapeer.Config{Profile: metapeer.ProfileG711})
	ctx, cancel := context.WithTimeout(context.Background(), 3*peerCallLimit)
	defer cancel()

	// A UIC, then Meta's terminate for it.
	answered := answerAsync(ctx, pbx, metapeer.AnswerSpec{})
	mcall, err := meta.Call(ctx, metapeer.CallSpec{Target: w.SIPAddr, To: businessNumber, From: waUser})
	if err != nil {
		t.Fatalf("UIC: %v", err)
	}
	pcall := waitAnswer(t, answered, "the PBX")
	hangup(t, mcall, "meta")
	waitBye(t, pcall, "the PBX")
	cdrs := waitCDRs(t, e, 1)
	if cdrs[0].WACallID == "" {
		t.Fatalf("CDR without wa_call_id: %+v", cdrs[0])
	}
	for name, sig := range map[string]string{"unsigned": "", "forged": "sha256=" + strings.Repeat("ab", 32)} {
		if code := postRaw(t, e.apiBase(), metaTerminateJSON(cdrs[0].WACallID, 1), sig); code != http.StatusUnauthorized {
			t.Errorf("%s calls webhook: %d, want 401", name, code)
		}
	}
	if code := postWebhook(t, e.apiBase(), metaTerminateJSON(cdrs[0].WACallID, 42)); code != http.StatusOK {
		t.Fatalf("calls webhook: %d", code)
	}
	res, body := apiDo(t, e, http.MethodGet, "/v1/cdrs/"+cdrs[0].CallID, "")
	var cdr struct {
		MetaStatus    string `json:"meta_status"`
		MetaDurationS *int64 `json:"meta_duration_s"`
	}
	if err := json.Unmarshal(body, &cdr); res.StatusCode != 200 || err != nil || cdr.MetaStatus != "COMPLETED" || cdr.MetaDurationS == nil || *cdr.MetaDurationS != 42 {
		t.Errorf("CDR after Meta's terminate: %s %s", res.Status, body)
	}

	// Meta says the number now keys with DTLS; wagate is configured sdes.
	if code := postRaw(t, e.apiBase(), metaSettingsJSON("DTLS"), ""); code != http.StatusUnauthorized {
		t.Errorf("unsigned settings webhook: %d, want 401", code)
	}
	if code := postWebhook(t, e.apiBase(), metaSettingsJSON("DTLS")); code != http.StatusOK {
		t.Fatalf("settings webhook: %d", code)
	}
	line := w.waitLogMsg("Meta's SRTP keying for a number differs from media_encryption: its calls will have no audio until one side is changed", 0)
	if line.str("level") != "ERROR" || line.str("meta_keying") != "dtls" || line.str("media_encryption") != "sdes" {
		t.Errorf("mismatch log line: %v", line)
	}
	m := scrapeMetrics(t, e)
	if v, _ := metricValue(m, "wagate_meta_keying_mismatched_numbers", ""); v != 1 {
		t.Errorf("wagate_meta_keying_mismatched_numbers = %v, want 1", v)
	}
	_, err = dialer.Call(ctx, metapeer.CallSpec{Target: w.SIPAddr, To: waUser, From: businessNumber})
	var se *sipua.StatusError
	if !errors.As(err, &se) || se.Code != 488 || !strings.Contains(se.Msg.Get("Warning"), "dtls") {
		t.Fatalf("BIC with a keying mismatch: %v, want 488 with a Warning naming dtls", err)
	}
	if v, _ := metricValue(scrapeMetrics(t, e), "wagate_meta_keying_refusals_total", ""); v != 1 {
		t.Errorf("wagate_meta_keying_refusals_total = %v, want 1", v)
	}

	// Back to SDES: the next BIC reaches Meta.
	if code := postWebhook(t, e.apiBase(), metaSettingsJSON("SDES")); code != http.StatusOK {
		t.Fatalf("settings webhook: %d", code)
	}
	answered = answerAsync(ctx, meta, metapeer.AnswerSpec{})
	dcall, err := dialer.Call(ctx, metapeer.CallSpec{Target: w.SIPAddr, To: waUser, From: businessNumber})
	if err != nil {
		t.Fatalf("BIC after Meta reported sdes: %v", err)
	}
	mc := waitAnswer(t, answered, "the Meta peer")
	hangup(t, dcall, "dialer")
	waitBye(t, mc, "the Meta peer")
	w.waitIdle()
}

// postRaw posts body to the webhook with the given signature header ("":
// none) and returns the status code.
func postRaw(t *testing.T, apiBase string, body []byte, sig string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, apiBase+"/webhook/meta", strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if sig != "" {
		req.Header.Set("X-Hub-Signature-256", sig)
	}
	res, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	return res.StatusCode
}
