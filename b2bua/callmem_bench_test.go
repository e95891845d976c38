package b2bua

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/wagate/wagate/media"
	sipedge "github.com/wagate/wagate/sip"
)

// benchLinger is the sip.transaction_linger of BenchmarkCallSIPMemory: the
// longest allowed, so that no transaction of the run expires before the
// second measurement.
const benchLinger = 32 * time.Second

// BenchmarkCallSIPMemory measures what the call and SIP state of a call
// costs, apart from media (a fake bridge): n calls from a Meta peer
// answered by a PBX peer over loopback UDP, SIPp's INVITE, the live heap
// while they are up (heap-B/call-up), then after Meta hung them all up,
// while their completed transactions linger (heap-B/call-ended): at
// R calls/s wagate holds R·sip.transaction_linger of the latter. Run it
// alone (sipgo's timers are set once per process, by the first server):
//
//	go test -run '^$' -bench CallSIPMemory -benchtime 1x -count 3 ./b2bua/
func BenchmarkCallSIPMemory(b *testing.B) {
	const n = 1000
	meta, pbx := benchPeer(b, "127.0.0.2"), benchPeer(b, "127.0.0.3")
	addr := benchServer(b, meta, pbx)
	if sip.Timer_L != benchLinger {
		b.Fatalf("sipgo's Timer L is %s, not the benchmark's %s: run the benchmark alone (-run '^$')", sip.Timer_L, benchLinger)
	}
	answered, pbxByes, metaByeOKs := serveBenchPeers(meta, pbx, n)

	for b.Loop() {
		// What the benchmark itself keeps while the calls are up is text
		// (each call's BYE, built when its 2xx came), subtracted below.
		invites := make(map[string]string, n)
		byes := make([][]byte, 0, n)
		runtime.GC()
		var before, up, ended runtime.MemStats
		runtime.ReadMemStats(&before)
		run := strconv.FormatInt(time.Now().UnixNano(), 36)
		for i := range n {
			inv := sippInvite(b, addr, meta.conn.LocalAddr().String(), run+"-"+strconv.Itoa(i))
			invites[callIDOf(inv)] = inv.String()
			meta.sendTo(addr, inv)
			if i%50 == 49 {
				time.Sleep(5 * time.Millisecond) // no burst past the socket buffers
			}
		}
		for len(byes) < n {
			select {
			case res := <-answered:
				raw, ok := invites[callIDOf(res)]
				if !ok {
					continue
				}
				delete(invites, callIDOf(res))
				inv := parseReq(b, raw)
				meta.sendTo(addr, ackFor(inv, res))
				byes = append(byes, []byte(byeFor(inv, res, 2).String()))
			case <-time.After(10 * time.Second):
				b.Fatalf("%d of %d calls answered", len(byes), n)
			}
		}
		invites = nil
		kept := 0
		for _, bye := range byes {
			kept += cap(bye)
		}
		time.Sleep(300 * time.Millisecond) // the ACKs reach the calls
		runtime.GC()
		runtime.ReadMemStats(&up)

		byesBefore, oksBefore := pbxByes.Load(), metaByeOKs.Load()
		for i, bye := range byes {
			meta.sendRaw(addr, bye)
			if i%50 == 49 {
				time.Sleep(5 * time.Millisecond)
			}
		}
		deadline := time.Now().Add(10 * time.Second)
		for pbxByes.Load()-byesBefore < n || metaByeOKs.Load()-oksBefore < n {
			if time.Now().After(deadline) {
				b.Fatalf("hang-up: PBX got %d BYEs, Meta %d 200s, of %d", pbxByes.Load()-byesBefore, metaByeOKs.Load()-oksBefore, n)
			}
			time.Sleep(10 * time.Millisecond)
		}
		byes = nil
		time.Sleep(300 * time.Millisecond) // the BYE transactions finish
		runtime.GC()
		runtime.ReadMemStats(&ended)
		b.ReportMetric(float64(int64(up.HeapAlloc)-int64(before.HeapAlloc)-int64(kept))/n, "heap-B/call-up")
		b.ReportMetric(float64(int64(ended.HeapAlloc)-int64(before.HeapAlloc))/n, "heap-B/call-ended")
	}
}

// sippInvite is the INVITE test/sipp/uac.xml sends.
func sippInvite(b *testing.B, to, from, callID string) *sip.Request {
	host, port, _ := net.SplitHostPort(from)
	sdp := "v=0\r\no=- 53655765 2353687637 IN IP4 " + host + "\r\ns=-\r\nc=IN IP4 " + host +
		"\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n" +
		"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\n"
	raw := fmt.Sprintf("INVITE sip:+15550100001@%[1]s SIP/2.0\r\n"+
		"Via: SIP/2.0/UDP %[2]s;branch=z9hG4bK-%[3]s\r\n"+
		"From: <sip:+447700900123@%[2]s>;tag=%[3]sSIPpTag00\r\n"+
		"To: <sip:+15550100001@%[1]s>\r\n"+
		"Call-ID: %[3]s@%[4]s\r\nCSeq: 1 INVITE\r\n"+
		"Contact: <sip:+447700900123@%[2]s;transport=UDP>\r\nMax-Forwards: 70\r\n"+
		"Allow: INVITE, ACK, CANCEL, BYE, OPTIONS\r\nUser-Agent: wagate-test-uac\r\n"+
		"Content-Type: application/sdp\r\nContent-Length: %[5]d\r\n\r\n%[6]s",
		to, from, callID, host+":"+port, len(sdp), sdp)
	return parseReq(b, raw)
}

// benchPeer is a raw SIP UDP socket for a benchmark: serve hands each
// message it parses to a handler on one goroutine.
type benchPeerConn struct {
	tb   testing.TB
	conn *net.UDPConn
}

func benchPeer(tb testing.TB, ip string) *benchPeerConn {
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(ip)})
	if err != nil {
		tb.Fatalf("peer %s: %v", ip, err)
	}
	_ = conn.SetReadBuffer(4 << 20)
	tb.Cleanup(func() { conn.Close() })
	return &benchPeerConn{tb: tb, conn: conn}
}

func (p *benchPeerConn) serve(handle func(sip.Message)) {
	buf := make([]byte, 65535)
	for {
		n, _, err := p.conn.ReadFromUDP(buf)
		if err != nil {
			return
		}
		if m, err := sip.ParseMessage(append([]byte(nil), buf[:n]...)); err == nil {
			handle(m)
		}
	}
}

// sendTo writes m to a "host:port"; a failed write is the benchmark's
// failure, reported by the count it then waits for.
func (p *benchPeerConn) sendTo(to string, m sip.Message) { p.sendRaw(to, []byte(m.String())) }

func (p *benchPeerConn) sendRaw(to string, b []byte) {
	ua, err := net.ResolveUDPAddr("udp4", to)
	if err != nil {
		return
	}
	_, _ = p.conn.WriteToUDP(b, ua)
}

// benchServer starts an edge and its engine routing Meta's calls to the
// PBX, with a fake media bridge, and returns its address.
func benchServer(b *testing.B, meta, pbx *benchPeerConn) string {
	return benchServerLog(b, meta, pbx, slog.New(slog.NewTextHandler(io.Discard, nil)))
}

// benchServerLog is benchServer logging to log.
func benchServerLog(b *testing.B, meta, pbx *benchPeerConn, log *slog.Logger) string {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	pc.Close()
	port := func(p *benchPeerConn) int { return p.conn.LocalAddr().(*net.UDPAddr).Port }
	cfg := parseConfig(b, fmt.Sprintf(`
sip:
  listen: [{transport: udp, address: "%s"}]
  host: 127.0.0.1
  transaction_linger: %s
endpoints:
  - {name: meta, kind: whatsapp, host: 127.0.0.2, port: %d, transport: udp, media_encryption: none, source_cidrs: [127.0.0.2/32]}
  - {name: pbx, kind: pbx, host: 127.0.0.3, port: %d, transport: udp, source_cidrs: [127.0.0.3/32]}
numbers:
  - {number: "+15550100001", phone_number_id: "100000000000001", route: {endpoint: pbx, user: "1001"}}
`, addr, benchLinger, port(meta), port(pbx)))
	edge, err := sipedge.New(cfg, log)
	if err != nil {
		b.Fatal(err)
	}
	eng := New(edge, func(string, *slog.Logger, media.LegConfig, media.LegConfig) (Bridge, error) { return fakeBridge{}, nil }, log)
	edge.SetCalls(eng)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = edge.Run(ctx)
	}()
	select {
	case <-edge.Ready():
	case <-time.After(5 * time.Second):
		b.Fatal("server not ready")
	}
	b.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), time.Second)
		defer scancel()
		edge.Shutdown(sctx)
		cancel()
		<-done
	})
	return addr
}

// serveBenchPeers has the PBX answer every INVITE and BYE with 200, and
// hands over Meta's 2xx to its INVITEs (up to capacity waiting; a
// retransmission is dropped) to be ACKed. It counts the BYEs the PBX got
// and the 2xx Meta got to its BYEs.
func serveBenchPeers(meta, pbx *benchPeerConn, capacity int) (answered chan *sip.Response, pbxByes, metaByeOKs *atomic.Int64) {
	pbxByes, metaByeOKs = new(atomic.Int64), new(atomic.Int64)
	go pbx.serve(func(m sip.Message) {
		req, ok := m.(*sip.Request)
		if !ok {
			return
		}
		switch req.Method {
		case sip.INVITE:
			res := sip.NewResponseFromRequest(req, 200, "OK", []byte(testSDP))
			res.To().Params.Add("tag", "pbx"+callIDOf(req)[:8])
			answerWithSDP(pbx.conn.LocalAddr().String())(res)
			pbx.sendTo(req.Source(), res)
		case sip.BYE:
			pbx.sendTo(req.Source(), sip.NewResponseFromRequest(req, 200, "OK", nil))
			pbxByes.Add(1)
		}
	})
	answered = make(chan *sip.Response, capacity)
	go meta.serve(func(m sip.Message) {
		res, ok := m.(*sip.Response)
		if !ok || res.StatusCode != 200 {
			return
		}
		switch res.CSeq().MethodName {
		case sip.INVITE:
			select {
			case answered <- res:
			default: // a retransmission
			}
		case sip.BYE:
			metaByeOKs.Add(1)
		}
	})
	return answered, pbxByes, metaByeOKs
}
