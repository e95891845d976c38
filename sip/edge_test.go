package sip

import (
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/wagate/wagate/configs"
)

var (
	fromMeta     = netip.MustParseAddrPort("127.0.0.2:5060")
	fromStranger = netip.MustParseAddrPort("127.0.0.9:5060")
)

func testEdge(t testing.TB, mut func(*configs.Config)) *edge {
	t.Helper()
	cfg := testConfig(t)
	if mut != nil {
		mut(cfg)
	}
	p := new(atomic.Pointer[configs.Config])
	p.Store(cfg)
	return newEdge(p, slog.New(slog.NewTextHandler(io.Discard, nil)))
}

// msgLines builds a message from lines joined by CRLF, ending with the
// empty line and body.
func msgLines(body string, lines ...string) string {
	return strings.Join(lines, "\r\n") + "\r\n\r\n" + body
}

// options is a well-formed OPTIONS from the meta endpoint, with extra
// header lines before the end of the header.
func options(extra ...string) string {
	lines := append([]string{
		"OPTIONS sip:+15550100001@127.0.0.1:5072 SIP/2.0",
		"Via: SIP/2.0/UDP 127.0.0.2:5060;branch=z9hG4bK-e1",
		"From: <sip:meta@127.0.0.2>;tag=f1",
		"To: <sip:+15550100001@127.0.0.1>",
		"Call-ID: edge-1",
		"CSeq: 7 OPTIONS",
		"Max-Forwards: 70",
	}, extra...)
	return msgLines("", append(lines, "Content-Length: 0")...)
}

// without drops the lines of msg that start with prefix.
func without(msg, prefix string) string {
	var out []string
	for _, l := range strings.Split(msg, "\r\n") {
		if !strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\r\n")
}

func replaceLine(msg, prefix, line string) string {
	ls := strings.Split(msg, "\r\n")
	for i, l := range ls {
		if strings.HasPrefix(l, prefix) {
			ls[i] = line
		}
	}
	return strings.Join(ls, "\r\n")
}

func TestEdgeRequests(t *testing.T) {
	e := testEdge(t, nil)
	long := strings.Repeat("x", 33<<10)
	tests := []struct {
		name    string
		msg     string
		src     netip.AddrPort
		want    action
		code    string // status line prefix of the reply
		warning string // substring of the reply's Warning
	}{
		{"well formed", options(), fromMeta, actPass, "", ""},
		{"stranger dropped", options(), fromStranger, actDrop, "", ""},
		{"keep-alive", "\r\n\r\n", fromMeta, actDrop, "", ""},
		{"missing To", without(options(), "To:"), fromMeta, actReply, "SIP/2.0 400", "missing To"},
		{"missing From", without(options(), "From:"), fromMeta, actReply, "SIP/2.0 400", "missing From"},
		{"missing Call-ID", without(options(), "Call-ID:"), fromMeta, actReply, "SIP/2.0 400", "missing Call-ID"},
		{"missing Max-Forwards", without(options(), "Max-Forwards:"), fromMeta, actReply, "SIP/2.0 400", "missing Max-Forwards"},
		{"missing CSeq: no answer can be matched", without(options(), "CSeq:"), fromMeta, actDrop, "", ""},
		{"missing Via: no answer can be matched", without(options(), "Via:"), fromMeta, actDrop, "", ""},
		{"To twice", options("t: <sip:other@127.0.0.1>"), fromMeta, actReply, "SIP/2.0 400", "To header given 2 times"},
		{"CSeq method mismatch", replaceLine(options(), "CSeq:", "CSeq: 7 INVITE"), fromMeta, actReply, "SIP/2.0 400", "CSeq method"},
		{"CSeq method in another case", replaceLine(options(), "CSeq:", "CSeq: 7 options"), fromMeta, actReply, "SIP/2.0 400", "CSeq method"},
		{"two Content-Length", options("Content-Length: 0"), fromMeta, actReply, "SIP/2.0 400", "Content-Length"},
		{"Content-Length past the body", replaceLine(options(), "Content-Length:", "Content-Length: 50"), fromMeta, actReply, "SIP/2.0 400", "unparseable"},
		{"negative Content-Length", replaceLine(options(), "Content-Length:", "Content-Length: -1"), fromMeta, actReply, "SIP/2.0 400", ""},
		{"SIP/7.0", strings.Replace(options(), " SIP/2.0\r\n", " SIP/7.0\r\n", 1), fromMeta, actReply, "SIP/2.0 505", "SIP/7.0"},
		{"not a version", strings.Replace(options(), " SIP/2.0\r\n", " HTTP/1.1\r\n", 1), fromMeta, actReply, "SIP/2.0 400", ""},
		{"two spaces in the request line", strings.Replace(options(), "OPTIONS sip", "OPTIONS  sip", 1), fromMeta, actReply, "SIP/2.0 400", "request line"},
		{"Require an extension", options("Require: 100rel, foo"), fromMeta, actReply, "SIP/2.0 420", ""},
		{"Max-Forwards 0 on OPTIONS is answered by the UAS", replaceLine(options(), "Max-Forwards:", "Max-Forwards: 0"), fromMeta, actPass, "", ""},
		{"unknown URI scheme", strings.Replace(options(), "OPTIONS sip:+15550100001@127.0.0.1:5072", "OPTIONS isbn:2983792873", 1), fromMeta, actReply, "SIP/2.0 416", ""},
		{"over max_message_size", options("X-Long: " + long), fromMeta, actReply, "SIP/2.0 513", ""},
		{"a bare CR", options("X-A: a\rX-B: b"), fromMeta, actReply, "SIP/2.0 400", "CR"},
		{"no empty line", strings.TrimSuffix(options(), "\r\n\r\n"), fromMeta, actReply, "SIP/2.0 400", "empty line"},
		{"garbage", "\x00\x01hello\r\n\r\n", fromMeta, actDrop, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := e.inbound([]byte(tt.msg), tt.src, "UDP")
			if v.act != tt.want {
				t.Fatalf("action %d, want %d (reply %q)", v.act, tt.want, v.reply)
			}
			if tt.want != actReply {
				return
			}
			reply := string(v.reply)
			if !strings.HasPrefix(reply, tt.code) {
				t.Fatalf("reply %q, want %s", firstLine(reply), tt.code)
			}
			res, err := sip.ParseMessage(v.reply)
			if err != nil {
				t.Fatalf("the edge's reply does not parse: %v\n%s", err, reply)
			}
			r := res.(*sip.Response)
			if r.Via() == nil || r.CSeq() == nil || r.To() == nil {
				t.Errorf("reply lacks Via, CSeq or To:\n%s", reply)
			}
			if tag, _ := r.To().Params.Get("tag"); tag == "" {
				t.Errorf("reply has no To tag:\n%s", reply)
			}
			if tt.warning != "" && !strings.Contains(hval(r, "Warning"), tt.warning) {
				t.Errorf("Warning %q does not mention %q", hval(r, "Warning"), tt.warning)
			}
			if !strings.HasPrefix(hval(r, "Reason"), "SIP;cause="+tt.code[8:]) {
				t.Errorf("Reason %q, want the code", hval(r, "Reason"))
			}
		})
	}
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\r\n")
	return l
}

func hval(m *sip.Response, name string) string {
	if h := m.GetHeader(name); h != nil {
		return h.Value()
	}
	return ""
}

// TestEdgeRequire420: a 420 lists the option tags wagate does not
// support; ACK and CANCEL are never refused for Require (RFC 3261 §8.2.2.3).
func TestEdgeRequire420(t *testing.T) {
	e := testEdge(t, nil)
	v := e.inbound([]byte(options("Require: 100rel,  timer")), fromMeta, "UDP")
	res, err := sip.ParseMessage(v.reply)
	if err != nil {
		t.Fatal(err)
	}
	if got := hval(res.(*sip.Response), "Unsupported"); got != "100rel, timer" {
		t.Errorf("Unsupported %q, want \"100rel, timer\"", got)
	}
	cancel := strings.NewReplacer("OPTIONS sip", "CANCEL sip", "7 OPTIONS", "7 CANCEL").Replace(options("Require: 100rel"))
	if v := e.inbound([]byte(cancel), fromMeta, "UDP"); v.act != actPass {
		t.Errorf("CANCEL with Require: action %d, want it passed", v.act)
	}
}

// TestEdgeACKNeverAnswered: a malformed ACK is dropped, never answered.
func TestEdgeACKNeverAnswered(t *testing.T) {
	e := testEdge(t, nil)
	ack := strings.NewReplacer("OPTIONS sip", "ACK sip", "7 OPTIONS", "7 ACK").Replace(options())
	for _, msg := range []string{
		without(ack, "To:"),
		strings.Replace(ack, " SIP/2.0\r\n", " SIP/3.0\r\n", 1),
		replaceLine(ack, "CSeq:", "CSeq: 7 INVITE"),
		replaceLine(ack, "Max-Forwards:", "Max-Forwards: 0"),
	} {
		if v := e.inbound([]byte(msg), fromMeta, "UDP"); v.act != actDrop {
			t.Errorf("malformed ACK: action %d, want drop\n%s", v.act, msg)
		}
	}
}

// TestEdgeCanonicalForm: what the edge passes is what sipgo will parse,
// with one line per header field, CRLF line ends, the Content-Length the
// body has, and a top Via that makes sipgo answer the packet's source.
func TestEdgeCanonicalForm(t *testing.T) {
	e := testEdge(t, nil)
	folded := "OPTIONS sip:+15550100001@127.0.0.1 SIP/2.0\n" +
		"v: SIP/2.0/UDP 10.9.9.9:5999\n ;branch=z9hG4bK-fold\n" +
		"TO :\n <sip:+15550100001@127.0.0.1>\n" +
		"from   : <sip:meta@127.0.0.2>\n  ;tag=ff\n" +
		"i: fold-1\ncseq: 1\n OPTIONS\nMax-Forwards: 70\nContent-Length: 4\n\nbodyEXTRA"
	v := e.inbound([]byte(folded), fromMeta, "UDP")
	if v.act != actPass {
		t.Fatalf("folded message: action %d, reply %q", v.act, v.reply)
	}
	msg, err := sip.ParseMessage(v.msg)
	if err != nil {
		t.Fatalf("passed message does not parse: %v\n%s", err, v.msg)
	}
	req := msg.(*sip.Request)
	if string(req.Body()) != "body" {
		t.Errorf("body %q, want the 4 bytes Content-Length names (RFC 3261 §18.3)", req.Body())
	}
	if req.CSeq().SeqNo != 1 || req.CSeq().MethodName != "OPTIONS" || req.CallID().Value() != "fold-1" {
		t.Errorf("CSeq %v / Call-ID %v not read through the folding", req.CSeq(), req.CallID())
	}
	if rport, ok := req.Via().Params.Get("rport"); !ok || rport != "" {
		t.Errorf("top Via %q: want a bare rport so sipgo answers the source port", req.Via().Value())
	}
	if strings.Contains(string(v.msg), "\n ") || strings.Count(string(v.msg), "\n") != strings.Count(string(v.msg), "\r\n") {
		t.Errorf("passed message is not canonical:\n%q", v.msg)
	}
	// On a stream the source is written into the Via: if the connection
	// is gone, sipgo reconnects to the sender and nowhere else.
	v = e.inbound([]byte(options()), netip.MustParseAddrPort("127.0.0.2:40404"), "TCP")
	msg, err = sip.ParseMessage(v.msg)
	if err != nil {
		t.Fatal(err)
	}
	via := msg.(*sip.Request).Via()
	if r, _ := via.Params.Get("received"); r != "127.0.0.2" {
		t.Errorf("stream Via received=%q, want the peer's address", r)
	}
	if r, _ := via.Params.Get("rport"); r != "40404" {
		t.Errorf("stream Via rport=%q, want the peer's port", r)
	}
}

func TestEdgeResponses(t *testing.T) {
	e := testEdge(t, nil)
	res := msgLines("", "SIP/2.0 180 Ringing",
		"Via: SIP/2.0/UDP 127.0.0.1:5072;branch=z9hG4bK-r1",
		"From: <sip:a@127.0.0.1>;tag=1", "To: <sip:b@127.0.0.2>;tag=2",
		"Call-ID: r1", "CSeq: 1 INVITE", "Content-Length: 0")
	if v := e.inbound([]byte(res), fromMeta, "UDP"); v.act != actPass {
		t.Errorf("well-formed response: action %d", v.act)
	}
	if v := e.inbound([]byte(res), fromStranger, "UDP"); v.act != actDrop || v.reply != nil {
		t.Errorf("stranger's response: action %d, reply %q: want dropped", v.act, v.reply)
	}
	for _, h := range []string{"Via:", "CSeq:", "Call-ID:", "From:", "To:"} {
		if v := e.inbound([]byte(without(res, h)), fromMeta, "UDP"); v.act != actDrop || v.reply != nil {
			t.Errorf("response without %s: action %d, reply %q: want dropped, never answered", h, v.act, v.reply)
		}
	}
}

// TestEdgeStrangerReject: with unknown_sources reject, a stranger gets one
// stateless 403 per request up to its rate, then nothing while blocked.
func TestEdgeStrangerReject(t *testing.T) {
	e := testEdge(t, func(c *configs.Config) {
		c.SIP.UnknownSources = configs.UnknownSourcesReject
		c.SIP.Flood.StrangerRate = 5
		c.SIP.Flood.BlockTime = configs.Duration(time.Minute)
	})
	now := time.Unix(1000, 0)
	e.flood.now = func() time.Time { return now }
	var answered int
	for range 50 {
		v := e.inbound([]byte(options()), fromStranger, "UDP")
		if v.act == actReply {
			answered++
			if !strings.HasPrefix(string(v.reply), "SIP/2.0 403 ") {
				t.Fatalf("stranger got %q, want 403", firstLine(string(v.reply)))
			}
		}
	}
	if answered != 10 {
		t.Errorf("stranger got %d answers to 50 requests at once, want the burst of 10 (2 s at 5/s)", answered)
	}
	now = now.Add(30 * time.Second)
	if v := e.inbound([]byte(options()), fromStranger, "UDP"); v.act != actDrop {
		t.Errorf("blocked stranger answered 30 s later")
	}
	now = now.Add(31 * time.Second)
	if v := e.inbound([]byte(options()), fromStranger, "UDP"); v.act != actReply {
		t.Errorf("stranger still blocked after block_time")
	}
	if got := e.snapshot().Refused["blocked"]; got != 41 {
		t.Errorf("refused.blocked = %d, want 41", got)
	}
}

// TestEdgeEndpointRate: an endpoint with max_request_rate is blocked when
// over it; one without is never limited.
func TestEdgeEndpointRate(t *testing.T) {
	e := testEdge(t, func(c *configs.Config) {
		c.Endpoints[0].MaxRequestRate = 2 // meta
	})
	now := time.Unix(1000, 0)
	e.flood.now = func() time.Time { return now }
	passed := 0
	for range 20 {
		if e.inbound([]byte(options()), fromMeta, "UDP").act == actPass {
			passed++
		}
	}
	if passed != 4 {
		t.Errorf("passed %d of 20 at once from an endpoint at 2/s, want the burst of 4", passed)
	}
	pbx := netip.MustParseAddrPort("127.0.0.3:5060")
	for i := range 1000 {
		if e.inbound([]byte(options()), pbx, "UDP").act != actPass {
			t.Fatalf("request %d from an endpoint without a rate was refused", i)
		}
	}
}

func TestFloodGuardTableBounded(t *testing.T) {
	g := newFloodGuard()
	g.max = 100
	now := time.Unix(1000, 0)
	g.now = func() time.Time { return now }
	for i := range 1000 {
		g.allow(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), 10, time.Minute)
	}
	if n := g.size(); n > 100 {
		t.Errorf("table holds %d sources, want at most 100", n)
	}
	now = now.Add(2 * time.Minute)
	if v := g.allow(netip.MustParseAddr("10.9.9.9"), 10, time.Minute); v != floodAllow {
		t.Errorf("after the idle entries expired a new source is still refused")
	}
}

// TestEdgeDialogPeer: a source no endpoint has any more, but that a live
// call's leg has (a reload moved its endpoint), passes within dialogs
// only: its BYE, CANCEL and responses go through; an INVITE or OPTIONS
// out of any dialog is a stranger's.
func TestEdgeDialogPeer(t *testing.T) {
	e := testEdge(t, func(c *configs.Config) { c.SIP.UnknownSources = configs.UnknownSourcesReject })
	old := &configs.Endpoint{Name: "pbx", Kind: configs.KindPBX, SourceCIDRs: []string{fromStranger.Addr().String()}}
	e.dialogPeer = func(ip netip.Addr) *configs.Endpoint {
		if old.HasSource(ip) {
			return old
		}
		return nil
	}
	via := "Via: SIP/2.0/UDP 127.0.0.9:5060;branch=z9hG4bK-e1"
	bye := replaceLine(replaceLine(replaceLine(options(), "OPTIONS ", "BYE sip:wagate@127.0.0.1:5072 SIP/2.0"),
		"To:", "To: <sip:+15550100001@127.0.0.1>;tag=t1"), "CSeq:", "CSeq: 8 BYE")
	cancel := replaceLine(replaceLine(options(), "OPTIONS ", "CANCEL sip:+15550100001@127.0.0.1:5072 SIP/2.0"), "CSeq:", "CSeq: 7 CANCEL")
	for _, tc := range []struct {
		name, msg string
		pass      bool
	}{
		{"BYE in a dialog", bye, true},
		{"compact To with a tag", replaceLine(bye, "To:", "t: <sip:+15550100001@127.0.0.1>;tag=t1"), true},
		{"CANCEL", cancel, true},
		{"OPTIONS out of dialog", options(), false},
		{"INVITE out of dialog", replaceLine(replaceLine(options(), "OPTIONS ", "INVITE sip:+15550100001@127.0.0.1:5072 SIP/2.0"), "CSeq:", "CSeq: 1 INVITE"), false},
		{"a tag in the URI only", replaceLine(bye, "To:", "To: <sip:+15550100001@127.0.0.1;tag=t1>"), false},
	} {
		v := e.inbound([]byte(replaceLine(tc.msg, "Via:", via)), fromStranger, "UDP")
		if pass := v.act == actPass; pass != tc.pass {
			t.Errorf("%s from a live call's moved peer: passed %v, want %v (reply %q)", tc.name, pass, tc.pass, firstLine(string(v.reply)))
		}
		if !tc.pass && (v.act != actReply || !strings.HasPrefix(string(v.reply), "SIP/2.0 403 ")) {
			t.Errorf("%s: got %q, want a stranger's 403", tc.name, firstLine(string(v.reply)))
		}
	}
	// Once its calls have ended, it is a stranger again.
	old.SourceCIDRs = nil
	if v := e.inbound([]byte(replaceLine(bye, "Via:", via)), fromStranger, "UDP"); v.act == actPass {
		t.Errorf("BYE passed from a source no endpoint and no live call has")
	}
}

// TestEdgeTLSWhatsAppTransport: Meta signals over TLS only. From the
// source_cidrs of a whatsapp endpoint on transport tls only TLS is
// Meta's; UDP (whose source anyone can forge) and TCP are dropped
// unanswered. Its proxy_cidrs (Kamailio forwarding Meta's requests) are
// its sources over any transport, also for the live calls of an endpoint
// a reload removed.
func TestEdgeTLSWhatsAppTransport(t *testing.T) {
	proxy := netip.MustParseAddrPort("127.0.0.5:5060")
	e := testEdge(t, func(c *configs.Config) {
		ep := c.Endpoint("meta")
		ep.Transport, ep.ProxyCIDRs = "tls", []string{proxy.Addr().String()}
		ep.Prefixes, ep.ProxyPrefixes = nil, nil
		c.Reindex()
	})
	for _, tc := range []struct {
		name string
		src  netip.AddrPort
		tr   string
		pass bool
	}{
		{"TLS from Meta", fromMeta, "TLS", true},
		{"UDP from Meta", fromMeta, "UDP", false},
		{"TCP from Meta", fromMeta, "TCP", false},
		{"UDP from the proxy", proxy, "UDP", true},
		{"TCP from the proxy", proxy, "TCP", true},
	} {
		before := e.snapshot().Refused["wrong_transport"]
		v := e.inbound([]byte(options()), tc.src, tc.tr)
		if pass := v.act == actPass; pass != tc.pass {
			t.Errorf("%s: passed %v, want %v", tc.name, pass, tc.pass)
		}
		if tc.pass {
			continue
		}
		if v.act != actDrop || v.close != (tc.tr != "UDP") {
			t.Errorf("%s: action %d close %v, want dropped unanswered (a stream closed)", tc.name, v.act, v.close)
		}
		if n := e.snapshot().Refused["wrong_transport"]; n != before+1 {
			t.Errorf("%s: wrong_transport %d, want %d", tc.name, n, before+1)
		}
	}

	// A reload removed the endpoint; its live calls keep their dialogs
	// through its proxy, not through UDP from its Meta addresses.
	gone := netip.MustParseAddrPort("127.0.0.9:5060")
	old := &configs.Endpoint{Name: "meta-old", Kind: configs.KindWhatsApp, Transport: "tls", SourceCIDRs: []string{"127.0.0.8"}}
	e.dialogPeer = func(ip netip.Addr) *configs.Endpoint {
		if old.HasSource(ip) {
			return old
		}
		return nil
	}
	bye := replaceLine(replaceLine(replaceLine(options(), "OPTIONS ", "BYE sip:wagate@127.0.0.1:5072 SIP/2.0"),
		"To:", "To: <sip:+15550100001@127.0.0.1>;tag=t1"), "CSeq:", "CSeq: 8 BYE")
	if v := e.inbound([]byte(bye), netip.MustParseAddrPort("127.0.0.8:5060"), "UDP"); v.act == actPass {
		t.Errorf("a UDP BYE from a removed TLS endpoint's Meta address passed")
	}
	old.ProxyCIDRs = []string{gone.Addr().String()}
	if v := e.inbound([]byte(bye), gone, "UDP"); v.act != actPass {
		t.Errorf("a UDP BYE from a removed TLS endpoint's proxy was refused: %q", firstLine(string(v.reply)))
	}
}
