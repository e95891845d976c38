package media

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/logging"
	"github.com/pion/transport/v3/deadline"
	"github.com/pion/transport/v3/stdnet"
)

// ICE on a dtls leg. pion/ice runs the agent (checks, nomination, consent
// freshness); it does not own a socket. The leg's RTP socket stays the
// relay's: its reader goroutine hands STUN (and DTLS) datagrams to the
// leg (demux.go), which queues them on a packetQueue that pion reads as
// its candidate's connection; pion's writes go straight out of the
// socket. So one port carries ICE, DTLS, SRTP and SRTCP (RFC 7983), and
// the relay's fast path is untouched.

// queueDepth bounds the datagrams waiting for pion (per queue): STUN
// comes a few a second and a DTLS flight is a handful of records; more
// waiting means a flood, and the excess is dropped and counted.
const queueDepth = 64

// Consent freshness (RFC 7675) as pion's agent does it: a Binding
// request on the selected pair every keepalive; the pair is
// disconnected after consentDisconnected (or a third of the consent
// timeout) without any answer and failed (the call ends) at the
// configured consent timeout.
const (
	consentKeepalive    = 2 * time.Second
	consentDisconnected = 5 * time.Second
)

// datagram is one queued packet and where it came from.
type datagram struct {
	b    []byte
	from netip.AddrPort
}

// packetQueue is a net.PacketConn whose reads come from a bounded queue
// filled by the relay's reader, and whose writes go out of the leg's RTP
// socket. pion's ICE agent and DTLS connection each read one.
type packetQueue struct {
	sock  packetWriter
	local net.Addr
	// fixed, when valid, is the only destination writes go to and the
	// source reads report (DTLS: the ICE peer); invalid: as given.
	fixed  func() netip.AddrPort
	in     chan datagram
	closed chan struct{}
	once   sync.Once
	// rd is the read deadline: pion's DTLS stops its reader with one
	// when a handshake is abandoned.
	rd *deadline.Deadline
}

func newPacketQueue(sock packetWriter, local net.Addr) *packetQueue {
	return &packetQueue{sock: sock, local: local, in: make(chan datagram, queueDepth), closed: make(chan struct{}), rd: deadline.New()}
}

// offer queues a copy of pkt without waiting; false when the queue is
// full or closed (the caller counts the drop).
func (q *packetQueue) offer(pkt []byte, from netip.AddrPort) bool {
	select {
	case <-q.closed:
		return false
	default:
	}
	select {
	case q.in <- datagram{b: append([]byte(nil), pkt...), from: from}:
		return true
	default:
		return false
	}
}

// ReadFrom implements net.PacketConn.
func (q *packetQueue) ReadFrom(p []byte) (int, net.Addr, error) {
	select {
	case d := <-q.in:
		return copy(p, d.b), net.UDPAddrFromAddrPort(d.from), nil
	case <-q.closed:
		return 0, nil, net.ErrClosed
	case <-q.rd.Done():
		return 0, nil, os.ErrDeadlineExceeded
	}
}

// WriteTo implements net.PacketConn.
func (q *packetQueue) WriteTo(p []byte, addr net.Addr) (int, error) {
	select {
	case <-q.closed:
		return 0, net.ErrClosed
	default:
	}
	dst := netip.AddrPort{}
	if q.fixed != nil {
		dst = q.fixed()
	} else if ua, ok := addr.(*net.UDPAddr); ok {
		dst = unmapped(ua.AddrPort())
	}
	if !dst.IsValid() {
		return 0, fmt.Errorf("media: ICE write to %v: no destination", addr)
	}
	return q.sock.WriteToUDPAddrPort(p, dst)
}

// Close implements net.PacketConn: reads end; the socket stays open (it
// is the relay's).
func (q *packetQueue) Close() error {
	q.once.Do(func() { close(q.closed) })
	return nil
}

// LocalAddr implements net.PacketConn.
func (q *packetQueue) LocalAddr() net.Addr { return q.local }

// SetDeadline implements net.PacketConn (writes never wait).
func (q *packetQueue) SetDeadline(t time.Time) error { return q.SetReadDeadline(t) }

// SetReadDeadline implements net.PacketConn.
func (q *packetQueue) SetReadDeadline(t time.Time) error {
	q.rd.Set(t)
	return nil
}

// SetWriteDeadline implements net.PacketConn: writes never wait.
func (q *packetQueue) SetWriteDeadline(time.Time) error { return nil }

// queueMux hands pion's agent the leg's STUN queue as the connection of
// its one host candidate (pion's ice.UDPMux interface).
type queueMux struct {
	q    *packetQueue
	addr *net.UDPAddr
}

func (m *queueMux) GetConn(string, net.Addr) (net.PacketConn, error) { return m.q, nil }
func (m *queueMux) RemoveConnByUfrag(string)                         {}
func (m *queueMux) GetListenAddresses() []net.Addr                   { return []net.Addr{m.addr} }
func (m *queueMux) Close() error                                     { return nil }

// iceNet is the network pion asks about interfaces: one list for the
// process, read once (each agent would otherwise enumerate them).
var iceNet = sync.OnceValues(stdnet.NewNet)

// candidateAddrs are our candidates for a leg on port: a host candidate
// at the bound address (the advertised one when bound to every
// interface) and, behind 1:1 NAT (advertise_ip differs from a specific
// bind_ip), a server-reflexive one at the advertised address.
func (m *Manager) candidateAddrs(port int) (host netip.AddrPort, srflx netip.AddrPort) {
	h := m.bind
	if !h.IsValid() || h.IsUnspecified() {
		h = m.advertise
	}
	host = netip.AddrPortFrom(h, uint16(port))
	if m.advertise != h {
		srflx = netip.AddrPortFrom(m.advertise, uint16(port))
	}
	return host, srflx
}

// localCandidates are the a=candidate values of a leg on port.
func (m *Manager) localCandidates(port int) []string {
	host, srflx := m.candidateAddrs(port)
	var out []string
	if c, err := ice.NewCandidateHost(&ice.CandidateHostConfig{Network: "udp", Address: host.Addr().String(), Port: port, Component: ice.ComponentRTP}); err == nil {
		out = append(out, c.Marshal())
	}
	if srflx.IsValid() {
		c, err := ice.NewCandidateServerReflexive(&ice.CandidateServerReflexiveConfig{Network: "udp", Address: srflx.Addr().String(), Port: port,
			Component: ice.ComponentRTP, RelAddr: host.Addr().String(), RelPort: port})
		if err == nil {
			out = append(out, c.Marshal())
		}
	}
	return out
}

// newAgent makes the leg's ICE agent: a full agent with one host
// candidate on the leg's socket (through q), our credentials, consent
// checks, and the peer's candidates. The caller must Close it.
func (m *Manager) newAgent(q *packetQueue, host netip.AddrPort, ufrag, pwd string, remote []ice.Candidate, log *slog.Logger) (*ice.Agent, error) {
	n, err := iceNet()
	if err != nil {
		return nil, fmt.Errorf("media: ICE: %w", err)
	}
	nt := ice.NetworkTypeUDP4
	if host.Addr().Is6() {
		nt = ice.NetworkTypeUDP6
	}
	ka, disc := consentKeepalive, min(consentDisconnected, m.consentTimeout/3)
	failed := m.consentTimeout - disc
	agent, err := ice.NewAgent(&ice.AgentConfig{
		NetworkTypes:        []ice.NetworkType{nt},
		CandidateTypes:      []ice.CandidateType{ice.CandidateTypeHost},
		UDPMux:              &queueMux{q: q, addr: net.UDPAddrFromAddrPort(host)},
		LocalUfrag:          ufrag,
		LocalPwd:            pwd,
		MulticastDNSMode:    ice.MulticastDNSModeDisabled,
		KeepaliveInterval:   &ka,
		DisconnectedTimeout: &disc,
		FailedTimeout:       &failed,
		IncludeLoopback:     true,
		Net:                 n,
		LoggerFactory:       pionLogs{log},
	})
	if err != nil {
		return nil, fmt.Errorf("media: ICE agent: %w", err)
	}
	for _, c := range remote {
		if err := agent.AddRemoteCandidate(c); err != nil {
			_ = agent.GracefulClose()
			return nil, fmt.Errorf("media: ICE remote candidate %s: %w", c.Address(), err)
		}
	}
	return agent, nil
}

// gather has the agent take its host candidate and waits for it.
func gather(ctx context.Context, agent *ice.Agent) error {
	done := make(chan struct{})
	var once sync.Once
	if err := agent.OnCandidate(func(c ice.Candidate) {
		if c == nil {
			once.Do(func() { close(done) })
		}
	}); err != nil {
		return err
	}
	if err := agent.GatherCandidates(); err != nil {
		return fmt.Errorf("media: ICE gather: %w", err)
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// pionLogs sends pion's log lines to the call's logger at debug level:
// pion warns about every packet it discards, which a flood would turn
// into a flood of log lines; wagate counts those drops itself.
type pionLogs struct{ log *slog.Logger }

func (p pionLogs) NewLogger(scope string) logging.LeveledLogger {
	return pionLogger{p.log.With("pion", scope)}
}

type pionLogger struct{ log *slog.Logger }

func (l pionLogger) f(format string, args ...any) {
	if l.log.Enabled(context.Background(), slog.LevelDebug) {
		l.log.Debug(fmt.Sprintf(format, args...))
	}
}

func (l pionLogger) Trace(string)                 {}
func (l pionLogger) Tracef(string, ...any)        {}
func (l pionLogger) Debug(msg string)             { l.log.Debug(msg) }
func (l pionLogger) Debugf(f string, args ...any) { l.f(f, args...) }
func (l pionLogger) Info(msg string)              { l.log.Debug(msg) }
func (l pionLogger) Infof(f string, args ...any)  { l.f(f, args...) }
func (l pionLogger) Warn(msg string)              { l.log.Debug(msg) }
func (l pionLogger) Warnf(f string, args ...any)  { l.f(f, args...) }
func (l pionLogger) Error(msg string)             { l.log.Debug(msg) }
func (l pionLogger) Errorf(f string, args ...any) { l.f(f, args...) }
