package b2bua

import (
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/wagate/wagate/events"
	"github.com/wagate/wagate/media"
	sipedge "github.com/wagate/wagate/sip"
)

// originFake is a fakeBridge that can originate (click-to-call), and
// runs onAnswerA when the agent's answer is applied: between the agent's
// 200 and the user's INVITE.
type originFake struct {
	fakeBridge
	onAnswerA func()
}

func (originFake) OfferA() ([]byte, error) { return []byte(testSDP), nil }
func (b originFake) AnswerA([]byte) ([]byte, error) {
	if b.onAnswerA != nil {
		b.onAnswerA()
	}
	return []byte(testSDP), nil
}
func (originFake) Ringback(media.FrameSource) (*media.Playback, error) { return nil, nil }
func (originFake) AnswerBAfterRingback([]byte) error                   { return nil }
func (originFake) ReleaseSide(media.Side)                              {}

// TestClickToCallHangupAsAgentAnswers: DELETE /v1/calls/{id} (Hangup)
// lands as the agent of a click-to-call answers, after its 200 and
// before the user is called. The business hung the call up: the
// WhatsApp user's phone must not ring for it, and the agent, up, gets
// its BYE; the record says the API hung up; the permission ticket ends
// as not sent (Meta never saw the call: the number's count is given
// back).
func TestClickToCallHangupAsAgentAnswers(t *testing.T) {
	var (
		id atomic.Value
		h  *huntFlow
	)
	id.Store("")
	hangUp := make(chan *Engine, 1)
	h = startHuntFlowBridges(t, `{endpoint: pbx, user: "1001"}`, `  - {name: x, targets: [{endpoint: pbx, user: "1001"}]}`, "",
		func(string, *slog.Logger, media.LegConfig, media.LegConfig) (Bridge, error) {
			return originFake{onAnswerA: func() {
				srv := <-hangUp
				if _, err := srv.Hangup(id.Load().(string), "supervisor"); err != nil {
					t.Errorf("hangup: %v", err)
				}
			}}, nil
		})
	hangUp <- h.srv
	// A first call through the edge, refused, so that its UDP transport
	// is up before wagate places a call of its own (a click-to-call as
	// the first message of a fresh edge can race the listener's setup).
	inv := h.metaCall()
	b0 := h.pbx.request(sip.INVITE)
	h.pbx.reply(b0, 486, "Busy Here", "p0", nil)
	h.pbx.request(sip.ACK)
	res := h.meta.response(486)
	h.meta.send(h.addr, ackFor(inv, res))
	h.cdrs.next(t)

	h.srv.SetPermissionGate(h.gate)
	info, ref, err := h.srv.Originate(sipedge.ClickToCall{Business: "+15550100001", User: "+447700900123", AgentEndpoint: "pbx", AgentUser: "1001"})
	if err != nil || ref != nil {
		t.Fatalf("click-to-call: refusal %+v, error %v", ref, err)
	}
	id.Store(info.ID)
	b := h.pbx.request(sip.INVITE)
	h.pbx.reply(b, 180, "Ringing", "p1", nil)
	h.answer(h.pbx, b, "p1")
	h.meta.silent(300 * time.Millisecond) // the user is not called
	bye := h.pbx.request(sip.BYE)
	if callIDOf(bye) != callIDOf(b) {
		t.Errorf("BYE for %s, want the agent's %s", callIDOf(bye), callIDOf(b))
	}
	h.pbx.reply(bye, 200, "OK", "", nil)
	c := h.cdrs.next(t)
	if c.HangupBy != events.HangupAPI || c.Cause != CauseAPI+": supervisor" {
		t.Errorf("CDR hangup_by %s cause %q, want the API's hangup", c.HangupBy, c.Cause)
	}
	h.gate.ticket(t).wait(t, OutcomeNotSent, false)
}
