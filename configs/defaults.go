package configs

import (
	"fmt"
	"net"
	"net/netip"
	"time"
)

// Default values. They are what the embedded default config relies on, so a
// change here changes how a fresh install behaves.
const (
	DefaultSIPAddress      = "127.0.0.1:5072"
	DefaultUserAgent       = "wagate"
	DefaultRingTimeout     = Duration(60 * time.Second)
	DefaultEndpointPort    = 5060
	DefaultTransport       = "udp"
	DefaultMediaBindIP     = "127.0.0.1"
	DefaultPortMin         = 30000
	DefaultPortMax         = 40000
	DefaultPortQuarantine  = Duration(2 * time.Second)
	DefaultRTPTimeout      = Duration(30 * time.Second)
	DefaultRTPStartTimeout = Duration(60 * time.Second)
	DefaultAPIListen       = "127.0.0.1:8080"
	DefaultLogLevel        = "info"
	DefaultLogFormat       = "text"
	DefaultRecordingDir    = "recordings"
)

// Codec names as wagate spells them.
const (
	CodecOpus = "opus"
	CodecPCMU = "PCMU"
	CodecPCMA = "PCMA"
)

// DefaultCodecs returns the codecs, in order of preference, an endpoint of
// kind gets when it lists none: WhatsApp speaks Opus natively, so offering
// it first avoids transcoding; PBXs and dialers are assumed to be G.711.
func DefaultCodecs(kind string) []string {
	switch kind {
	case KindWhatsApp:
		return []string{CodecOpus, CodecPCMU, CodecPCMA}
	case KindPBX, KindDialer:
		return []string{CodecPCMU, CodecPCMA}
	}
	return nil
}

// applyDefaults fills every key the file leaves out. It asks the tree
// whether a key was written rather than testing for zero: an explicit
// `listen: ""` under api turns the API off, and an explicit `port: 0` is a
// mistake to report, not a request for the default.
func applyDefaults(c *Config, t tree) {
	set := t.has
	str := func(dst *string, path, def string) {
		if !set(path) {
			*dst = def
		}
	}
	num := func(dst *int, path string, def int) {
		if !set(path) {
			*dst = def
		}
	}
	dur := func(dst *Duration, path string, def Duration) {
		if !set(path) {
			*dst = def
		}
	}

	if set("sip.listen") {
		for i := range c.SIP.Listen {
			l := &c.SIP.Listen[i]
			str(&l.Transport, fmt.Sprintf("sip.listen[%d].transport", i), DefaultTransport)
			str(&l.Address, fmt.Sprintf("sip.listen[%d].address", i), DefaultSIPAddress)
		}
	} else {
		c.SIP.Listen = []Listener{
			{Transport: "udp", Address: DefaultSIPAddress},
			{Transport: "tcp", Address: DefaultSIPAddress},
		}
	}
	str(&c.SIP.Host, "sip.host", hostOf(c.SIP.Listen))
	str(&c.SIP.UserAgent, "sip.user_agent", DefaultUserAgent)
	dur(&c.SIP.RingTimeout, "sip.ring_timeout", DefaultRingTimeout)

	for i := range c.Endpoints {
		e := &c.Endpoints[i]
		p := fmt.Sprintf("endpoints[%d]", i)
		str(&e.Transport, p+".transport", DefaultTransport)
		num(&e.Port, p+".port", DefaultEndpointPort)
		if !set(p + ".codecs") {
			e.Codecs = DefaultCodecs(e.Kind)
		}
	}

	m := &c.Media
	str(&m.BindIP, "media.bind_ip", DefaultMediaBindIP)
	if !set("media.advertise_ip") {
		// A wildcard bind says nothing about which address peers can
		// reach; validation then asks for advertise_ip explicitly.
		if ip, err := netip.ParseAddr(m.BindIP); err == nil && !ip.IsUnspecified() {
			m.AdvertiseIP = m.BindIP
		}
	}
	num(&m.PortMin, "media.port_min", DefaultPortMin)
	num(&m.PortMax, "media.port_max", DefaultPortMax)
	dur(&m.PortQuarantine, "media.port_quarantine", DefaultPortQuarantine)
	dur(&m.RTPTimeout, "media.rtp_timeout", DefaultRTPTimeout)
	dur(&m.RTPStartTimeout, "media.rtp_start_timeout", DefaultRTPStartTimeout)

	str(&c.API.Listen, "api.listen", DefaultAPIListen)
	str(&c.Log.Level, "log.level", DefaultLogLevel)
	str(&c.Log.Format, "log.format", DefaultLogFormat)
	str(&c.Recording.Directory, "recording.directory", DefaultRecordingDir)
}

// hostOf derives sip.host from the first listener. A wildcard or missing
// address is no name for peers to reach, so it falls back to loopback, which
// is right for the default config and wrong (and documented as such) for a
// server: production configs set sip.host.
func hostOf(ls []Listener) string {
	if len(ls) > 0 {
		if h, _, err := net.SplitHostPort(ls[0].Address); err == nil {
			if ip, err := netip.ParseAddr(h); err == nil && !ip.IsUnspecified() {
				return ip.String()
			}
		}
	}
	return "127.0.0.1"
}
