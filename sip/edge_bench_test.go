package sip

import (
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

// BenchmarkEdgeInbound is what the edge costs per message from an
// endpoint (split, Via rewrite, canonical form, sipgo parse, checks), to
// compare with BenchmarkSipgoParse, the parse sipgo does anyway.
func BenchmarkEdgeInbound(b *testing.B) {
	e := testEdge(b, nil)
	msg := benchInvite
	b.ReportAllocs()
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		if v := e.inbound(msg, fromMeta, "UDP"); v.act != actPass {
			b.Fatalf("action %d: %s", v.act, v.reply)
		}
	}
}

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
