package b2bua

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/wagate/wagate/configs"
)

// finalEdge is an edge that only sends responses outside transactions,
// keeping what it sent.
type finalEdge struct {
	Edge
	cfg  configs.Config
	mu   sync.Mutex
	sent []*sip.Response
}

func (e *finalEdge) Config() *configs.Config { return &e.cfg }

func (e *finalEdge) WriteResponse(res *sip.Response) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.sent = append(e.sent, res)
	return nil
}

func (e *finalEdge) count() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.sent)
}

// TestRestartFinalResent: the 503 a restart sends a caller whose INVITE
// the previous run left unanswered is one datagram with no transaction
// behind it; lost, the caller waits out its Timer B (32 s) for a call
// that no longer exists. It is sent again as Timer G would, each copy the
// same response to the caller's INVITE, and the resends end when the
// engine stops. Before, it was sent once.
func TestRestartFinalResent(t *testing.T) {
	edge := &finalEdge{}
	s := New(edge, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	jc := journalCall{ID: "c1", A: journalDialog{CallID: "a-1@meta", LocalTag: "w1"},
		AInvite: &journalIncoming{Via: []string{"SIP/2.0/UDP 127.0.0.2:5060;branch=z9hG4bK-a1;rport=5060;received=127.0.0.2"},
			From: "<sip:+447700900123@127.0.0.2>;tag=m1", To: "<sip:+15550100001@127.0.0.1>", CSeq: 1, Source: "127.0.0.2:5060", Transport: "UDP"}}
	if !s.answerLeftInvite(context.Background(), jc, s.log) {
		t.Fatal("the caller's INVITE was not answered")
	}
	want := 1 + len(restartFinalResends)
	deadline := time.Now().Add(30 * time.Second)
	for edge.count() < want {
		if time.Now().After(deadline) {
			t.Fatalf("the final response was sent %d times, want %d", edge.count(), want)
		}
		time.Sleep(50 * time.Millisecond)
	}
	edge.mu.Lock()
	for i, res := range edge.sent {
		if res.StatusCode != restartFinalCode || res.CallID().Value() != "a-1@meta" || !strings.Contains(res.Via().Value(), "branch=z9hG4bK-a1") ||
			!strings.Contains(res.To().Value(), "tag=w1") || res.Destination() != "127.0.0.2:5060" {
			t.Errorf("copy %d is not the final response to the caller's INVITE:\n%s (to %s)", i, res, res.Destination())
		}
	}
	edge.mu.Unlock()
	s.wg.Wait()
	if n := edge.count(); n != want {
		t.Errorf("the final response was sent %d times, want %d", n, want)
	}

	// A stop ends the resends at once: Drain waits for them.
	edge2 := &finalEdge{}
	s2 := New(edge2, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if !s2.answerLeftInvite(context.Background(), jc, s2.log) {
		t.Fatal("the caller's INVITE was not answered")
	}
	s2.cancel()
	s2.wg.Wait()
	if n := edge2.count(); n != 1 {
		t.Errorf("the final response was resent %d times after the engine stopped, want 0", n-1)
	}
}
