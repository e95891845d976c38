// A direction's RTCP: the jittered report timer, our reports to the
// source side, and the handling of the reports it sends us (see rtcp.go
// for the packets themselves).

package media

import (
	"errors"
	"math/rand/v2"
	"net"
	"net/netip"
	"time"
)

// jittered is the RTCP interval randomised over [0.5, 1.5] of itself
// (RFC 3550 §6.3.1), so the calls of a busy server do not report in step.
func (d *direction) jittered() time.Duration {
	return d.interval/2 + time.Duration(rand.Int64N(int64(d.interval)+1))
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
	return d.b.m.pacer.Coarse(wall.Add(d.jittered()))
}

func (d *direction) sendReport(rt *route, now time.Duration) {
	if (rt.from.recvKey != nil || rt.from.secure) && d.rtcpOut == nil {
		return
	}
	rb := getBuf()
	defer putBuf(rb)
	pkt := appendReport(rb.b[:0], d.in.ssrc, d.b.cname, &d.in.tx, &d.rx, now, d.interval, time.Now())
	if d.rtcpOut != nil {
		var err error
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
	d.rtcpMS = int32(now / time.Millisecond)
	if info.sr != 0 {
		d.rx.lastSR, d.rx.lastSRAt = info.sr, time.Now()
	}
	if info.lossPct >= 0 {
		d.in.peerLoss.Store(int32(info.lossPct))
	}
}
