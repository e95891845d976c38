package media

import (
	"fmt"
	"log/slog"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/wagate/wagate/configs"
)

// Manager owns the RTP port range and creates the bridges of calls. It is
// safe for concurrent use.
type Manager struct {
	log       *slog.Logger
	ports     *portAllocator
	advertise netip.Addr
	// startTimeout and timeout are RTPStartTimeout and RTPTimeout; zero
	// disables the check.
	startTimeout, timeout time.Duration
	bridges               atomic.Int64
}

// Stats is a snapshot of the manager's load.
type Stats struct {
	// PortsInUse counts UDP ports held by live bridges, RTP and RTCP alike:
	// each bridge holds two pairs, so four ports.
	PortsInUse int
	// Bridges counts bridges created and not yet closed.
	Bridges int
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
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"port_quarantine", cfg.PortQuarantine.D()}, {"rtp_timeout", cfg.RTPTimeout.D()}, {"rtp_start_timeout", cfg.RTPStartTimeout.D()}} {
		if d.v < 0 {
			return nil, fmt.Errorf("media: %s %s is negative", d.name, d.v)
		}
	}
	ports, err := newPortAllocator(bind, cfg.PortMin, cfg.PortMax, cfg.PortQuarantine.D(), nil)
	if err != nil {
		return nil, err
	}
	return &Manager{
		log:          log,
		ports:        ports,
		advertise:    advertise,
		startTimeout: cfg.RTPStartTimeout.D(),
		timeout:      cfg.RTPTimeout.D(),
	}, nil
}

// Stats returns the current load.
func (m *Manager) Stats() Stats {
	return Stats{PortsInUse: 2 * int(m.ports.inUse.Load()), Bridges: int(m.bridges.Load())}
}

// NewBridge allocates a port pair facing each side of call callID.
// log is the call's logger and should already carry the call's id (the SIP
// layer's does), so the bridge uses it as is; with nil, the bridge logs to
// the manager's logger with call_id=callID. Errors wrap ErrNoPorts. The
// caller must Close the bridge.
func (m *Manager) NewBridge(callID string, log *slog.Logger) (*Bridge, error) {
	if log == nil {
		log = m.log.With("call_id", callID)
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
	log.Debug("media: bridge allocated", "port_a", legA.port, "port_b", legB.port)
	return newBridge(m, log, legA, legB), nil
}
