package media

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"sync"
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
	// timeoutGrace is the extra wait before an RTP timeout is declared.
	timeoutGrace = 50 * time.Millisecond
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
	// secure: a dtls leg, which is never sent or accepts plain RTP, even
	// before its keys are in.
	secure bool

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
	// source was asked to send (its ptime), for NAT re-latching.
	inFrame time.Duration
	// mute: the destination holds (its SDP said sendonly, inactive or
	// c=0.0.0.0), so nothing is sent to it but RTCP. quiet: the source
	// may send nothing (it holds, or is muted), so it has no RTP timeout.
	mute, quiet bool
	// absent: the source side has no peer at all (B of a call answered
	// locally, until one is connected), so it cannot time out.
	absent bool
}

// ready reports whether packets can go to the destination.
func (r *route) ready() bool {
	return r != nil && r.mode != modeNone && r.to != nil && r.to.dst().IsValid()
}

// direction moves the packets one side sends to the other side, and runs
// RTCP for the side it reads.
//
// Two kinds of work share it. Its reader goroutine (owned by its Bridge,
// which ends it with a read deadline in the past) waits for the source
// side's RTP socket to be readable, without a buffer, then reads each
// datagram into a pooled buffer and handles it. Its pacer jobs (Manager's
// shared Pacer) do everything timed: playout and silence toward the
// destination, RTCP to the source side, and the RTP timeouts. mu
// serialises the two; it is held for one packet or one tick, never while
// waiting.
//
// Audio toward a WhatsApp leg, and transcoded audio either way, is paced:
// packets wait in an adaptive playout buffer (playout.go) and a pacer job
// plays them out one frame per tick, with silence toward WhatsApp when
// there is nothing to play. Relayed audio toward any other leg is sent as
// it arrives: the far end's own jitter buffer sees the original timing.
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

	epoch     time.Time
	interval  time.Duration
	silenceOn bool // the destination is a WhatsApp leg
	timeout   time.Duration
	startTO   time.Duration

	mu     sync.Mutex // guards everything below
	closed bool
	cur    *route // the route in force

	srtpIn  *srtpIn  // decrypts the source; nil on plain legs
	rtcpOut *srtpOut // encrypts our RTCP to the source
	srtpOut *srtpOut // encrypts our RTP to the destination
	rx      rxStats
	// For the call's media report (Bridge.Report, after Close).
	rxBytes, srtpAuth, srtpReplay, late uint64
	stream                              outStream
	dtmf                                dtmfState
	xc                                  *transcodeStage
	xcFailed                            bool     // building xc failed for this route
	pl                                  *playout // the playout buffer, from the first paced packet
	tapDec                              tapDecoder
	tapSeen                             *tapHolder
	inb                                 inbandState

	started    time.Duration // when Start ran
	seen       bool          // a valid packet arrived from the source side
	last       time.Duration // when the latest one arrived
	confirming bool          // a timeout was seen once; checking again

	playJob, rtcpJob, timeoutJob *PacerJob
	play                         *Playback // playing toward the destination instead of the source's audio
	// playAt is the intended time of the next play tick (0: the job is
	// idle); silenceFrom is when silence toward WhatsApp may start.
	playAt, silenceFrom time.Duration
	// outEnd is when the audio of the last paced packet ends on the
	// schedule (outBased: one was sent), for the timestamp of the next
	// talk spurt.
	outEnd    time.Duration
	outBased  bool
	inSilence bool // the last paced packet was silence (or none yet)

	rtcpFromPort func(pkt []byte, from netip.AddrPort)
	// rtpMove and rtcpMove follow a latched NAT peer's would-be new
	// source of RTP and of RTCP on the RTCP port.
	rtpMove, rtcpMove moveRun

	// live is what Bridge.Live reads while the call runs.
	live liveStats

	loggedSource, loggedInvalid, loggedWrite, loggedAuth, loggedCodec, loggedNoEvent bool

	// The reader's own, outside mu.
	rd reader
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
		stream:    newOutStream(out.ssrc),
		epoch:     b.epoch,
		interval:  b.m.rtcpInterval,
		silenceOn: out.cfg.WhatsApp,
		timeout:   b.m.timeout,
		startTO:   b.m.startTimeout,
		inSilence: true,
	}
	if in.pair.rtp == nil {
		d.toDst, d.toSrc, d.toSrcRTCP = nil, nil, nil
	}
	if out.pair.rtp == nil {
		d.toDst = nil
	}
	d.tapDec = tapDecoder{b: b, side: side}
	d.rtcpFromPort = func(pkt []byte, from netip.AddrPort) { d.inboundRTCP(pkt, from, true, d.clock()) }
	d.rd.init(d)
	return d
}

func (d *direction) clock() time.Duration { return time.Since(d.epoch) }

// start schedules the direction's jobs on the pacer (Bridge.Start).
func (d *direction) start(p *Pacer, now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.started = now.Sub(d.epoch)
	if d.silenceOn {
		d.silenceFrom = d.started + silenceStart
		d.playAt = d.silenceFrom
		d.playJob = p.Schedule(d.epoch.Add(d.playAt), d.playTick)
	}
	if d.interval > 0 {
		// RFC 3550 §6.2: the first report after half an interval.
		d.rtcpJob = p.Schedule(now.Add(d.jittered()/2), d.rtcpTick)
	}
	switch {
	case d.startTO > 0:
		d.timeoutJob = p.Schedule(now.Add(d.startTO), d.timeoutTick)
	case d.timeout > 0:
		d.timeoutJob = p.Schedule(time.Time{}, d.timeoutTick) // from the first packet
	}
}

// stop ends the direction's timed work: no job touches the sockets or
// the stages after it returns. Bridge.Close calls it before releasing the
// ports.
func (d *direction) stop() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed = true
	if d.play != nil {
		d.endPlayback()
	}
	for _, j := range []*PacerJob{d.playJob, d.rtcpJob, d.timeoutJob} {
		if j != nil {
			j.Cancel()
		}
	}
}

// run reads the source side's RTP socket until the bridge closes (nil) or
// the socket keeps failing (the error for onTimeout).
func (d *direction) run() error {
	return d.rd.run()
}

// jittered is the RTCP interval randomised over [0.5, 1.5] of itself
// (RFC 3550 §6.3.1), so the calls of a busy server do not report in step.
func (d *direction) jittered() time.Duration {
	return d.interval/2 + time.Duration(rand.Int64N(int64(d.interval)+1))
}

// timeoutTick is the RTP timeout job: it checks when the source side was
// last heard from and ends the call when that is too long ago.
func (d *direction) timeoutTick(now time.Time) time.Time {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return time.Time{}
	}
	if rt := d.route.Load(); rt != d.cur {
		d.switchRoute(rt)
	}
	if d.cur != nil && d.cur.quiet {
		// The source holds and may send nothing: no timeout until its
		// next SDP says otherwise (installing routes wakes this job).
		d.confirming = false
		d.mu.Unlock()
		return time.Time{}
	}
	t := now.Sub(d.epoch)
	if rt := d.route.Load(); rt != nil && rt.absent {
		// No peer on this side yet (a call answered locally, before its
		// B): nothing to time out. Its start timeout counts from when
		// one is there.
		d.started, d.seen, d.confirming = t, false, false
		d.mu.Unlock()
		return now.Add(absentPoll)
	}
	limit, ref := d.startTO, d.started
	if d.seen {
		limit, ref = d.timeout, d.last
	}
	if limit <= 0 {
		d.mu.Unlock()
		return time.Time{} // no start timeout; woken by the first packet
	}
	if t-ref < limit {
		d.confirming = false
		d.mu.Unlock()
		return d.epoch.Add(ref + limit)
	}
	if !d.confirming {
		// A reader that was not scheduled for a while may have packets
		// queued: look again shortly before calling the side silent.
		d.confirming = true
		d.mu.Unlock()
		return now.Add(timeoutGrace)
	}
	d.mu.Unlock()
	d.b.fail(fmt.Errorf("media: no RTP from side %s for %s", d.side, limit))
	return time.Time{}
}

// handle processes one datagram (buf.b[:n]) from the source side's RTP
// socket. It reports whether it kept buf (a playout buffer holds it now);
// otherwise the caller returns it to the pool.
func (d *direction) handle(buf *packetBuf, n int, from netip.AddrPort, now time.Duration) bool {
	if s := d.in.sec.Load(); s != nil && n > 0 && s.demux(buf.b[:n], from) {
		return false // ICE or DTLS: the leg's, not the relay's
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return false
	}
	rt := d.route.Load()
	if rt != d.cur {
		d.switchRoute(rt)
	}
	if rt == nil || rt.from == nil {
		d.dropSource(from, rt)
		return false
	}
	verdict := rt.from.check(from)
	if verdict == srcReject {
		d.dropSource(from, rt)
		return false
	}
	pkt := buf.b[:n]
	if isRTCP(pkt) {
		// Multiplexed RTCP: ours to read, never forwarded (the legs'
		// SSRCs differ), and not media, so it keeps nothing alive. It
		// does not latch or move a NAT peer either: only media does.
		if verdict != srcOK {
			d.dropSource(from, rt)
			return false
		}
		d.inboundRTCP(pkt, from, false, now)
		return false
	}
	if _, ok := rtpHeaderLen(pkt); !ok || n == packetBufSize {
		d.dropInvalid(from, n)
		return false
	}
	if d.srtpIn != nil {
		var r dropReason
		if pkt, r = d.srtpIn.rtp(pkt); r != keep {
			d.drop(r, from, n)
			return false
		}
	} else if rt.from.recvKey != nil || rt.from.secure {
		d.drop(dropAuth, from, n) // no context could be built for the key
		return false
	}
	hl, ok := rtpHeaderLen(pkt) // again: padding was encrypted
	if !ok {
		d.dropInvalid(from, n)
		return false
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
			return false
		}
		d.moveRTP(rt.from, from)
	}
	d.keepalive(now)
	if !rt.ready() {
		// The other side is not known yet, or there is none (a call
		// answered locally): keys and the tap only.
		d.unrouted(pkt, hl, rt, now)
		return false
	}
	if rt.mute {
		return false // the other side holds
	}
	pt := pkt[1] & 0x7f
	if c := rt.class[pt]; c == classAudio || c == classEvent {
		d.rxBytes += uint64(n)
	}
	switch rt.class[pt] {
	case classAudio:
		d.rx.update(binary.BigEndian.Uint32(pkt[8:]), binary.BigEndian.Uint16(pkt[2:]), binary.BigEndian.Uint32(pkt[4:]), now, rt.in.rate)
		if d.play != nil {
			return false // a playback replaces it
		}
		if d.paced(rt) {
			return d.hold(buf, pkt, hl, rt, now)
		}
		d.relayAudio(pkt, hl, rt, now)
	case classEvent:
		d.rx.update(binary.BigEndian.Uint32(pkt[8:]), binary.BigEndian.Uint16(pkt[2:]), binary.BigEndian.Uint32(pkt[4:]), now, 0)
		d.event(pkt, hl, rt, now)
	default:
		d.dropInvalid(from, n)
	}
	return false
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
		if d.timeoutJob != nil && d.timeout > 0 {
			// From now on the check is against the last packet; the job
			// reschedules itself from what it finds.
			d.timeoutJob.Wake(d.epoch.Add(now + d.timeout))
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

// relayAudio sends one audio packet on at once, its header rewritten in
// place (relay toward a leg other than WhatsApp).
func (d *direction) relayAudio(pkt []byte, hl int, rt *route, now time.Duration) {
	if h := d.tapHolder(); h != nil {
		d.tapDec.decode(rt.in, binary.BigEndian.Uint16(pkt[2:]), payload(pkt, hl), h.tap)
	}
	ts := d.stream.relay(pkt, rt.pt[pkt[1]&0x7f], rt.frame)
	if d.send(pkt, len(pkt)-hl, ts, now) {
		d.forwarded.Add(1)
	}
}

// emitKind says what a packet of ours carries, for the counters.
type emitKind uint8

const (
	emitAudio    emitKind = iota // the other side's audio: forwarded
	emitSilence                  // silence toward WhatsApp
	emitPlayback                 // a playback (Bridge.Play)
)

// emitOwn sends one packet of ours built from an audio payload (the
// transcoder's output, a relayed payload played out, silence, a
// playback) with the stream's next sequence number and its current
// timestamp.
func (d *direction) emitOwn(pt uint8, frame []byte, samples int, kind emitKind, now time.Duration) {
	if len(frame)+rtpHeaderMin > packetBufSize {
		return
	}
	pb := getBuf()
	defer putBuf(pb)
	ts := d.stream.ts
	d.stream.own(pb.b[:], pt, ts, false, true)
	d.stream.ts += uint32(samples)
	n := rtpHeaderMin + copy(pb.b[rtpHeaderMin:], frame)
	if !d.send(pb.b[:n], len(frame), ts, now) {
		return
	}
	switch kind {
	case emitSilence:
		d.b.silence.Add(1)
	case emitPlayback:
		d.b.played.Add(1)
	default:
		d.forwarded.Add(1)
	}
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
	d.notifyKey(body, act, now)
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
	pb := getBuf()
	defer putBuf(pb)
	for i := range copies {
		d.stream.own(pb.b[:], rt.eventOut, d.dtmf.outTS, i == 0 && act != dtmfForward && act != dtmfEnd, false)
		block := pb.b[rtpHeaderMin : rtpHeaderMin+eventPayloadLen]
		copy(block, body[:eventPayloadLen])
		scaleEventDuration(block, rt.in.rate, rt.out.rate)
		if d.send(pb.b[:rtpHeaderMin+eventPayloadLen], eventPayloadLen, d.dtmf.outTS, now) {
			d.forwarded.Add(1)
		}
	}
}

// send writes one plain RTP packet to the destination, encrypted on an
// SDES leg, and records it for our sender reports.
func (d *direction) send(pkt []byte, payloadLen int, ts uint32, now time.Duration) bool {
	out := pkt
	if d.srtpOut != nil {
		eb := getBuf()
		defer putBuf(eb)
		enc, err := d.srtpOut.rtp(eb.b[:], pkt)
		if err != nil {
			d.logOnce(&d.loggedWrite, "media: SRTP encryption failed", "to_side", d.side.other(), "err", err)
			return false
		}
		out = enc
	} else if d.cur.to.sendKey != nil || d.cur.to.secure {
		return false // never send plain RTP to an SRTP leg
	}
	if d.cur.mute {
		return false // the destination holds: RTCP only
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
	if old := d.cur; old != nil && old.quiet && (rt == nil || !rt.quiet) {
		// Out of hold: the source's timeout counts from now (and its
		// start timeout, if it never sent).
		now := d.clock()
		d.last, d.started, d.confirming = now, now, false
	}
	d.cur = rt
	if rt == nil {
		return
	}
	if rt.from != nil {
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
	}
	// A route without a source (toward A of a call answered locally,
	// before its B) still sends: silence and playbacks.
	if rt.to == nil {
		return
	}
	if k := rt.to.sendKey; d.srtpOut == nil || !d.srtpOut.key.equal(k) {
		d.srtpOut = d.newOut(k)
	}
	d.out.tx.clock.Store(int32(rt.out.rate))
	if d.pl != nil && (!d.paced(rt) || d.pl.rate != int64(rt.in.rate)) {
		// What is held was timed for another codec or mode.
		d.pl.free()
		d.pl = nil
	}
	if d.xc != nil && (rt.mode != modeTranscode || !d.xc.matches(rt)) {
		d.xc.close()
		d.xc = nil
	}
	d.xcFailed = false
}

// transcoder returns the direction's transcode stage, made at the first
// audio packet (two libopus states are most of a transcoded call's
// memory; a held call whose sides say nothing needs none: its silence is
// precomputed). nil when it cannot be built (logged once).
func (d *direction) transcoder(rt *route) *transcodeStage {
	if d.xc != nil || d.xcFailed {
		return d.xc
	}
	xc, err := newTranscodeStage(d, rt, d.b.m.opus)
	if err != nil {
		d.xcFailed = true
		d.b.log.Error("media: cannot transcode", "from_side", d.side, "err", err)
		return nil
	}
	d.xc = xc
	return xc
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

// closeStages releases the codec state and every pooled buffer the
// direction holds (Bridge.Close, after stop).
func (d *direction) closeStages() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.xc != nil {
		d.xc.close()
		d.xc = nil
	}
	if d.pl != nil {
		d.pl.free()
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

// rtcpTick is the RTCP job: it reads the peer's RTCP from the RTCP port,
// sends ours, and passes the loss figures on.
func (d *direction) rtcpTick(wall time.Time) time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return time.Time{}
	}
	now := wall.Sub(d.epoch)
	if rt := d.route.Load(); rt != d.cur {
		d.switchRoute(rt)
	}
	rb := getBuf()
	d.rtcpSock.drain(rb.b[:packetBufSize], d.rtcpFromPort)
	putBuf(rb)
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
	return wall.Add(d.jittered())
}

func (d *direction) sendReport(rt *route, now time.Duration) {
	if (rt.from.recvKey != nil || rt.from.secure) && d.rtcpOut == nil {
		return
	}
	pkt, err := buildReport(d.in.ssrc, d.b.cname, &d.in.tx, &d.rx, now, d.interval, time.Now())
	if err != nil {
		d.logOnce(&d.loggedWrite, "media: building RTCP failed", "side", d.side, "err", err)
		return
	}
	if d.rtcpOut != nil {
		eb := getBuf()
		defer putBuf(eb)
		if pkt, err = d.rtcpOut.rtcp(eb.b[:], pkt); err != nil {
			d.logOnce(&d.loggedWrite, "media: SRTCP encryption failed", "side", d.side, "err", err)
			return
		}
	}
	conn, dst := d.toSrcRTCP, rt.from.rtcpDst()
	if rt.from.mux {
		conn = d.toSrc
	}
	if !dst.IsValid() || conn == nil {
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
	} else if rt.from.recvKey != nil || rt.from.secure {
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
