package events

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"
)

// TestMetaCallJoinsCDR: Meta's report of a call is kept by WhatsApp call
// id and shows in the CDR of that id, whether it came before the CDR was
// written or after, and survives a restart; a late call_created does not
// undo a terminate.
func TestMetaCallJoinsCDR(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.db")
	s := openSink(t, func(o *Options) { o.Path = path })
	ctx := context.Background()
	ninety := int64(90)

	// Before the CDR: the terminate arrives while wagate still has the call.
	if err := s.RecordMetaCall(ctx, MetaCall{WACallID: "wacid.early", Event: "terminate", Status: "COMPLETED", DurationS: &ninety}); err != nil {
		t.Fatal(err)
	}
	early := testCDR("call-early", t0)
	early.WACallID = "wacid.early"
	s.CallEnded(early)
	late := testCDR("call-late", t0.Add(time.Minute))
	late.WACallID = "wacid.late"
	s.CallEnded(late)
	plain := testCDR("call-plain", t0.Add(2*time.Minute))
	plain.WACallID = "wacid.never-reported"
	s.CallEnded(plain)
	waitFor(t, "CDRs written", func() bool { return s.Stats().CDRsWritten == 3 })

	// After the CDR: connect, terminate, then a redelivered connect.
	for _, m := range []MetaCall{
		{WACallID: "wacid.late", Event: "connect", Direction: "USER_INITIATED"},
		{WACallID: "wacid.late", Event: "terminate", Status: "FAILED", DurationS: new(int64)},
		{WACallID: "wacid.late", Event: "connect", Status: "RINGING"},
	} {
		if err := s.RecordMetaCall(ctx, m); err != nil {
			t.Fatal(err)
		}
	}

	check := func(s *Sink) {
		t.Helper()
		got, err := s.CDR(ctx, "call-early")
		if err != nil {
			t.Fatal(err)
		}
		if got.MetaStatus != "COMPLETED" || got.MetaDurationS == nil || *got.MetaDurationS != 90 || got.MetaEvent != "terminate" {
			t.Errorf("CDR of a call Meta reported before it ended: %q %v %q", got.MetaStatus, got.MetaDurationS, got.MetaEvent)
		}
		page, err := s.CDRs(ctx, CDRQuery{})
		if err != nil {
			t.Fatal(err)
		}
		if len(page.CDRs) != 3 {
			t.Fatalf("%d CDRs", len(page.CDRs))
		}
		l, p := page.CDRs[1], page.CDRs[2]
		if l.MetaStatus != "FAILED" || l.MetaDurationS == nil || *l.MetaDurationS != 0 || l.MetaEvent != "terminate" {
			t.Errorf("CDR of a call Meta reported after it ended (listing): %q %v %q", l.MetaStatus, l.MetaDurationS, l.MetaEvent)
		}
		if p.MetaStatus != "" || p.MetaDurationS != nil || p.MetaEvent != "" {
			t.Errorf("CDR Meta never reported has Meta's view: %+v", p)
		}
	}
	check(s)

	// Durable: a new Sink on the same file still joins them.
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := s.Close(cctx); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(ctx, Options{Path: path, NodeID: "node-a", StoreCDRs: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close(ctx)
	check(s2)
}

func TestRecordMetaCallWithoutCDRs(t *testing.T) {
	s := openSink(t, func(o *Options) { o.StoreCDRs = false })
	if err := s.RecordMetaCall(context.Background(), MetaCall{WACallID: "wacid.1", Event: "terminate"}); !errors.Is(err, ErrNoCDRStore) {
		t.Errorf("without a CDR store: %v", err)
	}
	var nilSink *Sink
	if err := nilSink.RecordMetaCall(context.Background(), MetaCall{WACallID: "wacid.1"}); !errors.Is(err, ErrNoCDRStore) {
		t.Errorf("nil sink: %v", err)
	}
}
