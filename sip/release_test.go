package sip

import (
	"slices"
	"testing"

	"github.com/emiago/sipgo/sip"
)

const releaseInvite = "INVITE sip:+15550100001@127.0.0.1:5060 SIP/2.0\r\n" +
	"Via: SIP/2.0/UDP 127.0.0.2:5060;branch=z9hG4bK-1\r\n" +
	"From: <sip:+447700900123@127.0.0.2>;tag=a1\r\n" +
	"To: <sip:+15550100001@127.0.0.1>\r\n" +
	"Call-ID: rel-1\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n" +
	"Contact: <sip:+447700900123@127.0.0.2:5060>\r\nUser-Agent: x\r\n" +
	"Content-Type: application/sdp\r\nContent-Length: 4\r\n\r\nv=0\n"

// TestReleaseEmptiesMessage: a released request keeps its start line and
// method but no header or body, and no slot of its header array still
// points at a header it had; headers taken before are unchanged.
func TestReleaseEmptiesMessage(t *testing.T) {
	m, err := sip.ParseMessage([]byte(releaseInvite))
	if err != nil {
		t.Fatal(err)
	}
	req := m.(*sip.Request)
	had := slices.Clone(req.Headers())
	from := req.From()
	Release(req)
	if req.Method != sip.INVITE || req.StartLine() != "INVITE sip:+15550100001@127.0.0.1:5060 SIP/2.0" {
		t.Errorf("start line %q", req.StartLine())
	}
	if len(req.Headers()) != 0 || req.From() != nil || req.Via() != nil || req.CallID() != nil || req.ContentLength() != nil {
		t.Errorf("headers left: %v", req.Headers())
	}
	if len(req.Body()) != 0 {
		t.Errorf("body left: %q", req.Body())
	}
	slots := req.Headers()[:cap(req.Headers())]
	for _, h := range slots {
		if slices.Contains(had, h) {
			t.Errorf("header array still holds %s", h.Name())
		}
	}
	if tag, _ := from.Params.Get("tag"); tag != "a1" || from.Address.User != "+447700900123" {
		t.Errorf("a header taken before changed: %s", from.Value())
	}
}

// TestReleaseResponse: a released response keeps its status line.
func TestReleaseResponse(t *testing.T) {
	m, err := sip.ParseMessage([]byte(releaseInvite))
	if err != nil {
		t.Fatal(err)
	}
	res := sip.NewResponseFromRequest(m.(*sip.Request), 200, "OK", []byte("v=0\r\n"))
	Release(res)
	if res.StartLine() != "SIP/2.0 200 OK" || len(res.Headers()) != 0 || len(res.Body()) != 0 {
		t.Errorf("after release:\n%s", res)
	}
	Release((*sip.Response)(nil)) // no panic
	Release((*sip.Request)(nil))
}
