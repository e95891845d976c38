package test

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// Malformed input from a known peer must get a clear SIP answer (400/488)
// or be dropped when it cannot be parsed, and must leave wagate serving,
// with no call or port held afterwards.

// rawPeer is a UDP socket at a peer's address that sends hand-written SIP.
type rawPeer struct {
	t    *testing.T
	conn *net.UDPConn
	to   *net.UDPAddr
}

func newRawPeer(t *testing.T, ip string, w *wagate) *rawPeer {
	t.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(ip)})
	if err != nil {
		t.Fatalf("raw peer: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	to, err := net.ResolveUDPAddr("udp", w.SIPAddr)
	if err != nil {
		t.Fatal(err)
	}
	return &rawPeer{t: t, conn: conn, to: to}
}

func (p *rawPeer) local() string { return p.conn.LocalAddr().String() }

// replyLimit bounds a raw peer's wait for a response that must come: a
// wait for it, not a timing (a loaded machine may take seconds). Waits
// for a response that must not come stay short.
const replyLimit = 10 * time.Second

// finals reads p's responses until each of ids (Call-IDs) has a final
// (non-1xx) one or wait has passed, and returns the first final of each.
func (p *rawPeer) finals(ids []string, wait time.Duration) map[string]string {
	p.t.Helper()
	out := map[string]string{}
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
	}
	if len(ids) > 0 {
		p.readFinals(wait, func(id, res string) bool {
			if want[id] && out[id] == "" {
				out[id] = res
			}
			return len(out) == len(ids)
		})
	}
	return out
}

// exchange sends msg and returns the status line of the first final
// (non-1xx) response with msg's Call-ID (any response when msg has none),
// or "" when none arrives within wait.
func (p *rawPeer) exchange(msg string, wait time.Duration) string {
	p.t.Helper()
	line, _, _ := strings.Cut(p.exchangeMsg(msg, wait), "\r\n")
	return line
}

// exchangeMsg is exchange returning the whole response.
func (p *rawPeer) exchangeMsg(msg string, wait time.Duration) string {
	p.t.Helper()
	if _, err := p.conn.WriteToUDP([]byte(msg), p.to); err != nil {
		p.t.Fatalf("send: %v", err)
	}
	id := headerOf(msg, "Call-ID")
	got := ""
	p.readFinals(wait, func(rid, res string) bool {
		if id != "" && rid != id {
			return false // a late answer to an earlier message
		}
		got = res
		return true
	})
	return got
}

// readFinals hands each final (non-1xx) response p reads, with its
// Call-ID, to take until take says it has what it waits for or wait has
// passed.
func (p *rawPeer) readFinals(wait time.Duration, take func(callID, res string) bool) {
	buf := make([]byte, 65535)
	_ = p.conn.SetReadDeadline(time.Now().Add(wait))
	for {
		n, _, err := p.conn.ReadFromUDP(buf)
		if err != nil {
			return
		}
		res := string(buf[:n])
		if strings.HasPrefix(res, "SIP/2.0 1") {
			continue
		}
		if take(headerOf(res, "Call-ID"), res) {
			return
		}
	}
}

// headerOf returns the first value of header name in a raw message.
func headerOf(msg, name string) string {
	for _, l := range strings.Split(msg, "\r\n") {
		if l == "" {
			break
		}
		if k, v, ok := strings.Cut(l, ":"); ok && strings.EqualFold(strings.TrimSpace(k), name) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func rawInvite(p *rawPeer, callID, ruser, contentType, body string) string {
	return fmt.Sprintf("INVITE sip:%s@%s SIP/2.0\r\n"+
		"Via: SIP/2.0/UDP %s;branch=z9hG4bK-%s\r\n"+
		"From: <sip:+447700900123@%s>;tag=t-%s\r\n"+
		"To: <sip:%s@%s>\r\n"+
		"Call-ID: %s\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n"+
		"Contact: <sip:meta@%s>\r\n"+
		"Content-Type: %s\r\nContent-Length: %d\r\n\r\n%s",
		ruser, p.to, p.local(), callID, p.local(), callID, ruser, p.to, callID, p.local(), contentType, len(body), body)
}

func TestMalformedInputGetsClearAnswers(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := e.startWagate(wagateOpts{})
	p := newRawPeer(t, e.Meta.IP, w)

	sdp := func(mline string) string {
		return "v=0\r\no=- 1 1 IN IP4 " + e.Meta.IP + "\r\ns=-\r\nc=IN IP4 " + e.Meta.IP + "\r\nt=0 0\r\n" + mline
	}
	tests := []struct {
		name string
		msg  string
		want string // status line prefix; "" = no answer expected
	}{
		{"garbage datagram is dropped", "\x00\x01hello\r\n\r\n", ""},
		// Without a Via and a CSeq no answer could be matched by the
		// sender, so the edge drops the message.
		{"request line only is dropped", "INVITE sip:x@y SIP/2.0\r\n\r\n", ""},
		{"missing Call-ID and CSeq is dropped",
			"INVITE sip:+15550100001@" + p.to.String() + " SIP/2.0\r\nVia: SIP/2.0/UDP " + p.local() + ";branch=z9hG4bK-m1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
			""},
		{"missing Call-ID gets 400",
			"INVITE sip:+15550100001@" + p.to.String() + " SIP/2.0\r\nVia: SIP/2.0/UDP " + p.local() + ";branch=z9hG4bK-m2\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
			"SIP/2.0 400"},
		{"SDP that is not SDP gets 488", rawInvite(p, "m-notsdp", "+15550100001", "application/sdp", "this is not sdp"), "SIP/2.0 488"},
		{"SDP without audio gets 488", rawInvite(p, "m-noaudio", "+15550100001", "application/sdp", sdp("m=video 4000 RTP/AVP 96\r\n")), "SIP/2.0 488"},
		{"SDP audio port 0 gets 488", rawInvite(p, "m-port0", "+15550100001", "application/sdp", sdp("m=audio 0 RTP/AVP 0\r\n")), "SIP/2.0 488"},
		{"SDP with a bad address gets 488", rawInvite(p, "m-badc", "+15550100001", "application/sdp",
			"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 999.1.1.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"), "SIP/2.0 488"},
		{"SDP with only unknown codecs gets 488", rawInvite(p, "m-codec", "+15550100001", "application/sdp", sdp("m=audio 4000 RTP/AVP 98\r\na=rtpmap:98 speex/16000\r\n")), "SIP/2.0 488"},
		{"huge SDP gets 513", rawInvite(p, "m-huge", "+15550100001", "application/sdp", sdp("m=audio 4000 RTP/AVP 0\r\n")+strings.Repeat("a=x:"+strings.Repeat("y", 900)+"\r\n", 60)), "SIP/2.0 513"},
	}
	for _, tt := range tests {
		wait := 1500 * time.Millisecond // for no answer
		if tt.want != "" {
			wait = replyLimit
		}
		got := p.exchange(tt.msg, wait)
		switch {
		case tt.want == "" && got != "":
			t.Errorf("%s: got %q, want no answer", tt.name, got)
		case tt.want != "" && !strings.HasPrefix(got, tt.want):
			t.Errorf("%s: got %q, want %s", tt.name, got, tt.want)
		}
	}

	// Still serving, and nothing was kept.
	opt := fmt.Sprintf("OPTIONS sip:%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK-opt\r\nFrom: <sip:meta@%s>;tag=o\r\nTo: <sip:%s>\r\nCall-ID: m-options\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
		p.to, p.local(), p.local(), p.to)
	if got := p.exchange(opt, replyLimit); !strings.HasPrefix(got, "SIP/2.0 200") {
		t.Fatalf("OPTIONS after malformed input: got %q, want 200", got)
	}
	s := w.waitIdle()
	if s.CallsStarted != s.CallsEnded {
		t.Errorf("calls started %d, ended %d: a malformed INVITE left a call behind", s.CallsStarted, s.CallsEnded)
	}
}
