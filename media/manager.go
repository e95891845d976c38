package media

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/wagate/wagate/codec"
	"github.com/wagate/wagate/configs"
)

// defaultRTCPInterval is used when configs.Media.RTCPInterval is zero
// (configs fills it when loading a file; embedders may not).
const (
	defaultRTCPInterval = 5 * time.Second
	maxJitterBuffer     = time.Second
)

// The playout buffer's bounds when configs.Media leaves them zero (an
// embedder; configs fills its defaults, the same values).
const (
	defaultJitterMin = 20 * time.Millisecond
	defaultJitterMax = 120 * time.Millisecond
)

// The DTLS and ICE timeouts when configs.Media leaves them zero.
const (
	defaultHandshakeTimeout = 10 * time.Second
	defaultConsentTimeout   = 30 * time.Second
)

// Manager owns the RTP port range and creates the bridges of calls. It is
// safe for concurrent use.
type Manager struct {
	log       *slog.Logger
	ports     *portAllocator
	bind      netip.Addr // invalid or unspecified: every interface
	advertise netip.Addr
	// startTimeout and timeout are RTPStartTimeout and RTPTimeout; zero
	// disables the check.
	startTimeout, timeout time.Duration
	// rtcpInterval is how often each leg gets our RTCP report.
	rtcpInterval time.Duration
	// jbMin and jbMax bound the playout buffers' depth.
	jbMin, jbMax time.Duration
	// dtx: toward WhatsApp, silence is discontinuous (media.silence).
	dtx bool
	// pacer runs every call's timed work.
	pacer *Pacer
	// opusSilence is 20 ms of silence from an encoder at the opus
	// settings, sent toward WhatsApp by transcoding directions.
	opusSilence []byte
	// relatch is how many consecutive valid packets a latched behind-NAT
	// peer's new source must send before the relay moves to it; 0 never.
	relatch int
	// opus configures the encoders toward Opus legs.
	opus    codec.Options
	bridges atomic.Int64

	// DTLS legs: our certificate, how long ICE and the handshake may
	// take, and how long the peer may ignore consent checks.
	cert                             atomic.Pointer[Certificate]
	handshakeTimeout, consentTimeout time.Duration
	dtls                             dtlsCounters

	totalsMu   sync.Mutex
	totals     BridgeStats
	transcoded uint64
}

// Stats is a snapshot of the manager's load.
type Stats struct {
	// PortsInUse counts UDP ports held by live bridges, RTP and RTCP alike:
	// each bridge holds two pairs, so four ports.
	PortsInUse int
	// Bridges counts bridges created and not yet closed.
	Bridges int
	// PortsTotal is every port of the configured range that wagate uses
	// (two per pair), in use or free.
	PortsTotal int
	// PortsBound counts ports with an open socket (a descriptor each): those
	// in use and those kept bound while free, within media.max_bound_pairs.
	PortsBound int
	// Totals are the packet counters of every bridge closed so far.
	Totals BridgeStats
	// TranscodedCalls counts closed bridges that transcoded in at least
	// one direction.
	TranscodedCalls uint64
	// DTLS counts the handshakes of dtls legs by outcome.
	DTLS DTLSStats
	// Pacer is how late the timed media work (silence, playout, prompts,
	// RTCP) ran, since start.
	Pacer PacerStats
}

// NewManager checks cfg and prepares the port range. Nothing is bound
// until a bridge asks. log may be nil (slog.Default()).
func NewManager(cfg configs.Media, log *slog.Logger) (*Manager, error) {
	if log == nil {
		log = slog.Default()
	}
	var bind netip.Addr
	if cfg.BindIP != "" {
		a, err := netip.ParseAddr(cfg.BindIP)
		if err != nil || a.Zone() != "" {
			return nil, fmt.Errorf("media: bind_ip %q is not an IP address", cfg.BindIP)
		}
		bind = a.Unmap()
	}
	advertise := bind
	if cfg.AdvertiseIP != "" {
		a, err := netip.ParseAddr(cfg.AdvertiseIP)
		if err != nil || a.Zone() != "" {
			return nil, fmt.Errorf("media: advertise_ip %q is not an IP address", cfg.AdvertiseIP)
		}
		advertise = a.Unmap()
	}
	// An unspecified address in c= means "hold" to the peer, so SDP needs
	// a real one.
	if !advertise.IsValid() || advertise.IsUnspecified() || advertise.IsMulticast() {
		return nil, fmt.Errorf("media: advertise_ip must be a unicast address when bind_ip is %q", cfg.BindIP)
	}
	if b := effectiveBind(bind, advertise, nil); b != bind {
		log.Info("media: RTP binds the advertised address, this host's own, so that it leaves from the address peers were told",
			"bind_ip", cfg.BindIP, "advertise_ip", advertise.String())
		bind = b
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"port_quarantine", cfg.PortQuarantine.D()}, {"rtp_timeout", cfg.RTPTimeout.D()}, {"rtp_start_timeout", cfg.RTPStartTimeout.D()},
		{"rtcp_interval", cfg.RTCPInterval.D()}, {"jitter_buffer.min", cfg.JitterBuffer.Min.D()}, {"jitter_buffer.max", cfg.JitterBuffer.Max.D()}} {
		if d.v < 0 {
			return nil, fmt.Errorf("media: %s %s is negative", d.name, d.v)
		}
	}
	// configs fills unset values, so a zero here is an embedder that left
	// the interval unset (configs requires at least 1s).
	rtcpInterval := cmp.Or(cfg.RTCPInterval.D(), defaultRTCPInterval)
	jbMin, jbMax := cfg.JitterBuffer.Min.D(), cfg.JitterBuffer.Max.D()
	if jbMin == 0 && jbMax == 0 {
		jbMin, jbMax = defaultJitterMin, defaultJitterMax
	}
	if jbMax > maxJitterBuffer || jbMin > jbMax {
		return nil, fmt.Errorf("media: jitter_buffer min %s, max %s: want 0 <= min <= max <= %s", jbMin, jbMax, maxJitterBuffer)
	}
	// Zero is "never move" whether written or left unset by an embedder:
	// the safe reading (configs fills its default of 10).
	if cfg.RelatchPackets < 0 {
		return nil, fmt.Errorf("media: relatch_packets %d is negative", cfg.RelatchPackets)
	}
	var dtx bool
	switch cfg.Silence {
	case "", "dtx":
		dtx = true
	case "continuous":
	default:
		return nil, fmt.Errorf("media: silence %q: want dtx or continuous", cfg.Silence)
	}
	opus := codec.DefaultOptions()
	if cfg.Opus.Bitrate != 0 {
		opus.OpusBitrate = cfg.Opus.Bitrate
	}
	if cfg.Opus.Complexity != 0 {
		opus.OpusComplexity = cfg.Opus.Complexity
	}
	if cfg.Opus.FEC != nil {
		opus.OpusFEC = *cfg.Opus.FEC
	}
	// Check the Opus settings now rather than at the first transcoded
	// call, and make the silence frame those settings produce.
	silence, err := codec.OpusSilence(opus)
	if err != nil {
		return nil, fmt.Errorf("media: opus settings: %w", err)
	}
	ports, err := newPortAllocator(bind, cfg.PortMin, cfg.PortMax, cfg.PortQuarantine.D(), nil)
	if err != nil {
		return nil, err
	}
	if cfg.MaxBoundPairs < 0 {
		return nil, fmt.Errorf("media: max_bound_pairs %d is negative", cfg.MaxBoundPairs)
	}
	limit := OpenFilesLimit()
	ports.budget = int64(BoundPairBudget(cfg.MaxBoundPairs, limit))
	ports.maxBound = int64(MaxBoundPairsInUse(limit))
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"dtls.handshake_timeout", cfg.DTLS.HandshakeTimeout.D()}, {"ice.consent_timeout", cfg.ICE.ConsentTimeout.D()}} {
		if d.v < 0 {
			return nil, fmt.Errorf("media: %s %s is negative", d.name, d.v)
		}
	}
	consent := cmp.Or(cfg.ICE.ConsentTimeout.D(), defaultConsentTimeout)
	return &Manager{
		log:              log,
		ports:            ports,
		bind:             bind,
		advertise:        advertise,
		handshakeTimeout: cmp.Or(cfg.DTLS.HandshakeTimeout.D(), defaultHandshakeTimeout),
		consentTimeout:   consent,
		startTimeout:     cfg.RTPStartTimeout.D(),
		timeout:          cfg.RTPTimeout.D(),
		rtcpInterval:     rtcpInterval,
		jbMin:            jbMin,
		jbMax:            jbMax,
		dtx:              dtx,
		pacer:            newWatchedPacer(log),
		opusSilence:      silence,
		relatch:          cfg.RelatchPackets,
		opus:             opus,
	}, nil
}

// newWatchedPacer is the manager's pacer, which warns in log when it runs
// late.
func newWatchedPacer(log *slog.Logger) *Pacer {
	p := NewPacer(0)
	p.WarnWhenLate(log)
	return p
}

// Close closes the sockets of the port pairs that are free (kept bound
// for reuse); bridges still open keep theirs. A manager lives as long as
// the process, so only tests and embedders that make many need it.
func (m *Manager) Close() { m.ports.close() }

// Stats returns the current load.
func (m *Manager) Stats() Stats {
	m.totalsMu.Lock()
	totals, transcoded := m.totals, m.transcoded
	m.totalsMu.Unlock()
	return Stats{PortsInUse: 2 * int(m.ports.inUse.Load()), Bridges: int(m.bridges.Load()),
		PortsTotal: 2 * m.ports.pairs, PortsBound: 2 * int(m.ports.boundN.Load()), Totals: totals, TranscodedCalls: transcoded, DTLS: m.dtls.snapshot(),
		Pacer: m.pacer.Stats()}
}

// PacerStats is how late the pacer ran its jobs, since start: Stats's
// Pacer without the rest.
func (m *Manager) PacerStats() PacerStats { return m.pacer.Stats() }

// account adds a closed bridge's counters to the totals.
func (m *Manager) account(s BridgeStats, transcoded bool) {
	m.totalsMu.Lock()
	defer m.totalsMu.Unlock()
	t := &m.totals
	t.AtoB += s.AtoB
	t.BtoA += s.BtoA
	t.DroppedSource += s.DroppedSource
	t.DroppedInvalid += s.DroppedInvalid
	t.DroppedAuth += s.DroppedAuth
	t.DroppedReplay += s.DroppedReplay
	t.DroppedLate += s.DroppedLate
	t.Concealed += s.Concealed
	t.Expanded += s.Expanded
	t.Compressed += s.Compressed
	t.Silence += s.Silence
	t.Played += s.Played
	t.RTCPSent += s.RTCPSent
	t.RTCPReceived += s.RTCPReceived
	t.DTMFEvents += s.DTMFEvents
	t.InbandDTMF += s.InbandDTMF
	t.DroppedSTUN += s.DroppedSTUN
	t.DroppedDTLS += s.DroppedDTLS
	if transcoded {
		m.transcoded++
	}
}

// NewCallBridge allocates a port pair facing each side of call callID,
// for legs configured as a (the caller, whose INVITE carries the offer)
// and b. log is the call's logger and should already carry the call's id
// (the SIP layer's does), so the bridge uses it as is; with nil, the
// bridge logs to the manager's logger with call_id=callID. Errors wrap
// ErrNoPorts, or describe a bad LegConfig. The caller must Close the
// bridge.
func (m *Manager) NewCallBridge(callID string, log *slog.Logger, a, b LegConfig) (*Bridge, error) {
	a, err := a.normalize(SideA)
	if err != nil {
		return nil, err
	}
	if b, err = b.normalize(SideB); err != nil {
		return nil, err
	}
	if log == nil {
		log = m.log.With("call_id", callID)
	}
	var cert *Certificate
	if a.Encryption == EncryptionDTLS || b.Encryption == EncryptionDTLS {
		if cert, err = m.dtlsCert(); err != nil {
			return nil, err
		}
	}
	legA, err := m.ports.get()
	if err != nil {
		return nil, fmt.Errorf("media: allocate port pair for side A: %w", err)
	}
	legB, err := m.ports.get()
	if err != nil {
		m.ports.release(legA)
		return nil, fmt.Errorf("media: allocate port pair for side B: %w", err)
	}
	m.bridges.Add(1)
	log.Debug("media: bridge allocated", "port_a", legA.port, "port_b", legB.port,
		"encryption_a", a.Encryption, "encryption_b", b.Encryption, "whatsapp_a", a.WhatsApp, "whatsapp_b", b.WhatsApp,
		"nat_a", a.BehindNAT, "nat_b", b.BehindNAT)
	br := newBridge(m, log, legA, legB, a, b)
	br.cert = cert
	// The call's reader set now, not at answer: a call that cannot have
	// one (no descriptor left; the allocator counts one a call, so only
	// past the open-files limit) gets 503 rather than an answer and a
	// hang-up.
	switch cr, err := newCallReader(br, [2]*portPair{legA, legB}); {
	case err == nil:
		br.cr = cr
	case !errors.Is(err, errCallReaderOff):
		m.ports.release(legA)
		m.ports.release(legB)
		m.bridges.Add(-1)
		return nil, fmt.Errorf("%w: %w", ErrNoPorts, err)
	}
	return br, nil
}

// NewBridge is NewCallBridge for two plain RTP legs that allow every
// codec, B's codecs to be given to OfferB.
//
// Deprecated: kept while the SIP layer moves to NewCallBridge and Offer.
func (m *Manager) NewBridge(callID string, log *slog.Logger) (*Bridge, error) {
	return m.NewCallBridge(callID, log, LegConfig{Codecs: legacyCodecs}, LegConfig{Codecs: legacyCodecs})
}
