package test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/wagate/wagate/test/internal/metapeer"
	"github.com/wagate/wagate/test/internal/rtppeer"
)

// Keys a caller pressed for one action are not taken by the next one.

// TestCallFlowVoicemailAfterTypedHash: a caller asked for a four digit
// number types "1234#", as people do (the # after a number is a habit);
// the capture ends at the fourth key, and the service's answer takes a
// voicemail ended by #. The # typed for the number must not end the
// message before it starts: the caller leaves 1.5 s of message (a 500 Hz
// tone), then presses #, and the recording holds the message.
func TestCallFlowVoicemailAfterTypedHash(t *testing.T) {
	t.Parallel()
	t.Run("beep", func(t *testing.T) { t.Parallel(); voicemailAfterTypedHash(t, true) })
	// Without the beep the recording starts as the service answers, before
	// the # typed after 1234 has arrived: it ended the message at 0 ms.
	t.Run("no beep", func(t *testing.T) { t.Parallel(); voicemailAfterTypedHash(t, false) })
}

func voicemailAfterTypedHash(t *testing.T, beep bool) {
	e := newEnv(t)
	fs := newFlowService(t, e, func(r flowReq) flowReply {
		if r.Event == "start" {
			return flowReply{Body: flowJSON("account",
				action("sayAndCapture", map[string]any{"promptMessage": "Enter your four digit account number.",
					"minDigits": 4, "maxDigits": 4, "digitTimeout": 4000}))}
		}
		return flowReply{Body: flowJSON("voicemail",
			action("record", map[string]any{"maxDuration": 10000, "silenceTimeout": 0, "finishOnKey": "#", "beep": beep}),
			action("hangup", nil))}
	})
	w := e.startWagate(wagateOpts{MetaEncryption: "sdes", Route: fs.route("3s", "Sorry.")})
	meta := newGoPeer(t, e.Meta, metapeer.Config{KeepFrames: true})

	c := flowCall(t, w, meta)
	waitHeard(t, c, "the question", flowLimit, func(h heard) bool { return h.loudFrom(0) >= 0 })
	sendDigits(t, c, "1234#")
	d := fs.wait(t, "digits", "", 1)
	if d.Capture == nil || d.Capture.Digits != "1234" || d.Capture.Status != "success" {
		t.Errorf("capture %+v, want 1234 success", d.Capture)
	}
	if beep {
		waitHeard(t, c, "the beep", flowLimit, func(h heard) bool {
			_, end := h.toneFrames(h.afterTime(d.at), 1000, 15)
			return end > 0
		})
	}
	playFor(t, 1500*time.Millisecond, play{c.Media, rtppeer.NewTone(500, toneAmp, 48000)})
	c.Media.SetSource(rtppeer.Silence{})
	sendDigits(t, c, "#")
	waitBye(t, c, "the caller who left a message")

	sum := fs.wait(t, "summary", "", 1)
	if len(sum.Recordings) != 1 {
		t.Fatalf("summary: outcome %q, recordings %+v, actions %+v; want one voicemail", sum.Outcome, sum.Recordings, sum.Actions)
	}
	vm := sum.Recordings[0]
	if vm.StoppedBy != "key" || vm.DurationMs < 1200 {
		t.Fatalf("voicemail %+v: want the 1.5 s message, stopped by the # pressed after it (the # typed after 1234 stopped it?)", vm)
	}
	wav, err := readRecWAV(filepath.Join(e.dir, "recordings", filepath.FromSlash(vm.File)))
	if err != nil {
		t.Fatalf("voicemail file: %v", err)
	}
	checkTone(t, "the voicemail", wav.Left, recRate, 500, time.Second)
	fs.checkSigned(t)
	s := w.waitIdle()
	w.expectCounts(s, 1, 1)
}

// TestCallFlowHashAfterFullNumber: a caller types "1234#" for a four
// digit number; the service answers at once with the next question (a
// PIN ended by #), whose prompt is cached. The # typed after the number
// reaches wagate while the next question starts, and must not be taken
// as its (empty) answer: the caller hears the question, types 9876#, and
// the service gets 9876.
func TestCallFlowHashAfterFullNumber(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const ask = "Please enter the number."
	fs := newFlowService(t, e, func(r flowReq) flowReply {
		switch r.ClientActionID {
		case "":
			return flowReply{Body: flowJSON("account",
				action("sayAndCapture", map[string]any{"promptMessage": ask, "minDigits": 4, "maxDigits": 4, "digitTimeout": 4000}))}
		case "account":
			return flowReply{Body: flowJSON("pin",
				action("sayAndCapture", map[string]any{"promptMessage": ask, "minDigits": 4, "maxDigits": 8,
					"completeOnHash": true, "digitTimeout": 4000}))}
		}
		return flowReply{Body: flowJSON("bye", action("hangup", nil))}
	})
	w := e.startWagate(wagateOpts{MetaEncryption: "sdes", Route: fs.route("3s", "Sorry.")})
	meta := newGoPeer(t, e.Meta, metapeer.Config{KeepFrames: true})

	c := flowCall(t, w, meta)
	waitHeard(t, c, "the first question", flowLimit, func(h heard) bool { return h.loudFrom(0) >= 0 })
	sendDigits(t, c, "1234#")
	d1 := fs.wait(t, "digits", "", 1)
	if d1.Capture == nil || d1.Capture.Digits != "1234" || d1.Capture.Status != "success" {
		t.Errorf("first capture %+v, want 1234 success", d1.Capture)
	}
	time.Sleep(time.Second)
	sendDigits(t, c, "9876#")
	d2 := fs.wait(t, "digits", "", 2)
	if d2.Capture == nil || d2.Capture.Digits != "9876" || d2.Capture.Status != "success" {
		t.Errorf("second capture %+v, want 9876 success (the # typed after 1234 answered it?)", d2.Capture)
	}
	waitBye(t, c, "the caller")
	fs.wait(t, "summary", "", 1)
	s := w.waitIdle()
	w.expectCounts(s, 1, 1)
}
