package test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Meta's webhook and the permission API, driven over HTTP as Meta and an
// operator would.

// replyJSON is a signed-ready call_permission_reply delivery. from and
// fromUserID may be "" (left out); ts is the message's Unix time.
func replyJSON(id, from, fromUserID, response string, permanent bool, ts int64) []byte {
	msg := map[string]any{
		"id": id, "timestamp": fmt.Sprint(ts), "type": "interactive",
		"interactive": map[string]any{"type": "call_permission_reply", "call_permission_reply": map[string]any{
			"response": response, "is_permanent": permanent, "response_source": "user_action"}},
	}
	if from != "" {
		msg["from"] = from
	}
	if fromUserID != "" {
		msg["from_user_id"] = fromUserID
	}
	doc := map[string]any{"object": "whatsapp_business_account", "entry": []any{map[string]any{"id": "WABA", "changes": []any{
		map[string]any{"field": "messages", "value": map[string]any{"messaging_product": "whatsapp",
			"metadata": map[string]any{"display_phone_number": strings.TrimPrefix(businessNumber, "+"), "phone_number_id": phoneNumberID},
			"messages": []any{msg}}}}}}}
	b, _ := json.Marshal(doc)
	return b
}

// accountUpdateJSON is Meta's account_update pausing business-initiated
// calls of the test's business number until until.
func accountUpdateJSON(until time.Time) []byte {
	return accountUpdateSentJSON(until, time.Now())
}

// accountUpdateSentJSON is accountUpdateJSON as Meta sent it at sent.
func accountUpdateSentJSON(until, sent time.Time) []byte {
	return []byte(fmt.Sprintf(`{"object":"whatsapp_business_account","entry":[{"id":"WABA","time":%d,"changes":[{"field":"account_update","value":`+
		`{"phone_number":"%s","event":"ACCOUNT_RESTRICTION","restriction_info":[{"restriction_type":"RESTRICTED_BUSINESS_INITIATED_CALLING","expiration":%d}]}}]}]}`,
		sent.Unix(), strings.TrimPrefix(businessNumber, "+"), until.Unix()))
}

// postWebhook delivers body to wagate's /webhook/meta, signed with the
// app secret as Meta signs, and returns the status code.
func postWebhook(t *testing.T, apiBase string, body []byte) int {
	t.Helper()
	mac := hmac.New(sha256.New, []byte(webhookSecret))
	mac.Write(body)
	req, err := http.NewRequest(http.MethodPost, apiBase+"/webhook/meta", strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(mac.Sum(nil)))
	res, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("POST webhook: %v", err)
	}
	defer res.Body.Close()
	io.Copy(io.Discard, io.LimitReader(res.Body, 1<<16))
	return res.StatusCode
}

// apiCall makes an authenticated API request and returns the code and the
// body.
func apiCall(t *testing.T, method, url, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+apiToken)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	return res.StatusCode, string(b)
}

// permissionDoc is GET /v1/permissions/… as JSON.
type permissionDoc struct {
	User              string `json:"user"`
	Status            string `json:"status"`
	Source            string `json:"source"`
	ConnectedCalls24h int    `json:"connected_calls_24h"`
	UnansweredStreak  int    `json:"unanswered_streak"`
	Requests24h       int    `json:"permission_requests_24h"`
}

// getPermission reads a pair through the API at apiBase; ok false on 404.
func getPermission(t *testing.T, apiBase, user string) (permissionDoc, bool) {
	t.Helper()
	code, body := apiCall(t, http.MethodGet, apiBase+"/v1/permissions/"+phoneNumberID+"/"+user, "")
	var d permissionDoc
	switch code {
	case http.StatusOK:
		if err := json.Unmarshal([]byte(body), &d); err != nil {
			t.Fatalf("permission %s: %v: %s", user, err, body)
		}
		return d, true
	case http.StatusNotFound:
		return d, false
	}
	t.Fatalf("GET permission %s: %d %s", user, code, body)
	return d, false
}
