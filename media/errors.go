package media

import "errors"

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
