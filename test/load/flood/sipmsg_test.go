package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
)

// The flood's INVITE must be a well-formed SIP request of the advertised
// size, or the "before" numbers would measure a parse error path instead
// of the stranger path.
func TestInviteIsWellFormed(t *testing.T) {
	var size int
	for _, i := range []int{0, 7, 49999, 12345678} {
		b := inviteMsg(nil, "UDP", "abc", i, "127.0.77.9", 40001, "127.0.77.1", 15090)
		if size == 0 {
			size = len(b)
		}
		if len(b) != size {
			t.Fatalf("INVITE %d is %d bytes, INVITE 0 is %d: sizes must not depend on the index", i, len(b), size)
		}
		m, err := sip.ParseMessage(b)
		if err != nil {
			t.Fatalf("INVITE %d does not parse: %v\n%s", i, err, b)
		}
		req, ok := m.(*sip.Request)
		if !ok || req.Method != sip.INVITE {
			t.Fatalf("INVITE %d parsed as %T", i, m)
		}
		if got := callIndex([]byte(req.CallID().Value()), floodPrefix, "abc"); got != i {
			t.Errorf("INVITE %d: Call-ID %q gives index %d", i, req.CallID().Value(), got)
		}
		if cl := req.ContentLength(); cl == nil || int(*cl) != len(req.Body()) || !bytes.HasPrefix(req.Body(), []byte("v=0\r\n")) {
			t.Errorf("INVITE %d: Content-Length %v, body %d bytes", i, cl, len(req.Body()))
		}
		via := req.Via()
		if via == nil || via.Host != "127.0.77.9" || via.Port != 40001 {
			t.Errorf("INVITE %d: Via %v, want the sender's address so responses come back to it", i, via)
		}
	}
	if size < 850 || size > 1000 {
		t.Errorf("INVITE is %d bytes, want about 900", size)
	}
}

// parseResponse must find the code and Call-ID of responses as sipgo
// writes them, and in compact form.
func TestParseResponse(t *testing.T) {
	m, err := sip.ParseMessage(inviteMsg(nil, "UDP", "r1", 42, "127.0.77.9", 40001, "127.0.77.1", 15090))
	if err != nil {
		t.Fatal(err)
	}
	res := sip.NewResponseFromRequest(m.(*sip.Request), 403, "Forbidden", nil)
	r, ok := parseResponse([]byte(res.String()))
	if !ok || r.code != 403 || callIndex(r.callID, floodPrefix, "r1") != 42 {
		t.Fatalf("parsed %v %q %v from\n%s", r.code, r.callID, ok, res.String())
	}
	compact := "SIP/2.0 200 OK\r\nv: SIP/2.0/UDP 127.0.77.3:5060;branch=z9hG4bK1\r\ni:  probe-r2-00000003@127.0.77.3 \r\nl: 0\r\n\r\n"
	r, ok = parseResponse([]byte(compact))
	if !ok || r.code != 200 || callIndex(r.callID, probePrefix, "r2") != 3 {
		t.Fatalf("compact form: parsed %v %q %v", r.code, r.callID, ok)
	}
	for _, bad := range []string{"", "INVITE sip:a SIP/2.0\r\n\r\n", "SIP/2.0 4x3 Nope\r\n\r\n", "SIP/2.0"} {
		if _, ok := parseResponse([]byte(bad)); ok {
			t.Errorf("%q parsed as a response", bad)
		}
	}
	if callIndex([]byte("flood-r1-00000042@x"), floodPrefix, "other") != -1 {
		t.Error("a Call-ID of another run was counted")
	}
}

// FuzzParseResponse: whatever arrives on the attacker's socket, the
// parser does not panic and only returns what is in the datagram.
func FuzzParseResponse(f *testing.F) {
	f.Add([]byte("SIP/2.0 403 Forbidden\r\nCall-ID: flood-a-00000001@h\r\n\r\n"))
	f.Add([]byte("SIP/2.0 200 OK\ni:x\n\n"))
	f.Add([]byte("SIP/2.0 100 \r\nCall-ID"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, ok := parseResponse(b)
		if !ok {
			return
		}
		if r.code < 0 || r.code > 999 {
			t.Fatalf("code %d from 3 characters", r.code)
		}
		if len(r.callID) > 0 && !strings.Contains(string(b), string(r.callID)) {
			t.Fatalf("Call-ID %q is not in the input", r.callID)
		}
		_ = callIndex(r.callID, floodPrefix, "a")
	})
}
