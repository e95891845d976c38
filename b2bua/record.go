package b2bua

import (
	"time"

	"github.com/wagate/wagate/configs"
	"github.com/wagate/wagate/media"
	"github.com/wagate/wagate/recording"
	sipedge "github.com/wagate/wagate/sip"
)

// SetRecorder turns call recording on: answered calls whose number records
// (recording.enabled or the number's override) are recorded by m. Call it
// before Run.
func (s *Engine) SetRecorder(m *recording.Manager) { s.rec = m }

// recTap feeds a bridge's decoded audio to a recording. Both packages
// number the sides alike: A sent the INVITE.
type recTap struct{ r *recording.Recorder }

func (t recTap) PCM(side media.Side, pcm []int16) { t.r.PCM(recording.Side(side), pcm) }

// startRecording begins recording an answered call, if its number records.
// A recording that cannot start is logged and the call goes on.
func (s *Engine) startRecording(c *call) {
	if s.rec == nil {
		return
	}
	cfg := s.edge.Config()
	if !cfg.Records(numberIn(cfg, c.route.Number)) {
		return
	}
	s.recordCall(c)
}

// numberIn returns n as cfg (the running config) has it: a reload since
// the call was routed — recording turned off for its number while it rang
// or waited in a queue — applies at its answer. n itself when cfg no
// longer has the number.
func numberIn(cfg *configs.Config, n *configs.Number) *configs.Number {
	if n == nil {
		return nil
	}
	if cur := cfg.NumberByE164(n.Number); cur != nil {
		return cur
	}
	return n
}

// flowMayRecord reports whether a call flow's callRecording may record a
// call of number n: unless n says `recording: false`, which is the
// operator's and no flow service overrides it.
func flowMayRecord(n *configs.Number) bool {
	return n == nil || n.Recording == nil || *n.Recording
}

// recordCall starts recording c now, whatever recording.enabled says (a
// call flow's connect with callRecording, which flowMayRecord checks).
func (s *Engine) recordCall(c *call) {
	if s.rec == nil {
		return
	}
	d := c.route
	meta := recording.Meta{
		ACallID:        c.a.callID,
		BCallID:        c.b.getCallID(),
		WhatsAppCallID: d.UIC.WACallID,
		SessionID:      c.id,
		Direction:      string(d.Dir),
		BusinessNumber: d.Number.Number,
		UserNumber:     d.User,
		AEndpoint:      c.aEndpoint,
		BEndpoint:      c.bEndpoint,
		WhatsAppSide:   recording.SideA,
		StartTime:      c.created,
		AnswerTime:     time.Now(),
	}
	if d.Dir == sipedge.BIC {
		meta.WhatsAppSide = recording.SideB
	}
	r, err := s.rec.Start(meta)
	if err != nil || r == nil {
		if err != nil {
			c.log.Warn("recording not started", "error", err)
		}
		return
	}
	c.mu.Lock()
	ended := c.state == stateEnded
	if !ended {
		c.recorder = r
		c.recordingID = r.File()
	}
	c.mu.Unlock()
	if ended {
		// The call ended while the recording started: terminate has
		// already looked for a recorder, so finish this one here.
		r.Finish(recording.EndInfo{Time: time.Now(), HangupSide: "wagate", Cause: "ended at answer"})
		return
	}
	c.bridge.SetTap(recTap{r})
	c.log.Info("recording", "file", r.File())
	// Again, now with the recording: a crash from here on leaves a call
	// record that names it.
	s.journalUp(c)
}

// finishRecording closes the call's recording after its media stopped.
func (c *call) finishRecording(by, cause string) {
	c.mu.Lock()
	r := c.recorder
	c.recorder = nil
	c.mu.Unlock()
	if r != nil {
		r.Finish(recording.EndInfo{Time: time.Now(), HangupSide: by, Cause: cause})
	}
}
