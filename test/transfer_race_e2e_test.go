package test

import (
	"context"
	"testing"
	"time"

	"github.com/wagate/wagate/test/internal/metapeer"
)

// Transfers that meet the other things a contact centre's calls do: the
// transferring agent hanging up at once, the caller's media timeout.

// TestTransferRingsPastRTPTimeout: the agent REFERs the caller without
// holding first and hangs up as soon as it has the 202, as many phones'
// blind-transfer keys do; the target rings longer than media.rtp_timeout
// (2 s here, 30 s by default against a 60 s ring time) before it answers.
// Nobody is sending on the agent's side meanwhile, but the call is not
// silent to the caller (music on hold) and must not be ended for it: the
// target answers and talks to the caller.
func TestTransferRingsPastRTPTimeout(t *testing.T) {
	t.Parallel()
	c := startCtl(t, wagateOpts{RTPTimeout: "2s"})
	rc := c.call(t)
	mustHear(t, "the agent hears the caller", rc.pbx.Media, 8000, 1000, 500*time.Millisecond)

	ctx, cancel := context.WithTimeout(context.Background(), peerCallLimit)
	defer cancel()
	answered := answerAsync(ctx, c.pbx2, metapeer.AnswerSpec{Ring: 3 * time.Second})
	if code, warn := refer(t, rc.pbx.Dialog, c.target("2001")); code != 202 {
		t.Fatalf("REFER: %d (%s), want 202", code, warn)
	}
	hangup(t, rc.pbx, "the transferring agent")
	nc := waitAnswer(t, answered, "the transfer target (rings 3 s)")
	nc.Media.SetSource(newAgentTone())
	mustHear(t, "the caller hears the new agent", rc.meta.Media, 48000, newAgentHz, time.Second)
	mustHear(t, "the new agent hears the caller", nc.Media, 8000, 1000, time.Second)
	hangup(t, rc.meta, "the caller")
	waitBye(t, nc, "the new agent")
	c.w.waitIdle()
}
