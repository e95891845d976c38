package b2bua

import (
	"context"
	"errors"
	"math"
	"sync/atomic"
	"time"

	"github.com/wagate/wagate/callflow"
	"github.com/wagate/wagate/media"
	"github.com/wagate/wagate/recording"
)

// A call flow's record action takes a voicemail: what A says goes into a
// recording of its own in the recordings store (kind "voicemail": the
// caller on the left channel, the right one silent), reported by the
// recordings store's recording.ready like any recording.

// voiceLevel is the RMS (of full scale 32768) above which a chunk of the
// caller's audio counts as sound for silenceTimeout: about −44 dBFS,
// above a codec's idle noise and below quiet speech.
const voiceLevel = 200

// vmFinishWait bounds the wait for a voicemail file to be finalized.
const vmFinishWait = 10 * time.Second

// voicemailTap sends A's audio to the voicemail and both sides' on to the
// call's own recording, if there is one.
type voicemailTap struct {
	vm   *recording.Recorder
	call media.PCMTap
	// start and sound: A last made a sound at start+sound, on the
	// monotonic clock (a wall-clock step must not end a message early).
	start time.Time
	sound atomic.Int64
}

// heard notes that A makes a sound now.
func (t *voicemailTap) heard() { t.sound.Store(int64(time.Since(t.start))) }

// quietFor is how long A has made no sound.
func (t *voicemailTap) quietFor() time.Duration {
	return time.Since(t.start) - time.Duration(t.sound.Load())
}

func (t *voicemailTap) PCM(side media.Side, pcm []int16) {
	if t.call != nil {
		t.call.PCM(side, pcm)
	}
	if side != media.SideA {
		return
	}
	t.vm.PCM(recording.SideA, pcm)
	if rmsLevel(pcm) > voiceLevel {
		t.heard()
	}
}

func rmsLevel(pcm []int16) float64 {
	if len(pcm) == 0 {
		return 0
	}
	var sum float64
	for _, v := range pcm {
		sum += float64(v) * float64(v)
	}
	return math.Sqrt(sum / float64(len(pcm)))
}

// Record implements callflow.Call. The recording ends at o.MaxDuration,
// after o.SilenceTimeout without sound, at o.FinishOnKey (not recorded
// when it is an event; a key sent as a tone is audio, and its first
// ~40 ms are), or when the caller hangs up — a message
// the caller ends by hanging up is kept, the usual way to leave one.
func (fc *flowCall) Record(ctx context.Context, o callflow.RecordOptions) (callflow.Recording, error) {
	s, c := fc.s, fc.c
	if s.rec == nil {
		return callflow.Recording{}, errors.New("b2bua: record: no recordings store")
	}
	d := c.route
	now := time.Now()
	r, err := s.rec.Start(recording.Meta{
		CallID: c.id + "-voicemail", ACallID: c.a.callID, WhatsAppCallID: d.UIC.WACallID, SessionID: c.id,
		Direction: string(d.Dir), BusinessNumber: d.Number.Number, UserNumber: d.User,
		AEndpoint: c.aEndpoint, WhatsAppSide: recording.SideA, StartTime: now, AnswerTime: now,
		Kind: recording.KindVoicemail,
	})
	if err != nil {
		return callflow.Recording{}, err
	}
	c.mu.Lock()
	var callTap media.PCMTap
	if c.recorder != nil {
		callTap = recTap{c.recorder}
	}
	c.mu.Unlock()
	tap := &voicemailTap{vm: r, call: callTap, start: time.Now()}
	c.bridge.SetTap(tap)
	c.log.Info("voicemail recording", "file", r.File())

	stop := fc.recordUntil(ctx, o, tap)
	c.bridge.SetTap(callTap)
	by := "wagate"
	if stop == "hangup" {
		by = "a"
	}
	r.Finish(recording.EndInfo{HangupSide: by, Cause: "voicemail: " + stop})
	select {
	case <-r.Done():
	case <-time.After(vmFinishWait):
		return callflow.Recording{ID: r.File(), File: r.File(), StoppedBy: stop}, errors.New("b2bua: record: the file was not finished in time")
	}
	e := r.Entry()
	if e.CutShort {
		return callflow.Recording{ID: e.File, File: e.File, StoppedBy: stop}, errors.New("b2bua: record: " + e.Error)
	}
	rec := callflow.Recording{ID: e.File, File: e.File, Bytes: e.Bytes, StoppedBy: stop,
		Duration: time.Duration(e.DurationSeconds * float64(time.Second))}
	c.log.Info("voicemail recorded", "file", e.File, "duration_s", e.DurationSeconds, "stopped_by", stop)
	return rec, nil
}

// recordUntil waits for what ends a recording and names it:
// "maxDuration", "silence", "key" or "hangup".
func (fc *flowCall) recordUntil(ctx context.Context, o callflow.RecordOptions, tap *voicemailTap) string {
	maxT := time.NewTimer(o.MaxDuration)
	defer maxT.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-maxT.C:
			return "maxDuration"
		case <-tick.C:
			if o.SilenceTimeout > 0 && tap.quietFor() >= o.SilenceTimeout {
				return "silence"
			}
		case k, ok := <-fc.keys:
			if !ok {
				return "hangup"
			}
			if k == '#' && time.Now().Before(o.HashTail) {
				o.HashTail = time.Time{}
				fc.c.log.Debug("voicemail: a # finishing the previous input ignored")
				continue
			}
			if o.FinishOnKey != 0 && k == o.FinishOnKey {
				return "key"
			}
		case <-ctx.Done():
			return "hangup"
		case <-fc.c.ended:
			return "hangup"
		}
	}
}
