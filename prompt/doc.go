// Package prompt turns what an IVR says and plays into PCM a media player
// can send: text through a text-to-speech engine (espeak-ng, or a business's
// own HTTP service), and audio files (WAV, MP3) fetched from a URL. Both are
// rendered once and cached. It knows nothing about calls: the output is mono
// 16-bit PCM at the player's rate (8 or 16 kHz), cut into 20 ms frames.
//
// Decisions worth knowing (docs/callflow.md has the numbers):
//
//   - espeak-ng runs as a command (espeak-ng --stdout), not through cgo: a
//     render is a fork and a few milliseconds of speech synthesis per
//     second of speech, and each text is rendered once and cached, so the
//     cgo binding would save little and tie the binary to libespeak-ng.
//   - espeak-ng always speaks at 22050 Hz; the rate the player wants is
//     reached by one windowed-sinc resampler (resample.go) that every
//     source goes through, files included.
//   - Files are refused rather than guessed at: anything that is not a
//     RIFF/WAVE or MPEG audio stream, is larger than the limit, or comes
//     from a scheme other than http or https (redirects included) is an
//     error naming the cause; FileReason turns it into a stable word a
//     business may be told.
//   - File URLs come from businesses, so a download connects only to
//     public addresses unless Allow lists more (guard.go): the check runs
//     in the dialer on each resolved address, which covers redirects and
//     DNS answers that change between a check and the connection.
package prompt
