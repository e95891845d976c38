package test

import (
	"context"
	"testing"
)

// TestInDialogOptions: an OPTIONS inside a dialog is how some PBXs and
// SBCs ask whether a call still exists (RFC 5057: 481 ends the dialog).
// On a live call wagate answers 200; once the call is over, 481, so the
// PBX can drop a leg it would otherwise hold (and its ports) forever.
func TestInDialogOptions(t *testing.T) {
	t.Parallel()
	c := startCtl(t, wagateOpts{})
	rc := c.call(t)
	options := func() int {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), peerCallLimit)
		defer cancel()
		res, err := rc.pbx.Dialog.Request(ctx, "OPTIONS", nil, "", nil)
		if err != nil {
			t.Fatalf("in-dialog OPTIONS: %v", err)
		}
		return res.Status
	}
	if got := options(); got != 200 {
		t.Errorf("in-dialog OPTIONS on a live call answered %d, want 200", got)
	}
	hangup(t, rc.meta, "the caller")
	waitBye(t, rc.pbx, "the agent")
	c.w.waitIdle()
	if got := options(); got != 481 {
		t.Errorf("in-dialog OPTIONS after the call ended answered %d, want 481", got)
	}
}
