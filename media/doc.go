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
//   - A bridge runs two goroutines, one per direction, each blocked reading
//     its side's RTP socket. Everything timed (RTP timeouts, the reorder
//     buffer's give-up, silence toward WhatsApp every 20 ms, RTCP every
//     interval) runs off that socket's read deadline; the RTCP sockets of
//     legs without rtcp-mux are drained without blocking at each RTCP
//     interval. No tickers, no extra goroutines.
//   - Toward a WhatsApp leg wagate sends first: silence from Start until
//     the other side has audio, and again whenever it pauses, because Meta
//     hangs up on a business that sends nothing.
//   - The per-packet paths (relay, transcode, SRTP) allocate nothing in
//     this package; buffers are per direction and reused. pion/srtp's
//     HMAC-SHA1 allocates its tag per packet.
package media
