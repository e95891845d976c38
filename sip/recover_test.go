package sip

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/emiago/sipgo/sip"
	"github.com/wagate/wagate/configs"
)

// respondTx records what a handler answered.
type respondTx struct {
	sip.ServerTransaction
	got []*sip.Response
}

func (t *respondTx) Respond(res *sip.Response) error {
	t.got = append(t.got, res)
	return nil
}

// TestGuardRecoversAndReports: a panicking handler ends its request with
// 500, the process goes on, and the panic is logged as "panic recovered"
// with the Call-ID and counted — the line the end-to-end harness fails on
// (crashEvidence in test/), so recovery never hides a bug in make test.
func TestGuardRecoversAndReports(t *testing.T) {
	var logBuf bytes.Buffer
	cfg := new(atomic.Pointer[configs.Config])
	s := &Server{log: slog.New(slog.NewJSONHandler(&logBuf, nil))}
	s.edge = newEdge(cfg, s.log)

	req := sip.NewRequest(sip.OPTIONS, sip.Uri{Scheme: "sip", Host: "example.com"})
	cid := sip.CallIDHeader("guard-test-1")
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.OPTIONS})
	req.AppendHeader(&sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: "UDP", Host: "127.0.0.1", Port: 5060, Params: sip.NewParams()})
	tx := &respondTx{}

	s.guard(func(*sip.Request, sip.ServerTransaction) {
		var m map[string]int
		m["boom"]++ // a nil-map write: a real runtime panic
	})(req, tx)

	if len(tx.got) != 1 || tx.got[0].StatusCode != 500 {
		t.Fatalf("answers = %v, want one 500", tx.got)
	}
	if n := s.edge.snapshot().PanicsRecovered; n != 1 {
		t.Errorf("panics_recovered = %d, want 1", n)
	}
	var line map[string]any
	if err := json.Unmarshal(bytes.TrimSpace(logBuf.Bytes()), &line); err != nil {
		t.Fatalf("log line: %v\n%s", err, logBuf.String())
	}
	if line["msg"] != "panic recovered" || line["level"] != "ERROR" || line["sip_call_id"] != "guard-test-1" {
		t.Errorf("log line = %v, want msg \"panic recovered\" at ERROR with the Call-ID", line)
	}
	if st, _ := line["stack"].(string); !strings.Contains(st, "recover_test.go") {
		t.Errorf("logged stack does not show where the panic happened:\n%s", st)
	}

	// An ACK gets no answer, even after a panic.
	ack := sip.NewRequest(sip.ACK, sip.Uri{Scheme: "sip", Host: "example.com"})
	atx := &respondTx{}
	s.guard(func(*sip.Request, sip.ServerTransaction) { panic("ack") })(ack, atx)
	if len(atx.got) != 0 {
		t.Errorf("ACK answered after a panic: %v", atx.got)
	}
}
