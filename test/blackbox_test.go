package test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestBlackBoxMutations is a black-box fuzzer against the real binary:
// well-formed SIP messages (INVITEs from Meta and from the dialer,
// OPTIONS, BYE, CANCEL, ACK, responses) are mutated at random — bytes
// flipped, inserted and deleted, lines dropped, doubled, swapped and
// folded, CR/LF/NUL inserted, values blown up, Content-Length lied about —
// and sent from configured endpoints and from a stranger over UDP and TCP.
// wagate must stay up and keep answering, a stranger must get nothing
// back, and when it is over no call or port may be left.
//
// make test sends a short run (WAGATE_BLACKBOX_COUNT, default 1500);
// make fuzz a long one. WAGATE_BLACKBOX_SEED replays a run; the seed is
// logged.
func TestBlackBoxMutations(t *testing.T) {
	t.Parallel()
	count := 1500
	if v, err := strconv.Atoi(os.Getenv("WAGATE_BLACKBOX_COUNT")); err == nil && v > 0 {
		count = v
	}
	seed := uint64(time.Now().UnixNano())
	if v, err := strconv.ParseUint(os.Getenv("WAGATE_BLACKBOX_SEED"), 10, 64); err == nil {
		seed = v
	}
	t.Logf("WAGATE_BLACKBOX_SEED=%d WAGATE_BLACKBOX_COUNT=%d", seed, count)
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))

	e := newEnv(t)
	w := e.startWagate(wagateOpts{RingTimeout: "2s"})
	// The PBX and Meta refuse every call at once, so a mutated INVITE that
	// is still a good call ends without holding anything.
	startBusyUAS(t, e.PBX.Addr())
	startBusyUAS(t, e.Meta.Addr())

	meta := newRawPeer(t, e.Meta.IP, w)
	dialer := newRawPeer(t, e.Dialer.IP, w)
	stranger := newRawPeer(t, e.Stranger.IP, w)
	var strangerGot atomic.Int64
	go func() {
		buf := make([]byte, 65536)
		for {
			if _, _, err := stranger.conn.ReadFromUDP(buf); err != nil {
				return
			}
			strangerGot.Add(1)
		}
	}()
	drain := func(p *rawPeer) {
		go func() {
			buf := make([]byte, 65536)
			for {
				if _, _, err := p.conn.ReadFromUDP(buf); err != nil {
					return
				}
			}
		}()
	}
	drain(dialer)
	tcp := &tcpSender{from: e.Meta.IP, to: w.SIPAddr}
	defer tcp.close()

	health := newRawPeer(t, e.Meta.IP, w)
	healthy := func(i int) {
		t.Helper()
		opt := fmt.Sprintf("OPTIONS sip:%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK-h%d\r\nFrom: <sip:meta@%s>;tag=h\r\nTo: <sip:%s>\r\nCall-ID: bb-health-%d\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
			health.to, health.local(), i, health.local(), health.to, i)
		if got := health.exchange(opt, replyLimit); !strings.HasPrefix(got, "SIP/2.0 200") {
			t.Fatalf("after %d mutated messages (seed %d) wagate no longer answers OPTIONS: %q", i, seed, got)
		}
	}

	seeds := blackboxSeeds(e, meta.local(), dialer.local(), w.SIPAddr)
	drain(meta)
	for i := range count {
		s := seeds[rng.IntN(len(seeds))]
		msg := mutate(rng, []byte(s.text))
		switch r := rng.IntN(10); {
		case r < 5:
			p := meta
			if s.fromDialer {
				p = dialer
			}
			_, _ = p.conn.WriteToUDP(msg, p.to)
		case r < 7:
			_, _ = stranger.conn.WriteToUDP(msg, stranger.to)
		default:
			tcp.send(t, msg)
		}
		if i%250 == 249 {
			healthy(i + 1)
		}
	}
	healthy(count)
	time.Sleep(500 * time.Millisecond)
	if n := strangerGot.Load(); n != 0 {
		t.Errorf("the stranger got %d datagrams back (seed %d), want none", n, seed)
	}
	// Calls the mutations started end at the busy peers or the 2 s ring
	// timeout.
	w.waitIdle()
}

type blackboxSeed struct {
	text       string
	fromDialer bool
}

func blackboxSeeds(e *env, metaAddr, dialerAddr, wagateAddr string) []blackboxSeed {
	sdp := "v=0\r\no=- 1 1 IN IP4 " + e.Meta.IP + "\r\ns=-\r\nc=IN IP4 " + e.Meta.IP + "\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
	hdr := func(method, ruri, from, to, callID string, cseq string, via string, extra string, body string) string {
		ct := ""
		if body != "" {
			ct = "Content-Type: application/sdp\r\n"
		}
		return method + " " + ruri + " SIP/2.0\r\nVia: SIP/2.0/UDP " + via + ";branch=z9hG4bK-bb;rport\r\nMax-Forwards: 70\r\n" +
			"From: " + from + ";tag=bbf\r\nTo: " + to + "\r\nCall-ID: " + callID + "\r\nCSeq: " + cseq + "\r\n" +
			"Contact: <sip:peer@" + via + ">\r\n" + extra + ct + "Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
	}
	uic := "sip:" + businessNumber + "@" + wagateAddr
	bic := "sip:" + waUser + "@" + wagateAddr
	return []blackboxSeed{
		{text: hdr("INVITE", uic, "<sip:"+waUser+"@wa.meta.vc>", "<"+uic+">", "bb-uic@x", "1 INVITE", metaAddr,
			"Record-Route: <sip:"+metaAddr+";lr>\r\nx-wa-meta-wacid: wacid.bb\r\n", sdp)},
		{text: hdr("INVITE", bic, "<sip:agent@"+e.Dialer.IP+">", "<"+bic+">", "bb-bic@x", "1 INVITE", dialerAddr,
			"X-WABA-Phone-Number-ID: "+phoneNumberID+"\r\nX-WABA-Campaign-ID: spring\r\n", sdp), fromDialer: true},
		{text: hdr("OPTIONS", uic, "<sip:meta@wa.meta.vc>", "<"+uic+">", "bb-opt@x", "2 OPTIONS", metaAddr, "", "")},
		{text: hdr("BYE", uic, "<sip:"+waUser+"@wa.meta.vc>", "<"+uic+">;tag=abc", "bb-uic@x", "3 BYE", metaAddr, "", "")},
		{text: hdr("CANCEL", uic, "<sip:"+waUser+"@wa.meta.vc>", "<"+uic+">", "bb-uic@x", "1 CANCEL", metaAddr, "", "")},
		{text: hdr("ACK", uic, "<sip:"+waUser+"@wa.meta.vc>", "<"+uic+">;tag=abc", "bb-uic@x", "1 ACK", metaAddr, "", "")},
		{text: hdr("INFO", uic, "<sip:"+waUser+"@wa.meta.vc>", "<"+uic+">;tag=abc", "bb-info@x", "4 INFO", metaAddr, "", "")},
		{text: "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP " + wagateAddr + ";branch=z9hG4bK-nope\r\nFrom: <sip:a@" + wagateAddr + ">;tag=1\r\nTo: <sip:b@" + metaAddr + ">;tag=2\r\nCall-ID: bb-resp@x\r\nCSeq: 1 INVITE\r\nContact: <sip:b@" + metaAddr + ">\r\nContent-Type: application/sdp\r\nContent-Length: " + strconv.Itoa(len(sdp)) + "\r\n\r\n" + sdp},
	}
}

// mutate applies one to four random mutations to msg.
func mutate(rng *rand.Rand, msg []byte) []byte {
	out := append([]byte(nil), msg...)
	for range 1 + rng.IntN(4) {
		if len(out) == 0 {
			out = append(out, 'x')
		}
		lines := bytes.Split(out, []byte("\r\n"))
		li := rng.IntN(len(lines))
		pos := rng.IntN(len(out))
		switch rng.IntN(14) {
		case 0: // flip a byte
			out[pos] ^= byte(1 + rng.IntN(255))
		case 1: // insert a random byte
			out = append(out[:pos], append([]byte{byte(rng.IntN(256))}, out[pos:]...)...)
		case 2: // delete a range
			end := min(len(out), pos+1+rng.IntN(40))
			out = append(out[:pos], out[end:]...)
		case 3: // drop a line
			out = bytes.Join(append(lines[:li:li], lines[li+1:]...), []byte("\r\n"))
		case 4: // double a line
			lines = append(lines[:li+1], append([][]byte{lines[li]}, lines[li+1:]...)...)
			out = bytes.Join(lines, []byte("\r\n"))
		case 5: // swap two lines
			lj := rng.IntN(len(lines))
			lines[li], lines[lj] = lines[lj], lines[li]
			out = bytes.Join(lines, []byte("\r\n"))
		case 6: // fold: a line break and a space
			out = append(out[:pos], append([]byte("\r\n "), out[pos:]...)...)
		case 7: // a bare CR, LF or NUL
			c := []byte{'\r', '\n', 0}[rng.IntN(3)]
			out = append(out[:pos], append([]byte{c}, out[pos:]...)...)
		case 8: // blow a value up
			out = append(out[:pos], append(bytes.Repeat([]byte("A"), 1+rng.IntN(20000)), out[pos:]...)...)
		case 9: // a header repeated many times
			lines = append(lines[:li+1], append(bytes.Split(bytes.Repeat(append(lines[li], "\r\n"...), 1+rng.IntN(300)), []byte("\r\n")), lines[li+1:]...)...)
			out = bytes.Join(lines, []byte("\r\n"))
		case 10: // lie about the length
			out = bytes.Replace(out, []byte("Content-Length: "), []byte("Content-Length: "+strconv.Itoa(rng.IntN(100000)-50)+" "), 1)
		case 11: // cut short
			out = out[:pos]
		case 12: // another version or method
			repl := [][]byte{[]byte("SIP/7.0"), []byte("SIP/2.0 "), []byte("sip/2.0"), []byte("invite"), []byte("REFER"), []byte("")}
			out = bytes.Replace(out, []byte("SIP/2.0"), repl[rng.IntN(len(repl))], 1)
		case 13: // a random header
			names := []string{"To", "t", "From", "f", "Call-ID", "i", "CSeq", "Via", "v", "Max-Forwards", "Content-Length", "l", "Require", "Route", "Record-Route", "Contact", "m"}
			h := names[rng.IntN(len(names))] + ": " + string(bytes.Repeat([]byte{byte(32 + rng.IntN(95))}, rng.IntN(30)))
			lines = append(lines[:li+1], append([][]byte{[]byte(h)}, lines[li+1:]...)...)
			out = bytes.Join(lines, []byte("\r\n"))
		}
	}
	if len(out) > 65000 {
		out = out[:65000]
	}
	return out
}

// tcpSender writes messages on one TCP connection from an endpoint's
// address, reconnecting when wagate closes it (as it should after a
// framing error).
type tcpSender struct {
	from, to string
	c        net.Conn
}

func (s *tcpSender) send(t *testing.T, msg []byte) {
	for attempt := 0; attempt < 2; attempt++ {
		if s.c == nil {
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(s.from)}, Timeout: 2 * time.Second}
			c, err := d.Dial("tcp4", s.to)
			if err != nil {
				t.Fatalf("TCP connect to wagate: %v", err)
			}
			s.c = c
			go func() { // read and drop whatever comes back
				buf := make([]byte, 65536)
				for {
					if _, err := c.Read(buf); err != nil {
						return
					}
				}
			}()
		}
		_ = s.c.SetWriteDeadline(time.Now().Add(2 * time.Second))
		if _, err := s.c.Write(msg); err == nil {
			return
		}
		s.c.Close()
		s.c = nil
	}
}

func (s *tcpSender) close() {
	if s.c != nil {
		s.c.Close()
	}
}

// startBusyUAS answers every INVITE at addr with 486 and every other
// request with 200; it ACKs nothing and keeps no state.
func startBusyUAS(t *testing.T, addr string) {
	t.Helper()
	startRawUAS(t, addr, func(msg string, reply func(string)) {
		switch {
		case strings.HasPrefix(msg, "INVITE "):
			reply(echoResponse(msg, "486 Busy Here", "busy"))
		case strings.HasPrefix(msg, "ACK "), strings.HasPrefix(msg, "SIP/"):
		default:
			reply(echoResponse(msg, "200 OK", "busy"))
		}
	})
}
