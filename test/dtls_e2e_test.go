package test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/wagate/wagate/test/internal/dtlspeer"
	"github.com/wagate/wagate/test/internal/metapeer"
	"github.com/wagate/wagate/test/internal/rtppeer"
	"github.com/wagate/wagate/test/internal/sipua"
)

// DTLS-SRTP toward Meta (media_encryption: dtls) through the real binary.
// The WhatsApp side is the Go Meta peer in DTLS mode (test/internal/
// dtlspeer: pion's ICE-lite agent and the DTLS server side, ECDSA
// certificate, UDP/TLS/RTP/SAVPF, Opus); the PBX or dialer is the same
// peer's G.711 profile on plain RTP. Tones must cross at their frequency
// both ways and DTMF must arrive once per key, as with SDES.

// dtlsOpts is a wagate whose meta endpoint keys with DTLS.
func dtlsOpts(o wagateOpts) wagateOpts {
	o.MetaEncryption = "dtls"
	if o.MetaCodecs == "" {
		o.MetaCodecs = bicMetaCodecs
	}
	return o
}

// waitKeyed waits for a DTLS call's media (bounded).
func waitKeyed(t *testing.T, c *metapeer.Call, who string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), peerCallLimit)
	defer cancel()
	if err := c.WaitKeyed(ctx); err != nil {
		t.Fatalf("%s: ICE/DTLS with wagate: %v", who, err)
	}
}

// checkDTLSFirst: after the handshake wagate's media comes at once (its
// silence), before the WhatsApp side sends anything, and decrypts with
// the exported keys.
func checkDTLSFirst(t *testing.T, what string, c *metapeer.Call) {
	t.Helper()
	time.Sleep(mediaFirstLimit)
	st := c.Media.Stats()
	switch {
	case st.FirstRecv.IsZero():
		t.Errorf("%s: no media from wagate within %v of the handshake", what, mediaFirstLimit)
	case st.Sent != 0:
		t.Errorf("%s: the peer had sent %d packets already: the check is void", what, st.Sent)
	default:
		t.Logf("%s: handshake %v after the 200 or INVITE; first decrypted packet from wagate %v after the 200", what,
			c.Handshake.Round(time.Millisecond), st.FirstRecv.Sub(c.Dialog.AnsweredAt).Round(time.Millisecond))
	}
}

// TestDTLSUICToneAndDTMF: Meta (ICE-lite, DTLS server, actpass) calls the
// business number; wagate answers UDP/TLS/RTP/SAVPF with setup:active,
// its ICE credentials, fingerprint and candidates, runs ICE as the
// controlling agent and DTLS as the client; the PBX answers PCMU. Tones
// and DTMF cross both ways.
func TestDTLSUICToneAndDTMF(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := e.startWagate(dtlsOpts(wagateOpts{}))
	meta := newGoPeer(t, e.Meta, metapeer.Config{DTLS: true})
	pbx := newGoPeer(t, e.PBX, metapeer.Config{Profile: metapeer.ProfileG711})

	ctx, cancel := context.WithTimeout(context.Background(), peerCallLimit)
	defer cancel()
	answered := answerAsync(ctx, pbx, metapeer.AnswerSpec{})
	mcall, err := meta.Call(ctx, metapeer.CallSpec{Target: w.SIPAddr, To: businessNumber, From: waUser})
	if err != nil {
		t.Fatalf("UIC with Meta's DTLS offer: %v", err)
	}
	pcall := waitAnswer(t, answered, "the PBX")
	ans := string(mcall.Remote)
	for _, want := range []string{" UDP/TLS/RTP/SAVPF ", "a=setup:active", "a=fingerprint:sha-256 ", "a=ice-ufrag:", "a=ice-pwd:", "a=candidate:", "a=rtcp-mux"} {
		if !strings.Contains(ans, want) {
			t.Errorf("wagate's answer to Meta's DTLS offer lacks %q:\n%s", want, ans)
		}
	}
	if strings.Contains(ans, "a=crypto") || strings.Contains(ans, "a=ice-lite") {
		t.Errorf("wagate's DTLS answer has a=crypto or a=ice-lite:\n%s", ans)
	}
	waitKeyed(t, mcall, "UIC")
	checkDTLSFirst(t, "UIC", mcall)
	t.Logf("UIC: INVITE to first decrypted packet at Meta: %v", mcall.Media.Stats().FirstRecv.Sub(mcall.Invited).Round(time.Millisecond))

	toneBothWays(t, mcall, pcall, "PBX")
	sendDigits(t, mcall, "12#")
	checkDigits(t, "the PBX", pcall, "12#")
	sendDigits(t, pcall, "9*")
	checkDigits(t, "the WhatsApp user", mcall, "9*")
	checkWhatsAppStream(t, "UIC", mcall)

	hangup(t, mcall, "meta")
	waitBye(t, pcall, "the PBX")
	s := w.waitIdle()
	w.expectCounts(s, 1, 1)
	m := scrapeMetrics(t, e)
	if v, _ := metricValue(m, "wagate_dtls_handshakes_total", `result="keyed"`); v != 1 {
		t.Errorf("wagate_dtls_handshakes_total{result=keyed} = %v, want 1", v)
	}
}

// toneBothWays sends 1 kHz from the WhatsApp side and 700 Hz from the
// G.711 side and checks each arrives.
func toneBothWays(t *testing.T, mcall, gcall *metapeer.Call, other string) {
	t.Helper()
	mcall.Media.ResetRecording()
	gcall.Media.ResetRecording()
	playFor(t, 2500*time.Millisecond, play{mcall.Media, rtppeer.NewTone(1000, toneAmp, mcall.Codec().Rate)}, play{gcall.Media, rtppeer.NewTone(700, toneAmp, 8000)})
	checkTone(t, "WhatsApp user's tone at the "+other, gcall.Media.Recording(), 8000, 1000, 1500*time.Millisecond)
	checkTone(t, other+"'s tone at the WhatsApp user", mcall.Media.Recording(), mcall.Codec().Rate, 700, 1500*time.Millisecond)
}

// TestDTLSBICToneAndDTMF: a PCMU dialer calls a WhatsApp user; wagate
// offers Meta UDP/TLS/RTP/SAVPF with setup:actpass and its candidates;
// Meta answers ICE-lite and setup:passive, so wagate controls ICE and is
// the DTLS client again. Tones and DTMF cross both ways.
func TestDTLSBICToneAndDTMF(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := e.startWagate(dtlsOpts(wagateOpts{}))
	meta := newGoPeer(t, e.Meta, metapeer.Config{DTLS: true})
	dialer := newGoPeer(t, e.Dialer, metapeer.Config{Profile: metapeer.ProfileG711})

	ctx, cancel := context.WithTimeout(context.Background(), peerCallLimit)
	defer cancel()
	answered := answerAsync(ctx, meta, metapeer.AnswerSpec{Ring: 100 * time.Millisecond})
	began := time.Now()
	dcall, err := dialer.Call(ctx, metapeer.CallSpec{Target: w.SIPAddr, To: waUser, From: businessNumber})
	if err != nil {
		t.Fatalf("BIC toward a DTLS Meta: %v", err)
	}
	mcall := waitAnswer(t, answered, "the Meta peer")
	offer := string(mcall.Remote)
	for _, want := range []string{" UDP/TLS/RTP/SAVPF ", "a=setup:actpass", "a=fingerprint:sha-256 ", "a=ice-ufrag:", "a=candidate:", "a=rtcp-mux"} {
		if !strings.Contains(offer, want) {
			t.Errorf("wagate's offer to a DTLS Meta lacks %q:\n%s", want, offer)
		}
	}
	waitKeyed(t, mcall, "BIC")
	checkDTLSFirst(t, "BIC", mcall)
	t.Logf("BIC: dialer's INVITE to Meta's first decrypted packet: %v", mcall.Media.Stats().FirstRecv.Sub(began).Round(time.Millisecond))

	toneBothWays(t, mcall, dcall, "dialer")
	sendDigits(t, dcall, "47")
	checkDigits(t, "the WhatsApp user", mcall, "47")
	sendDigits(t, mcall, "0#")
	checkDigits(t, "the dialer", dcall, "0#")
	checkWhatsAppStream(t, "BIC", mcall)

	hangup(t, dcall, "dialer")
	waitBye(t, mcall, "the Meta peer")
	s := w.waitIdle()
	w.expectCounts(s, 1, 1)
}

// endedCause waits for wagate's "call ended" line and returns its cause.
func endedCause(t *testing.T, w *wagate) string {
	t.Helper()
	return w.waitLogMsg("call ended", 0).str("cause")
}

// dtlsFailure places a UIC to a Meta peer configured to fail keying and
// checks that wagate hangs up both legs with cause, within limit of the
// answer, and that the PBX never got media.
func dtlsFailure(t *testing.T, peerCfg dtlspeer.Config, media, cause, metric string, limit time.Duration) {
	e := newEnv(t)
	w := e.startWagate(dtlsOpts(wagateOpts{MediaExtra: media}))
	meta := newGoPeer(t, e.Meta, metapeer.Config{DTLS: true, DTLSPeer: peerCfg})
	pbx := newGoPeer(t, e.PBX, metapeer.Config{Profile: metapeer.ProfileG711})

	ctx, cancel := context.WithTimeout(context.Background(), peerCallLimit)
	defer cancel()
	answered := answerAsync(ctx, pbx, metapeer.AnswerSpec{})
	mcall, err := meta.Call(ctx, metapeer.CallSpec{Target: w.SIPAddr, To: businessNumber, From: waUser})
	if err != nil {
		t.Fatalf("UIC: %v", err)
	}
	pcall := waitAnswer(t, answered, "the PBX")
	pcall.Media.SetSource(rtppeer.NewTone(700, toneAmp, 8000))
	select {
	case <-mcall.Dialog.Done():
		if d := time.Since(mcall.Dialog.AnsweredAt); d > limit {
			t.Errorf("wagate hung up %v after the 200, want within %v", d.Round(time.Millisecond), limit)
		}
	case <-time.After(limit + 5*time.Second):
		t.Fatalf("wagate did not hang up Meta within %v", limit+5*time.Second)
	}
	waitBye(t, pcall, "the PBX")
	mcall.Hangup(ctx)
	if got := endedCause(t, w); got != cause {
		t.Errorf("call ended with cause %q, want %q", got, cause)
	}
	if st := mcall.Media.Stats(); st.Received != 0 {
		t.Errorf("Meta got %d media packets from a leg that never keyed", st.Received)
	}
	if st := pcall.Media.Stats(); st.Received != 0 {
		t.Errorf("the PBX got %d media packets from a leg that never keyed", st.Received)
	}
	s := w.waitIdle()
	w.expectCounts(s, 1, 1)
	m := scrapeMetrics(t, e)
	if v, _ := metricValue(m, "wagate_dtls_handshakes_total", `result="`+metric+`"`); v != 1 {
		t.Errorf("wagate_dtls_handshakes_total{result=%s} = %v, want 1", metric, v)
	}
}

// TestDTLSFingerprintMismatch: Meta's certificate is not the one its SDP
// fingerprints; wagate refuses the handshake and ends the call.
func TestDTLSFingerprintMismatch(t *testing.T) {
	t.Parallel()
	dtlsFailure(t, dtlspeer.Config{WrongFingerprint: true}, "", "dtls fingerprint mismatch", "fingerprint", 3*time.Second)
}

// TestDTLSWeakFingerprintOnly: Meta's SDP fingerprints another
// certificate under sha-256 and its own only under sha-1; wagate checks
// the strongest hash's fingerprint (RFC 8122 §5) and ends the call.
func TestDTLSWeakFingerprintOnly(t *testing.T) {
	t.Parallel()
	dtlsFailure(t, dtlspeer.Config{WeakFingerprintOnly: true}, "", "dtls fingerprint mismatch", "fingerprint", 3*time.Second)
}

// TestDTLSHandshakeTimeout: Meta answers ICE but never DTLS; the call
// ends at media.dtls.handshake_timeout.
func TestDTLSHandshakeTimeout(t *testing.T) {
	t.Parallel()
	dtlsFailure(t, dtlspeer.Config{NoDTLS: true}, ", dtls: {handshake_timeout: 2s}", "dtls handshake timeout", "timeout", 3*time.Second)
}

// TestDTLSNoICE: Meta's media address answers no connectivity check (a
// firewall drops the path); the call ends at media.dtls.handshake_timeout
// named "ice failed", not a DTLS fault: the operator looks at the path,
// not at certificates.
func TestDTLSNoICE(t *testing.T) {
	t.Parallel()
	dtlsFailure(t, dtlspeer.Config{NoICE: true}, ", dtls: {handshake_timeout: 2s}", "ice failed", "ice_failed", 3*time.Second)
}

// TestDTLSConsentLost: mid-call Meta stops answering ICE consent checks
// (its media goes on); wagate ends the call at media.ice.consent_timeout.
func TestDTLSConsentLost(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := e.startWagate(dtlsOpts(wagateOpts{MediaExtra: ", ice: {consent_timeout: 4s}"}))
	meta := newGoPeer(t, e.Meta, metapeer.Config{DTLS: true})
	pbx := newGoPeer(t, e.PBX, metapeer.Config{Profile: metapeer.ProfileG711})

	ctx, cancel := context.WithTimeout(context.Background(), peerCallLimit)
	defer cancel()
	answered := answerAsync(ctx, pbx, metapeer.AnswerSpec{})
	mcall, err := meta.Call(ctx, metapeer.CallSpec{Target: w.SIPAddr, To: businessNumber, From: waUser})
	if err != nil {
		t.Fatalf("UIC: %v", err)
	}
	pcall := waitAnswer(t, answered, "the PBX")
	waitKeyed(t, mcall, "UIC")
	// A second of tone counted in packets, and the PBX hearing it (10 s
	// more at most: a loaded machine stalls the sender and the path).
	from := mcall.Media.Stats().Sent
	mcall.Media.SetSource(rtppeer.NewTone(1000, toneAmp, 48000))
	time.Sleep(time.Second)
	for deadline := time.Now().Add(10 * time.Second); (mcall.Media.Stats().Sent-from < 50 || pcall.Media.Stats().ReceivedAudio == 0) && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	if pcall.Media.Stats().ReceivedAudio == 0 {
		t.Fatal("no audio before consent was withdrawn")
	}
	stopped := time.Now()
	mcall.DTLS.StopICE()
	select {
	case <-mcall.Dialog.Done():
		d := time.Since(stopped)
		t.Logf("call ended %v after consent checks went unanswered (consent_timeout 4s)", d.Round(time.Millisecond))
		if d < 3*time.Second || d > 8*time.Second {
			t.Errorf("call ended %v after consent stopped, want about 4s", d.Round(time.Millisecond))
		}
	case <-time.After(12 * time.Second):
		t.Fatal("wagate kept a call whose peer stopped answering consent checks")
	}
	waitBye(t, pcall, "the PBX")
	mcall.Hangup(ctx)
	if got := endedCause(t, w); got != "ice consent lost" {
		t.Errorf("call ended with cause %q, want %q", got, "ice consent lost")
	}
	s := w.waitIdle()
	w.expectCounts(s, 1, 1)
}

// TestDTLSAndSDESNumbersMixed: one wagate, one meta endpoint (sdes), a
// second number overriding it with dtls. A DTLS UIC to that number and an
// SDES UIC to the first run at once and both carry audio.
func TestDTLSAndSDESNumbersMixed(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const dtlsNumber = "+15550100002"
	w := e.startWagate(wagateOpts{MetaEncryption: "sdes", MetaCodecs: "opus",
		MoreNumbers: "\n  - {number: \"" + dtlsNumber + "\", phone_number_id: \"100000000000002\", route: {endpoint: pbx, user: \"1001\"}, media_encryption: dtls}"})
	metaDTLS := newGoPeer(t, e.Meta, metapeer.Config{DTLS: true})
	metaSDES := newGoPeer(t, e.newPeer("meta2", 2), metapeer.Config{})
	pbx := newGoPeer(t, e.PBX, metapeer.Config{Profile: metapeer.ProfileG711})

	ctx, cancel := context.WithTimeout(context.Background(), 2*peerCallLimit)
	defer cancel()
	first := answerAsync(ctx, pbx, metapeer.AnswerSpec{})
	dcall, err := metaDTLS.Call(ctx, metapeer.CallSpec{Target: w.SIPAddr, To: dtlsNumber, From: waUser})
	if err != nil {
		t.Fatalf("UIC to the dtls number: %v", err)
	}
	pd := waitAnswer(t, first, "the PBX (dtls call)")
	second := answerAsync(ctx, pbx, metapeer.AnswerSpec{})
	scall, err := metaSDES.Call(ctx, metapeer.CallSpec{Target: w.SIPAddr, To: businessNumber, From: "+447700900124"})
	if err != nil {
		t.Fatalf("UIC to the sdes number: %v", err)
	}
	ps := waitAnswer(t, second, "the PBX (sdes call)")
	if !strings.Contains(string(dcall.Remote), "UDP/TLS/RTP/SAVPF") || !strings.Contains(string(scall.Remote), "RTP/SAVP") || !strings.Contains(string(scall.Remote), "a=crypto:") {
		t.Fatalf("answers: dtls number\n%s\nsdes number\n%s", dcall.Remote, scall.Remote)
	}
	waitKeyed(t, dcall, "dtls call")
	playFor(t, 2500*time.Millisecond, play{dcall.Media, rtppeer.NewTone(1000, toneAmp, 48000)}, play{scall.Media, rtppeer.NewTone(600, toneAmp, 48000)})
	checkTone(t, "dtls call's tone at the PBX", pd.Media.Recording(), 8000, 1000, 1500*time.Millisecond)
	checkTone(t, "sdes call's tone at the PBX", ps.Media.Recording(), 8000, 600, 1500*time.Millisecond)
	hangup(t, dcall, "meta (dtls)")
	hangup(t, scall, "meta (sdes)")
	waitBye(t, pd, "the PBX")
	waitBye(t, ps, "the PBX")
	s := w.waitIdle()
	w.expectCounts(s, 2, 2)
}

// TestMetaG711Offer: Meta offers Opus and G.711 (a number with
// additional_codecs). With prefer: passthrough wagate takes G.711 and
// relays it end to end (UIC: it answers PCMU; BIC: it offers the dialer's
// PCMU first and Meta answers it); with prefer: transcode (the default)
// it answers Opus and transcodes. Checked by what was negotiated and by
// wagate's counters (wagate_calls_transcoded_total), not by time.
func TestMetaG711Offer(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, prefer string
		bic          bool
		wantCodec    string
		transcoded   float64
	}{
		{"UIC passthrough", "passthrough", false, "PCMU", 0},
		{"UIC transcode", "transcode", false, "opus", 1},
		{"BIC passthrough", "passthrough", true, "PCMU", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			w := e.startWagate(dtlsOpts(wagateOpts{MetaCodecs: "opus, PCMU, PCMA", MetaExtra: ", prefer: " + tc.prefer}))
			meta := newGoPeer(t, e.Meta, metapeer.Config{DTLS: true, OfferG711: true, AnswerG711: true})
			ctx, cancel := context.WithTimeout(context.Background(), peerCallLimit)
			defer cancel()
			var mcall, gcall *metapeer.Call
			if tc.bic {
				dialer := newGoPeer(t, e.Dialer, metapeer.Config{Profile: metapeer.ProfileG711})
				answered := answerAsync(ctx, meta, metapeer.AnswerSpec{})
				var err error
				if gcall, err = dialer.Call(ctx, metapeer.CallSpec{Target: w.SIPAddr, To: waUser, From: businessNumber}); err != nil {
					t.Fatalf("BIC: %v", err)
				}
				mcall = waitAnswer(t, answered, "the Meta peer")
			} else {
				pbx := newGoPeer(t, e.PBX, metapeer.Config{Profile: metapeer.ProfileG711})
				answered := answerAsync(ctx, pbx, metapeer.AnswerSpec{})
				var err error
				if mcall, err = meta.Call(ctx, metapeer.CallSpec{Target: w.SIPAddr, To: businessNumber, From: waUser}); err != nil {
					t.Fatalf("UIC: %v", err)
				}
				gcall = waitAnswer(t, answered, "the PBX")
			}
			if got := mcall.Codec().Name; got != tc.wantCodec {
				t.Fatalf("Meta's leg uses %s, want %s; SDP from wagate:\n%s", got, tc.wantCodec, mcall.Remote)
			}
			waitKeyed(t, mcall, tc.name)
			toneBothWays(t, mcall, gcall, "G.711 side")
			hangup(t, gcall, "the G.711 side")
			waitBye(t, mcall, "the Meta peer")
			s := w.waitIdle()
			w.expectCounts(s, 1, 1)
			m := scrapeMetrics(t, e)
			if v, _ := metricValue(m, "wagate_calls_transcoded_total", ""); v != tc.transcoded {
				t.Errorf("wagate_calls_transcoded_total = %v, want %v", v, tc.transcoded)
			}
		})
	}
}

// TestDTLSMalformedOffer: Meta-shaped DTLS offers with a malformed
// fingerprint, setup, candidate or ICE credentials each get 488 with a
// Warning naming the fault, and leave nothing behind.
func TestDTLSMalformedOffer(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := e.startWagate(dtlsOpts(wagateOpts{}))
	meta := newGoPeer(t, e.Meta, metapeer.Config{})
	target, err := net.ResolveUDPAddr("udp4", w.SIPAddr)
	if err != nil {
		t.Fatal(err)
	}
	good := "v=0\r\no=- 1 1 IN IP4 " + e.Meta.IP + "\r\ns=-\r\nc=IN IP4 " + e.Meta.IP + "\r\nt=0 0\r\na=ice-lite\r\n" +
		"m=audio 40000 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\na=ice-ufrag:Ab3d\r\na=ice-pwd:0123456789abcdefghijKL\r\n" +
		"a=fingerprint:sha-256 " + strings.TrimSuffix(strings.Repeat("AB:", 32), ":") + "\r\na=setup:actpass\r\n" +
		"a=candidate:1 1 udp 2130706431 " + e.Meta.IP + " 40000 typ host\r\na=rtcp-mux\r\n"
	for i, tc := range []struct{ old, new, warn string }{
		{"sha-256 AB:AB", "sha-256 AB-AB", "a=fingerprint sha-256 value is not hex pairs"},
		{"setup:actpass", "setup:holdconn", "a=setup:holdconn"},
		{"typ host", "typ", "a=candidate"},
		{"ice-ufrag:Ab3d", "ice-ufrag:A", "a=ice-ufrag is 1 characters"},
		{"ice-pwd:0123456789abcdefghijKL", "ice-pwd:short", "a=ice-pwd is 5 characters"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), peerCallLimit)
		_, err := meta.UA.Invite(ctx, sipua.InviteRequest{
			Target: target, RURI: "sip:" + businessNumber + "@" + w.SIPAddr, To: "sip:" + businessNumber + "@" + w.SIPAddr,
			From: "sip:" + waUser + "@wa.meta.vc", CallID: fmt.Sprintf("outgoing:wacid.bad%d", i),
			SDP: []byte(strings.Replace(good, tc.old, tc.new, 1)),
		})
		cancel()
		var se *sipua.StatusError
		if !errors.As(err, &se) || se.Code != 488 || !strings.Contains(se.Msg.Get("Warning"), tc.warn) {
			t.Errorf("%s → %s: got %v (Warning %q), want 488 with a Warning containing %q", tc.old, tc.new, err, warningOf(se), tc.warn)
		}
	}
	s := w.waitIdle()
	w.expectCounts(s, 5, 5)
}

func warningOf(se *sipua.StatusError) string {
	if se == nil || se.Msg == nil {
		return ""
	}
	return se.Msg.Get("Warning")
}
