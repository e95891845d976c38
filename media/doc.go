// Package media owns wagate's RTP side: the port allocator, SDP offer/answer
// between the two legs of a call, and the relay that moves RTP between them.
//
// A call's media is one Bridge. Side A is the caller (its INVITE carried the
// offer), side B the callee. The SIP layer feeds the bridge A's offer
// (Bridge.OfferB), sends the returned offer to B, feeds B's answer
// (Bridge.AnswerB), sends the returned answer to A, and calls Start. Close
// ends everything and gives the ports back.
//
// Decisions worth knowing (the why, in one place):
//
//   - SDP is parsed by our own small parser (sdp.go), not pion/sdp: pion/sdp
//     rejects a body whose last line has no CRLF, any m= line whose media or
//     proto it does not know (m=image … udptl t38, which PBXs offer for fax)
//     and attribute lines out of its strict order. A B2BUA must take what
//     real PBXs send and must not panic on anything, so the parser is
//     lenient on layout, strict on the values wagate uses (addresses, ports,
//     payload types), and bounded in size.
//   - Each side has its own RTP/RTCP port pair. RTCP sockets are bound, so
//     the port is ours and the implicit RTCP port (RTP+1) is honest, but
//     never read in this version: they get a minimal receive buffer so
//     unread reports cost the kernel little and the process nothing. RTCP
//     multiplexed on the RTP port (a=rtcp-mux) is recognised and discarded.
//     RTCP is not forwarded between legs because the legs' SSRCs differ;
//     generating our own SR/RR comes with SRTP.
//   - Media is accepted only from the address and port the peer's SDP
//     signalled (RTP bleed and injection defence); no latching.
//   - Each outgoing stream is re-originated (own SSRC, random sequence and
//     timestamp bases) by rewriting the header in place; one 1,500-byte
//     buffer and one goroutine per direction, no allocation per packet.
package media
