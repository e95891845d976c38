package media

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"
	"time"
)

const (
	// packetBufSize is the largest datagram read. An RTP packet on a
	// 1,500-byte MTU carries at most 1,472 bytes of UDP payload, so a read
	// that fills the buffer was truncated (or is not RTP) and is dropped.
	packetBufSize = 1500
	// maxReadErrors ends a direction whose socket keeps failing in ways
	// other than close or deadline, instead of spinning on it.
	maxReadErrors = 100
	// silenceStart is how long after Start a WhatsApp leg waits for real
	// audio before we send silence: Meta wants the business to send first.
	silenceStart = 20 * time.Millisecond
	// silenceFrame is the cadence of silence packets (Opus's 20 ms).
	silenceFrame = 20 * time.Millisecond
	// silenceSlack is added to the input packet duration before a pause
	// in real audio is filled with silence: filling at exactly one packet
	// time would push a silence frame between every two packets that
	// arrive a little late, each one shifting the far end's playout.
	silenceSlack = 20 * time.Millisecond
	// timeoutGrace is the extra read before an RTP timeout is declared.
	timeoutGrace = 50 * time.Millisecond
	// never is "no deadline" on the direction's clock.
	never = time.Duration(1<<63 - 1)
)

// remote is one side's transport as negotiated: where it sends from and
// listens, and its keys. It is immutable but for the latched addresses;
// the routes of both directions share the remote objects of one negotiation.
type remote struct {
	rtp  netip.AddrPort // from its SDP, unmapped; invalid when unusable
	rtcp netip.AddrPort // its RTCP address (rtp when mux)
	mux  bool           // RTCP multiplexed on the RTP port
	// nat: the peer is behind NAT. Its media latches onto the first
	// valid packet from a candidate source (see candidate), and moves to
	// another candidate after relatch consecutive valid packets from it
	// (0: never). signal is the IP its SIP comes from (invalid: unknown);
	// anyAddr makes every address a candidate.
	nat     bool
	anyAddr bool
	signal  netip.Addr
	relatch int
	// recvKey decrypts what the peer sends, sendKey encrypts what we send
	// it; both nil on a plain RTP leg.
	recvKey, sendKey *sdesKey

	latched     atomic.Pointer[netip.AddrPort]
	latchedRTCP atomic.Pointer[netip.AddrPort]
}

// natFrom sets the behind-NAT settings of the leg configured as c.
func (p *remote) natFrom(c LegConfig, relatch int) {
	p.nat, p.anyAddr, p.signal, p.relatch = c.BehindNAT, c.BehindNAT && c.LatchAnyAddress, c.SignalIP, relatch
}

// dst is where to send the peer RTP: the latched source, else its SDP
// address.
func (p *remote) dst() netip.AddrPort {
	if a := p.latched.Load(); a != nil {
		return *a
	}
	return p.rtp
}

// rtcpDst is where to send the peer RTCP.
func (p *remote) rtcpDst() netip.AddrPort {
	if p.mux {
		return p.dst()
	}
	if a := p.latchedRTCP.Load(); a != nil {
		return *a
	}
	return p.rtcp
}

// srcCheck is the verdict on a packet's source address.
type srcCheck uint8

const (
	srcReject srcCheck = iota
	srcOK
	srcLatch // a candidate of a peer behind NAT that is not latched yet
	srcMove  // a candidate of a latched peer behind NAT, not the latched one
)

func unmapped(a netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
}

func (p *remote) check(from netip.AddrPort) srcCheck {
	from = unmapped(from)
	if a := p.latched.Load(); a != nil {
		switch {
		case from == *a:
			return srcOK
		case p.relatch > 0 && p.candidate(from):
			return srcMove
		}
		return srcReject
	}
	if p.nat {
		if p.candidate(from) {
			return srcLatch
		}
		return srcReject
	}
	if p.rtp.IsValid() && from == p.rtp {
		return srcOK
	}
	return srcReject
}

// candidate reports whether a peer behind NAT may send its media from
// from: the IP of its SDP or of its SIP, any port (a NAT keeps the
// address and changes the port, or the SDP names a private address and
// the SIP comes from the public one), or anywhere with anyAddr.
func (p *remote) candidate(from netip.AddrPort) bool {
	if p.anyAddr {
		return true
	}
	ip := from.Addr()
	return (p.rtp.IsValid() && ip == p.rtp.Addr()) || (p.signal.IsValid() && ip == p.signal)
}

// checkRTCP judges RTCP on the separate RTCP port. It is accepted from the
// peer's RTCP address, or from any port of the address its RTP comes from
// (RTCP is only read for statistics, and NATs and some PBXs pick other
// ports), behind NAT also of its SIP address; and latched likewise.
func (p *remote) checkRTCP(from netip.AddrPort) srcCheck {
	from = unmapped(from)
	if a := p.latchedRTCP.Load(); a != nil {
		switch {
		case from == *a:
			return srcOK
		case p.relatch > 0 && p.rtcpCandidate(from):
			return srcMove
		}
		return srcReject
	}
	switch {
	case !p.rtcpCandidate(from):
		return srcReject
	case p.nat:
		return srcLatch
	}
	return srcOK
}

// rtcpCandidate: RTCP follows the media, so latch_any_address does not
// widen it beyond where the media comes from.
func (p *remote) rtcpCandidate(from netip.AddrPort) bool {
	if p.rtcp.IsValid() && from == p.rtcp {
		return true
	}
	ip := from.Addr()
	if a := p.latched.Load(); a != nil && ip == a.Addr() {
		return true
	}
	return (p.rtp.IsValid() && ip == p.rtp.Addr()) || (p.nat && p.signal.IsValid() && ip == p.signal)
}

// latch fixes the peer's address once; later calls change nothing.
func latch(to *atomic.Pointer[netip.AddrPort], from netip.AddrPort) bool {
	from = unmapped(from)
	return to.CompareAndSwap(nil, &from)
}

// moveRun is a latched peer's would-be new source and its run of
// consecutive valid packets. The relay moves to it after need packets
// with none from the latched source in between (reset), and only when
// the run has lasted at least (need-1) half packet times: a run squeezed
// between two packets of a source that still sends is a burst, not a
// stream, and moves nothing.
type moveRun struct {
	rem   *remote // the peer the run is about
	from  netip.AddrPort
	n     int
	first time.Duration
}

// count adds one valid packet from from and reports whether the relay
// moves to it now.
func (r *moveRun) count(p *remote, from netip.AddrPort, now, frame time.Duration) bool {
	from = unmapped(from)
	if r.n == 0 || r.rem != p || r.from != from {
		*r = moveRun{rem: p, from: from, first: now}
	}
	r.n++
	return r.n >= p.relatch && now-r.first >= time.Duration(p.relatch-1)*frame/2
}

func (r *moveRun) reset() { r.n = 0 }

// moveFrame is the packet time a new source's run is measured in.
func moveFrame(rt *route) time.Duration {
	if rt.inFrame > 0 {
		return rt.inFrame
	}
	return silenceFrame // before the answer: the usual 20 ms
}

// routeMode is how a direction treats audio.
type routeMode uint8

const (
	modeNone      routeMode = iota // the destination is not negotiated yet
	modeRelay                      // same codec: rewrite headers and forward
	modeTranscode                  // codecs differ: decode and re-encode
)

// Payload type classes of the incoming stream.
const (
	classDrop  = 0
	classAudio = 1
	classEvent = 2
)

// route is one direction's view of the negotiated session. Signalling
// replaces it wholesale (Offer, then AnswerB after a 183 and again for the
// 200) through an atomic pointer, so the relay reads a consistent snapshot
// per packet without locks.
type route struct {
	from *remote // the side whose packets this direction reads
	to   *remote // the destination; nil while it is not known
	mode routeMode

	class [128]uint8 // incoming payload type → class
	// pt maps incoming payload types to the destination's (relay), and
	// the audio and telephone-event types in any mode.
	pt ptMap
	// frame is the timestamp step of one incoming packet, used to continue
	// the outgoing stream across an SSRC change.
	frame uint32
	// in and out are the audio formats on the two legs (the same codec
	// when relaying); outPT the destination's audio payload type.
	in, out codecFmt
	outPT   uint8
	// eventOut is the destination's telephone-event payload type, ptDrop
	// when it has none.
	eventOut uint8
	// inFrame is how much audio one incoming packet carries, as the
	// source was asked to send (its ptime), for the silence threshold.
	inFrame time.Duration
}

// ready reports whether packets can go to the destination.
func (r *route) ready() bool {
	return r != nil && r.mode != modeNone && r.to != nil && r.to.dst().IsValid()
}

// direction moves the packets one side sends to the other side, and runs
// RTCP for the side it reads. It is run by exactly one goroutine, owned by
// its Bridge, which ends it by closing the sockets; all its fields are that
// goroutine's.
//
// Besides reading, it has timed work: the RTP timeouts, giving up on gaps
// in the reorder buffer, silence toward a WhatsApp destination, and RTCP.
// All of it runs off the socket's read deadline, set to the earliest thing
// due, so a bridge needs no goroutine beyond its two directions and no
// ticker: a steady stream costs one time.Now per packet, plus one deadline
// update per packet toward WhatsApp (where the silence deadline follows the
// audio).
type direction struct {
	b       *Bridge
	side    Side
	in, out *legState // in faces the source side, out the destination
	route   *atomic.Pointer[route]
	// forwarded counts media packets written to the destination.
	forwarded *atomic.Uint64
	rtcpSock  rtcpSocket
	// toDst writes RTP to the destination (its leg's RTP socket);
	// toSrc and toSrcRTCP write RTCP to the source side from its leg's
	// RTP (rtcp-mux) and RTCP sockets. Tests swap in fakes.
	toDst, toSrc, toSrcRTCP packetWriter

	buf, pbuf, ebuf, rtcpBuf []byte
	cur                      *route // the route in force

	srtpIn  *srtpIn  // decrypts the source; nil on plain legs
	rtcpOut *srtpOut // encrypts our RTCP to the source
	srtpOut *srtpOut // encrypts our RTP to the destination
	rx      rxStats
	// For the call's media report (Bridge.Report, after Close).
	rxBytes, srtpAuth, srtpReplay, late uint64
	stream                              outStream
	dtmf                                dtmfState
	xc                                  *transcodeStage
	tapDec                              tapDecoder
	tapSeen                             *tapHolder

	epoch   time.Time
	seen    bool          // a valid packet arrived from the source side
	last    time.Duration // when the latest one arrived
	timeout time.Duration
	startTO time.Duration
	// confirming: the timeout deadline passed, one more read is under
	// way before the side is declared silent.
	confirming bool
	interval   time.Duration

	armed                        time.Duration // the socket's deadline
	timeoutAt, rtcpAt, silenceAt time.Duration
	silenceOn                    bool // the destination is a WhatsApp leg
	silenceAfter                 time.Duration

	rtcpFromPort func(pkt []byte, from netip.AddrPort)
	// rtpMove and rtcpMove follow a latched NAT peer's would-be new
	// source of RTP and of RTCP on the RTCP port.
	rtpMove, rtcpMove moveRun

	// live is what Bridge.Live reads while the call runs.
	live liveStats

	loggedSource, loggedInvalid, loggedWrite, loggedAuth, loggedCodec, loggedNoEvent bool
}

// packetWriter is the write side of a UDP socket.
type packetWriter interface {
	WriteToUDPAddrPort(b []byte, addr netip.AddrPort) (int, error)
}

func newDirection(b *Bridge, side Side, rt *atomic.Pointer[route], forwarded *atomic.Uint64) *direction {
	in, out := &b.legs[side], &b.legs[side.other()]
	d := &direction{
		b:         b,
		side:      side,
		in:        in,
		out:       out,
		route:     rt,
		forwarded: forwarded,
		rtcpSock:  newRTCPSocket(in.pair.rtcp),
		toDst:     out.pair.rtp,
		toSrc:     in.pair.rtp,
		toSrcRTCP: in.pair.rtcp,
		buf:       make([]byte, packetBufSize, packetBufSize+srtpOverhead),
		pbuf:      make([]byte, packetBufSize),
		ebuf:      make([]byte, packetBufSize+srtpOverhead),
		stream:    newOutStream(out.ssrc),
		epoch:     b.epoch,
		interval:  b.m.rtcpInterval,
		silenceOn: out.cfg.WhatsApp,
		armed:     -1,
	}
	// RTCP is read and written between packets, never while ebuf holds
	// one: the two share the buffer.
	d.rtcpBuf = d.ebuf
	d.tapDec = tapDecoder{b: b, side: side}
	d.rtcpFromPort = func(pkt []byte, from netip.AddrPort) { d.inboundRTCP(pkt, from, true, d.clock()) }
	return d
}

func (d *direction) clock() time.Duration { return time.Since(d.epoch) }

// run relays until the sockets close (nil) or the source side times out or
// its socket fails (the error for onTimeout).
func (d *direction) run(startTimeout, timeout time.Duration) error {
	defer d.closeStages()
	d.timeout, d.startTO = timeout, startTimeout
	now := d.clock()
	d.timeoutAt, d.rtcpAt, d.silenceAt = never, never, never
	if startTimeout > 0 {
		d.timeoutAt = now + startTimeout
	}
	if d.interval > 0 {
		// RFC 3550 §6.2: the first report after half an interval.
		d.rtcpAt = now + d.jittered()/2
	}
	if d.silenceOn {
		d.silenceAt = now + silenceStart
	}
	readErrs := 0
	for {
		if err := d.runDue(now); err != nil {
			return err
		}
		if due := d.nextDue(); due != d.armed {
			deadline := time.Time{}
			if due != never {
				deadline = d.epoch.Add(due)
			}
			if err := d.in.pair.rtp.SetReadDeadline(deadline); err != nil {
				return d.closedOr(err)
			}
			d.armed = due
			if d.route.Load() != d.cur {
				continue // signalling's poke may have been overwritten
			}
		}
		n, from, err := d.in.pair.rtp.ReadFromUDPAddrPort(d.buf[:packetBufSize])
		now = d.clock()
		if err != nil {
			switch {
			case errors.Is(err, net.ErrClosed):
				return nil
			case errors.Is(err, os.ErrDeadlineExceeded):
				d.armed = -1 // re-arm whatever fired, even a poke from signalling
				continue
			}
			if readErrs++; readErrs >= maxReadErrors {
				return fmt.Errorf("media: read RTP from side %s: %w", d.side, err)
			}
			continue
		}
		readErrs = 0
		d.handle(n, from, now)
	}
}

// runDue does the timed work whose time has come.
func (d *direction) runDue(now time.Duration) error {
	if rt := d.route.Load(); rt != d.cur {
		d.switchRoute(rt)
	}
	if now >= d.timeoutAt {
		limit := d.startTO
		if d.seen {
			limit = d.timeout
		}
		if !d.seen || now-d.last >= d.timeout {
			// A goroutine that was not scheduled for a while finds its
			// deadline passed with packets still queued: read once more
			// before calling the side silent.
			if !d.confirming {
				d.confirming, d.timeoutAt = true, now+timeoutGrace
			} else {
				return fmt.Errorf("media: no RTP from side %s for %s", d.side, limit)
			}
		} else {
			d.timeoutAt = d.last + d.timeout
		}
	}
	if d.xc != nil {
		if at, ok := d.xc.jb.due(); ok && now >= at {
			d.xc.jb.flush(now)
		}
	}
	if now >= d.silenceAt {
		d.silence(now)
	}
	if now >= d.rtcpAt {
		d.rtcpTick(now)
	}
	return nil
}

// nextDue is the earliest time runDue has work.
func (d *direction) nextDue() time.Duration {
	due := min(d.timeoutAt, d.rtcpAt, d.silenceAt)
	if d.xc != nil {
		if at, ok := d.xc.jb.due(); ok {
			due = min(due, at)
		}
	}
	return due
}

// jittered is the RTCP interval randomised over [0.5, 1.5] of itself
// (RFC 3550 §6.3.1), so the calls of a busy server do not report in step.
func (d *direction) jittered() time.Duration {
	return d.interval/2 + time.Duration(rand.Int64N(int64(d.interval)+1))
}

// handle processes one datagram from the source side's RTP socket.
func (d *direction) handle(n int, from netip.AddrPort, now time.Duration) {
	rt := d.route.Load()
	if rt != d.cur {
		d.switchRoute(rt)
	}
	if rt == nil || rt.from == nil {
		d.dropSource(from, rt)
		return
	}
	verdict := rt.from.check(from)
	if verdict == srcReject {
		d.dropSource(from, rt)
		return
	}
	pkt := d.buf[:n]
	if isRTCP(pkt) {
		// Multiplexed RTCP: ours to read, never forwarded (the legs'
		// SSRCs differ), and not media, so it keeps nothing alive. It
		// does not latch or move a NAT peer either: only media does.
		if verdict != srcOK {
			d.dropSource(from, rt)
			return
		}
		d.inboundRTCP(pkt, from, false, now)
		return
	}
	if _, ok := rtpHeaderLen(pkt); !ok || n == packetBufSize {
		d.dropInvalid(from, n)
		return
	}
	if d.srtpIn != nil {
		var r dropReason
		if pkt, r = d.srtpIn.rtp(pkt); r != keep {
			d.drop(r, from, n)
			return
		}
	} else if rt.from.recvKey != nil {
		d.drop(dropAuth, from, n) // no context could be built for the key
		return
	}
	hl, ok := rtpHeaderLen(pkt) // again: padding was encrypted
	if !ok {
		d.dropInvalid(from, n)
		return
	}
	switch verdict {
	case srcOK:
		d.rtpMove.reset()
	case srcLatch:
		if latch(&rt.from.latched, from) {
			d.b.log.Info("media: latched onto peer behind NAT", "side", d.side, "from", from, "sdp", rt.from.rtp)
		}
	case srcMove:
		if !d.rtpMove.count(rt.from, from, now, moveFrame(rt)) {
			d.dropSource(from, rt)
			return
		}
		d.moveRTP(rt.from, from)
	}
	d.keepalive(now)
	if !rt.ready() {
		return // the other side is not known yet
	}
	pt := pkt[1] & 0x7f
	if c := rt.class[pt]; c == classAudio || c == classEvent {
		d.rxBytes += uint64(n)
	}
	switch rt.class[pt] {
	case classAudio:
		d.rx.update(binary.BigEndian.Uint32(pkt[8:]), binary.BigEndian.Uint16(pkt[2:]), binary.BigEndian.Uint32(pkt[4:]), now, rt.in.rate)
		if rt.mode == modeRelay {
			d.relayAudio(pkt, hl, rt, now)
		} else {
			d.transcodeAudio(pkt, hl, now)
		}
	case classEvent:
		d.rx.update(binary.BigEndian.Uint32(pkt[8:]), binary.BigEndian.Uint16(pkt[2:]), binary.BigEndian.Uint32(pkt[4:]), now, 0)
		d.event(pkt, hl, rt, now)
	default:
		d.dropInvalid(from, n)
	}
}

// moveRTP moves a latched peer's media to a new source that has proved
// itself (moveRun). RTCP follows the media: its latch is dropped, to be
// taken again by the next valid report from a candidate.
func (d *direction) moveRTP(p *remote, to netip.AddrPort) {
	to = unmapped(to)
	old := p.latched.Swap(&to)
	p.latchedRTCP.Store(nil)
	d.rtpMove.reset()
	d.rtcpMove.reset()
	d.b.log.Info("media: peer behind NAT moved to a new source", "side", d.side, "from", derefAddr(old), "to", to, "packets", p.relatch)
}

func derefAddr(a *netip.AddrPort) netip.AddrPort {
	if a == nil {
		return netip.AddrPort{}
	}
	return *a
}

// keepalive records a valid packet from the source side for the timeouts.
func (d *direction) keepalive(now time.Duration) {
	d.publishLive(now)
	d.last, d.confirming = now, false
	if !d.seen {
		d.seen = true
		d.timeoutAt = never
		if d.timeout > 0 {
			d.timeoutAt = now + d.timeout
		}
	}
}

// payload returns an RTP packet's payload without padding.
func payload(pkt []byte, hl int) []byte {
	end := len(pkt)
	if pkt[0]&0x20 != 0 {
		end -= int(pkt[end-1])
	}
	return pkt[hl:end]
}

func (d *direction) relayAudio(pkt []byte, hl int, rt *route, now time.Duration) {
	if h := d.tapHolder(); h != nil {
		d.tapDec.decode(rt.in, binary.BigEndian.Uint16(pkt[2:]), payload(pkt, hl), h.tap)
	}
	ts := d.stream.relay(pkt, rt.pt[pkt[1]&0x7f], rt.frame)
	if d.send(pkt, len(pkt)-hl, ts, now) {
		d.forwarded.Add(1)
	}
	d.audioSent(now)
}

func (d *direction) transcodeAudio(pkt []byte, hl int, now time.Duration) {
	if d.xc == nil {
		return // the transcoder could not be built; logged then
	}
	switch d.xc.push(binary.BigEndian.Uint32(pkt[8:]), binary.BigEndian.Uint16(pkt[2:]), binary.BigEndian.Uint32(pkt[4:]), payload(pkt, hl), now) {
	case jbLate, jbDuplicate:
		d.b.droppedLate.Add(1)
		d.late++
	}
}

// emitOwn sends one packet of ours built from an audio payload: the
// transcoder's output, or silence.
func (d *direction) emitOwn(pt uint8, frame []byte, samples int, silence bool) {
	if len(frame)+rtpHeaderMin > len(d.pbuf) {
		return
	}
	ts := d.stream.ts
	d.stream.own(d.pbuf, pt, ts, false, true)
	d.stream.ts += uint32(samples)
	n := rtpHeaderMin + copy(d.pbuf[rtpHeaderMin:], frame)
	now := d.clock()
	if !d.send(d.pbuf[:n], len(frame), ts, now) {
		return
	}
	if silence {
		d.b.silence.Add(1)
		return
	}
	d.forwarded.Add(1)
	d.audioSent(now)
}

// audioSent moves the silence deadline after real audio went out.
func (d *direction) audioSent(now time.Duration) {
	if d.silenceOn {
		d.silenceAt = now + d.silenceAfter
	}
}

// silence sends one packet of silence toward a WhatsApp destination that
// has had no audio from us for a while, so Meta sees media from the
// business from the moment the call is answered (it hangs up after 20 s
// without), and keeps seeing it while the other side is silent.
func (d *direction) silence(now time.Duration) {
	d.silenceAt += silenceFrame
	if d.silenceAt <= now {
		d.silenceAt = now + silenceFrame // we fell behind: do not burst
	}
	rt := d.cur
	if !rt.ready() {
		return
	}
	if rt.mode == modeTranscode {
		if d.xc != nil {
			d.xc.tc.Silence(d.xc.emitSilence)
		}
		return
	}
	frame, samples := silencePayload(rt.out)
	d.emitOwn(rt.outPT, frame, int(samples), true)
}

// event relays one telephone-event packet (RFC 4733), see dtmf.go.
func (d *direction) event(pkt []byte, hl int, rt *route, now time.Duration) {
	body := payload(pkt, hl)
	if len(body) < eventPayloadLen {
		d.dropInvalid(netip.AddrPort{}, len(pkt))
		return
	}
	seq, ts := binary.BigEndian.Uint16(pkt[2:]), binary.BigEndian.Uint32(pkt[4:])
	prev, prevIn, prevOut := d.dtmf.active, d.dtmf.ts, d.dtmf.outTS
	act := d.dtmf.classify(ts, eventEnd(body))
	if rt.eventOut == ptDrop {
		if !d.loggedNoEvent && (act == dtmfStart || act == dtmfStartEnd) {
			d.loggedNoEvent = true
			d.b.log.Info("media: DTMF event dropped: the other side did not negotiate telephone-event", "from_side", d.side)
		}
		return
	}
	if act == dtmfStart || act == dtmfStartEnd {
		d.b.dtmfEvents.Add(1)
	}
	copies := 1
	if act == dtmfEnd || act == dtmfStartEnd {
		copies = dtmfEndCopies
	}
	if rt.mode == modeRelay {
		switch act {
		case dtmfDrop:
			d.stream.skip(seq)
			return
		case dtmfStart, dtmfStartEnd:
			pkt[1] |= 0x80
		}
		ts := d.stream.relay(pkt, rt.eventOut, 0)
		for i := range copies {
			if i > 0 {
				d.stream.inject(pkt)
				pkt[1] &^= 0x80 // the marker is for the event's first packet only
			}
			if d.send(pkt, len(pkt)-hl, ts, now) {
				d.forwarded.Add(1)
			}
		}
		return
	}
	if act == dtmfDrop {
		return
	}
	if act == dtmfStart || act == dtmfStartEnd {
		// The event starts where our outgoing audio stands, or, when no
		// audio went out since the previous event, as far after that
		// event as the sender's timestamps say: two events must never
		// share a timestamp, or the far end hears one.
		d.dtmf.outTS = d.stream.ts
		if prev {
			if delta := int64(int32(ts - prevIn)); delta > 0 {
				at := prevOut + uint32(delta*int64(rt.out.rate)/int64(rt.in.rate))
				if int32(at-d.dtmf.outTS) > 0 {
					d.dtmf.outTS = at
				}
			}
		}
	}
	for i := range copies {
		d.stream.own(d.pbuf, rt.eventOut, d.dtmf.outTS, i == 0 && act != dtmfForward && act != dtmfEnd, false)
		block := d.pbuf[rtpHeaderMin : rtpHeaderMin+eventPayloadLen]
		copy(block, body[:eventPayloadLen])
		scaleEventDuration(block, rt.in.rate, rt.out.rate)
		if d.send(d.pbuf[:rtpHeaderMin+eventPayloadLen], eventPayloadLen, d.dtmf.outTS, now) {
			d.forwarded.Add(1)
		}
	}
}

// send writes one plain RTP packet to the destination, encrypted on an
// SDES leg, and records it for our sender reports.
func (d *direction) send(pkt []byte, payloadLen int, ts uint32, now time.Duration) bool {
	out := pkt
	if d.srtpOut != nil {
		enc, err := d.srtpOut.rtp(d.ebuf, pkt)
		if err != nil {
			d.logOnce(&d.loggedWrite, "media: SRTP encryption failed", "to_side", d.side.other(), "err", err)
			return false
		}
		out = enc
	} else if d.cur.to.sendKey != nil {
		return false // never send plain RTP to an SDES leg
	}
	dst := d.cur.to.dst()
	if _, err := d.toDst.WriteToUDPAddrPort(out, dst); err != nil {
		if !errors.Is(err, net.ErrClosed) {
			d.logOnce(&d.loggedWrite, "media: relay write failed", "from_side", d.side, "to", dst, "err", err)
		}
		return false
	}
	d.out.tx.sent(payloadLen, ts, now)
	return true
}

// switchRoute adopts a new route: keys, stages and timing that depend on
// it. Crypto contexts are kept when the keys are the same (an answer
// repeated in the 200 after a 183 must not reset SRTP state).
func (d *direction) switchRoute(rt *route) {
	d.cur = rt
	if rt == nil || rt.from == nil {
		return
	}
	if k := rt.from.recvKey; d.srtpIn == nil || !d.srtpIn.key.equal(k) {
		d.srtpIn = nil
		if k != nil {
			var err error
			if d.srtpIn, err = newSRTPIn(k); err != nil {
				d.b.log.Error("media: cannot key SRTP", "side", d.side, "err", err)
			}
		}
	}
	if k := rt.from.sendKey; d.rtcpOut == nil || !d.rtcpOut.key.equal(k) {
		d.rtcpOut = d.newOut(k)
	}
	if rt.to == nil {
		return
	}
	if k := rt.to.sendKey; d.srtpOut == nil || !d.srtpOut.key.equal(k) {
		d.srtpOut = d.newOut(k)
	}
	d.out.tx.clock.Store(int32(rt.out.rate))
	d.silenceAfter = max(rt.inFrame, silenceFrame) + silenceSlack
	if d.xc != nil && (rt.mode != modeTranscode || !d.xc.matches(rt)) {
		d.xc.close()
		d.xc = nil
	}
	if rt.mode == modeTranscode && d.xc == nil {
		xc, err := newTranscodeStage(d, rt, d.b.m.opus, d.b.m.jitterBuffer)
		if err != nil {
			d.b.log.Error("media: cannot transcode", "from_side", d.side, "err", err)
			return
		}
		d.xc = xc
	}
}

func (d *direction) newOut(k *sdesKey) *srtpOut {
	if k == nil {
		return nil
	}
	o, err := newSRTPOut(k)
	if err != nil {
		d.b.log.Error("media: cannot key SRTP", "side", d.side, "err", err)
	}
	return o
}

func (d *direction) closeStages() {
	if d.xc != nil {
		d.xc.close()
		d.xc = nil
	}
	d.tapDec.close()
}

// tapHolder returns the bridge's tap, dropping the relay tap decoder
// when the tap goes away.
func (d *direction) tapHolder() *tapHolder {
	h := d.b.tap.Load()
	if h != d.tapSeen {
		d.tapSeen = h
		d.tapDec.close()
	}
	return h
}

// rtcpTick reads the peer's RTCP from the RTCP port, sends ours, and
// passes the loss figures on.
func (d *direction) rtcpTick(now time.Duration) {
	d.rtcpAt = now + d.jittered()
	d.rtcpSock.drain(d.rtcpBuf[:packetBufSize], d.rtcpFromPort)
	rt := d.cur
	if rt != nil && rt.from != nil && rt.from.rtp.IsValid() {
		d.sendReport(rt, now)
	}
	d.in.rxLoss.Store(int32(d.rx.lossPct))
	if d.xc != nil {
		// Size the Opus FEC toward the destination by what its peer
		// reports losing of our stream, else by what we lose of its.
		loss := d.out.peerLoss.Load()
		if loss < 0 {
			loss = d.out.rxLoss.Load()
		}
		d.xc.tc.SetPacketLoss(int(loss))
	}
}

func (d *direction) sendReport(rt *route, now time.Duration) {
	if rt.from.recvKey != nil && d.rtcpOut == nil {
		return
	}
	pkt, err := buildReport(d.in.ssrc, d.b.cname, &d.in.tx, &d.rx, now, d.interval, time.Now())
	if err != nil {
		d.logOnce(&d.loggedWrite, "media: building RTCP failed", "side", d.side, "err", err)
		return
	}
	if d.rtcpOut != nil {
		if pkt, err = d.rtcpOut.rtcp(d.rtcpBuf, pkt); err != nil {
			d.logOnce(&d.loggedWrite, "media: SRTCP encryption failed", "side", d.side, "err", err)
			return
		}
	}
	conn, dst := d.toSrcRTCP, rt.from.rtcpDst()
	if rt.from.mux {
		conn = d.toSrc
	}
	if !dst.IsValid() {
		return
	}
	if _, err := conn.WriteToUDPAddrPort(pkt, dst); err != nil {
		if !errors.Is(err, net.ErrClosed) {
			d.logOnce(&d.loggedWrite, "media: RTCP write failed", "side", d.side, "to", dst, "err", err)
		}
		return
	}
	d.b.rtcpSent.Add(1)
}

// inboundRTCP handles an RTCP packet from the source side: multiplexed on
// the RTP port (source already checked) or read from the RTCP port.
func (d *direction) inboundRTCP(pkt []byte, from netip.AddrPort, rtcpPort bool, now time.Duration) {
	rt := d.cur
	if rt == nil || rt.from == nil {
		d.dropSource(from, rt)
		return
	}
	verdict := srcOK
	if rtcpPort {
		if verdict = rt.from.checkRTCP(from); verdict == srcReject {
			d.dropSource(from, rt)
			return
		}
	}
	if d.srtpIn != nil {
		var r dropReason
		if pkt, r = d.srtpIn.rtcp(pkt); r != keep {
			d.drop(r, from, len(pkt))
			return
		}
	} else if rt.from.recvKey != nil {
		d.drop(dropAuth, from, len(pkt))
		return
	}
	info, ok := readReport(pkt, d.in.ssrc)
	if !ok {
		d.dropInvalid(from, len(pkt))
		return
	}
	switch verdict {
	case srcOK:
		if rtcpPort {
			d.rtcpMove.reset()
		}
	case srcLatch:
		latch(&rt.from.latchedRTCP, from)
	case srcMove:
		if !d.rtcpMove.count(rt.from, from, now, moveFrame(rt)) {
			d.dropSource(from, rt)
			return
		}
		to := unmapped(from)
		old := rt.from.latchedRTCP.Swap(&to)
		d.rtcpMove.reset()
		d.b.log.Info("media: peer behind NAT moved its RTCP to a new source", "side", d.side, "from", derefAddr(old), "to", to, "packets", rt.from.relatch)
	}
	d.b.rtcpReceived.Add(1)
	if info.sr != 0 {
		d.rx.lastSR, d.rx.lastSRAt = info.sr, time.Now()
	}
	if info.lossPct >= 0 {
		d.in.peerLoss.Store(int32(info.lossPct))
	}
}

func (d *direction) drop(r dropReason, from netip.AddrPort, n int) {
	switch r {
	case dropAuth:
		d.b.droppedAuth.Add(1)
		d.srtpAuth++
	case dropReplay:
		d.b.droppedReplay.Add(1)
		d.srtpReplay++
	default:
		d.dropInvalid(from, n)
		return
	}
	if !d.loggedAuth {
		d.loggedAuth = true
		d.b.log.Info("media: dropping SRTP that fails authentication or replay check", "side", d.side, "from", from)
	}
}

func (d *direction) dropSource(from netip.AddrPort, rt *route) {
	d.b.droppedSource.Add(1)
	if !d.loggedSource {
		d.loggedSource = true
		d.b.log.Info("media: dropping RTP from unexpected source", "side", d.side, "from", from, "expected", routeSrc(rt))
	}
}

func (d *direction) dropInvalid(from netip.AddrPort, n int) {
	d.b.droppedInvalid.Add(1)
	if !d.loggedInvalid {
		d.loggedInvalid = true
		d.b.log.Debug("media: dropping invalid or unnegotiated RTP", "side", d.side, "from", from, "len", n)
	}
}

func (d *direction) logOnce(flag *bool, msg string, args ...any) {
	if *flag {
		return
	}
	*flag = true
	d.b.log.Warn(msg, args...)
}

// closedOr maps an error from a closed socket to nil (the bridge is being
// closed) and wraps anything else.
func (d *direction) closedOr(err error) error {
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return fmt.Errorf("media: side %s socket: %w", d.side, err)
}

func routeSrc(rt *route) slog.Value {
	switch {
	case rt == nil || rt.from == nil:
		return slog.StringValue("none yet")
	case rt.from.latched.Load() != nil:
		return slog.StringValue(rt.from.latched.Load().String())
	case rt.from.anyAddr:
		return slog.StringValue("any address (behind NAT, latch_any_address, not latched yet)")
	case rt.from.nat:
		var ips []string
		for _, ip := range []netip.Addr{rt.from.rtp.Addr(), rt.from.signal} {
			if ip.IsValid() {
				ips = append(ips, ip.String())
			}
		}
		if ips == nil {
			return slog.StringValue("none yet (behind NAT, no SDP or SIP address to latch from)")
		}
		return slog.StringValue("any port of " + strings.Join(ips, " or ") + " (behind NAT, not latched yet)")
	case !rt.from.rtp.IsValid():
		return slog.StringValue("none yet")
	}
	return slog.StringValue(rt.from.rtp.String())
}
