package media

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
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
	// With media.silence dtx, silence after audio goes on every 20 ms for
	// dtxHangover frames (the far decoder's output fades to quiet rather
	// than being extrapolated from the last word), then one frame every
	// dtxInterval: what an Opus encoder with DTX sends, and what a WebRTC
	// receiver expects of a quiet talker. At the start nothing was said,
	// so the first frame is followed by the gap at once. Meta needs media
	// (RTP or RTCP) at least every 20–30 s; each frame costs a system call
	// and the kernel's work for a packet, about 50 times less of both.
	dtxHangover = 10
	dtxInterval = 400 * time.Millisecond
	// timeoutGrace is the extra wait before an RTP timeout is declared.
	timeoutGrace = 50 * time.Millisecond
)

// direction moves the packets one side sends to the other side, and runs
// RTCP for the side it reads.
//
// Two kinds of work share it. Its reader (the call's reader goroutine on
// Linux, callreader_linux.go, else one of its own; owned by its Bridge,
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
	b    *Bridge
	side Side
	// rtcpMS is when the latest valid RTCP from the source side was
	// read, in milliseconds on the direction's clock: a holding peer
	// that reports while it holds is timed out on its reports
	// (holdTimeout). Guarded by mu; here, in the padding after side, so
	// that a direction stays in Go's 1,024-byte size class. A call past
	// 24 days wraps it negative and is no longer timed out on hold.
	rtcpMS  int32
	in, out *legState // in faces the source side, out the destination
	route   *atomic.Pointer[route]
	// forwarded counts media packets written to the destination.
	forwarded *atomic.Uint64
	rtcpSock  rtcpSocket
	// toDst writes RTP to the destination (its leg's RTP socket);
	// toSrc and toSrcRTCP write RTCP to the source side from its leg's
	// RTP (rtcp-mux) and RTCP sockets. Tests swap in fakes.
	toDst, toSrc, toSrcRTCP packetWriter

	epoch    time.Time
	interval time.Duration
	timeout  time.Duration
	startTO  time.Duration
	// silenceOn: the destination is a WhatsApp leg. Set once, like the
	// fields above; next to mu's booleans only so that the struct packs
	// (a direction is 1,024 bytes, Go's 1,024-byte size class, where
	// booleans between wider fields took 1,056 and the 1,152 class).
	silenceOn bool

	mu     sync.Mutex // guards everything below
	closed bool
	// The flags, together so that they pack.
	xcFailed   bool // building xc failed for this route
	seen       bool // a valid packet arrived from the source side
	confirming bool // a timeout was seen once; checking again
	outBased   bool // outEnd is set: a paced packet was sent
	inSilence  bool // the last paced packet was silence (or none yet)

	loggedSource, loggedInvalid, loggedWrite, loggedAuth, loggedCodec, loggedNoEvent bool

	cur *route // the route in force

	srtpIn  *srtpIn  // decrypts the source; nil on plain legs
	rtcpOut *srtpOut // encrypts our RTCP to the source
	srtpOut *srtpOut // encrypts our RTP to the destination
	rx      rxStats
	// For the call's media report (Bridge.Report, after Close).
	rxBytes, srtpAuth, srtpReplay, late uint64
	stream                              outStream
	dtmf                                dtmfState
	xc                                  *transcodeStage
	pl                                  *playout // the playout buffer, from the first paced packet
	tapDec                              tapDecoder
	tapSeen                             *tapHolder
	inb                                 inbandState

	// started is when Start ran, for the start timeout; while the source
	// holds (its route is quiet), when the hold began.
	started time.Duration
	last    time.Duration // when the latest valid packet arrived

	playJob, rtcpJob, timeoutJob *PacerJob
	play                         *Playback // playing toward the destination instead of the source's audio
	// playAt is the intended time of the next play tick (0: the job is
	// idle); silenceFrom is when silence toward WhatsApp may start.
	playAt, silenceFrom time.Duration
	// outEnd is when the audio of the last paced packet ends on the
	// schedule (if outBased), for the timestamp of the next talk spurt.
	outEnd time.Duration
	// silenceRun counts the silence frames sent since the last audio;
	// silenceDue is when the next one is (with DTX, after the gap).
	silenceRun int
	silenceDue time.Duration

	rtcpFromPort func(pkt []byte, from netip.AddrPort)
	// rtpMove and rtcpMove follow a latched NAT peer's would-be new
	// source of RTP and of RTCP on the RTCP port.
	rtpMove, rtcpMove moveRun

	// live is what Bridge.Live reads while the call runs.
	live liveStats

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
		// The start is no end of speech: no hangover.
		silenceRun: dtxHangover,
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
	pt := pkt[1] & 0x7f
	if rt.class[pt] != classDrop {
		d.rxBytes += uint64(n)
	}
	switch rt.class[pt] {
	case classAudio, classOtherLaw:
		d.rx.update(binary.BigEndian.Uint32(pkt[8:]), binary.BigEndian.Uint16(pkt[2:]), binary.BigEndian.Uint32(pkt[4:]), now, rt.in.rate)
		if rt.mute {
			// The other side holds: nothing goes to it, but the packet
			// was received (our reports to its sender say so).
			return false
		}
		if rt.class[pt] == classOtherLaw {
			convertLaw(payload(pkt, hl), lawConversion(rt.in.name))
		}
		if d.play != nil && (!d.play.under || !d.paced(rt) || quietPayload(rt.in.name, payload(pkt, hl))) {
			// A playback replaces it; one that gives way (GiveWay) only
			// to sound: a held PBX streaming silence is not music.
			return false
		}
		if d.paced(rt) {
			return d.hold(buf, pkt, hl, rt, now)
		}
		d.relayAudio(pkt, hl, rt, now)
	case classEvent:
		d.rx.update(binary.BigEndian.Uint32(pkt[8:]), binary.BigEndian.Uint16(pkt[2:]), binary.BigEndian.Uint32(pkt[4:]), now, 0)
		if !rt.mute {
			d.event(pkt, hl, rt, now)
		}
	case classDrop:
		if !rt.mute {
			d.dropInvalid(from, n)
		}
	}
	return false
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

// closedOr maps an error from a closed socket to nil (the bridge is being
// closed) and wraps anything else.
func (d *direction) closedOr(err error) error {
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return fmt.Errorf("media: side %s socket: %w", d.side, err)
}
