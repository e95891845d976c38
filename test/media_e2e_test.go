package test

import (
	"context"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wagate/wagate/test/internal/audio"
	"github.com/wagate/wagate/test/internal/metapeer"
	"github.com/wagate/wagate/test/internal/rtppeer"
)

// End-to-end media through the real binary with real codecs: the WhatsApp
// side is the Go Meta peer (test/internal/metapeer: Meta's SDES offer,
// Opus 48 kHz mono over SRTP, rtcp-mux), the PBX or dialer side is SIPp
// with -rtp_echo or the same peer in its G.711 profile. A tone sent on one
// leg must come out of the other at the same frequency (±1 %, at least
// ±2 Hz) and an audible level.

const (
	// toneAmp is the amplitude tones are sent at: 0.3 of full scale,
	// -13.5 dBFS.
	toneAmp = 0.3
	// minToneDBFS is the level a received tone must keep after the trip
	// (Opus at 20 kbit/s and G.711 each way lose a few dB at most; a
	// broken gain stage or a stream of concealment frames does not reach it).
	minToneDBFS = -25.0
	// activeDBFS marks the part of a recording where the tone is.
	activeDBFS = -40.0
	// mediaFirstLimit: wagate must send media on the WhatsApp leg this soon
	// after the 200, before the WhatsApp side sends anything (Meta drops a
	// call that stays silent at the start).
	mediaFirstLimit = time.Second
	// bicMetaCodecs is the meta endpoint's codec list in BIC tests: Opus
	// only, as WhatsApp offers. The Go Meta peer speaks SIP over UDP (Meta
	// itself is TLS only), and wagate's SDES offer with every codec and
	// several crypto suites can exceed sipgo's UDP MTU budget (the INVITE
	// then fails with 503 "size of packet larger than MTU").
	bicMetaCodecs = "opus"
	// peerCallLimit bounds every call setup and teardown of a Go peer.
	peerCallLimit = 15 * time.Second
)

// newGoPeer starts a Go SIP+media peer at p's SIP address; closed on
// cleanup. Its SIP messages go to the test log when the test fails.
func newGoPeer(t *testing.T, p peer, cfg metapeer.Config) *metapeer.Peer {
	t.Helper()
	cfg.SIP = p.Addr()
	var logMu sync.Mutex
	var lines []string
	cfg.Logf = func(format string, args ...any) {
		logMu.Lock()
		lines = append(lines, time.Now().Format("15:04:05.000 ")+fmt.Sprintf(format, args...))
		logMu.Unlock()
	}
	mp, err := metapeer.New(cfg)
	if err != nil {
		t.Fatalf("%s peer: %v", p.Name, err)
	}
	t.Cleanup(func() {
		mp.Close()
		if t.Failed() {
			logMu.Lock()
			t.Logf("%s peer (%s) SIP:\n%s", p.Name, p.Addr(), strings.Join(lines, "\n"))
			logMu.Unlock()
			for _, te := range mp.UA.Trace() {
				if te.Msg.Request && te.Msg.Method == "INVITE" || !te.Msg.Request && te.Msg.Status == 200 && len(te.Msg.Body) > 0 {
					dir := "received"
					if te.Sent {
						dir = "sent"
					}
					t.Logf("%s peer %s:\n%s", p.Name, dir, te.Msg)
				}
			}
		}
	})
	return mp
}

// answerAsync answers the next call on mp in the background.
func answerAsync(ctx context.Context, mp *metapeer.Peer, spec metapeer.AnswerSpec) <-chan answerResult {
	ch := make(chan answerResult, 1)
	go func() {
		c, _, err := mp.Answer(ctx, spec)
		ch <- answerResult{c, err}
	}()
	return ch
}

type answerResult struct {
	call *metapeer.Call
	err  error
}

func (r answerResult) must(t *testing.T, who string) *metapeer.Call {
	t.Helper()
	if r.err != nil {
		t.Fatalf("%s did not answer: %v", who, r.err)
	}
	return r.call
}

// waitAnswer waits for an answerAsync result.
func waitAnswer(t *testing.T, ch <-chan answerResult, who string) *metapeer.Call {
	t.Helper()
	select {
	case r := <-ch:
		return r.must(t, who)
	case <-time.After(peerCallLimit):
		t.Fatalf("%s got no call within %v", who, peerCallLimit)
		return nil
	}
}

// checkTone asserts that rec (mono PCM at rate) holds a tone of want Hz,
// present (at activeDBFS or louder) for at least minActive in all and
// unbroken for at least minRun, at minToneDBFS or louder.
func checkTone(t *testing.T, what string, rec []int16, rate int, want float64, minActive time.Duration) audio.Analysis {
	t.Helper()
	const minRun = 300 * time.Millisecond
	a := audio.Analyze(rec, rate, want, activeDBFS)
	dur := func(n int) time.Duration { return time.Duration(n) * time.Second / time.Duration(rate) }
	total, run := dur(a.Total), dur(a.Active.Len())
	switch {
	case total < minActive || run < minRun:
		t.Errorf("%s: the tone was present (≥ %.0f dBFS) for %v of %v received, longest unbroken %v, %d dropped 20 ms frames inside it; want at least %v in all and %v unbroken (loudest 20 ms: %.1f dBFS); level per 100 ms:\n%s",
			what, activeDBFS, total, dur(len(rec)), run, a.Breaks, minActive, minRun, loudest(rec, rate), levelProfile(rec, rate))
	case !audio.Within(a.Frequency, want, 1, 2):
		t.Errorf("%s: received %.1f Hz, want %.0f Hz ±1%% (level %.1f dBFS, purity %.2f)", what, a.Frequency, want, a.DBFS, a.Purity)
	case a.DBFS < minToneDBFS:
		t.Errorf("%s: tone level %.1f dBFS, want ≥ %.0f dBFS (sent at %.1f dBFS)", what, a.DBFS, minToneDBFS, 20*math.Log10(toneAmp/math.Sqrt2))
	default:
		t.Logf("%s: %.1f Hz at %.1f dBFS (purity %.2f), present %v (longest unbroken %v, %d dropped frames inside)", what, a.Frequency, a.DBFS, a.Purity, total, run, a.Breaks)
	}
	return a
}

// levelProfile prints the level of each 100 ms of rec (dBFS, rounded),
// and marks the 20 ms frames below activeDBFS in it.
func levelProfile(rec []int16, rate int) string {
	var b strings.Builder
	win := rate / 10
	for off := 0; off+win <= len(rec); off += win {
		quiet := 0
		for f := off; f+rate/50 <= off+win; f += rate / 50 {
			if audio.DBFS(rec[f:f+rate/50]) < activeDBFS {
				quiet++
			}
		}
		fmt.Fprintf(&b, "%.0f", audio.DBFS(rec[off:off+win]))
		if quiet > 0 {
			fmt.Fprintf(&b, "(%dq)", quiet)
		}
		b.WriteByte(' ')
	}
	return b.String()
}

func loudest(rec []int16, rate int) float64 {
	m := -120.0
	f := rate / 50
	for off := 0; off+f <= len(rec); off += f {
		m = max(m, audio.DBFS(rec[off:off+f]))
	}
	return m
}

// checkMediaFirst asserts that the peer got wagate's media within
// mediaFirstLimit of the 200, before it sent any itself.
func checkMediaFirst(t *testing.T, what string, c *metapeer.Call) {
	t.Helper()
	st := c.Media.Stats()
	answered := c.Dialog.AnsweredAt
	if st.FirstRecv.IsZero() {
		t.Errorf("%s: no media from wagate within %v of the 200 (the WhatsApp leg must get media first, before the user sends any)", what, mediaFirstLimit)
		return
	}
	if d := st.FirstRecv.Sub(answered); d > mediaFirstLimit {
		t.Errorf("%s: wagate's first media packet came %v after the 200, want within %v", what, d.Round(time.Millisecond), mediaFirstLimit)
	} else {
		t.Logf("%s: first media from wagate %v after the 200", what, d.Round(time.Millisecond))
	}
	if st.Sent != 0 {
		t.Errorf("%s: the peer had sent %d packets already: the check is void", what, st.Sent)
	}
}

// checkWhatsAppStream checks what a Meta peer received: SRTP that
// authenticates, Opus on the offered payload type from one SSRC that is not
// ours.
func checkWhatsAppStream(t *testing.T, what string, c *metapeer.Call) {
	t.Helper()
	st := c.Media.Stats()
	if st.AuthFailures > 0 {
		t.Errorf("%s: %d SRTP/SRTCP packets from wagate failed authentication or replay checks", what, st.AuthFailures)
	}
	if st.DecodeErrors > 0 {
		t.Errorf("%s: %d Opus packets from wagate did not decode", what, st.DecodeErrors)
	}
	pt := c.Media.Config().Codec.PT
	for p, n := range st.PTs {
		if p != pt && p != c.Media.Config().EventPT {
			t.Errorf("%s: %d packets with payload type %d, want only %d (opus) and telephone-event", what, n, p, pt)
		}
	}
	if len(st.SSRCs) != 1 {
		t.Errorf("%s: %d SSRCs from wagate, want one (%v)", what, len(st.SSRCs), st.SSRCs)
	}
	if _, ours := st.SSRCs[c.Media.SSRC()]; ours {
		t.Errorf("%s: wagate sent our own SSRC back: the WhatsApp leg must be re-originated", what)
	}
	if st.RTCPReceived == 0 {
		t.Errorf("%s: no RTCP from wagate on the rtcp-mux port during the call (DESIGN §6: keep RTCP flowing)", what)
	}
}

// play is a source a session sends, for playFor.
type play struct {
	s   *rtppeer.Session
	src rtppeer.Source
}

// playFor has each session send its source until it has sent d of audio,
// counted in the packets it wrote (a sender the loaded machine stalls
// sends what it owes late, or skips it beyond a second: the wall clock
// says nothing about what went out), then go quiet; then it waits until
// what is on the way has arrived at each session (tailOf). A sender that
// cannot send d within 4·d + 10 s fails the test.
func playFor(t *testing.T, d time.Duration, ps ...play) {
	t.Helper()
	frames := uint64(d / (20 * time.Millisecond))
	from := make([]uint64, len(ps))
	for i, p := range ps {
		from[i] = p.s.Stats().Sent
		p.s.SetSource(p.src)
	}
	began := time.Now()
	limit := 4*d + 10*time.Second
	left := len(ps)
	done := make([]bool, len(ps))
	for left > 0 {
		for i, p := range ps {
			if sent := p.s.Stats().Sent - from[i]; !done[i] && sent >= frames {
				p.s.SetSource(nil)
				done[i] = true
				left--
			}
		}
		if left > 0 && time.Since(began) > limit {
			for i, p := range ps {
				if !done[i] {
					p.s.SetSource(nil)
					t.Errorf("a sender wrote %d of its %d frames of audio in %v", p.s.Stats().Sent-from[i], frames, limit)
				}
			}
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, p := range ps {
		tailOf(p.s)
	}
}

// tailOf waits (up to 5 s) until s has received nothing loud for 200 ms:
// the end of what the far side sent has arrived, however late the
// machine let it through.
func tailOf(s *rtppeer.Session) {
	const quiet = 200 * time.Millisecond
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		last := s.Stats().LastRecv
		rate := s.Config().Codec.Rate
		rec := s.Recording()
		n := min(len(rec), rate*int(quiet/time.Millisecond)/1000)
		if (last.IsZero() || time.Since(last) > quiet) || (n > 0 && audio.DBFS(rec[len(rec)-n:]) < activeDBFS) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func hangup(t *testing.T, c *metapeer.Call, who string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), peerCallLimit)
	defer cancel()
	if err := c.Hangup(ctx); err != nil {
		t.Errorf("%s hangup: %v", who, err)
	}
}

func waitBye(t *testing.T, c *metapeer.Call, who string) {
	t.Helper()
	select {
	case <-c.Dialog.Done():
	case <-time.After(peerCallLimit):
		t.Errorf("%s got no BYE within %v", who, peerCallLimit)
	}
	c.Media.Close()
}

// TestMediaUICToneThroughEcho: the Go Meta peer calls the business number
// with Meta's SDES offer; the PBX (SIPp, PCMU) echoes RTP. wagate must send
// media to Meta at once after answering (before Meta sends any); then the
// peer's 1 kHz tone goes Opus → wagate → PCMU → echo → PCMU → wagate → Opus
// and must come back at 1 kHz and an audible level.
func TestMediaUICToneThroughEcho(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := e.startWagate(wagateOpts{MetaEncryption: "sdes"})
	call, pbx := placeUICThroughEcho(t, e, w, metapeer.Config{})
	checkMediaAddr(t, e, call)
	if !call.RemoteSDP.RTCPMux {
		t.Errorf("wagate's answer to an rtcp-mux offer has no a=rtcp-mux:\n%s", call.Remote)
	}

	// Silence from our side: wagate must still send media at once.
	time.Sleep(mediaFirstLimit + 200*time.Millisecond)
	checkMediaFirst(t, "UIC", call)

	call.Media.ResetRecording()
	playFor(t, 2500*time.Millisecond, play{call.Media, rtppeer.NewTone(1000, toneAmp, 48000)})
	checkWhatsAppStream(t, "UIC", call)
	hangup(t, call, "meta")
	pbx.requireOK()

	checkTone(t, "tone back through wagate and the PBX's echo", call.Media.Recording(), 48000, 1000, 1500*time.Millisecond)
	s := w.waitIdle()
	w.expectCounts(s, 1, 1)
}

// TestMediaBICToneBothWays: a Go dialer (PCMU, plain RTP) calls a WhatsApp
// user through wagate; the Go Meta peer answers with an SDES answer. The
// dialer waits before sending, so wagate alone must start media toward
// Meta; then the dialer's 1 kHz tone must reach the WhatsApp user at 1 kHz
// and the user's 700 Hz tone must reach the dialer at 700 Hz.
func TestMediaBICToneBothWays(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := e.startWagate(wagateOpts{MetaEncryption: "sdes", MetaCodecs: bicMetaCodecs})
	dcall, mcall := placeBIC(t, e, w, metapeer.Config{}, metapeer.Config{Profile: metapeer.ProfileG711})
	if mcall.RemoteSDP.Proto != "RTP/SAVP" || len(mcall.RemoteSDP.Cryptos) == 0 {
		t.Errorf("wagate's offer to Meta is not SDES (RTP/SAVP with a=crypto):\n%s", mcall.Remote)
	}

	time.Sleep(mediaFirstLimit + 200*time.Millisecond)
	checkMediaFirst(t, "BIC, toward Meta", mcall)

	crossTones(t, "BIC", dcall, mcall, 2500*time.Millisecond, 1500*time.Millisecond)
	if st := dcall.Media.Stats(); st.PTs[0] == 0 || len(st.PTs) > 2 {
		t.Errorf("the dialer got payload types %v, want PCMU (0)", st.PTs)
	}
	s := w.waitIdle()
	w.expectCounts(s, 1, 1)
}

// placeUICThroughEcho starts SIPp as the PBX, echoing RTP, and has the Go
// Meta peer (metaCfg) call the business number through w.
func placeUICThroughEcho(t *testing.T, e *env, w *wagate, metaCfg metapeer.Config) (*metapeer.Call, *sippProc) {
	t.Helper()
	pbx := e.startSipp(sippSpec{Name: "pbx", Scenario: "uas.xml", Peer: e.PBX, Calls: 1, Args: []string{"-rtp_echo"}})
	meta := newGoPeer(t, e.Meta, metaCfg)
	ctx, cancel := context.WithTimeout(context.Background(), peerCallLimit)
	defer cancel()
	call, err := meta.Call(ctx, metapeer.CallSpec{Target: w.SIPAddr, To: businessNumber, From: waUser})
	if err != nil {
		pbx.dump()
		t.Fatalf("UIC through the PBX's echo: %v", err)
	}
	return call, pbx
}

// checkMediaAddr checks that wagate's answer names the env's address for
// media.
func checkMediaAddr(t *testing.T, e *env, call *metapeer.Call) {
	t.Helper()
	if ip := call.RemoteSDP.IP; ip != e.WagateIP {
		t.Errorf("wagate's answer names media address %s, want %s", ip, e.WagateIP)
	}
}

// placeBIC has the Go dialer (dialerCfg) call a WhatsApp user through w
// and the Go Meta peer (metaCfg) answer; it returns both calls.
func placeBIC(t *testing.T, e *env, w *wagate, metaCfg, dialerCfg metapeer.Config) (dcall, mcall *metapeer.Call) {
	t.Helper()
	meta := newGoPeer(t, e.Meta, metaCfg)
	dialer := newGoPeer(t, e.Dialer, dialerCfg)
	ctx, cancel := context.WithTimeout(context.Background(), peerCallLimit)
	defer cancel()
	answered := answerAsync(ctx, meta, metapeer.AnswerSpec{Ring: 100 * time.Millisecond})
	dcall, err := dialer.Call(ctx, metapeer.CallSpec{Target: w.SIPAddr, To: waUser, From: businessNumber})
	if err != nil {
		t.Fatalf("BIC from the Go dialer: %v", err)
	}
	return dcall, waitAnswer(t, answered, "the Meta peer")
}

// crossTones plays the dialer's 1 kHz and the WhatsApp user's 700 Hz for
// d, checks what the Meta peer got from wagate, hangs up from the dialer
// and checks that each tone reached the other side for at least minTone.
func crossTones(t *testing.T, what string, dcall, mcall *metapeer.Call, d, minTone time.Duration) {
	t.Helper()
	mcall.Media.ResetRecording()
	dcall.Media.ResetRecording()
	playFor(t, d, play{dcall.Media, rtppeer.NewTone(1000, toneAmp, 8000)}, play{mcall.Media, rtppeer.NewTone(700, toneAmp, 48000)})
	checkWhatsAppStream(t, what, mcall)

	hangup(t, dcall, "dialer")
	waitBye(t, mcall, "the Meta peer")

	checkTone(t, "dialer's tone at the WhatsApp user", mcall.Media.Recording(), 48000, 1000, minTone)
	checkTone(t, "WhatsApp user's tone at the dialer", dcall.Media.Recording(), 8000, 700, minTone)
}

// TestMediaUICPlainRTPDebugMode: with the meta endpoint on plain RTP
// (media_encryption: none) the Go peer's plain mode carries the same tone
// through the PBX's echo — the debugging setup documented in test/README.md.
func TestMediaUICPlainRTPDebugMode(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := e.startWagate(wagateOpts{MetaEncryption: "none", MetaCodecs: "opus"})
	call, pbx := placeUICThroughEcho(t, e, w, metapeer.Config{Plain: true})
	playFor(t, 2*time.Second, play{call.Media, rtppeer.NewTone(1000, toneAmp, 48000)})
	hangup(t, call, "meta")
	pbx.requireOK()
	checkTone(t, "plain-RTP tone back through the echo", call.Media.Recording(), 48000, 1000, time.Second)
	s := w.waitIdle()
	w.expectCounts(s, 1, 1)
}
