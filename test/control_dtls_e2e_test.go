package test

import (
	"context"
	"testing"
	"time"

	"github.com/wagate/wagate/test/internal/metapeer"
	"github.com/wagate/wagate/test/internal/rtppeer"
)

// TestHoldAndTransferBICDTLS: a dialer's BIC to a WhatsApp user keyed with
// DTLS-SRTP over ICE (Meta's default). The dialer holds (a=sendonly): the
// user's stream goes on; it resumes: tones both ways on the keyed ICE
// pair; then it REFERs the call to 2001@pbx2: the user talks with the new
// agent. The routes wagate rebuilds after each change must keep the DTLS
// peer it keyed, and Meta sees no SIP after its answer.
func TestHoldAndTransferBICDTLS(t *testing.T) {
	t.Parallel()
	c := startCtl(t, dtlsOpts(wagateOpts{DialerExtra: `, transfer: {allow: [{endpoint: pbx2, users: ["2*"]}]}`}))
	dialer := newGoPeer(t, c.e.Dialer, metapeer.Config{Profile: metapeer.ProfileG711})
	ctx, cancel := context.WithTimeout(context.Background(), peerCallLimit)
	defer cancel()
	answered := answerAsync(ctx, c.meta, metapeer.AnswerSpec{})
	dc, err := dialer.Call(ctx, metapeer.CallSpec{Target: c.w.SIPAddr, To: waUser, From: businessNumber})
	if err != nil {
		t.Fatalf("BIC toward a DTLS Meta: %v", err)
	}
	mc := waitAnswer(t, answered, "the WhatsApp user")
	waitKeyed(t, mc, "BIC")
	since := time.Now()
	mc.Media.SetSource(metaTone())
	dc.Media.SetSource(rtppeer.NewTone(440, toneAmp, 8000))
	heard(t, "the user hears the dialer", mc.Media, 48000, 440, time.Second)

	if ans := reinvite(t, dc, withDirection(t, dc.Local, "sendonly", "")); direction(ans) != "recvonly" {
		t.Errorf("hold answered a=%s, want recvonly", direction(ans))
	}
	dc.Media.SetSource(nil)
	from := time.Now()
	time.Sleep(1500 * time.Millisecond)
	checkStream(t, "held, toward the DTLS user", mc.Media, from, time.Now())
	reinvite(t, dc, dc.Local)
	dc.Media.SetSource(rtppeer.NewTone(440, toneAmp, 8000))
	heard(t, "after the resume: the user hears the dialer", mc.Media, 48000, 440, time.Second)
	heard(t, "after the resume: the dialer hears the user", dc.Media, 8000, 1000, time.Second)

	agent := answerAsync(ctx, c.pbx2, metapeer.AnswerSpec{Ring: 200 * time.Millisecond})
	if code, warn := refer(t, dc.Dialog, c.target("2001")); code != 202 {
		t.Fatalf("REFER: %d (%s), want 202", code, warn)
	}
	nc := waitAnswer(t, agent, "the new agent")
	nc.Media.SetSource(newAgentTone())
	waitBye(t, dc, "the dialer")
	heard(t, "the user hears the new agent", mc.Media, 48000, newAgentHz, 1500*time.Millisecond)
	heard(t, "the new agent hears the user", nc.Media, 8000, 1000, 1500*time.Millisecond)
	if st := mc.Media.Stats(); st.AuthFailures > 0 {
		t.Errorf("%d SRTP packets toward the user failed authentication", st.AuthFailures)
	}
	checkNoSIPToMetaSince(t, c.meta, since, time.Now())
	hangup(t, nc, "the new agent")
	waitBye(t, mc, "the WhatsApp user")
	c.w.waitIdle()
}
