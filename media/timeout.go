// RTP timeouts: the pacer job that ends a call whose source side went
// quiet, and the keepalive that every valid packet records.

package media

import (
	"fmt"
	"time"
)

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
	t := now.Sub(d.epoch)
	if d.cur != nil && d.cur.quiet {
		return d.holdTimeout(now, t)
	}
	if rt := d.route.Load(); rt != nil && rt.absent {
		// No peer on this side yet (a call answered locally, before its
		// B): nothing to time out. Its start timeout counts from when
		// one is there.
		d.started, d.seen, d.confirming = t, false, false
		d.mu.Unlock()
		return d.b.m.pacer.Coarse(now.Add(absentPoll))
	}
	limit, ref := d.startTO, d.started
	if d.seen {
		limit, ref = d.timeout, d.last
	}
	if limit <= 0 {
		d.mu.Unlock()
		return time.Time{} // no start timeout; woken by the first packet
	}
	return d.expire(now, t, ref, limit, "no RTP from side %s for %s")
}

// expire ends the call when the source was last heard from (ref) limit
// or more ago (t is now on d's clock), failing it with format (side,
// limit), and otherwise says when to look again. Called with d.mu held;
// it unlocks it.
func (d *direction) expire(now time.Time, t, ref, limit time.Duration, format string) time.Time {
	if t-ref < limit {
		d.confirming = false
		d.mu.Unlock()
		return d.b.m.pacer.Coarse(d.epoch.Add(ref + limit))
	}
	if !d.confirming {
		// A reader that was not scheduled for a while may have packets
		// queued: look again shortly before calling the side silent.
		d.confirming = true
		d.mu.Unlock()
		return now.Add(timeoutGrace)
	}
	d.mu.Unlock()
	d.b.fail(fmt.Errorf("media: "+format, d.side, limit))
	return time.Time{}
}

// holdTimeout is timeoutTick for a source that holds (sendonly,
// inactive): it may send no RTP however long the hold, but RTCP goes on
// while a stream is held (RFC 3264 §5.1), so a peer that has reported
// during this hold and then stops reporting, and sending, for the RTP
// timeout (plus the interval at which wagate reads a separate RTCP port)
// is gone: a PBX that crashed or lost its network with the call on hold,
// which before held the WhatsApp user on music, the call's ports and
// Meta's per-user and concurrency counts until the user hung up. A peer
// that sends no RTCP while it holds is never timed out on hold. Called
// with d.mu held; it unlocks it.
func (d *direction) holdTimeout(now time.Time, t time.Duration) time.Time {
	if d.timeout <= 0 || d.cur.linked || d.cur.replacing {
		// No timeout; or the source is another call's side (Link), whose
		// reports stop only when that call ends, and its own timeouts
		// end it; or its peer is being replaced (a transfer rings its
		// target): the transferring agent who hangs up stops its RTCP
		// too, and the caller must not be dropped for it.
		d.confirming = false
		d.mu.Unlock()
		return time.Time{} // installing the routes of a resume wakes it
	}
	rtcpAt := time.Duration(d.rtcpMS) * time.Millisecond
	if rtcpAt <= d.started+d.interval*3/2 {
		// Nothing reported in this hold (yet): look again later. A
		// separate RTCP port is read once an interval (at most 1.5 of
		// it apart), so a report read sooner may have been sent before
		// the hold: a peer that stops reporting when it holds must not
		// be timed out on it.
		d.confirming = false
		d.mu.Unlock()
		return d.b.m.pacer.Coarse(now.Add(d.timeout))
	}
	return d.expire(now, t, max(rtcpAt, d.last), d.timeout+d.interval*3/2, "no RTP or RTCP from side %s on hold for %s")
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
