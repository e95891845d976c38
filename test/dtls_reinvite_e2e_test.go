package test

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/wagate/wagate/test/internal/metapeer"
	"github.com/wagate/wagate/test/internal/sipua"
)

// TestDTLSBICReinvite: on a business-initiated call wagate offered Meta
// a=setup:actpass and Meta answered passive. Meta's side then re-INVITEs
// with the same ICE credentials and certificate (actpass, as a subsequent
// offer may say): wagate's 200 must say setup:active, its role, not the
// actpass of its first offer, which no answer may carry (RFC 5763 §5). A
// re-INVITE that restarts ICE (new ufrag and pwd) gets 488 and leaves
// the call as it was, rather than a 200 that wagate does not act on.
// Tones cross both ways after each.
func TestDTLSBICReinvite(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := e.startWagate(dtlsOpts(wagateOpts{}))
	meta := newGoPeer(t, e.Meta, metapeer.Config{DTLS: true})
	dialer := newGoPeer(t, e.Dialer, metapeer.Config{Profile: metapeer.ProfileG711})

	ctx, cancel := context.WithTimeout(context.Background(), peerCallLimit)
	defer cancel()
	answered := answerAsync(ctx, meta, metapeer.AnswerSpec{Ring: 100 * time.Millisecond})
	dcall, err := dialer.Call(ctx, metapeer.CallSpec{Target: w.SIPAddr, To: waUser, From: businessNumber})
	if err != nil {
		t.Fatalf("BIC toward a DTLS Meta: %v", err)
	}
	mcall := waitAnswer(t, answered, "the Meta peer")
	waitKeyed(t, mcall, "BIC")
	toneBothWays(t, mcall, dcall, "dialer")

	local := string(mcall.Local)
	if !strings.Contains(local, "a=setup:passive") {
		t.Fatalf("the Meta peer's answer is not setup:passive:\n%s", local)
	}
	again := strings.Replace(local, "a=setup:passive", "a=setup:actpass", 1)
	ans := reinvite(t, mcall, []byte(again))
	if !strings.Contains(ans, "a=setup:active\r\n") || strings.Contains(ans, "a=setup:actpass") {
		t.Errorf("wagate's answer to a re-INVITE keeping the association is not setup:active:\n%s", ans)
	}

	restart := regexp.MustCompile(`a=ice-ufrag:\S+`).ReplaceAllString(again, "a=ice-ufrag:rst1")
	restart = regexp.MustCompile(`a=ice-pwd:\S+`).ReplaceAllString(restart, "a=ice-pwd:restartrestartrestart12")
	rctx, rcancel := context.WithTimeout(context.Background(), peerCallLimit)
	defer rcancel()
	var res *sipua.Msg
	for try := 0; ; try++ {
		// 491 while the first re-INVITE's ACK is still on its way:
		// RFC 3261 §14.1, try again a little later (bounded).
		if res, err = mcall.Dialog.Reinvite(rctx, []byte(restart)); err != nil {
			t.Fatalf("re-INVITE with an ICE restart: %v", err)
		}
		if res.Status != 491 || try == 5 {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if res.Status != 488 {
		t.Errorf("re-INVITE with an ICE restart answered %d %s, want 488 (wagate does not restart ICE)", res.Status, res.Reason)
	}
	toneBothWays(t, mcall, dcall, "dialer")

	hangup(t, dcall, "dialer")
	waitBye(t, mcall, "the Meta peer")
	s := w.waitIdle()
	w.expectCounts(s, 1, 1)
}
