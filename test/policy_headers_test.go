package test

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// TestPolicyBICHeaderRejections: malformed or conflicting X-WABA headers
// get 400 with a Warning naming the header, a business number that is not
// configured gets 403, a callee that is not E.164 gets 484; each carries a
// Reason header, and nothing reaches Meta.
func TestPolicyBICHeaderRejections(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := e.startWagate(wagateOpts{})
	meta := listenUDP(t, e.Meta.Addr())

	tests := []struct {
		name    string
		user    string
		pnid    string
		bnum    string
		cbdata  string
		code    string
		reason  string
		warning string
	}{
		{name: "conflicting business headers", user: waUser, pnid: phoneNumberID, bnum: "+15550100002", cbdata: "x",
			code: "400", warning: "X-WABA-Business-Number"},
		{name: "malformed phone number id", user: waUser, pnid: "10000000000000x", bnum: businessNumber, cbdata: "x",
			code: "400", warning: "X-WABA-Phone-Number-ID"},
		{name: "malformed business number", user: waUser, pnid: phoneNumberID, bnum: "+1555 0100001", cbdata: "x",
			code: "400", warning: "X-WABA-Business-Number"},
		{name: "callback data over 512 characters", user: waUser, pnid: phoneNumberID, bnum: businessNumber, cbdata: strings.Repeat("d", 513),
			code: "400", warning: "X-WABA-Callback-Data"},
		{name: "unknown business number", user: waUser, pnid: "999", bnum: "+15550100999", cbdata: "x",
			code: "403", reason: "Business Number Not Authorized"},
		{name: "callee not E.164", user: "12345", pnid: phoneNumberID, bnum: businessNumber, cbdata: "x",
			code: "484", reason: "Address Incomplete"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := []string{"-s", tt.user, "-key", "from_user", "agent42", "-key", "pnid", tt.pnid, "-key", "bnum", tt.bnum,
				"-key", "cbdata", tt.cbdata, "-key", "expect_code", tt.code}
			d := e.runSipp(sippSpec{Name: fmt.Sprintf("dialer%d", i), Scenario: "bic_dialer_expect.xml", Peer: e.Dialer, Remote: w.SIPAddr, Calls: 1, Args: args})
			res, ok := findMsg(d.messages(), false, "SIP/2.0 "+tt.code)
			if !ok {
				t.Fatalf("no %s received", tt.code)
			}
			checkRejection(t, res, tt.code, tt.reason, tt.warning, "")
		})
	}
	meta.expectSilence(t, "the Meta peer", 500*time.Millisecond)
	s := w.waitIdle()
	w.expectCounts(s, 0, 0)
}

// checkRejection checks a response wagate generated: reason phrase (when
// given), a Warning naming warning (when given), a Reason header with the
// code, and X-WABA-Error metaError (or none when "").
func checkRejection(t *testing.T, res sipMsg, code, reason, warning, metaError string) {
	t.Helper()
	if reason != "" && res.StartLine() != "SIP/2.0 "+code+" "+reason {
		t.Errorf("status line %q, want %q", res.StartLine(), "SIP/2.0 "+code+" "+reason)
	}
	if warning != "" {
		if wv := res.Header("Warning"); !strings.HasPrefix(wv, "399 ") || !strings.Contains(wv, warning) {
			t.Errorf("Warning %q does not name %s", wv, warning)
		}
	}
	_, phrase, _ := strings.Cut(strings.TrimPrefix(res.StartLine(), "SIP/2.0 "), " ")
	if want := `SIP;cause=` + code + `;text="` + phrase + `"`; res.Header("Reason") != want {
		t.Errorf("Reason %q, want %q", res.Header("Reason"), want)
	}
	if got := res.Header("X-WABA-Error"); got != metaError {
		t.Errorf("X-WABA-Error %q, want %q", got, metaError)
	}
}

// TestPolicyBICHeaderSmuggling sends, from the dialer's address, INVITEs
// that SIPp cannot write: NUL and control characters in values, duplicated
// headers in other cases with other values, folded values, compact header
// forms. Each gets its 4xx; nothing reaches Meta.
func TestPolicyBICHeaderSmuggling(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := e.startWagate(wagateOpts{})
	meta := listenUDP(t, e.Meta.Addr())
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(e.Dialer.IP)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	to, _ := net.ResolveUDPAddr("udp4", w.SIPAddr)
	local := conn.LocalAddr().String()

	const pnid = "X-WABA-Phone-Number-ID: " + phoneNumberID + "\r\n"
	tests := []struct {
		name    string
		from    string
		headers string
		code    string
		warning string
	}{
		{"NUL in callback data", "agent", pnid + "X-WABA-Callback-Data: abc\x00def\r\n", "400", "X-WABA-Callback-Data"},
		{"control character in campaign id", "agent", pnid + "X-WABA-Campaign-ID: abc\x1bdef\r\n", "400", "X-WABA-Campaign-ID"},
		// A bare CR ends no line: the edge refuses the message as malformed.
		{"bare CR in callback data", "agent", pnid + "X-WABA-Callback-Data: abc\rX-Evil: 1\r\n", "400", "CR"},
		{"duplicate in another case naming another number", "agent", pnid + "x-waba-PHONE-number-id: 100000000000002\r\n", "400", "X-WABA-Phone-Number-ID"},
		{"folded campaign id", "agent", pnid + "X-WABA-Campaign-ID: spring\r\n 2026\r\n", "400", "X-WABA-Campaign-ID"},
		{"empty phone number id", "agent", "X-WABA-Phone-Number-ID:\r\nX-WABA-Business-Number: " + businessNumber + "\r\n", "400", "X-WABA-Phone-Number-ID"},
		{"compact From naming nothing, no X-WABA", "agent", "", "403", ""},
		{"number of another business in X-WABA-Business-Number", "agent", "X-WABA-Business-Number: +15550100002\r\n", "403", ""},
	}
	for i, tt := range tests {
		callID := fmt.Sprintf("smuggle-%d", i)
		msg := fmt.Sprintf("INVITE sip:%s@%s SIP/2.0\r\n"+
			"Via: SIP/2.0/UDP %s;branch=z9hG4bK-s%d\r\n"+
			"f: <sip:%s@%s>;tag=t%d\r\n"+
			"To: <sip:%s@%s>\r\n"+
			"Call-ID: %s\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n"+
			"%s"+
			"Content-Type: application/sdp\r\nContent-Length: %d\r\n\r\n%s",
			waUser, to, local, i, tt.from, e.Dialer.IP, i, waUser, to, callID, tt.headers, len(dialerSDP(e)), dialerSDP(e))
		if _, err := conn.WriteToUDP([]byte(msg), to); err != nil {
			t.Fatal(err)
		}
		res := readFinal(t, conn, callID)
		if tt.code == "" {
			if res != "" {
				t.Errorf("%s: got %q, want the message dropped", tt.name, res)
			}
			continue
		}
		if res == "" {
			t.Errorf("%s: no final response", tt.name)
			continue
		}
		m := sipMsg{Text: strings.ReplaceAll(res, "\r\n", "\n")}
		if !strings.HasPrefix(m.StartLine(), "SIP/2.0 "+tt.code) {
			t.Errorf("%s: got %q, want %s", tt.name, m.StartLine(), tt.code)
			continue
		}
		if m.Header("X-Evil") != "" {
			t.Errorf("%s: injected header in the response", tt.name)
		}
		checkRejection(t, m, tt.code, "", tt.warning, "")
		ack := fmt.Sprintf("ACK sip:%s@%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK-s%d\r\nFrom: <sip:%s@%s>;tag=t%d\r\nTo: %s\r\nCall-ID: %s\r\nCSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
			waUser, to, local, i, tt.from, e.Dialer.IP, i, m.Header("To"), callID)
		_, _ = conn.WriteToUDP([]byte(ack), to)
	}
	meta.expectSilence(t, "the Meta peer", 500*time.Millisecond)
	s := w.waitIdle()
	w.expectCounts(s, 0, 0)
}

func dialerSDP(e *env) string {
	return "v=0\r\no=- 1 1 IN IP4 " + e.Dialer.IP + "\r\ns=-\r\nc=IN IP4 " + e.Dialer.IP + "\r\nt=0 0\r\nm=audio " +
		fmt.Sprint(e.Dialer.MediaPort) + " RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
}

// readFinal returns the first final response for callID (raw text), or ""
// after 2 s.
func readFinal(t *testing.T, conn *net.UDPConn, callID string) string {
	t.Helper()
	buf := make([]byte, 65535)
	deadline := time.Now().Add(2 * time.Second)
	for {
		_ = conn.SetReadDeadline(deadline)
		n, _, err := conn.ReadFromUDP(buf)
		if err != nil {
			return ""
		}
		res := string(buf[:n])
		m := sipMsg{Text: strings.ReplaceAll(res, "\r\n", "\n")}
		if strings.HasPrefix(m.StartLine(), "SIP/2.0 1") || m.Header("Call-ID") != callID {
			continue
		}
		return res
	}
}
