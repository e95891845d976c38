// Validation of the media section: bind and advertised addresses, the
// port range, RTP timeouts, jitter buffer, DTLS, ICE and Opus settings.

package configs

import (
	"net/netip"
	"time"
)

func (v validator) media() {
	m := &v.c.Media
	bind, bindErr := netip.ParseAddr(m.BindIP)
	if bindErr != nil {
		v.add("media.bind_ip", "%q is not an IP address", m.BindIP)
	}
	switch {
	case m.AdvertiseIP != "":
		if ip, err := netip.ParseAddr(m.AdvertiseIP); err != nil {
			v.add("media.advertise_ip", "%q is not an IP address", m.AdvertiseIP)
		} else if ip.IsUnspecified() {
			v.add("media.advertise_ip", "%s cannot be reached by peers; give the address they should send RTP to", m.AdvertiseIP)
		}
	case bindErr != nil:
		// Nothing to default from; the bind_ip problem says it all.
	case bind.IsUnspecified():
		v.addAt("media.bind_ip", "media.advertise_ip", "is required when bind_ip is %s: peers must be told an address they can reach", m.BindIP)
	default:
		v.add("media.advertise_ip", "must not be empty; remove the key to advertise bind_ip")
	}

	minOK := v.mediaPort("media.port_min", m.PortMin)
	maxOK := v.mediaPort("media.port_max", m.PortMax)
	if minOK && m.PortMin%2 != 0 {
		v.add("media.port_min", "%d is odd; RTP takes the even port of each pair", m.PortMin)
		minOK = false
	}
	if minOK && maxOK {
		switch pairs := (m.PortMax - m.PortMin + 1) / 2; {
		case m.PortMin > m.PortMax:
			v.add("media.port_min", "%d is above port_max %d; the port range is reversed", m.PortMin, m.PortMax)
		case pairs < 2:
			v.add("media.port_max", "the range %d–%d holds %d RTP/RTCP port pair(s); at least 2 are needed", m.PortMin, m.PortMax, pairs)
		}
	}
	v.positive("media.port_quarantine", m.PortQuarantine)
	if m.MaxBoundPairs < 0 {
		v.add("media.max_bound_pairs", "%d is negative; use 0 to derive it from the open-files limit", m.MaxBoundPairs)
	}
	v.positive("media.rtp_timeout", m.RTPTimeout)
	v.positive("media.rtp_start_timeout", m.RTPStartTimeout)

	if m.RTCPInterval < Duration(time.Second) {
		v.add("media.rtcp_interval", "%s is below 1s", m.RTCPInterval)
	}
	jb := m.JitterBuffer
	switch {
	case jb.single && (jb.Max < 0 || jb.Max > Duration(time.Second)):
		v.add("media.jitter_buffer", "%s is outside 0s–1s", jb.Max)
	case jb.Min < 0 || jb.Min > Duration(time.Second):
		v.add("media.jitter_buffer.min", "%s is outside 0s–1s", jb.Min)
	case jb.Max < 0 || jb.Max > Duration(time.Second):
		v.add("media.jitter_buffer.max", "%s is outside 0s–1s", jb.Max)
	case jb.Min > jb.Max:
		v.add("media.jitter_buffer.min", "%s is above max %s; the buffer's depth stays between min and max", jb.Min, jb.Max)
	}
	if m.Silence != "dtx" && m.Silence != "continuous" {
		v.add("media.silence", "%q is neither dtx (a silence frame every 400 ms while nothing is said) nor continuous (every 20 ms)", m.Silence)
	}
	if n := m.RelatchPackets; n < 0 || n > MaxRelatchPackets {
		v.add("media.relatch_packets", "%d is outside 0–%d (0: a latched peer never moves)", n, MaxRelatchPackets)
	}
	if d := m.DTLS.HandshakeTimeout; d < Duration(time.Second) || d > Duration(time.Minute) {
		v.add("media.dtls.handshake_timeout", "%s is outside 1s–1m", d)
	}
	if d := m.ICE.ConsentTimeout; d < Duration(3*time.Second) || d > Duration(10*time.Minute) {
		v.add("media.ice.consent_timeout", "%s is outside 3s–10m (RFC 7675 uses 30s)", d)
	}
	if b := m.Opus.Bitrate; b < 6000 || b > 510000 {
		v.add("media.opus.bitrate", "%d is outside Opus's 6000–510000 bit/s", b)
	}
	if cx := m.Opus.Complexity; cx < 0 || cx > 10 {
		v.add("media.opus.complexity", "%d is outside 0–10", cx)
	}
}

// mediaPort keeps media ports off the privileged range, where binding needs
// root and where well-known services live.
func (v validator) mediaPort(path string, port int) bool {
	if port < 1024 || port > 65535 {
		v.add(path, "%d is outside 1024–65535", port)
		return false
	}
	return true
}
