package configs

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
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

	DefaultDataDir = "data"
	// DefaultTLSPort is the port of an endpoint whose transport is tls and
	// which gives none (RFC 3261's port for SIP over TLS).
	DefaultTLSPort = 5061
	// MetaSIPDomain is the name Meta's SIP servers present in their TLS
	// certificate and use as the realm of their digest challenges.
	MetaSIPDomain = "wa.meta.vc"

	// Media encryption of an endpoint's RTP.
	MediaEncryptionDTLS = "dtls" // ICE + DTLS-SRTP (UDP/TLS/RTP/SAVP[F])
	MediaEncryptionSDES = "sdes" // RTP/SAVP with a=crypto (SDES-SRTP)
	MediaEncryptionNone = "none" // plain RTP/AVP

	DefaultNonceTTL      = Duration(5 * time.Minute)
	DefaultMaxFailures   = 10
	DefaultFailureWindow = Duration(time.Minute)

	DefaultRTCPInterval = Duration(5 * time.Second)
	// The playout buffer's depth follows the measured jitter within
	// these bounds (media.jitter_buffer.min and .max).
	DefaultJitterMin      = Duration(20 * time.Millisecond)
	DefaultJitterMax      = Duration(120 * time.Millisecond)
	DefaultRelatchPackets = 10
	// DefaultSilence is media.silence: discontinuous silence toward
	// WhatsApp (docs/media.md "Toward WhatsApp").
	DefaultSilence = "dtx"

	DefaultDTLSHandshakeTimeout = Duration(10 * time.Second)
	DefaultICEConsentTimeout    = Duration(30 * time.Second)

	// Prefer values of a whatsapp endpoint.
	PreferTranscode   = "transcode"
	PreferPassthrough = "passthrough"
	// MaxRelatchPackets bounds media.relatch_packets: 1000 packets are 20 s
	// of a 20 ms stream, past which a peer that moved has lost its call.
	MaxRelatchPackets = 1000

	DefaultOpusBitrate     = 20000
	DefaultOpusComplexity  = 5
	DefaultOpusFEC         = true
	DefaultPermissionStore = "permissions.db" // under data_dir

	DefaultPermissionBackend = PermissionBackendBolt
	DefaultRedisAddress      = "127.0.0.1:6379"
	DefaultRedisPrefix       = "wagate:"
	DefaultRedisSlotTTL      = Duration(15 * time.Second)
	DefaultRedisTimeout      = Duration(300 * time.Millisecond)
	DefaultRedisOnDown       = "refuse"
	DefaultRedisWaitTimeout  = Duration(time.Second)

	// The SIP edge (docs/security.md).
	UnknownSourcesDrop       = "drop"
	UnknownSourcesReject     = "reject"
	DefaultMaxMessageSize    = 32 << 10
	DefaultMaxHeaders        = 100
	DefaultMaxBodySize       = 16 << 10
	DefaultStrangerRate      = 10
	DefaultFloodBlockTime    = Duration(60 * time.Second)
	DefaultMaxTCPConnections = 4096
	DefaultMaxTCPPerSource   = 64
	// DefaultPacedRequestRate: docs/security.md, "Pipelined requests".
	DefaultPacedRequestRate    = 2000
	DefaultTCPIdleTimeout      = Duration(120 * time.Second)
	DefaultTLSHandshakeTimeout = Duration(10 * time.Second)
	DefaultTransactionLinger   = Duration(5 * time.Second)
	// DefaultHEPAgentID is the capture agent id of HEP packets, as in
	// Kamailio's and OpenSIPS's HEP senders.
	DefaultHEPAgentID = 1

	// Hunt lists, probes and blocklists (docs/sip.md "Hunt lists").
	DefaultHuntStrategy  = HuntSequential
	DefaultHuntOnDecline = DeclineStop
	// DefaultHuntRejectBackoff: an agent who rejected or missed a queued
	// call is left alone this long (docs/callflow.md "Queues").
	DefaultHuntRejectBackoff = Duration(10 * time.Second)
	DefaultProbeInterval     = Duration(10 * time.Second)
	DefaultProbeTimeout      = Duration(5 * time.Second)
	DefaultProbeDownAfter    = 3
	DefaultProbeUpAfter      = 2
	// DefaultBlocklistCode is 603 Decline: the business declines the
	// call, and a caller's client shows it as declined, not as a fault.
	DefaultBlocklistCode = 603

	DefaultRecordingSampleRate = 8000
	DefaultRecordingNameBy     = "a"

	// EventsDBName is the file, under data_dir, of the CDRs and the event
	// outbox.
	EventsDBName             = "events.db"
	DefaultCDRRetentionDays  = 90
	DefaultEventsMaxAttempts = 30
	DefaultEventsBackoffBase = Duration(time.Second)
	DefaultEventsBackoffMax  = Duration(10 * time.Minute)
	DefaultEventsQueueSize   = 10000
	// DefaultEventsMaxPending: about 1.5 GB of outbox per subscriber,
	// some 40 minutes of a 100 calls/s centre with every event taken.
	DefaultEventsMaxPending      = 1000000
	DefaultEventsRetentionDays   = 7
	DefaultSubscriberTimeout     = Duration(10 * time.Second)
	DefaultSubscriberConcurrency = 4
	// fallbackNodeID names the node when the host name cannot be used.
	fallbackNodeID = "wagate"
)

// DefaultNodeID returns the node id a config without node_id gets: the host
// name, cut at the first character a node id may not hold (a host name is
// almost always fine), or "wagate" when there is none.
func DefaultNodeID() string {
	h, err := os.Hostname()
	if err != nil {
		return fallbackNodeID
	}
	if i := strings.IndexFunc(h, func(r rune) bool { return !nodeIDChar(r) }); i >= 0 {
		h = h[:i]
	}
	if h == "" || len(h) > maxNodeIDLen {
		return fallbackNodeID
	}
	return h
}

// DefaultPermissionLimits returns WhatsApp's call-permission rules as Meta
// documents them (DESIGN.md §5).
func DefaultPermissionLimits() PermissionLimits {
	return PermissionLimits{
		TemporaryTTL:               Duration(168 * time.Hour),
		ConnectedCallsPerUser24h:   100,
		ConsecutiveUnansweredMax:   4,
		ConsecutiveUnansweredNudge: 2,
		NewCallsPerNumber24h:       10000,
		ConcurrentCallsPerNumber:   1000,
		RequestsPer24h:             1,
		RequestsPer7d:              2,
	}
}

// DefaultMediaEncryption returns the media encryption an endpoint of kind
// gets when it names none: Meta requires SRTP; PBXs and dialers are assumed
// to speak plain RTP on a trusted network.
func DefaultMediaEncryption(kind string) string {
	if kind == KindWhatsApp {
		return MediaEncryptionSDES
	}
	return MediaEncryptionNone
}

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
	str(&c.SIP.UnknownSources, "sip.unknown_sources", UnknownSourcesDrop)
	num(&c.SIP.Limits.MaxMessageSize, "sip.limits.max_message_size", DefaultMaxMessageSize)
	num(&c.SIP.Limits.MaxHeaders, "sip.limits.max_headers", DefaultMaxHeaders)
	num(&c.SIP.Limits.MaxBodySize, "sip.limits.max_body_size", DefaultMaxBodySize)
	num(&c.SIP.Flood.StrangerRate, "sip.flood.stranger_rate", DefaultStrangerRate)
	dur(&c.SIP.Flood.BlockTime, "sip.flood.block_time", DefaultFloodBlockTime)
	num(&c.SIP.TCP.MaxConnections, "sip.tcp.max_connections", DefaultMaxTCPConnections)
	num(&c.SIP.TCP.MaxConnectionsPerSource, "sip.tcp.max_connections_per_source", DefaultMaxTCPPerSource)
	dur(&c.SIP.TCP.IdleTimeout, "sip.tcp.idle_timeout", DefaultTCPIdleTimeout)
	num(&c.SIP.TCP.PacedRequestRate, "sip.tcp.paced_request_rate", DefaultPacedRequestRate)
	dur(&c.SIP.TCP.TLSHandshakeTimeout, "sip.tcp.tls_handshake_timeout", DefaultTLSHandshakeTimeout)
	dur(&c.SIP.TransactionLinger, "sip.transaction_linger", DefaultTransactionLinger)
	if h := c.SIP.Trace.HEP; h != nil {
		num(&h.AgentID, "sip.trace.hep.agent_id", DefaultHEPAgentID)
	}

	str(&c.DataDir, "data_dir", DefaultDataDir)

	for i := range c.Endpoints {
		e := &c.Endpoints[i]
		p := fmt.Sprintf("endpoints[%d]", i)
		str(&e.Transport, p+".transport", DefaultTransport)
		tls := strings.EqualFold(e.Transport, "tls")
		if tls {
			num(&e.Port, p+".port", DefaultTLSPort)
		} else {
			num(&e.Port, p+".port", DefaultEndpointPort)
		}
		if !set(p + ".codecs") {
			e.Codecs = DefaultCodecs(e.Kind)
		}
		str(&e.MediaEncryption, p+".media_encryption", DefaultMediaEncryption(e.Kind))
		if e.Kind == KindWhatsApp {
			str(&e.Prefer, p+".prefer", PreferTranscode)
		}
		if tls && e.Kind == KindWhatsApp {
			// Meta's certificate names wa.meta.vc whatever address or
			// name the endpoint's host is written as.
			str(&e.TLSServerName, p+".tls_server_name", MetaSIPDomain)
		} else {
			str(&e.TLSServerName, p+".tls_server_name", e.Host)
		}
		if e.Kind == KindWhatsApp {
			str(&e.DigestRealm, p+".digest_realm", MetaSIPDomain)
		}
		if a := e.Auth; a != nil {
			str(&a.Realm, p+".auth.realm", c.SIP.Host)
			dur(&a.NonceTTL, p+".auth.nonce_ttl", DefaultNonceTTL)
			num(&a.MaxFailures, p+".auth.max_failures", DefaultMaxFailures)
			dur(&a.FailureWindow, p+".auth.failure_window", DefaultFailureWindow)
		}
		if pr := e.Probe; pr != nil {
			dur(&pr.Interval, p+".probe.interval", DefaultProbeInterval)
			dur(&pr.Timeout, p+".probe.timeout", min(DefaultProbeTimeout, pr.Interval))
			num(&pr.DownAfter, p+".probe.down_after", DefaultProbeDownAfter)
			num(&pr.UpAfter, p+".probe.up_after", DefaultProbeUpAfter)
		}
	}

	for i := range c.HuntLists {
		h := &c.HuntLists[i]
		p := fmt.Sprintf("hunt_lists[%d]", i)
		str(&h.Strategy, p+".strategy", DefaultHuntStrategy)
		str(&h.OnDecline, p+".on_decline", DefaultHuntOnDecline)
		dur(&h.RejectBackoff, p+".reject_backoff", DefaultHuntRejectBackoff)
		dur(&h.RingTimeout, p+".ring_timeout", c.SIP.RingTimeout)
		for j := range h.Targets {
			dur(&h.Targets[j].RingTimeout, fmt.Sprintf("%s.targets[%d].ring_timeout", p, j), h.RingTimeout)
		}
	}
	if b := c.Blocklist; b != nil {
		num(&b.Code, "blocklist.code", DefaultBlocklistCode)
	}
	for i := range c.Numbers {
		if b := c.Numbers[i].Blocklist; b != nil {
			num(&b.Code, fmt.Sprintf("numbers[%d].blocklist.code", i), DefaultBlocklistCode)
		}
	}

	for i := range c.Numbers {
		if cf := c.Numbers[i].Route.CallFlow; cf != nil {
			callFlowDefaults(cf, fmt.Sprintf("numbers[%d].route.callflow", i), set)
		}
		if q := c.Numbers[i].Route.Queue; q != nil {
			queueDefaults(q, fmt.Sprintf("numbers[%d].route.queue", i), set)
		}
		if h := c.Numbers[i].Hours; h != nil && h.AfterHours != nil {
			p := fmt.Sprintf("numbers[%d].hours.after_hours", i)
			if cf := h.AfterHours.CallFlow; cf != nil {
				callFlowDefaults(cf, p+".callflow", set)
			}
			if q := h.AfterHours.Queue; q != nil {
				queueDefaults(q, p+".queue", set)
			}
		}
	}
	promptDefaults(&c.Prompts, set)

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
	dur(&m.RTCPInterval, "media.rtcp_interval", DefaultRTCPInterval)
	if !m.JitterBuffer.single {
		dur(&m.JitterBuffer.Min, "media.jitter_buffer.min", DefaultJitterMin)
		dur(&m.JitterBuffer.Max, "media.jitter_buffer.max", DefaultJitterMax)
	}
	num(&m.RelatchPackets, "media.relatch_packets", DefaultRelatchPackets)
	str(&m.Silence, "media.silence", DefaultSilence)
	dur(&m.DTLS.HandshakeTimeout, "media.dtls.handshake_timeout", DefaultDTLSHandshakeTimeout)
	dur(&m.ICE.ConsentTimeout, "media.ice.consent_timeout", DefaultICEConsentTimeout)
	num(&m.Opus.Bitrate, "media.opus.bitrate", DefaultOpusBitrate)
	num(&m.Opus.Complexity, "media.opus.complexity", DefaultOpusComplexity)
	if m.Opus.FEC == nil {
		fec := DefaultOpusFEC
		m.Opus.FEC = &fec
	}

	str(&c.API.Listen, "api.listen", DefaultAPIListen)
	str(&c.Log.Level, "log.level", DefaultLogLevel)
	str(&c.Log.Format, "log.format", DefaultLogFormat)

	pm := &c.Permissions
	str(&pm.Store, "permissions.store", filepath.Join(c.DataDir, DefaultPermissionStore))
	str(&pm.Backend, "permissions.backend", DefaultPermissionBackend)
	rp := "permissions.redis."
	str(&pm.Redis.Address, rp+"address", DefaultRedisAddress)
	str(&pm.Redis.Prefix, rp+"prefix", DefaultRedisPrefix)
	dur(&pm.Redis.SlotTTL, rp+"slot_ttl", DefaultRedisSlotTTL)
	dur(&pm.Redis.Timeout, rp+"timeout", DefaultRedisTimeout)
	str(&pm.Redis.OnDown, rp+"on_down", DefaultRedisOnDown)
	dur(&pm.Redis.WaitTimeout, rp+"wait_timeout", DefaultRedisWaitTimeout)
	l, dl := &pm.Limits, DefaultPermissionLimits()
	lp := "permissions.limits."
	dur(&l.TemporaryTTL, lp+"temporary_ttl", dl.TemporaryTTL)
	num(&l.ConnectedCallsPerUser24h, lp+"connected_calls_per_user_24h", dl.ConnectedCallsPerUser24h)
	num(&l.ConsecutiveUnansweredMax, lp+"consecutive_unanswered_max", dl.ConsecutiveUnansweredMax)
	num(&l.ConsecutiveUnansweredNudge, lp+"consecutive_unanswered_nudge", dl.ConsecutiveUnansweredNudge)
	num(&l.NewCallsPerNumber24h, lp+"new_calls_per_number_24h", dl.NewCallsPerNumber24h)
	num(&l.ConcurrentCallsPerNumber, lp+"concurrent_calls_per_number", dl.ConcurrentCallsPerNumber)
	num(&l.RequestsPer24h, lp+"requests_per_24h", dl.RequestsPer24h)
	num(&l.RequestsPer7d, lp+"requests_per_7d", dl.RequestsPer7d)

	r := &c.Recording
	str(&r.Directory, "recording.directory", DefaultRecordingDir)
	num(&r.SampleRate, "recording.sample_rate", DefaultRecordingSampleRate)
	str(&r.NameBy, "recording.name_by", DefaultRecordingNameBy)
	// retention_days defaults to 0 (keep forever), the zero value.

	str(&c.NodeID, "node_id", DefaultNodeID())
	if !set("cdr.enabled") {
		c.CDR.Enabled = true
	}
	num(&c.CDR.RetentionDays, "cdr.retention_days", DefaultCDRRetentionDays)
	ev := &c.Events
	num(&ev.MaxAttempts, "events.max_attempts", DefaultEventsMaxAttempts)
	dur(&ev.BackoffBase, "events.backoff_base", DefaultEventsBackoffBase)
	dur(&ev.BackoffMax, "events.backoff_max", DefaultEventsBackoffMax)
	num(&ev.QueueSize, "events.queue_size", DefaultEventsQueueSize)
	num(&ev.MaxPending, "events.max_pending", DefaultEventsMaxPending)
	num(&ev.RetentionDays, "events.retention_days", DefaultEventsRetentionDays)
	for i := range ev.Subscribers {
		s := &ev.Subscribers[i]
		p := fmt.Sprintf("events.subscribers[%d]", i)
		dur(&s.Timeout, p+".timeout", DefaultSubscriberTimeout)
		num(&s.Concurrency, p+".concurrency", DefaultSubscriberConcurrency)
	}
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
