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
	d.b.fail(fmt.Errorf("media: no RTP from side %s for %s", d.side, limit))
	return time.Time{}
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
