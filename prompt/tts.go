package prompt

import (
	"context"
	"fmt"
	"unicode/utf8"
)

// Speech is one text to speak.
type Speech struct {
	// Text is spoken as plain text (markup is read out, not obeyed).
	Text string
	// Voice is a language tag ("en-US", "pt-BR", "hi") optionally followed
	// by a vendor voice name ("en-US-JennyNeural"); each engine maps it to
	// the closest voice it has. Empty: the engine's default.
	Voice string
	// Speed is the speaking rate relative to normal, 0.5–2.0; 0 means 1.
	Speed float64
}

// Bounds on Speech.
const (
	// MaxTextBytes bounds the text of one Speech (about 5 minutes of
	// speech): longer texts are refused rather than synthesized for ages.
	MaxTextBytes = 4096
	MinSpeed     = 0.5
	MaxSpeed     = 2.0
)

// normalize checks s and fills the defaults.
func (s Speech) normalize() (Speech, error) {
	if s.Speed == 0 {
		s.Speed = 1
	}
	switch {
	case s.Text == "":
		return s, fmt.Errorf("prompt: empty text")
	case len(s.Text) > MaxTextBytes:
		return s, fmt.Errorf("prompt: text of %d bytes (at most %d)", len(s.Text), MaxTextBytes)
	case !utf8.ValidString(s.Text):
		return s, fmt.Errorf("prompt: text is not UTF-8")
	case s.Speed < MinSpeed || s.Speed > MaxSpeed:
		return s, fmt.Errorf("prompt: speed %g outside %g–%g", s.Speed, MinSpeed, MaxSpeed)
	case len(s.Voice) > 64:
		return s, fmt.Errorf("prompt: voice name of %d bytes (at most 64)", len(s.Voice))
	}
	return s, nil
}

// TTS is a text-to-speech engine.
type TTS interface {
	// Render speaks s and returns mono PCM at rate (8000 or 16000). It
	// must return soon after ctx is done.
	Render(ctx context.Context, s Speech, rate int) (Audio, error)
	// Name identifies the engine and its settings in cache keys: two
	// engines with one name must speak alike.
	Name() string
}
