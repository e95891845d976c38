package test

import (
	"context"
	"testing"
	"time"

	"github.com/wagate/wagate/test/internal/metapeer"
)

// TestTransferSIPpAgent: SIPp is the transferring agent (uas_refer.xml
// checks the 202, the three sipfrag NOTIFYs and wagate's BYE), the Go
// Meta peer the caller, a Go peer at pbx2 the target: the caller's tone
// reaches the new agent and the new agent's the caller. Then SIPp as an
// agent whose REFERs are refused (uas_refer_refused.xml: 403 for a target
// transfer.allow does not list, 400 for a tel: URI): nothing is dialled
// and the call ends by its BYE.
func TestTransferSIPpAgent(t *testing.T) {
	t.Parallel()
	c := startCtl(t, wagateOpts{})
	c.pbx.Close() // SIPp takes the pbx address
	agent := c.e.startSipp(sippSpec{Name: "pbx", Scenario: "uas_refer.xml", Peer: c.e.PBX, Calls: 1,
		Args: []string{"-d", "1000", "-key", "refer_to", c.target("2001")}})
	ctx, cancel := context.WithTimeout(context.Background(), peerCallLimit)
	defer cancel()
	answered := answerAsync(ctx, c.pbx2, metapeer.AnswerSpec{Ring: 200 * time.Millisecond})
	mc, err := c.meta.Call(ctx, metapeer.CallSpec{Target: c.w.SIPAddr, To: businessNumber, From: waUser})
	if err != nil {
		t.Fatalf("UIC: %v", err)
	}
	mc.Media.SetSource(metaTone())
	nc := waitAnswer(t, answered, "the new agent")
	nc.Media.SetSource(newAgentTone())
	agent.requireOK()
	mustHear(t, "the new agent hears the caller", nc.Media, 8000, 1000, 1500*time.Millisecond)
	mustHear(t, "the caller hears the new agent", mc.Media, 48000, newAgentHz, 1500*time.Millisecond)
	checkNoSIPToMeta(t, c.meta, time.Now())
	hangup(t, mc, "the caller")
	waitBye(t, nc, "the new agent")
	c.w.waitIdle()

	refused := c.e.startSipp(sippSpec{Name: "pbx_refused", Scenario: "uas_refer_refused.xml", Peer: c.e.PBX, Calls: 1,
		Args: []string{"-d", "500", "-key", "refer_to", c.target("3001")}})
	mc, err = c.meta.Call(ctx, metapeer.CallSpec{Target: c.w.SIPAddr, To: businessNumber, From: waUser})
	if err != nil {
		t.Fatalf("second UIC: %v", err)
	}
	refused.requireOK()
	waitBye(t, mc, "the caller")
	for _, te := range c.pbx2.UA.Trace() {
		if !te.Sent && te.Msg.Method == "INVITE" && te.Msg.RURI != nc.Dialog.Invite.RURI {
			t.Errorf("a refused REFER dialled pbx2: %s", te.Msg.RURI)
		}
	}
	c.w.waitIdle()
}
