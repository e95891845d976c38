package media

import (
	"bytes"
	"errors"
	"net/netip"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/stun/v3"
	"github.com/wagate/wagate/configs"
)

// newDTLSManager is newTestManager with the DTLS handshake and ICE
// consent timeouts given.
func newDTLSManager(t testing.TB, pairs int, handshake, consent time.Duration) *Manager {
	t.Helper()
	base := freePortRange(t, 2*pairs)
	m, err := NewManager(configs.Media{
		BindIP:          "127.0.0.1",
		PortMin:         base,
		PortMax:         base + 2*pairs - 1,
		RTPStartTimeout: configs.Duration(time.Minute),
		RTPTimeout:      configs.Duration(time.Minute),
		DTLS:            configs.DTLS{HandshakeTimeout: configs.Duration(handshake)},
		ICE:             configs.ICE{ConsentTimeout: configs.Duration(consent)},
	}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m
}

var pcmu = LegConfig{Codecs: []string{"PCMU"}}

func dtlsLeg() LegConfig { return LegConfig{Codecs: []string{"PCMU"}, Encryption: EncryptionDTLS} }

// b2b is two bridges joined by a dtls leg, as two wagates would be: X
// offers DTLS toward B (actpass, the controlling offerer), Y takes it on
// A (controlled, the DTLS client of X's answer). p1 talks to X's A leg,
// p2 to Y's B leg, both plain PCMU.
type b2b struct {
	x, y     *Bridge
	p1, p2   *peer
	xA, yB   netip.AddrPort // where p1 and p2 send
	failX    chan error
	failY    chan error
	answerXB []byte // Y's answer as X got it
}

func newB2B(t *testing.T, m *Manager, tamperOffer, tamper func(sdp []byte) []byte) *b2b {
	t.Helper()
	s := &b2b{p1: newPeer(t), p2: newPeer(t), failX: make(chan error, 1), failY: make(chan error, 1)}
	var err error
	if s.x, err = m.NewCallBridge("x", nil, pcmu, dtlsLeg()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.x.Close)
	if s.y, err = m.NewCallBridge("y", nil, dtlsLeg(), pcmu); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.y.Close)
	offerXB, err := s.x.Offer(sdpOffer(s.p1.port(), "RTP/AVP", "0", "rtpmap:0 PCMU/8000"))
	if err != nil {
		t.Fatal(err)
	}
	if tamperOffer != nil {
		offerXB = tamperOffer(offerXB)
	}
	if _, err := s.y.Offer(offerXB); err != nil {
		t.Fatalf("Y takes X's DTLS offer: %v\n%s", err, offerXB)
	}
	answerYA, err := s.y.AnswerB(sdpOffer(s.p2.port(), "RTP/AVP", "0", "rtpmap:0 PCMU/8000"))
	if err != nil {
		t.Fatal(err)
	}
	if tamper != nil {
		answerYA = tamper(answerYA)
	}
	s.answerXB = answerYA
	answerX1, err := s.x.AnswerB(answerYA)
	if err != nil {
		t.Fatalf("X takes Y's DTLS answer: %v\n%s", err, answerYA)
	}
	s.xA = sdpAddr(t, answerX1)
	s.yB = sdpAddr(t, s.y.LocalOfferB())
	s.x.Start(func(err error) { s.failX <- err })
	s.y.Start(func(err error) { s.failY <- err })
	return s
}

func sdpAddr(t testing.TB, body []byte) netip.AddrPort {
	t.Helper()
	d, err := ParseSDP(body)
	if err != nil {
		t.Fatal(err)
	}
	return d.Media[0].Addr()
}

// flow sends PCMU from one peer until the other gets a packet (or the
// time is up) and reports whether it did. Sequence numbers go on from the
// peer's last flow: the SRTP leg's replay check drops numbers it has seen,
// so starting each flow at 1 made the n-th flow wait n packets (20 ms
// each) before one got through.
func flow(t testing.TB, from *peer, to netip.AddrPort, at *peer, within time.Duration) bool {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		seq := uint16(from.seq.Add(1))
		from.send(to, rtpPacket(t, 0, seq, uint32(seq)*160, 0x1234, bytes.Repeat([]byte{0x55}, 160)))
		if at.recv(20*time.Millisecond) != nil {
			return true
		}
	}
	return false
}

func TestDTLSBackToBack(t *testing.T) {
	m := newDTLSManager(t, 8, 5*time.Second, 30*time.Second)
	s := newB2B(t, m, nil, nil)
	offer := string(s.x.LocalOfferB())
	for _, want := range []string{"m=audio ", " UDP/TLS/RTP/SAVPF 0 ", "a=setup:actpass", "a=fingerprint:sha-256 ", "a=ice-ufrag:", "a=ice-pwd:", "a=candidate:", "typ host", "a=rtcp-mux"} {
		if !strings.Contains(offer, want) {
			t.Errorf("offer toward a dtls leg lacks %q:\n%s", want, offer)
		}
	}
	if !strings.Contains(string(s.answerXB), "a=setup:active") {
		t.Errorf("answer to an actpass offer is not setup:active:\n%s", s.answerXB)
	}
	if !flow(t, s.p1, s.xA, s.p2, 5*time.Second) {
		t.Fatalf("no audio A→B across the dtls leg; stats X %+v Y %+v", s.x.Stats(), s.y.Stats())
	}
	if !flow(t, s.p2, s.yB, s.p1, 2*time.Second) {
		t.Fatalf("no audio B→A across the dtls leg; stats X %+v Y %+v", s.x.Stats(), s.y.Stats())
	}
	for name, st := range map[string]BridgeStats{"X": s.x.Stats(), "Y": s.y.Stats()} {
		if st.DroppedAuth != 0 || st.DroppedSTUN != 0 || st.DroppedDTLS != 0 {
			t.Errorf("bridge %s dropped: %+v", name, st)
		}
	}
	if d := m.Stats().DTLS; d.Keyed != 2 || d.HandshakeSeconds <= 0 {
		t.Errorf("DTLS stats %+v, want 2 keyed legs", d)
	}
	s.x.Close()
	s.y.Close()
	select {
	case err := <-s.failX:
		t.Errorf("X ended with %v", err)
	case err := <-s.failY:
		t.Errorf("Y ended with %v", err)
	default:
	}
	checkNoPionGoroutines(t)
}

// TestDTLSFingerprintMismatch: an SDP's fingerprint is not its
// certificate's. The side that checks it ends the call with
// ErrDTLSFingerprint (as server: the answer was tampered; as client: the
// offer was); no media passes.
func TestDTLSFingerprintMismatch(t *testing.T) {
	other, err := NewCertificate()
	if err != nil {
		t.Fatal(err)
	}
	fp := regexp.MustCompile(`a=fingerprint:sha-256 [0-9A-F:]+`)
	wrong := func(b []byte) []byte { return fp.ReplaceAll(b, []byte("a=fingerprint:"+other.Fingerprint)) }
	for _, tc := range []struct {
		name          string
		offer, answer func([]byte) []byte
		checker       func(*b2b) chan error
	}{
		{"server checks", nil, wrong, func(s *b2b) chan error { return s.failX }},
		{"client checks", wrong, nil, func(s *b2b) chan error { return s.failY }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newDTLSManager(t, 8, 5*time.Second, 30*time.Second)
			s := newB2B(t, m, tc.offer, tc.answer)
			began := time.Now()
			select {
			case err := <-tc.checker(s):
				if !errors.Is(err, ErrDTLSFingerprint) || HangupCause(err) != "dtls fingerprint mismatch" {
					t.Fatalf("ended with %v (cause %q), want a fingerprint mismatch", err, HangupCause(err))
				}
				if d := time.Since(began); d > 2*time.Second {
					t.Errorf("mismatch noticed after %s", d)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the call was not ended")
			}
			if flow(t, s.p1, s.xA, s.p2, 300*time.Millisecond) {
				t.Fatal("media passed a leg whose fingerprint did not match")
			}
			if d := m.Stats().DTLS; d.FingerprintMismatches != 1 || d.Keyed != 0 {
				t.Errorf("DTLS stats %+v, want one mismatch and nothing keyed", d)
			}
			s.x.Close()
			s.y.Close()
			checkNoPionGoroutines(t)
		})
	}
}

// TestDTLSNoPeer: the far side never answers (Y is not started): the call
// ends within the handshake timeout.
func TestDTLSNoPeer(t *testing.T) {
	m := newDTLSManager(t, 8, 2*time.Second, 30*time.Second)
	p1 := newPeer(t)
	x, err := m.NewCallBridge("x", nil, pcmu, dtlsLeg())
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	offer, err := x.Offer(sdpOffer(p1.port(), "RTP/AVP", "0"))
	if err != nil {
		t.Fatal(err)
	}
	silent := newPeer(t) // answers nothing
	ans := strings.Replace(string(offer), "a=setup:actpass", "a=setup:active", 1)
	ans = regexp.MustCompile(`m=audio \d+`).ReplaceAllString(ans, "m=audio "+strconv.Itoa(silent.port()))
	ans = regexp.MustCompile(`a=candidate:.*\r\n`).ReplaceAllString(ans, "")
	if _, err := x.AnswerB([]byte(ans)); err != nil {
		t.Fatal(err)
	}
	fail := make(chan error, 1)
	began := time.Now()
	x.Start(func(err error) { fail <- err })
	select {
	case err := <-fail:
		if !errors.Is(err, ErrDTLSTimeout) && !errors.Is(err, ErrICEFailed) {
			t.Fatalf("ended with %v, want a handshake timeout or ICE failure", err)
		}
		if d := time.Since(began); d > 3*time.Second {
			t.Fatalf("ended after %s, configured timeout 2s", d)
		}
	case <-time.After(4 * time.Second):
		t.Fatal("a leg whose peer never answers was not ended")
	}
	x.Close()
	checkNoPionGoroutines(t)
}

// checkNoPionGoroutines fails t if pion's ICE or DTLS goroutines outlive
// the bridges that started them.
func checkNoPionGoroutines(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		buf := make([]byte, 1<<20)
		stack := string(buf[:runtime.Stack(buf, true)])
		n := strings.Count(stack, "github.com/pion/ice") + strings.Count(stack, "github.com/pion/dtls") + strings.Count(stack, "media.(*secureLeg)")
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pion goroutines left running:\n%s", stack)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestDTLSStrangersDropped: mid-call, a stranger sends STUN checks (with
// and without our credentials' shape) and DTLS records, and the ICE peer's
// address is not theirs: each is dropped and counted, the call goes on
// and its audio still flows. Then a flood of 5,000 ClientHello-sized
// DTLS records at the leg's port leaves a second call's audio flowing.
func TestDTLSStrangersDropped(t *testing.T) {
	m := newDTLSManager(t, 16, 5*time.Second, 30*time.Second)
	s := newB2B(t, m, nil, nil)
	if !flow(t, s.p1, s.xA, s.p2, 5*time.Second) {
		t.Fatal("no audio before the strangers came")
	}
	xB := sdpAddr(t, s.x.LocalOfferB()) // X's dtls port
	stranger := newPeer(t)
	stunReq, err := stun.Build(stun.TransactionID, stun.BindingRequest, stun.NewUsername("nope:nope"),
		stun.NewShortTermIntegrity("0123456789012345678901"), stun.Fingerprint)
	if err != nil {
		t.Fatal(err)
	}
	hello := append([]byte{22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 187}, make([]byte, 187)...)
	garbage := append([]byte{23, 0xfe, 0xfd}, bytes.Repeat([]byte{0xAB}, 60)...)
	for range 10 {
		stranger.send(xB, stunReq.Raw)
		stranger.send(xB, hello)
		stranger.send(xB, garbage)
	}
	if !flow(t, s.p1, s.xA, s.p2, 2*time.Second) || !flow(t, s.p2, s.yB, s.p1, 2*time.Second) {
		t.Fatal("audio stopped after strangers' STUN and DTLS")
	}
	deadline := time.Now().Add(2 * time.Second)
	for st := s.x.Stats(); st.DroppedSTUN < 10 || st.DroppedDTLS < 20; st = s.x.Stats() {
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v, want ≥ 10 STUN and ≥ 20 DTLS drops", st)
		}
		time.Sleep(10 * time.Millisecond)
	}

	// A second call, and a flood at the first's dtls port meanwhile.
	s2 := newB2B(t, m, nil, nil)
	if !flow(t, s2.p1, s2.xA, s2.p2, 5*time.Second) {
		t.Fatal("no audio on the second call")
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 5000 {
			if _, err := stranger.conn.WriteToUDPAddrPort(hello, xB); err != nil {
				return
			}
		}
	}()
	got := 0
	var slowest time.Duration
	for range 20 {
		start := time.Now()
		if flow(t, s2.p1, s2.xA, s2.p2, 500*time.Millisecond) {
			got++
		}
		slowest = max(slowest, time.Since(start))
	}
	t.Logf("the slowest of the 20 bursts took %v", slowest)
	<-done
	if got < 18 {
		t.Errorf("during the flood the second call carried %d of 20 bursts", got)
	}
	if !flow(t, s.p1, s.xA, s.p2, 2*time.Second) {
		t.Fatal("the flooded call's audio stopped")
	}
	select {
	case err := <-s.failX:
		t.Fatalf("the flooded call ended: %v", err)
	default:
	}
	t.Logf("after the flood: X dropped %d DTLS, %d STUN", s.x.Stats().DroppedDTLS, s.x.Stats().DroppedSTUN)
}
