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
	// ErrUnreachable means an offer or answer puts its media (c=, or an
	// a=rtcp address) where the media sockets cannot send: an address of
	// the other IP family than the one they are bound to. It is always
	// wrapped with the address and why, and errors.Is matches ErrBadSDP
	// for it too: the SIP layer answers 488, the reason in the Warning.
	ErrUnreachable = errors.New("media: unreachable media address")
)

// unreachableError is an ErrUnreachable with its detail; it is an
// ErrBadSDP as well.
type unreachableError struct{ detail string }

func (e *unreachableError) Error() string { return ErrUnreachable.Error() + ": " + e.detail }

func (e *unreachableError) Is(target error) bool {
	return target == ErrUnreachable || target == ErrBadSDP
}

// errClosed is returned by bridge methods called after Close.
var errClosed = errors.New("media: bridge closed")

// SDPWarning is the text of a Warning header for an offer or answer
// refused with err (wrapping ErrBadSDP): "malformed SDP: " and what was
// wrong ("unreachable media address: " and which and why, for
// ErrUnreachable), on one line, at most 160 bytes.
func SDPWarning(err error) string {
	prefix, sentinel := "malformed SDP", ErrBadSDP.Error()
	if errors.Is(err, ErrUnreachable) {
		prefix, sentinel = "unreachable media address", ErrUnreachable.Error()
	}
	msg := err.Error()
	if i := strings.LastIndex(msg, sentinel); i >= 0 {
		msg = msg[i+len(sentinel):]
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
