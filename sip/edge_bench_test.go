package sip

import (
	"net"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
)

// benchInvite is an INVITE shaped like Meta's (Record-Route, x-wa-meta
// headers, an SDES offer), about 1.2 KB.
const benchHeader = "INVITE sip:+15550100001@127.0.0.1:5072;transport=udp SIP/2.0\r\n" +
	"Via: SIP/2.0/UDP 127.0.0.2:5060;branch=z9hG4bK-524287-1---f33cbb1a4b1e8d2d;rport\r\n" +
	"Max-Forwards: 70\r\n" +
	"Record-Route: <sip:127.0.0.2:5060;transport=udp;lr>\r\n" +
	"Contact: <sip:+447700900123@127.0.0.2:5060>\r\n" +
	"To: <sip:+15550100001@127.0.0.1:5072>\r\n" +
	"From: <sip:+447700900123@wa.meta.vc>;tag=c4f3e3a2\r\n" +
	"Call-ID: outgoing:wacid.HBgLMTIxNzQ0NjY2NDgVAgARGBIyRDQ5OUMyQ0YzRkQ0\r\n" +
	"CSeq: 1 INVITE\r\n" +
	"Allow: INVITE, ACK, CANCEL, BYE, NOTIFY, OPTIONS\r\n" +
	"x-wa-meta-wacid: wacid.HBgLMTIxNzQ0NjY2NDgVAgARGBIyRDQ5OUMyQ0YzRkQ0\r\n" +
	"x-wa-meta-phone-number-id: 100000000000001\r\n" +
	"Content-Type: application/sdp\r\n" +
	"Content-Length: "

const benchSDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\n" +
	"m=audio 4000 RTP/SAVP 111 126\r\na=rtpmap:111 opus/48000/2\r\n" +
	"a=fmtp:111 maxaveragebitrate=20000;maxplaybackrate=16000;minptime=20;sprop-maxcapturerate=16000;useinbandfec=1\r\n" +
	"a=rtpmap:126 telephone-event/8000\r\na=ptime:20\r\na=rtcp-mux\r\n" +
	"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\n" +
	"a=sendrecv\r\n"

var benchInvite = []byte(benchHeader + itoa(len(benchSDP)) + "\r\n\r\n" + benchSDP)

// benchResponse is a PBX's 200 to wagate's INVITE (its top Via is
// wagate's: the test config's sip.host), with an SDP answer.
var benchResponse = "SIP/2.0 200 OK\r\n" +
	"Via: SIP/2.0/UDP 127.0.0.1:5072;branch=z9hG4bK-wagate-1;rport=5072;received=127.0.0.1\r\n" +
	"Record-Route: <sip:127.0.0.3:5060;lr>\r\n" +
	"From: <sip:+447700900123@127.0.0.1>;tag=wagate-1\r\n" +
	"To: \"Agent 7\" <sip:7001@127.0.0.3>;tag=pbx-77\r\n" +
	"Call-ID: b2bua-leg-2-4f1c\r\n" +
	"CSeq: 1 INVITE\r\n" +
	"Contact: <sip:7001@127.0.0.3:5060>\r\n" +
	"Allow: INVITE, ACK, CANCEL, BYE, OPTIONS\r\n" +
	"Supported: replaces, timer\r\n" +
	"Content-Type: application/sdp\r\n" +
	"Content-Length: " + itoa(len(benchSDP)) + "\r\n\r\n" + benchSDP

// benchACK and benchBYE are SIPp's ACK and BYE in the INVITE's dialog.
var benchACK = "ACK sip:+15550100001@127.0.0.1:5072 SIP/2.0\r\n" +
	"Via: SIP/2.0/UDP 127.0.0.2:5060;branch=z9hG4bK-2\r\n" +
	"From: sipp <sip:sipp@127.0.0.2:5060>;tag=1\r\n" +
	"To: <sip:+15550100001@127.0.0.1:5072>;tag=wagate-9\r\n" +
	"Call-ID: 1-4242@127.0.0.2\r\n" +
	"CSeq: 1 ACK\r\n" +
	"Contact: sip:sipp@127.0.0.2:5060\r\n" +
	"Max-Forwards: 70\r\n" +
	"Subject: Performance Test\r\n" +
	"Content-Length: 0\r\n\r\n"

var benchBYE = strings.NewReplacer("ACK sip:", "BYE sip:", "CSeq: 1 ACK", "CSeq: 2 BYE", "z9hG4bK-2", "z9hG4bK-3").Replace(benchACK)

// BenchmarkEdgeInbound is what the edge costs per message from an
// endpoint (split, Via rewrite, canonical form, sipgo parse, checks), to
// compare with BenchmarkSipgoParse, the parse sipgo does anyway.
func BenchmarkEdgeInbound(b *testing.B) { benchInbound(b, benchInvite) }

// benchInbound runs one message from Meta through the edge, which must
// pass it.
func benchInbound(b *testing.B, msg []byte) {
	e := testEdge(b, nil)
	b.ReportAllocs()
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		if v := e.inbound(msg, fromMeta, "UDP"); v.act != actPass {
			b.Fatalf("action %d: %s", v.act, v.reply)
		}
	}
}

// BenchmarkEdgeMessages is the edge's cost for the other messages of a
// call: a PBX's 200 with SDP (a response), an ACK and a BYE.
func BenchmarkEdgeMessages(b *testing.B) {
	for _, c := range []struct{ name, msg string }{{"200", benchResponse}, {"ACK", benchACK}, {"BYE", benchBYE}} {
		b.Run(c.name, func(b *testing.B) { benchInbound(b, []byte(c.msg)) })
	}
}

// BenchmarkEdgeReadFrom is the UDP read path as sipgo calls it: the edge
// writes the canonical INVITE into sipgo's read buffer.
func BenchmarkEdgeReadFrom(b *testing.B) {
	e := testEdge(b, nil)
	pc := &replayConn{msg: benchInvite, from: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2), Port: 5060}}
	c := newEdgePacketConn(pc, e)
	p := make([]byte, 65535)
	b.ReportAllocs()
	b.SetBytes(int64(len(benchInvite)))
	for b.Loop() {
		if n, _, err := c.ReadFrom(p); err != nil || n == 0 {
			b.Fatal(n, err)
		}
	}
}

// replayConn is a PacketConn whose every read is msg from from.
type replayConn struct {
	net.PacketConn
	msg  []byte
	from net.Addr
}

func (c *replayConn) ReadFrom(p []byte) (int, net.Addr, error) { return copy(p, c.msg), c.from, nil }

// WriteTo takes the edge's stateless answers and drops them.
func (c *replayConn) WriteTo(p []byte, _ net.Addr) (int, error) { return len(p), nil }

// BenchmarkEdgeStranger is the cost of a stranger's INVITE under the
// default unknown_sources: drop.
func BenchmarkEdgeStranger(b *testing.B) {
	e := testEdge(b, nil)
	msg := benchInvite
	b.ReportAllocs()
	for b.Loop() {
		if v := e.inbound(msg, fromStranger, "UDP"); v.act != actDrop {
			b.Fatal("stranger passed")
		}
	}
}

func BenchmarkSipgoParse(b *testing.B) {
	p := sip.NewParser()
	msg := benchInvite
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.ParseSIP(msg); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRelease is what emptying a parsed INVITE costs when a B2BUA
// handler is done with it (the parse is not timed).
func BenchmarkRelease(b *testing.B) {
	p := sip.NewParser()
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		m, err := p.ParseSIP(benchInvite)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		Release(m.(*sip.Request))
	}
}
