package test

import (
	"context"
	"testing"
	"time"

	"github.com/wagate/wagate/test/internal/metapeer"
	"github.com/wagate/wagate/test/internal/rtppeer"
)

// TestMediaRebindPastBudget: with media.max_bound_pairs 1 and a range of
// two pairs, the second call can only run on the first call's pairs after
// their quarantine, one of them closed when the first call ended and bound
// again: its tone must still go to the PBX's echo and come back, and once
// idle wagate keeps one pair (two sockets) bound, not both.
func TestMediaRebindPastBudget(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := e.startWagate(wagateOpts{MetaEncryption: "sdes", PortMin: 30000, PortMax: 30003, MediaExtra: ", max_bound_pairs: 1"})
	pbx := e.startSipp(sippSpec{Name: "pbx", Scenario: "uas.xml", Peer: e.PBX, Calls: 2, Args: []string{"-rtp_echo"}})
	meta := newGoPeer(t, e.Meta, metapeer.Config{})

	for i := range 2 {
		if i == 1 {
			if s := w.waitIdle(); s.PortsBound != 2 {
				t.Fatalf("after the first call %d ports bound, want 2 (max_bound_pairs 1)", s.PortsBound)
			}
			time.Sleep(2200 * time.Millisecond) // port_quarantine
		}
		ctx, cancel := context.WithTimeout(context.Background(), peerCallLimit)
		call, err := meta.Call(ctx, metapeer.CallSpec{Target: w.SIPAddr, To: businessNumber, From: waUser})
		if err != nil {
			cancel()
			pbx.dump()
			t.Fatalf("call %d: %v", i+1, err)
		}
		call.Media.ResetRecording()
		playFor(t, 2500*time.Millisecond, play{call.Media, rtppeer.NewTone(1000, toneAmp, 48000)})
		hangup(t, call, "meta")
		cancel()
		checkTone(t, "tone back through the PBX's echo", call.Media.Recording(), 48000, 1000, 1500*time.Millisecond)
	}
	pbx.requireOK()
	s := w.waitIdle()
	w.expectCounts(s, 2, 2)
	if s.PortsBound != 2 {
		t.Fatalf("%d ports bound once idle, want 2 (max_bound_pairs 1)", s.PortsBound)
	}
}
