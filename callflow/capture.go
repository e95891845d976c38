package callflow

import (
	"context"
	"time"

	"github.com/wagate/wagate/prompt"
)

// capture runs a sayAndCapture: up to NoOfTries times, play the prompt and
// collect digits; a success plays successMessage and ends, a failure plays
// failureMessage and tries again. The result of the last try is returned
// (and POSTed by the caller) whether it succeeded or not.
func (s *session) capture(ctx context.Context, a *SayAndCapture, ask, success, failure prompt.Audio) (CaptureResult, error) {
	var res CaptureResult
	for try := 1; try <= a.NoOfTries; try++ {
		res.Tries = try
		digits, status, err := s.collect(ctx, a, ask)
		if err != nil {
			return res, err
		}
		res.Digits, res.Status = digits, status
		if status == CaptureSuccess {
			if len(success.Samples) > 0 {
				if err := s.play(ctx, success, 1); err != nil {
					return res, err
				}
			}
			return res, nil
		}
		s.log.Info("callflow: capture failed", "try", try, "status", status, "digits", len(digits))
		if len(failure.Samples) > 0 {
			if err := s.play(ctx, failure, 1); err != nil {
				return res, err
			}
		}
	}
	return res, nil
}

// collect plays the prompt (a.Repetition times) and gathers digits. The
// first key stops the prompt (barge-in). The timers start when the prompt
// ends or the first key comes: digitTimeout between keys (and before the
// first), overallTimeout for the whole input. The input ends with
// maxDigits keys, with '#' under completeOnHash, or at a timeout; it is a
// success with minDigits to maxDigits keys.
func (s *session) collect(ctx context.Context, a *SayAndCapture, ask prompt.Audio) (string, string, error) {
	keys := s.call.Digits()
	drain(keys) // keys pressed before the question are not its answer

	playCtx, stopPlay := context.WithCancel(ctx)
	played := make(chan error, 1)
	go func() {
		var err error
		for range a.Repetition {
			if err = s.call.Play(playCtx, ask); err != nil {
				break
			}
		}
		played <- err
	}()
	playing := true
	defer func() {
		stopPlay()
		if playing {
			<-played
		}
	}()

	digitWait := time.Duration(a.DigitTimeout) * time.Millisecond
	var digitT, overallT *time.Timer
	var digitC, overallC <-chan time.Time
	startTimers := func() {
		if digitT == nil {
			digitT, overallT = time.NewTimer(digitWait), time.NewTimer(time.Duration(a.OverallTimeout)*time.Millisecond)
			digitC, overallC = digitT.C, overallT.C
		}
	}
	defer func() {
		if digitT != nil {
			digitT.Stop()
			overallT.Stop()
		}
	}()
	verdict := func(d []rune) string {
		if len(d) >= a.MinDigits {
			return CaptureSuccess
		}
		return CaptureTimeout
	}

	var got []rune
	for {
		select {
		case err := <-played:
			playing = false
			if err != nil && playCtx.Err() == nil {
				return "", "", ErrCallEnded
			}
			startTimers()
		case k, ok := <-keys:
			if !ok {
				return "", "", ErrCallEnded
			}
			if k == '#' && len(got) == 0 && time.Now().Before(s.hashTail) {
				s.hashTail = time.Time{}
				s.log.Debug("callflow: a # finishing the previous input dropped")
				continue
			}
			stopPlay()
			startTimers()
			if k == '#' && a.CompleteOnHash {
				if len(got) >= a.MinDigits {
					return string(got), CaptureSuccess, nil
				}
				return string(got), CaptureTooFew, nil
			}
			got = append(got, k)
			if len(got) >= a.MaxDigits {
				s.hashTail = time.Now().Add(hashTailWindow)
				return string(got), CaptureSuccess, nil
			}
			digitT.Reset(digitWait)
		case <-digitC:
			return string(got), verdict(got), nil
		case <-overallC:
			return string(got), verdict(got), nil
		case <-ctx.Done():
			return "", "", ErrCallEnded
		}
	}
}

// hashTailWindow is how long after an input ended at its maxDigits a
// '#' is taken as the caller finishing that input ("1234#" for four
// digits, typed out of habit) rather than as the first key of the next
// question. The '#' comes a few hundred milliseconds after the last
// digit, and a service that answers at once with a cached prompt has the
// next question playing by then; no caller answers a question with '#'
// within a second of finishing the one before: it has not been heard.
const hashTailWindow = time.Second

// drain discards the keys waiting in ch.
func drain(ch <-chan rune) {
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		default:
			return
		}
	}
}
