package media

import (
	"errors"
	"strings"
	"unicode/utf8"
)

// Errors the SIP layer maps to responses. Match them with errors.Is: most
// are returned wrapped with detail.
var (
	// ErrNoPorts means no RTP port pair could be handed out (all in use or
	// in quarantine, or binding failed). The SIP layer answers 503.
	ErrNoPorts = errors.New("media: no free RTP ports")
	// ErrNoCommonCodec means the two sides share no audio codec. The SIP
	// layer answers 488.
	ErrNoCommonCodec = errors.New("media: no common codec")
	// ErrBadSDP means an SDP body is malformed or unusable (no audio
	// stream, bad address, unsupported transport). It is always wrapped
	// with detail. The SIP layer answers 400 or 488.
	ErrBadSDP = errors.New("media: malformed SDP")
)

// errClosed is returned by bridge methods called after Close.
var errClosed = errors.New("media: bridge closed")

// SDPWarning is the text of a Warning header for an offer or answer
// refused with err (wrapping ErrBadSDP): "malformed SDP: " and what was
// wrong, on one line, at most 160 bytes.
func SDPWarning(err error) string {
	const prefix = "malformed SDP"
	msg := err.Error()
	if i := strings.LastIndex(msg, ErrBadSDP.Error()); i >= 0 {
		msg = msg[i+len(ErrBadSDP.Error()):]
	} else {
		msg = ""
	}
	msg = strings.TrimLeft(msg, ": ")
	msg = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == '"' || r == '\\' {
			return '\''
		}
		return r
	}, msg)
	if msg == "" {
		return prefix
	}
	out := prefix + ": " + msg
	if len(out) > 160 {
		out = out[:157]
		for !utf8.ValidString(out) {
			out = out[:len(out)-1]
		}
		out += "..."
	}
	return out
}
