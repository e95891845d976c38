package media

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// DTLSStats counts the handshakes of dtls legs (ICE included) by outcome.
type DTLSStats struct {
	// Keyed counts legs that finished ICE and DTLS and got their SRTP
	// keys; HandshakeSeconds is the sum of their times (from the start
	// of media to the keys), for a mean.
	Keyed            uint64
	HandshakeSeconds float64
	// Timeouts, FingerprintMismatches, Failed and ICEFailed count legs
	// whose handshake did not finish (each ended its call); ConsentLost
	// counts keyed legs whose peer later stopped answering consent checks.
	Timeouts, FingerprintMismatches, Failed, ICEFailed, ConsentLost uint64
}

type dtlsCounters struct {
	keyed, timeouts, mismatches, failed, iceFailed, consentLost atomic.Uint64
	nanos                                                       atomic.Int64
}

func (c *dtlsCounters) snapshot() DTLSStats {
	return DTLSStats{
		Keyed: c.keyed.Load(), HandshakeSeconds: time.Duration(c.nanos.Load()).Seconds(),
		Timeouts: c.timeouts.Load(), FingerprintMismatches: c.mismatches.Load(), Failed: c.failed.Load(),
		ICEFailed: c.iceFailed.Load(), ConsentLost: c.consentLost.Load(),
	}
}

// dtlsOutcome counts one leg's handshake: nil err with its time, or why
// it failed.
func (m *Manager) dtlsOutcome(err error, took time.Duration) {
	c := &m.dtls
	switch {
	case err == nil:
		c.keyed.Add(1)
		c.nanos.Add(int64(took))
	case errors.Is(err, ErrDTLSFingerprint):
		c.mismatches.Add(1)
	case errors.Is(err, ErrICEFailed):
		c.iceFailed.Add(1)
	case errors.Is(err, ErrDTLSTimeout):
		c.timeouts.Add(1)
	default:
		c.failed.Add(1)
	}
}

func (m *Manager) countConsentLost() { m.dtls.consentLost.Add(1) }

// SetCertificate sets the DTLS certificate of dtls legs (wagate's
// persistent one, LoadOrCreateCertificate); bridges created afterwards
// use it. Without one, the first dtls leg makes one in memory.
func (m *Manager) SetCertificate(c *Certificate) { m.cert.Store(c) }

var certMu sync.Mutex

// dtlsCert returns the certificate for a new dtls leg.
func (m *Manager) dtlsCert() (*Certificate, error) {
	if c := m.cert.Load(); c != nil {
		return c, nil
	}
	certMu.Lock()
	defer certMu.Unlock()
	if c := m.cert.Load(); c != nil {
		return c, nil
	}
	c, err := NewCertificate()
	if err != nil {
		return nil, err
	}
	m.cert.Store(c)
	return c, nil
}
