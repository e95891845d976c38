// Drops: counting and logging (once per kind) the inbound packets a
// direction discards.

package media

import "net/netip"

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
