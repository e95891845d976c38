package sip

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
	"github.com/wagate/wagate/configs"
)

// FuzzEdgeInbound: whatever arrives, the edge neither panics nor passes
// anything the B2BUA could trip on. A passed request parses and has every
// header the handlers rely on, and the edge passes its own output again
// (its canonical form is stable); an answer is a response the sender can
// match (Via and CSeq). Run: go test -run '^$' -fuzz FuzzEdgeInbound ./sip/
func FuzzEdgeInbound(f *testing.F) {
	f.Add([]byte(options()), false)
	f.Add([]byte(options("Require: x")), true)
	f.Add([]byte(without(options(), "To:")), false)
	f.Add([]byte("INVITE sip:x SIP/2.0\r\nTO :\r\n <sip:a@b>\r\n\r\n"), false)
	f.Add([]byte("SIP/2.0 200 OK\r\nv: SIP/2.0/UDP a;branch=z9hG4bK1\r\nf: <sip:a@b>;tag=1\r\nt: <sip:c@d>\r\ni: x\r\nCSeq: 1 INVITE\r\n\r\n"), false)
	f.Add([]byte("OPTIONS sip:a@b SIP/2.0\nVia: SIP/2.0/TCP h\n ;branch=z9hG4bK2\nFrom: <sip:a@b>;tag=2\nTo: <sip:a@b>\nCall-ID: 2\nCSeq: 2 OPTIONS\nMax-Forwards: 1\nl: 3\n\nabc"), true)
	e := testEdge(f, nil)
	// A moved peer of live calls passes only what belongs to a dialog.
	moved := &configs.Endpoint{Name: "pbx", SourceCIDRs: []string{fromStranger.Addr().String()}}
	pe := testEdge(f, nil)
	pe.dialogPeer = func(ip netip.Addr) *configs.Endpoint {
		if moved.HasSource(ip) {
			return moved
		}
		return nil
	}
	f.Fuzz(func(t *testing.T, data []byte, stream bool) {
		tr := "UDP"
		if stream {
			tr = "TCP"
			msg, n, st := frameMessage(data, 65535)
			if n < 0 || n > len(data) || (st == frameOK && len(msg) != n) {
				t.Fatalf("frame: n=%d status=%d of %d bytes", n, st, len(data))
			}
			if st != frameOK {
				return
			}
			data = msg
		}
		if pv := pe.inbound(data, fromStranger, tr); pv.act == actPass {
			if msg, err := sip.ParseMessage(pv.msg); err != nil {
				t.Fatalf("passed message from a moved peer does not parse: %v\n%q", err, pv.msg)
			} else if req, ok := msg.(*sip.Request); ok && req.Method != sip.CANCEL {
				if tag, _ := req.To().Params.Get("tag"); tag == "" {
					t.Fatalf("a moved peer's request out of any dialog passed:\n%q", pv.msg)
				}
			}
		}
		v := e.inbound(data, fromMeta, tr)
		switch v.act {
		case actReply:
			// The answer echoes the request's Via and CSeq, which may be
			// valid SIP that sipgo cannot parse (RFC 4475's intmeth), so
			// it is checked for shape, not with sipgo.
			r, err := splitMessage(v.reply)
			if err != nil || r.isRequest() || !strings.HasPrefix(r.start, "SIP/2.0 ") {
				t.Fatalf("reply is not a response: %v\n%q", err, v.reply)
			}
			if r.count(hdrVia) == 0 || r.count(hdrCSeq) != 1 {
				t.Fatalf("reply the sender cannot match:\n%q", v.reply)
			}
			for _, h := range r.headers {
				if hasControl(h.value) {
					t.Fatalf("reply carries a control character:\n%q", v.reply)
				}
			}
		case actPass:
			msg, err := sip.ParseMessage(v.msg)
			if err != nil {
				t.Fatalf("passed message does not parse: %v\n%q", err, v.msg)
			}
			req, ok := msg.(*sip.Request)
			if !ok {
				return
			}
			if req.To() == nil || req.From() == nil || req.CallID() == nil || req.CSeq() == nil || req.Via() == nil || req.MaxForwards() == nil {
				t.Fatalf("passed request lacks a mandatory header:\n%q", v.msg)
			}
			if again := e.inbound(v.msg, fromMeta, tr); again.act != actPass {
				t.Fatalf("the edge refuses its own output (action %d, %q):\n%q", again.act, again.reply, v.msg)
			}
		}
	})
}
