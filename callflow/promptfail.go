package callflow

import (
	"context"

	"github.com/wagate/wagate/prompt"
)

// ReasonSpeechFailed is what the service is told when a text could not be
// spoken; a file that could not be played gets one of prompt's Reason
// constants (fetch_denied, fetch_failed, fetch_timeout, file_too_large,
// unsupported_media).
const ReasonSpeechFailed = "speech_failed"

// promptError is a prompt that could not be made ready, as the service and
// the call's summary see it: a stable reason, never wagate's own error,
// which may name addresses of wagate's network (a file URL that led to the
// admin API, say). The full error is logged once, with the call.
type promptError struct {
	reason string
	err    error
}

func (e *promptError) Error() string { return e.reason }
func (e *promptError) Unwrap() error { return e.err }

// promptFailed logs err (from rendering action's audio) with the call and
// returns what the service is told. An error of a render stopped because
// the flow or the call is over is returned as it is: nobody is told.
func (s *session) promptFailed(ctx context.Context, action, reason string, err error) error {
	if err == nil || ctx.Err() != nil {
		return err
	}
	s.log.Warn("callflow: prompt not ready", "action", action, "reason", reason, "err", err)
	return &promptError{reason: reason, err: err}
}

// fileFailed is promptFailed for a file.
func (s *session) fileFailed(ctx context.Context, action string, err error) error {
	if err == nil {
		return nil
	}
	return s.promptFailed(ctx, action, prompt.FileReason(err), err)
}
