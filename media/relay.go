package media

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync/atomic"
	"time"
)

const (
	// packetBufSize is one direction's receive buffer. An RTP packet on a
	// 1,500-byte MTU carries at most 1,472 bytes of UDP payload, so a read
	// that fills the buffer was truncated (or is not RTP) and is dropped.
	packetBufSize = 1500
	// maxReadErrors ends a direction whose socket keeps failing in ways
	// other than close or deadline, instead of spinning on it.
	maxReadErrors = 100
)

// route is one direction's view of the negotiated session. Signalling
// replaces it wholesale (AnswerB after a 183, then the 200) through an
// atomic pointer, so the relay reads a consistent snapshot per packet
// without locks.
type route struct {
	// src is the only source accepted, unmapped; invalid drops everything.
	src netip.AddrPort
	// dst is where packets go; invalid while the other side is unknown.
	dst netip.AddrPort
	// pt maps incoming payload types to the destination's.
	pt ptMap
	// frame is the timestamp step of one packet of the incoming stream,
	// used to continue the outgoing stream across an SSRC change.
	frame uint32
}

func (r *route) accepts(from netip.AddrPort) bool {
	return r.src.IsValid() && netip.AddrPortFrom(from.Addr().Unmap(), from.Port()) == r.src
}

// A stage is what one direction does with a valid RTP packet from the
// source side. relayStage (same codec both sides) maps the payload type and
// re-originates the header in place; the transcoding stage (later) will sit
// here too where the legs' codecs differ, decoding and re-encoding, which is
// why a stage may emit zero or several packets per packet in.
type stage interface {
	// push handles pkt (a valid RTP packet it may modify in place) under
	// route rt and calls out.send for each packet to emit. It reports
	// false if the packet is not part of the negotiated session
	// (payload type neither the codec nor telephone-event).
	push(pkt []byte, rt *route, out sender) bool
}

// sender writes one packet to the destination side.
type sender interface {
	send(pkt []byte)
}

// relayStage forwards packets unchanged but for the header.
type relayStage struct {
	ro reoriginator
}

func (s *relayStage) push(pkt []byte, rt *route, out sender) bool {
	pt := rt.pt[pkt[1]&0x7f]
	if pt == ptDrop {
		return false
	}
	s.ro.rewrite(pkt, pt, rt.frame)
	out.send(pkt)
	return true
}

// direction relays the packets one side sends to the other side. It is run
// by exactly one goroutine, owned by its Bridge, which ends it by closing
// the sockets.
type direction struct {
	b     *Bridge
	side  string       // the side whose packets this direction reads
	in    *net.UDPConn // faces the source side
	out   *net.UDPConn // faces the destination side
	route *atomic.Pointer[route]
	stage stage
	// forwarded counts packets written to the destination.
	forwarded *atomic.Uint64

	buf []byte
	cur *route // route of the packet being pushed, for send

	loggedSource, loggedInvalid, loggedWrite bool
}

func newDirection(b *Bridge, side string, in, out *net.UDPConn, rt *atomic.Pointer[route], forwarded *atomic.Uint64) *direction {
	return &direction{
		b:         b,
		side:      side,
		in:        in,
		out:       out,
		route:     rt,
		stage:     &relayStage{ro: newReoriginator()},
		forwarded: forwarded,
		buf:       make([]byte, packetBufSize),
	}
}

func (d *direction) send(pkt []byte) {
	if _, err := d.out.WriteToUDPAddrPort(pkt, d.cur.dst); err != nil {
		if !d.loggedWrite && !errors.Is(err, net.ErrClosed) {
			d.loggedWrite = true
			d.b.log.Warn("media: relay write failed", "from_side", d.side, "to", d.cur.dst, "err", err)
		}
		return
	}
	d.forwarded.Add(1)
}

// run relays until the sockets close (nil) or the source side times out or
// its socket fails (the error for onTimeout).
//
// Timeouts use the socket's read deadline, not a ticker: the deadline is
// armed once, and only when it fires is it compared with the last valid
// packet and moved on, so a steady stream costs one time.Now per packet and
// no timer updates.
func (d *direction) run(startTimeout, timeout time.Duration) error {
	var (
		seen bool      // a valid packet arrived from the source side
		last time.Time // when the latest one arrived
	)
	if startTimeout > 0 {
		if err := d.in.SetReadDeadline(time.Now().Add(startTimeout)); err != nil {
			return d.closedOr(err)
		}
	}
	readErrs := 0
	for {
		n, from, err := d.in.ReadFromUDPAddrPort(d.buf)
		if err != nil {
			switch {
			case errors.Is(err, net.ErrClosed):
				return nil
			case errors.Is(err, os.ErrDeadlineExceeded):
				if !seen {
					return fmt.Errorf("media: no RTP from side %s for %s", d.side, startTimeout)
				}
				if idle := time.Since(last); idle >= timeout {
					return fmt.Errorf("media: no RTP from side %s for %s", d.side, timeout)
				}
				if err := d.in.SetReadDeadline(last.Add(timeout)); err != nil {
					return d.closedOr(err)
				}
				continue
			}
			readErrs++
			if readErrs >= maxReadErrors {
				return fmt.Errorf("media: read RTP from side %s: %w", d.side, err)
			}
			continue
		}
		readErrs = 0

		rt := d.route.Load()
		if rt == nil || !rt.accepts(from) {
			d.b.droppedSource.Add(1)
			if !d.loggedSource {
				d.loggedSource = true
				d.b.log.Info("media: dropping RTP from unexpected source", "side", d.side, "from", from, "expected", routeSrc(rt))
			}
			continue
		}
		pkt := d.buf[:n]
		if isRTCP(pkt) {
			// Multiplexed RTCP: not forwarded (the legs' SSRCs differ) and
			// not media, so it does not keep the call alive either.
			continue
		}
		if _, ok := rtpHeaderLen(pkt); !ok || n == len(d.buf) {
			d.dropInvalid(from, n)
			continue
		}
		if timeout > 0 || startTimeout > 0 {
			last = time.Now()
			if !seen {
				seen = true
				var deadline time.Time // zero: no deadline
				if timeout > 0 {
					deadline = last.Add(timeout)
				}
				if err := d.in.SetReadDeadline(deadline); err != nil {
					return d.closedOr(err)
				}
			}
		}
		if !rt.dst.IsValid() {
			continue // the other side is not known yet
		}
		d.cur = rt
		if !d.stage.push(pkt, rt, d) {
			d.dropInvalid(from, n)
		}
	}
}

func (d *direction) dropInvalid(from netip.AddrPort, n int) {
	d.b.droppedInvalid.Add(1)
	if !d.loggedInvalid {
		d.loggedInvalid = true
		d.b.log.Debug("media: dropping invalid or unnegotiated RTP", "side", d.side, "from", from, "len", n)
	}
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
	if rt == nil || !rt.src.IsValid() {
		return slog.StringValue("none yet")
	}
	return slog.StringValue(rt.src.String())
}
