package metapeer

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/wagate/wagate/test/internal/audio"
	"github.com/wagate/wagate/test/internal/rtppeer"
)

// Peer-to-peer self-tests (no wagate): the peers the end-to-end tests rely
// on really exchange audible, decodable audio and DTMF.

func newPair(t *testing.T, caller, callee Config) (*Peer, *Peer) {
	t.Helper()
	a, err := New(caller)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	b, err := New(callee)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return a, b
}

func dial(t *testing.T, a, b *Peer, spec CallSpec) (*Call, *Call) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	type res struct {
		c   *Call
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, _, err := b.Answer(ctx, AnswerSpec{Ring: 50 * time.Millisecond})
		ch <- res{c, err}
	}()
	spec.Target = b.UA.Addr()
	ca, err := a.Call(ctx, spec)
	if err != nil {
		t.Fatalf("call: %v", err)
	}
	r := <-ch
	if r.err != nil {
		t.Fatalf("answer: %v", r.err)
	}
	select {
	case <-r.c.Dialog.Acked():
	case <-ctx.Done():
		t.Fatal("no ACK")
	}
	return ca, r.c
}

func checkTone(t *testing.T, what string, rec []int16, rate int, want float64) {
	t.Helper()
	a := audio.Analyze(rec, rate, want, -40)
	if !audio.Within(a.Frequency, want, 1, 2) || a.DBFS < -25 || a.Active.Len() < rate/2 {
		t.Errorf("%s: %+v, want a %.0f Hz tone above -25 dBFS for ≥0.5 s", what, a, want)
	}
	t.Logf("%s: %.1f Hz, %.1f dBFS, purity %.2f, %d ms active", what, a.Frequency, a.DBFS, a.Purity, a.Active.Len()*1000/rate)
}

func TestMetaToMetaSRTP(t *testing.T) {
	a, b := newPair(t, Config{SIP: "127.0.0.1:0"}, Config{SIP: "127.0.0.1:0"})
	ca, cb := dial(t, a, b, CallSpec{To: "+15550100001", From: "+447700900123"})
	if !strings.Contains(string(ca.Local), "m=audio ") || !strings.Contains(string(ca.Local), "RTP/SAVP 111 126") ||
		!strings.Contains(string(ca.Local), "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:") || !strings.Contains(string(ca.Local), "a=rtcp-mux") {
		t.Errorf("offer is not Meta's:\n%s", ca.Local)
	}
	ca.Media.SetSource(rtppeer.NewTone(1000, 0.3, 48000))
	cb.Media.SetSource(rtppeer.NewTone(440, 0.3, 48000))
	time.Sleep(1500 * time.Millisecond)
	ca.Media.SetSource(nil)
	cb.Media.SetSource(nil)
	if err := ca.Media.SendDTMF("19#", 100*time.Millisecond, 60*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1200 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := ca.Hangup(ctx); err != nil {
		t.Fatalf("hangup: %v", err)
	}
	select {
	case <-cb.Dialog.Done():
	case <-ctx.Done():
		t.Fatal("callee saw no BYE")
	}
	cb.Media.Close()
	checkTone(t, "callee got", cb.Media.Recording(), 48000, 1000)
	checkTone(t, "caller got", ca.Media.Recording(), 48000, 440)
	if d := cb.Media.Digits(); d != "19#" {
		t.Errorf("digits %q, want 19#", d)
	}
	st := cb.Media.Stats()
	if st.AuthFailures != 0 || st.RTCPReceived == 0 {
		t.Errorf("callee stats %+v: want no auth failures and some RTCP", st)
	}
	if len(ca.Media.Stats().RTT) != 0 {
		t.Logf("rtt %v", ca.Media.Stats().RTT)
	}
}

func TestG711ToG711(t *testing.T) {
	a, b := newPair(t, Config{SIP: "127.0.0.1:0", Profile: ProfileG711}, Config{SIP: "127.0.0.1:0", Profile: ProfileG711, Echo: true})
	ca, cb := dial(t, a, b, CallSpec{To: "+447700900123", From: "+15550100001"})
	ca.Media.SetSource(rtppeer.NewTone(1000, 0.3, 8000))
	time.Sleep(1200 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cb.Media.Close()
	if err := ca.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	checkTone(t, "echo", ca.Media.Recording(), 8000, 1000)
	if st := ca.Media.Stats(); st.Lost != 0 || st.Received < 50 {
		t.Errorf("stats %+v", st)
	}
}

func TestSRTPRejectsWrongKey(t *testing.T) {
	key := rtppeer.NewCrypto()
	s1, err := rtppeer.Listen(rtppeer.Config{IP: "127.0.0.1", Codec: rtppeer.Opus, Local: key, RTCPMux: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s1.Close()
	s2, err := rtppeer.Listen(rtppeer.Config{IP: "127.0.0.1", Codec: rtppeer.Opus, Local: rtppeer.NewCrypto(), RTCPMux: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	s1.Start(&net.UDPAddr{IP: net.ParseIP("127.0.0.1"), Port: s2.Port()}, rtppeer.NewCrypto())
	s2.Start(&net.UDPAddr{IP: net.ParseIP("127.0.0.1"), Port: s1.Port()}, rtppeer.NewCrypto()) // not s1's key
	s1.SetSource(rtppeer.NewTone(1000, 0.3, 48000))
	time.Sleep(300 * time.Millisecond)
	if st := s2.Stats(); st.Received != 0 || st.AuthFailures == 0 {
		t.Errorf("with the wrong key: %+v, want every packet failing authentication", st)
	}
}
