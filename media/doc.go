// Package media owns wagate's RTP side: the port allocator, SDP offer/answer
// between the two legs of a call, SDES-SRTP, and the relay that moves media
// between them, transcoding where the legs' codecs differ.
//
// A call's media is one Bridge, made by Manager.NewCallBridge with a
// LegConfig per side. Side A is the caller (its INVITE carried the offer),
// side B the callee. The SIP layer feeds the bridge A's offer
// (Bridge.Offer), sends the returned offer to B, feeds B's answer
// (Bridge.AnswerB), sends the returned answer to A, and calls Start when
// the call is answered. Close ends everything and gives the ports back.
//
// Decisions worth knowing (the why, in one place; docs/media.md has the
// operator's view):
//
//   - SDP is parsed by our own small parser (sdp.go), not pion/sdp: pion/sdp
//     rejects a body whose last line has no CRLF, any m= line whose media or
//     proto it does not know (m=image … udptl t38, which PBXs offer for fax)
//     and attribute lines out of its strict order. A B2BUA must take what
//     real PBXs send and must not panic on anything, so the parser is
//     lenient on layout, strict on the values wagate uses (addresses, ports,
//     payload types), and bounded in size.
//   - Relay when the legs can share a codec, transcode (codec.Transcoder)
//     when they cannot: the offer to B lists the common codecs first and
//     B's other codecs wagate can convert to after them, so B's answer
//     decides. Each outgoing stream is re-originated (own SSRC, random
//     sequence and timestamp bases; outStream in rtp.go).
//   - SDES keys (crypto.go) are parsed strictly and fed to pion/srtp
//     (srtp.go) with replay protection. pion creates per-SSRC state before
//     it checks a tag, so unknown SSRCs are authenticated on a throwaway
//     probe context first: a flood of forged SSRCs costs bounded memory.
//     A packet that fails is dropped and counted; the call goes on.
//   - Media is accepted only from the address the peer's SDP signalled, or
//     on a leg configured behind NAT from the first source that sends a
//     valid (authenticated, on SDES) packet, latched once.
//   - A bridge runs two reader goroutines, one per leg's RTP socket, each
//     waiting for its socket through the runtime's poller without holding
//     a buffer (reader_unix.go) and reading into pooled buffers
//     (bufpool.go). Everything timed (silence and playout toward a leg,
//     RTCP, RTP timeouts) is a job on the manager's shared Pacer
//     (pacer.go): a few goroutines and timer wheels for every call, not a
//     timer per direction. A direction's lock serialises its reader and
//     its jobs.
//   - Audio toward a WhatsApp leg, and transcoded audio either way, is
//     played out on the pacer from an adaptive playout buffer
//     (playout.go, paced.go) whose depth follows the jitter measured on
//     the way in, within media.jitter_buffer; a missing frame is
//     concealed and the packet dropped when it comes late, never played
//     after silence. Relayed audio toward other legs goes out as it
//     arrives.
//   - Toward a WhatsApp leg wagate sends first: silence from Start until
//     the other side has audio, and again whenever it pauses, because Meta
//     hangs up on a business that sends nothing. Silence payloads are
//     precomputed (an Opus frame from the encoder settings, once).
//   - Port pairs are bound once and kept: a released pair waits out its
//     quarantine with its sockets connected to themselves, so the kernel
//     delivers them nothing, and is drained when handed out again
//     (portalloc.go).
//   - The per-packet paths (relay, playout, transcode, SRTP) allocate
//     nothing in this package. pion/srtp's HMAC-SHA1 allocates its tag per
//     packet.
package media
