package prompt

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os/exec"
	"strings"
	"sync"
)

// Espeak speaks through the espeak-ng command (Debian package espeak-ng).
type Espeak struct {
	path         string
	defaultVoice string

	once   sync.Once
	voices map[string]bool // language names espeak-ng --voices lists
	vErr   error
}

// espeakWPM is espeak-ng's normal rate in words per minute; Speech.Speed
// scales it. espeak-ng accepts 80–450.
const espeakWPM = 175

// NewEspeak finds the espeak-ng binary (path "" looks it up in $PATH) and
// speaks in defaultVoice ("" → "en") when a Speech names no voice it has.
func NewEspeak(path, defaultVoice string) (*Espeak, error) {
	if path == "" {
		path = "espeak-ng"
	}
	p, err := exec.LookPath(path)
	if err != nil {
		return nil, fmt.Errorf("prompt: espeak-ng not found (install the Debian package espeak-ng): %w", err)
	}
	if defaultVoice == "" {
		defaultVoice = "en"
	}
	return &Espeak{path: p, defaultVoice: strings.ToLower(defaultVoice)}, nil
}

// Name is "espeak-ng" with its default voice.
func (e *Espeak) Name() string { return "espeak-ng/" + e.defaultVoice }

// Render runs espeak-ng once with the text on its standard input (never on
// its command line, where a text starting with '-' would be an option) and
// resamples its 22050 Hz output to rate.
func (e *Espeak) Render(ctx context.Context, s Speech, rate int) (Audio, error) {
	s, err := s.normalize()
	if err != nil {
		return Audio{}, err
	}
	if !validRate(rate) {
		return Audio{}, fmt.Errorf("prompt: rate %d (want %d or %d)", rate, Rate8k, Rate16k)
	}
	voice := e.Voice(s.Voice)
	wpm := min(450, max(80, int(math.Round(espeakWPM*s.Speed))))
	cmd := exec.CommandContext(ctx, e.path, "--stdout", "--stdin", "-b", "1",
		"-v", voice, "-s", fmt.Sprint(wpm))
	cmd.Stdin = strings.NewReader(s.Text)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return Audio{}, fmt.Errorf("prompt: espeak-ng: %w", ctx.Err())
		}
		return Audio{}, fmt.Errorf("prompt: espeak-ng -v %s: %w: %s", voice, err, strings.TrimSpace(stderr.String()))
	}
	a, err := ParseWAV(out.Bytes())
	if err != nil {
		return Audio{}, fmt.Errorf("prompt: espeak-ng output: %w", err)
	}
	return Audio{Rate: rate, Samples: Resample(a.Samples, a.Rate, rate)}, nil
}

// Voice maps a Speech's voice to one espeak-ng has: the tag lower-cased,
// then shorter by one "-part" at a time ("en-US-JennyNeural" → "en-us"),
// else the default voice.
func (e *Espeak) Voice(v string) string {
	e.once.Do(e.loadVoices)
	v = strings.ToLower(strings.ReplaceAll(v, "_", "-"))
	for v != "" {
		if e.voices[v] {
			return v
		}
		i := strings.LastIndexByte(v, '-')
		if i < 0 {
			break
		}
		v = v[:i]
	}
	return e.defaultVoice
}

// loadVoices reads the language list once. Without it every voice maps to
// the default, which espeak-ng always has.
func (e *Espeak) loadVoices() {
	e.voices = map[string]bool{}
	out, err := exec.Command(e.path, "--voices").Output()
	if err != nil {
		e.vErr = fmt.Errorf("prompt: espeak-ng --voices: %w", err)
		return
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Scan() // header
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 {
			e.voices[strings.ToLower(f[1])] = true
		}
	}
	if len(e.voices) == 0 {
		e.vErr = errors.New("prompt: espeak-ng lists no voices")
	}
}

// Voices lists the language tags espeak-ng speaks.
func (e *Espeak) Voices() ([]string, error) {
	e.once.Do(e.loadVoices)
	if e.vErr != nil {
		return nil, e.vErr
	}
	list := make([]string, 0, len(e.voices))
	for v := range e.voices {
		list = append(list, v)
	}
	return list, nil
}
