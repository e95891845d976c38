package test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wagate/wagate/test/internal/metapeer"
)

// The SIP trace (sip.trace) through the real binary: HEP v3 packets
// caught by a fake collector are decoded by tools that share no code with
// wagate — sngrep (HEP to plain SIP packets) and tshark (the SIP in them),
// since tshark 4.0 has no HEP dissector of its own — and by a small
// decoder here; the log lines are read from wagate's log.

// hepCollector is a UDP socket playing Homer: it keeps every datagram.
type hepCollector struct {
	pc   net.PacketConn
	mu   sync.Mutex
	pkts []hepDatagram
}

type hepDatagram struct {
	at   time.Time
	from *net.UDPAddr
	data []byte
}

func startHEPCollector(t *testing.T, e *env) *hepCollector {
	t.Helper()
	pc, err := net.ListenPacket("udp4", net.JoinHostPort(e.ip(8), "0"))
	if err != nil {
		t.Fatalf("HEP collector: %v", err)
	}
	c := &hepCollector{pc: pc}
	go func() {
		buf := make([]byte, 70000)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			c.mu.Lock()
			c.pkts = append(c.pkts, hepDatagram{at: time.Now(), from: from.(*net.UDPAddr), data: bytes.Clone(buf[:n])})
			c.mu.Unlock()
		}
	}()
	t.Cleanup(func() { pc.Close() })
	return c
}

func (c *hepCollector) addr() string { return c.pc.LocalAddr().String() }

func (c *hepCollector) packets() []hepDatagram {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]hepDatagram(nil), c.pkts...)
}

// settle waits (bounded) until at least min packets came and no more
// came for 300 ms, and returns them.
func (c *hepCollector) settle(t *testing.T, min int) []hepDatagram {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	last, since := -1, time.Now()
	for time.Now().Before(deadline) {
		n := len(c.packets())
		if n != last {
			last, since = n, time.Now()
		} else if n >= min && time.Since(since) > 300*time.Millisecond {
			return c.packets()
		}
		time.Sleep(20 * time.Millisecond)
	}
	p := c.packets()
	t.Fatalf("HEP collector: %d packets after 10s, want at least %d", len(p), min)
	return p
}

// traceOpts turns the trace on: log lines and HEP to the collector.
func traceOpts(o wagateOpts, col *hepCollector) wagateOpts {
	o.SIPExtra += fmt.Sprintf("\n  trace:\n    log: true\n    hep: {address: %q, agent_id: 2001, password: {value: hep-Key-1}}", col.addr())
	return o
}

// hepChunks decodes a HEP v3 packet into its generic chunks, failing on
// anything malformed.
func hepChunks(t *testing.T, b []byte) map[uint16][]byte {
	t.Helper()
	if len(b) < 6 || string(b[:4]) != "HEP3" || int(binary.BigEndian.Uint16(b[4:])) != len(b) {
		t.Fatalf("not a HEP3 packet: %q", b[:min(len(b), 16)])
	}
	out := map[uint16][]byte{}
	for rest := b[6:]; len(rest) > 0; {
		if len(rest) < 6 {
			t.Fatalf("truncated HEP chunk %x", rest)
		}
		vendor, typ, n := binary.BigEndian.Uint16(rest), binary.BigEndian.Uint16(rest[2:]), int(binary.BigEndian.Uint16(rest[4:]))
		if vendor != 0 || n < 6 || n > len(rest) {
			t.Fatalf("bad HEP chunk vendor %d type %#x length %d (%d left)", vendor, typ, n, len(rest))
		}
		if _, dup := out[typ]; dup {
			t.Fatalf("HEP chunk %#x twice", typ)
		}
		out[typ] = rest[6:n]
		rest = rest[n:]
	}
	return out
}

// hepMsg is what a test reads from one HEP packet.
type hepMsg struct {
	proto             int // IP protocol id chunk
	src, dst          string
	agent             uint32
	node, key, corr   string
	payload           string
	startLine, callID string
}

func decodeHEPMsg(t *testing.T, b []byte) hepMsg {
	t.Helper()
	c := hepChunks(t, b)
	for _, typ := range []uint16{1, 2, 7, 8, 9, 10, 11, 12, 15} {
		if _, ok := c[typ]; !ok {
			t.Fatalf("HEP packet without chunk %#x", typ)
		}
	}
	var srcIP, dstIP net.IP
	switch c[1][0] {
	case 2:
		srcIP, dstIP = net.IP(c[3]), net.IP(c[4])
	case 10:
		srcIP, dstIP = net.IP(c[5]), net.IP(c[6])
	default:
		t.Fatalf("HEP family %d", c[1][0])
	}
	if c[11][0] != 1 {
		t.Fatalf("HEP protocol type %d, want 1 (SIP)", c[11][0])
	}
	m := hepMsg{
		proto:   int(c[2][0]),
		src:     net.JoinHostPort(srcIP.String(), strconv.Itoa(int(binary.BigEndian.Uint16(c[7])))),
		dst:     net.JoinHostPort(dstIP.String(), strconv.Itoa(int(binary.BigEndian.Uint16(c[8])))),
		agent:   binary.BigEndian.Uint32(c[12]),
		node:    string(c[0x13]),
		key:     string(c[0x0e]),
		corr:    string(c[0x11]),
		payload: string(c[15]),
	}
	sm := sipMsg{Text: m.payload}
	m.startLine, m.callID = sm.StartLine(), sm.Header("Call-ID")
	return m
}

// requireTool fails (never skips) the test when a tool is missing.
func requireTool(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s is not installed (%v): run `make test`, which installs the Debian package %s", name, err, pkg)
	}
	return p
}

// writeHEPPcap writes the datagrams as a pcap file of Ethernet/IPv4/UDP
// frames from each sender to the collector, as a capture on the
// collector's host would hold them.
func writeHEPPcap(t *testing.T, path string, pkts []hepDatagram, to *net.UDPAddr) {
	t.Helper()
	var b bytes.Buffer
	le := binary.LittleEndian
	hdr := make([]byte, 24)
	le.PutUint32(hdr[0:], 0xa1b2c3d4)
	le.PutUint16(hdr[4:], 2)
	le.PutUint16(hdr[6:], 4)
	le.PutUint32(hdr[16:], 262144)
	le.PutUint32(hdr[20:], 1) // Ethernet
	b.Write(hdr)
	for _, p := range pkts {
		frame := make([]byte, 14+20+8, 14+20+8+len(p.data))
		copy(frame[0:6], []byte{2, 0, 0, 0, 0, 2})
		copy(frame[6:12], []byte{2, 0, 0, 0, 0, 1})
		binary.BigEndian.PutUint16(frame[12:], 0x0800)
		ip := frame[14:34]
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:], uint16(20+8+len(p.data)))
		ip[8] = 64
		ip[9] = 17
		copy(ip[12:16], p.from.IP.To4())
		copy(ip[16:20], to.IP.To4())
		var sum uint32
		for i := 0; i < 20; i += 2 {
			sum += uint32(binary.BigEndian.Uint16(ip[i:]))
		}
		for sum > 0xffff {
			sum = sum>>16 + sum&0xffff
		}
		binary.BigEndian.PutUint16(ip[10:], ^uint16(sum))
		udp := frame[34:42]
		binary.BigEndian.PutUint16(udp[0:], uint16(p.from.Port))
		binary.BigEndian.PutUint16(udp[2:], uint16(to.Port))
		binary.BigEndian.PutUint16(udp[4:], uint16(8+len(p.data)))
		frame = append(frame, p.data...)
		rec := make([]byte, 16)
		le.PutUint32(rec[0:], uint32(p.at.Unix()))
		le.PutUint32(rec[4:], uint32(p.at.Nanosecond()/1000))
		le.PutUint32(rec[8:], uint32(len(frame)))
		le.PutUint32(rec[12:], uint32(len(frame)))
		b.Write(rec)
		b.Write(frame)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// tsharkRow is one SIP message as tshark decoded it.
type tsharkRow struct {
	src, dst, what, callID, cseq string
}

// decodeWithTools turns the collector's HEP packets into SIP rows: sngrep
// unwraps HEP (-E) into plain SIP-over-UDP packets, tshark decodes them.
func decodeWithTools(t *testing.T, e *env, pkts []hepDatagram, col *hepCollector) []tsharkRow {
	t.Helper()
	sngrep := requireTool(t, "sngrep", "sngrep")
	tshark := requireTool(t, "tshark", "tshark")
	hepPcap := filepath.Join(e.dir, "hep.pcap")
	sipPcap := filepath.Join(e.dir, "sip-from-hep.pcap")
	writeHEPPcap(t, hepPcap, pkts, col.pc.LocalAddr().(*net.UDPAddr))
	out, err := exec.Command(sngrep, "-F", "-N", "-q", "-E", "-I", hepPcap, "-O", sipPcap).CombinedOutput()
	if err != nil {
		t.Fatalf("sngrep: %v\n%s", err, out)
	}
	out, err = exec.Command(tshark, "-n", "-r", sipPcap, "-Y", "sip", "-T", "fields", "-E", "separator=|",
		"-e", "ip.src", "-e", "udp.srcport", "-e", "ip.dst", "-e", "udp.dstport",
		"-e", "sip.Method", "-e", "sip.Status-Code", "-e", "sip.Call-ID", "-e", "sip.CSeq").Output()
	if err != nil {
		t.Fatalf("tshark: %v\n%s", err, out)
	}
	var rows []tsharkRow
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Split(l, "|")
		if len(f) != 8 {
			t.Fatalf("tshark line %q", l)
		}
		what := f[4]
		if what == "" {
			what = f[5]
		}
		rows = append(rows, tsharkRow{src: net.JoinHostPort(f[0], f[1]), dst: net.JoinHostPort(f[2], f[3]), what: what, callID: f[6], cseq: f[7]})
	}
	return rows
}

// legRows are the rows of one Call-ID, a retransmission (the same row
// again at once) counted once.
func legRows(rows []tsharkRow, callID string) []tsharkRow {
	var out []tsharkRow
	for _, r := range rows {
		if r.callID == callID && (len(out) == 0 || out[len(out)-1] != r) {
			out = append(out, r)
		}
	}
	return out
}

// traceLogLines returns wagate's "sip message" log lines.
func traceLogLines(t *testing.T, w *wagate) []map[string]any {
	t.Helper()
	data, err := os.ReadFile(w.logPath)
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for _, l := range bytes.Split(data, []byte("\n")) {
		var m map[string]any
		if json.Unmarshal(l, &m) == nil && m["msg"] == "sip message" {
			out = append(out, m)
		}
	}
	return out
}

// TestTraceHEPUIC: a user-initiated call (SIPp Meta → wagate → SIPp PBX,
// UDP) with sip.trace on: every message of both legs reaches the HEP
// collector, and sngrep + tshark show each one with its direction and
// addresses; every message also has its log line.
func TestTraceHEPUIC(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	col := startHEPCollector(t, e)
	w := e.startWagate(traceOpts(wagateOpts{}, col))

	pbx := e.startSipp(sippSpec{Name: "pbx", Scenario: "uas.xml", Peer: e.PBX, Calls: 1})
	meta := e.runSipp(sippSpec{Name: "meta", Scenario: "uac.xml", Peer: e.Meta, Remote: w.SIPAddr, Calls: 1,
		Args: callArgs(businessNumber, waUser, "-d", "300")})
	pbx.requireOK()
	w.waitIdle()

	aInvite, ok1 := findMsg(meta.messages(), true, "INVITE ")
	bInvite, ok2 := findMsg(pbx.messages(), false, "INVITE ")
	if !ok1 || !ok2 {
		t.Fatal("no INVITE in the SIPp traces")
	}
	aCall, bCall := aInvite.Header("Call-ID"), bInvite.Header("Call-ID")
	pkts := col.settle(t, 12)
	rows := decodeWithTools(t, e, pkts, col)

	wg, m, p := w.SIPAddr, e.Meta.Addr(), e.PBX.Addr()
	wantA := []tsharkRow{
		{m, wg, "INVITE", aCall, "1 INVITE"},
		{wg, m, "100", aCall, "1 INVITE"},
		{wg, m, "180", aCall, "1 INVITE"},
		{wg, m, "200", aCall, "1 INVITE"},
		{m, wg, "ACK", aCall, "1 ACK"},
		{m, wg, "BYE", aCall, "2 BYE"},
		{wg, m, "200", aCall, "2 BYE"},
	}
	checkFlow(t, "A leg (Meta)", legRows(rows, aCall), wantA, rowDirection)
	wantB := []tsharkRow{
		{wg, p, "INVITE", bCall, "1 INVITE"},
		{p, wg, "180", bCall, "1 INVITE"},
		{p, wg, "200", bCall, "1 INVITE"},
		{wg, p, "ACK", bCall, "1 ACK"},
		{wg, p, "BYE", bCall, "2 BYE"},
		{p, wg, "200", bCall, "2 BYE"},
	}
	checkFlow(t, "B leg (PBX)", legRows(rows, bCall), wantB, rowDirection)

	// Every packet names the call, the agent and the node, carries the
	// collector's key and says UDP; and each message has its log line.
	lines := traceLogLines(t, w)
	if len(lines) != len(pkts) {
		t.Errorf("%d trace log lines, %d HEP packets", len(lines), len(pkts))
	}
	for i, d := range pkts {
		h := decodeHEPMsg(t, d.data)
		if h.corr != h.callID || h.agent != 2001 || h.node == "" || h.key != "hep-Key-1" || h.proto != 17 {
			t.Errorf("HEP packet %d: correlation %q (Call-ID %q), agent %d, node %q, key %q, protocol %d",
				i, h.corr, h.callID, h.agent, h.node, h.key, h.proto)
		}
		if i < len(lines) {
			l := lines[i]
			dir, remote := "in", h.src
			if h.src == wg {
				dir, remote = "out", h.dst
			}
			if l["dir"] != dir || l["remote"] != remote || l["transport"] != "udp" || l["call_id"] != h.callID {
				t.Errorf("log line %d %v, HEP says %s %s → %s", i, l, h.startLine, h.src, h.dst)
			}
			if _, full := l["message"]; full {
				t.Errorf("log line %d carries the message text at log.level info", i)
			}
		}
	}
	if s := w.status(); s.Trace.Messages != uint64(len(pkts)) || s.Trace.HEPSent != uint64(len(pkts)) || s.Trace.Dropped != 0 {
		t.Errorf("status sip_trace %+v, %d packets received", s.Trace, len(pkts))
	}
}

func rowDirection(r tsharkRow) string { return r.src + " > " + r.dst }

// checkFlow compares a traced call flow with the expected one: the same
// messages, in the same order in each direction. Between directions the
// order may differ by the moment sipgo reports a write after it is done
// (a peer's ACK can be read before the 200 it answers is reported).
func checkFlow[T comparable](t *testing.T, leg string, got, want []T, dir func(T) string) {
	t.Helper()
	dirs := map[string]bool{}
	for _, m := range append(append([]T(nil), got...), want...) {
		dirs[dir(m)] = true
	}
	for d := range dirs {
		var g, w []T
		for _, m := range got {
			if dir(m) == d {
				g = append(g, m)
			}
		}
		for _, m := range want {
			if dir(m) == d {
				w = append(w, m)
			}
		}
		if fmt.Sprint(g) != fmt.Sprint(w) {
			t.Errorf("%s, %s: traced\n%v\nwant\n%v\n(whole flow traced: %v)", leg, d, g, w, got)
		}
	}
}

var credentialParam = regexp.MustCompile(`(response|cnonce)="?([^",\s]+)`)

// TestTraceRedactsCredentials: a business-initiated call authenticated
// both ways — the dialer answers wagate's challenge, wagate answers
// Meta's — traced at log.level debug (message text in the log) and to
// HEP: no digest response, cnonce or password appears in wagate's log or
// in any HEP payload, while the redacted headers still name the users.
func TestTraceRedactsCredentials(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	col := startHEPCollector(t, e)
	const dialerUser, dialerPass = "dialer1", "dialer-Secret-9"
	w := e.startWagate(traceOpts(wagateOpts{
		LogLevel:    "debug",
		NumberExtra: withDigest,
		DialerExtra: fmt.Sprintf(`, auth: {users: [{username: %s, password: %q}]}`, dialerUser, dialerPass),
	}, col))

	meta := e.startSipp(sippSpec{Name: "meta", Scenario: "bic_meta_auth.xml", Peer: e.Meta, Calls: 1})
	dialer := e.runSipp(sippSpec{Name: "dialer", Scenario: "bic_dialer_auth.xml", Peer: e.Dialer, Remote: w.SIPAddr, Calls: 1,
		Args: bicArgs(waUser, phoneNumberID, businessNumber, "-d", "200", "-au", dialerUser, "-ap", dialerPass,
			"-auth_uri", waUser+"@"+w.SIPAddr)})
	meta.requireOK()
	w.waitIdle()
	pkts := col.settle(t, 16)

	// The secrets, as the peers sent and received them.
	secrets := []string{dialerPass, metaPassword}
	for _, c := range []struct {
		peer *sippProc
		sent bool
	}{{dialer, true}, {meta, false}} {
		for _, m := range c.peer.messages() {
			if m.Sent != c.sent || !strings.HasPrefix(m.StartLine(), "INVITE ") {
				continue
			}
			for _, v := range append(m.Headers("Proxy-Authorization"), m.Headers("Authorization")...) {
				for _, p := range credentialParam.FindAllStringSubmatch(v, -1) {
					secrets = append(secrets, p[2])
				}
			}
		}
	}
	if len(secrets) < 6 {
		t.Fatalf("found only %v in the peers' credentials: the scenario did not authenticate both ways", secrets)
	}

	log, payloads := traceHoldsNone(t, w, pkts, "the credential", secrets)
	all := strings.Join(payloads, "\n")
	for _, want := range []string{
		`Proxy-Authorization: Digest algorithm=MD5, cnonce="redacted", nc=00000001, nonce="redacted", qop=auth, realm="` + e.WagateIP +
			`", response="redacted", uri="sip:` + waUser + `@` + w.SIPAddr + `", username="` + dialerUser + `"`,
		`username="` + metaDigestUser + `"`,
	} {
		if !strings.Contains(all, want) {
			t.Errorf("no HEP payload carries %s", want)
		}
		if !strings.Contains(string(log), strings.ReplaceAll(want, `"`, `\"`)) {
			t.Errorf("the debug log does not carry %s", want)
		}
	}
}

// TestTraceTLS: Meta calls over TLS and the agent hangs up, so wagate's
// BYE leaves on a connection wagate dials: every message on both TLS
// connections reaches the collector marked TLS (protocol id 22), with
// Meta's and wagate's addresses and ports in the right order.
func TestTraceTLS(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	col := startHEPCollector(t, e)
	pki := newTestPKI(t, t.TempDir(), e.WagateIP)
	tlsPort := freeTCPPort(t, e.WagateIP)
	meta := startTLSMeta(t, e, pki.issue(t, "wa.meta.vc"))
	w := e.startWagate(traceOpts(tlsOpts(e, pki, tlsPort), col))
	waitBound(t, "wagate", "tcp", e.WagateIP, tlsPort, w.exited)

	pbx := e.startSipp(sippSpec{Name: "pbx", Scenario: "uas_bye.xml", Peer: e.PBX, Calls: 1, Args: []string{"-d", "300"}})
	conn := meta.dial(e, pki, net.JoinHostPort(e.WagateIP, strconv.Itoa(tlsPort)))
	metaConn := conn.c.LocalAddr().String()
	const callID = "outgoing:trace-tls-1"
	sdp := metaSDP(e)
	conn.write(t, fmt.Sprintf("INVITE sip:%s@%s:%d;transport=tls SIP/2.0\r\n"+
		"Via: SIP/2.0/TLS %s:%d;branch=z9hG4bK-trace1\r\n"+
		"Record-Route: <sip:%s:%d;transport=tls;lr>\r\n"+
		"From: <sip:%s@wa.meta.vc>;tag=meta1\r\nTo: <sip:%s@%s>\r\n"+
		"Call-ID: %s\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n"+
		"Contact: <sip:%s@%s:%d;transport=tls>\r\n"+
		"Content-Type: application/sdp\r\nContent-Length: %d\r\n\r\n%s",
		businessNumber, e.WagateIP, tlsPort, e.Meta.IP, e.Meta.Port, e.Meta.IP, e.Meta.Port,
		waUser, businessNumber, e.WagateIP, callID, waUser, e.Meta.IP, e.Meta.Port, len(sdp), sdp))
	// SIPp's 180 and 200 leave back to back, and sipgo hands each UDP
	// response to a goroutine of its own: on a busy machine the 200 can
	// reach B's transaction first, the 180 is then dropped (RFC 3261
	// allows no provisional after the final), and Meta hears no ringing.
	// This test is about the trace, so it takes the 180 if it comes.
	ok200 := meta.next("180 or 200")
	rang := strings.HasPrefix(ok200.StartLine(), "SIP/2.0 180")
	if rang {
		ok200 = meta.next("200")
	}
	if !strings.HasPrefix(ok200.StartLine(), "SIP/2.0 200") {
		t.Fatalf("Meta peer: got %q, want 180 or 200\n%s", ok200.StartLine(), ok200.Text)
	}
	conn.write(t, fmt.Sprintf("ACK sip:wagate@%s:%d;transport=tls SIP/2.0\r\nVia: SIP/2.0/TLS %s:%d;branch=z9hG4bK-trace2\r\n"+
		"From: <sip:%s@wa.meta.vc>;tag=meta1\r\nTo: %s\r\nCall-ID: %s\r\nCSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
		e.WagateIP, tlsPort, e.Meta.IP, e.Meta.Port, waUser, ok200.Header("To"), callID))
	bye := meta.expect("BYE from wagate", "BYE ")
	meta.reply(bye, "200 OK", "", nil, "")
	pbx.requireOK()
	w.waitIdle()

	var got []string
	for _, d := range col.settle(t, 10) {
		h := decodeHEPMsg(t, d.data)
		if h.callID != callID {
			continue
		}
		if h.proto != 22 {
			t.Errorf("%s %s → %s: protocol id %d, want 22 (TLS)", h.startLine, h.src, h.dst, h.proto)
		}
		what, _, _ := strings.Cut(h.startLine, " ")
		if what == "SIP/2.0" {
			what = strings.Fields(h.startLine)[1]
		}
		got = append(got, what+" "+h.src+" > "+h.dst)
	}
	wagateTLS := net.JoinHostPort(e.WagateIP, strconv.Itoa(tlsPort))
	// wagate's BYE leaves on a connection it dials to Meta's Record-Route.
	byeFrom := ""
	for _, g := range got {
		if strings.HasPrefix(g, "BYE ") {
			byeFrom = strings.Fields(g)[1]
		}
	}
	// (Its address is the kernel's choice: wagate does not bind
	// connections it dials, and toward 127.0.N.2 that is 127.0.0.1.)
	if ap, err := netip.ParseAddrPort(byeFrom); err != nil || !ap.Addr().IsLoopback() || int(ap.Port()) == tlsPort || int(ap.Port()) == e.SIPPort {
		t.Errorf("BYE traced from %q, want a port of a connection wagate dialled", byeFrom)
	}
	want := []string{
		"INVITE " + metaConn + " > " + wagateTLS,
		"100 " + wagateTLS + " > " + metaConn,
		"180 " + wagateTLS + " > " + metaConn,
		"200 " + wagateTLS + " > " + metaConn,
		"ACK " + metaConn + " > " + wagateTLS,
		"BYE " + byeFrom + " > " + e.Meta.Addr(),
		"200 " + e.Meta.Addr() + " > " + byeFrom,
	}
	if !rang {
		want = slices.DeleteFunc(want, func(m string) bool { return strings.HasPrefix(m, "180 ") })
		t.Logf("Meta got no 180: the PBX's 200 overtook it")
	}
	checkFlow(t, "TLS leg", got, want, func(m string) string { _, d, _ := strings.Cut(m, " "); return d })
	for _, l := range traceLogLines(t, w) {
		if l["call_id"] == callID && l["transport"] != "tls" {
			t.Errorf("log line %v: transport is not tls", l)
		}
	}
}

// sdesKey matches the key material of an a=crypto line.
var sdesKey = regexp.MustCompile(`inline:([A-Za-z0-9+/]{20,}=*)`)

// TestTraceRedactsSRTPKeys: an SDES-SRTP call with Meta (whose signalling
// TLS protects the keys in transit) traced at log.level debug and to HEP,
// which is cleartext UDP: neither side's SRTP master key appears in the
// log or in any HEP payload; the a=crypto lines stay, keys redacted.
func TestTraceRedactsSRTPKeys(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	col := startHEPCollector(t, e)
	w := e.startWagate(traceOpts(wagateOpts{LogLevel: "debug", MetaEncryption: "sdes"}, col))
	call, pbx := placeUICThroughEcho(t, e, w, metapeer.Config{})
	var keys []string
	for _, sdp := range [][]byte{call.Local, call.Remote} {
		for _, m := range sdesKey.FindAllSubmatch(sdp, -1) {
			keys = append(keys, string(m[1]))
		}
	}
	if len(keys) < 2 {
		t.Fatalf("keys %v in the offer and answer:\n%s\n%s", keys, call.Local, call.Remote)
	}
	ctx, cancel := context.WithTimeout(context.Background(), peerCallLimit)
	defer cancel()
	if err := call.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	pbx.requireOK()
	w.waitIdle()
	pkts := col.settle(t, 6)

	_, payloads := traceHoldsNone(t, w, pkts, "the SRTP key", keys)
	all := strings.Join(payloads, "\n")
	if !strings.Contains(all, "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:redacted") {
		t.Errorf("no HEP payload carries the redacted a=crypto line")
	}
	// A collector reads the redacted message whole: its Content-Length is
	// the redacted body's.
	for _, p := range payloads {
		head, body, ok := strings.Cut(p, "\r\n\r\n")
		if !ok || !strings.Contains(body, "a=crypto:") {
			continue
		}
		m := regexp.MustCompile(`(?mi)^(?:content-length|l)\s*:\s*(\d+)\r?$`).FindStringSubmatch(head)
		if m == nil {
			t.Errorf("a redacted HEP payload has no Content-Length:\n%s", p)
		} else if n, _ := strconv.Atoi(m[1]); n != len(body) {
			t.Errorf("a redacted HEP payload says Content-Length %d, its body has %d bytes:\n%s", n, len(body), p)
		}
	}
}

// traceHoldsNone checks that neither wagate's log nor any HEP payload of
// pkts holds one of secrets (what names them in errors), and returns the
// log and the payloads.
func traceHoldsNone(t *testing.T, w *wagate, pkts []hepDatagram, what string, secrets []string) (string, []string) {
	t.Helper()
	b, err := os.ReadFile(w.logPath)
	if err != nil {
		t.Fatal(err)
	}
	log := string(b)
	var payloads []string
	for _, d := range pkts {
		payloads = append(payloads, decodeHEPMsg(t, d.data).payload)
	}
	all := strings.Join(payloads, "\n")
	for _, s := range secrets {
		if strings.Contains(log, s) {
			t.Errorf("wagate's log holds %s %q", what, s)
		}
		if strings.Contains(all, s) {
			t.Errorf("a HEP payload holds %s %q", what, s)
		}
	}
	return log, payloads
}
