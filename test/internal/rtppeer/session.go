// Package rtppeer is the media half of the Go test peers: one RTP session
// on one UDP socket that sends paced 20 ms frames of a source (a tone,
// silence, bursts) encoded as Opus or G.711, optionally protected with
// SDES-SRTP, with RTCP multiplexed on the RTP port (a=rtcp-mux), and RFC
// 4733 telephone-events; and that receives, authenticates and decodes what
// comes back, keeping the decoded audio, the DTMF events and RFC 3550
// statistics (loss, interarrival jitter, first-packet time).
//
// Opus is encoded the way WhatsApp's client does (libopus at 48 kHz mono,
// VoIP, 20 kbit/s, wideband, in-band FEC) and decoded mono at 48 kHz.
package rtppeer

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/srtp/v3"
)

// Config configures a session.
type Config struct {
	// IP is the local address to bind; Port 0 picks a free even port.
	IP   string
	Port int
	// Codec is the audio codec sent and decoded.
	Codec Codec
	// EventPT is the telephone-event payload type (0: none).
	EventPT uint8
	// Local is our SRTP key (nil: plain RTP). The remote key is given to
	// Start.
	Local *Crypto
	// RTCPMux sends RTCP (sender reports, once a second) on the RTP port.
	// Without it no RTCP is sent.
	RTCPMux bool
	// OpusBitrate overrides the Opus encoder's 20 kbit/s.
	OpusBitrate int
	// Echo sends every RTP packet received straight back to the remote
	// address, as SIPp's -rtp_echo does (no re-encoding, same header).
	Echo bool
	// OnsetDBFS is the level that counts as "sound" for onset detection
	// (default -30 dBFS).
	OnsetDBFS float64
	// Record keeps decoded audio (default true; the load tool turns it off).
	NoRecord bool
	// KeepFrames keeps a Frame for every audio packet received (header,
	// arrival, level of its decoded audio), and a SentFrame for every
	// audio packet written.
	KeepFrames bool
	// NoDecode does not decode received audio (load tools): Frames keep
	// headers, arrival and size, with DBFS -120; no recording, no onsets.
	NoDecode bool
	// Conn, when set, carries the session instead of a socket of its own
	// (a DTLS-SRTP peer's port, shared with ICE and DTLS); IP and Port
	// are then ignored. Close closes it.
	Conn PacketConn
	// Logf gets diagnostics (optional).
	Logf func(string, ...any)
}

// Event is one received RFC 4733 telephone-event (deduplicated: one per
// event, i.e. per RTP timestamp).
type Event struct {
	Digit     byte // '0'-'9', '*', '#', 'A'-'D'
	PT        uint8
	Timestamp uint32
	SSRC      uint32
	Ended     bool   // an end packet arrived
	Duration  uint16 // in the end packet (or the last seen)
	Packets   int    // packets seen for this event (retransmitted ends included)
	At        time.Time
}

// Frame is one received audio packet, for tests that look at each 20 ms:
// silence inserted, gaps, timestamps.
type Frame struct {
	Seq    uint16
	TS     uint32
	Marker bool
	At     time.Time
	// DBFS is the level of its decoded audio (-120 when it did not decode).
	DBFS float64
	// Size is its payload's length: an Opus frame of silence is a few
	// bytes, one of speech tens.
	Size int
	// Onset is the sample at which sound starts in this frame after a
	// quiet one (as for Onsets), -1 if it does not.
	Onset int
}

// SentFrame is one audio packet we wrote (KeepFrames): its RTP timestamp
// and when it left, send jitter and stalls of our sender included.
type SentFrame struct {
	TS uint32
	At time.Time
}

// Stats are a session's counters.
type Stats struct {
	Sent, SentEvents       uint64
	RTCPSent, RTCPReceived uint64
	Received               uint64 // authenticated RTP packets from the remote address
	ReceivedAudio          uint64 // of which the codec's payload type
	AuthFailures           uint64 // SRTP/SRTCP that failed to authenticate or replayed
	WrongSource            uint64 // packets from an address other than the remote's
	LastWrongSource        string // the last such address
	DecodeErrors           uint64
	EarlyDropped           uint64 // packets that arrived before Start and could not be kept
	PTs                    map[uint8]uint64
	SSRCs                  map[uint32]uint64
	FirstRecv, LastRecv    time.Time
	FirstSent              time.Time
	// Expected is the extended highest sequence number received minus the
	// first, plus one; Lost is Expected minus audio packets received.
	Expected, Lost int64
	// Jitter is the RFC 3550 interarrival jitter of the received audio
	// stream, in milliseconds.
	Jitter float64
	// SendJitter is the same estimator over our own send times: the jitter
	// of the input stream, to compare with the receiver's.
	SendJitter float64
	// RTT samples from the remote's RTCP receiver reports (LSR/DLSR), if any.
	RTT []time.Duration
	// MaxSendGap is the longest time between two audio packets we wrote
	// while a source was set, and SendStalls every such time over 50 ms:
	// a sender stalled by its machine shows here.
	MaxSendGap time.Duration
	SendStalls []time.Duration
}

// PacketConn is what a session sends and receives on: a UDP socket, or
// a DTLS-SRTP peer's demultiplexed port.
type PacketConn interface {
	ReadFromUDP(b []byte) (int, *net.UDPAddr, error)
	WriteToUDP(b []byte, addr *net.UDPAddr) (int, error)
	LocalAddr() net.Addr
	Close() error
}

// Session is one RTP session.
type Session struct {
	cfg  Config
	conn PacketConn

	enc encoder
	dec decoder

	txMu  sync.Mutex // sender state and tx SRTP context
	tx    *srtp.Context
	ssrc  uint32
	seq   uint16
	ts    uint32
	srcMu sync.Mutex
	src   Source
	// encLoop, when set, is sent in turn instead of encoding src
	// (SetEncodedLoop); encPos is the next frame's index.
	encLoop [][]byte
	encPos  int
	dtmf    []dtmfReq

	mu         sync.Mutex
	remote     *net.UDPAddr
	rx         *srtp.Context
	early      []earlyPkt
	st         Stats
	rec        []int16
	events     []*Event
	recvOnsets []time.Time
	sentOnsets []time.Time
	lastLoud   bool
	sentLoud   bool
	// receive stream state (RFC 3550 A.1/A.8)
	haveSeq         bool
	baseSeq, maxSeq uint16
	cycles          uint32
	lastTransit     float64
	haveTransit     bool
	sendLastTransit float64
	sendHaveTransit bool
	srNTP           map[uint32]time.Time // middle 32 bits of our SRs → send time
	startTime       time.Time
	started         bool
	handleMu        sync.Mutex // one packet at a time through the decoder
	frames          []Frame
	sentFrames      []SentFrame
	// Send jitter: audio packets leave through delayed, each up to
	// jitterMax late, in order.
	jitterMax             atomic.Int64
	delayed               chan delayedPkt
	lastDue               time.Time
	lastWrite             time.Time
	stop                  chan struct{}
	stopOnce              sync.Once
	wg                    sync.WaitGroup
	rtcpOctets, rtcpCount uint32
}

// Listen binds a session's socket and starts receiving (packets that arrive
// before Start are kept and processed once the remote's key is known).
func Listen(cfg Config) (*Session, error) {
	if cfg.OnsetDBFS == 0 {
		cfg.OnsetDBFS = -30
	}
	var conn PacketConn = cfg.Conn
	if conn == nil {
		c, err := bindEven(cfg.IP, cfg.Port)
		if err != nil {
			return nil, err
		}
		conn = c
	}
	s := &Session{
		cfg: cfg, conn: conn,
		ssrc: rand.Uint32(), seq: uint16(rand.UintN(1 << 16)), ts: rand.Uint32(),
		stop:  make(chan struct{}),
		srNTP: map[uint32]time.Time{},
	}
	s.st.PTs = map[uint8]uint64{}
	s.st.SSRCs = map[uint32]uint64{}
	var err error
	if s.enc, err = newEncoder(cfg.Codec, cfg.OpusBitrate); err != nil {
		conn.Close()
		return nil, err
	}
	if s.dec, err = newDecoder(cfg.Codec); err != nil {
		conn.Close()
		return nil, err
	}
	if cfg.Local != nil {
		if s.tx, err = cfg.Local.context(false); err != nil {
			conn.Close()
			return nil, err
		}
	}
	s.delayed = make(chan delayedPkt, 64)
	s.wg.Add(2)
	go s.readLoop()
	go s.delayLoop()
	return s, nil
}

// bindEven binds ip:port, or a free even port when port is 0. ip's
// family picks the socket's: an IPv6 peer gets an IPv6-only one.
func bindEven(ip string, port int) (*net.UDPConn, error) {
	if port != 0 {
		return net.ListenUDP(udpNet(ip), &net.UDPAddr{IP: net.ParseIP(ip), Port: port})
	}
	for range 100 {
		p := 20000 + 2*rand.IntN(5000)
		c, err := net.ListenUDP(udpNet(ip), &net.UDPAddr{IP: net.ParseIP(ip), Port: p})
		if err == nil {
			return c, nil
		}
	}
	return nil, fmt.Errorf("rtppeer: no free even UDP port on %s", ip)
}

// IP and Port are the session's local address.
func (s *Session) IP() string { return s.conn.LocalAddr().(*net.UDPAddr).IP.String() }
func (s *Session) Port() int  { return s.conn.LocalAddr().(*net.UDPAddr).Port }

// Config returns the session's configuration.
func (s *Session) Config() Config { return s.cfg }

// SSRC is the SSRC of the stream we send.
func (s *Session) SSRC() uint32 { return s.ssrc }

// StartKeyed is Start for keys known only now (DTLS-SRTP): local
// encrypts what we send, remoteKey decrypts what the remote sends.
func (s *Session) StartKeyed(remote *net.UDPAddr, local, remoteKey *Crypto) error {
	tx, err := local.context(false)
	if err != nil {
		return err
	}
	s.txMu.Lock()
	s.tx = tx
	s.cfg.Local = local
	s.txMu.Unlock()
	return s.Start(remote, remoteKey)
}

// Start sets the remote address (and its SRTP key when ours is set) and
// starts the sender: a frame every 20 ms from the source (none until
// SetSource), RTCP every second with rtcp-mux.
func (s *Session) Start(remote *net.UDPAddr, remoteKey *Crypto) error {
	var rx *srtp.Context
	s.txMu.Lock()
	keyed := s.cfg.Local != nil
	s.txMu.Unlock()
	if keyed {
		if remoteKey == nil {
			return errors.New("rtppeer: SRTP session needs the remote's key")
		}
		var err error
		if rx, err = remoteKey.context(true); err != nil {
			return err
		}
	}
	s.mu.Lock()
	if s.started {
		s.mu.Unlock()
		return errors.New("rtppeer: started twice")
	}
	s.started = true
	s.remote, s.rx = remote, rx
	s.startTime = time.Now()
	early := s.early
	s.early = nil
	s.mu.Unlock()
	for _, p := range early {
		s.handle(p.pkt, p.from, p.at)
	}
	s.wg.Add(1)
	go s.sendLoop()
	return nil
}

// Close stops the session and waits for its goroutines.
func (s *Session) Close() {
	s.stopOnce.Do(func() {
		close(s.stop)
		s.conn.Close()
	})
	s.wg.Wait()
}

func (s *Session) logf(format string, args ...any) {
	if s.cfg.Logf != nil {
		s.cfg.Logf("rtp %s:%d: "+format, append([]any{s.IP(), s.Port()}, args...)...)
	}
}

// Stats returns a copy of the counters.
func (s *Session) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.st
	st.PTs = make(map[uint8]uint64, len(s.st.PTs))
	for k, v := range s.st.PTs {
		st.PTs[k] = v
	}
	st.SSRCs = make(map[uint32]uint64, len(s.st.SSRCs))
	for k, v := range s.st.SSRCs {
		st.SSRCs[k] = v
	}
	st.RTT = append([]time.Duration(nil), s.st.RTT...)
	st.SendStalls = append([]time.Duration(nil), s.st.SendStalls...)
	return st
}

// Recording returns the decoded audio received so far (mono, at the
// codec's clock rate), packets concatenated in arrival order.
func (s *Session) Recording() []int16 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int16(nil), s.rec...)
}

// Frames returns the audio packets received so far (KeepFrames).
func (s *Session) Frames() []Frame {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Frame(nil), s.frames...)
}

// SentFrames returns the audio packets written so far (KeepFrames).
func (s *Session) SentFrames() []SentFrame {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]SentFrame(nil), s.sentFrames...)
}

// ResetRecording drops the audio recorded so far.
func (s *Session) ResetRecording() {
	s.mu.Lock()
	s.rec = nil
	s.mu.Unlock()
}

// Onsets returns when the sent and the received (decoded) audio went from
// quiet to loud (a sample reaching the peak of a sine at OnsetDBFS): tone
// bursts leaving and coming back. Each is the frame's send or arrival time
// plus the onset sample's offset in the frame, so the resolution is finer
// than a frame and a codec's algorithmic delay shows.
func (s *Session) Onsets() (sent, received []time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Time(nil), s.sentOnsets...), append([]time.Time(nil), s.recvOnsets...)
}

// Remote returns the remote address given to Start.
func (s *Session) Remote() *net.UDPAddr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.remote
}

// udpNet is the network for binding ip: udp6 for an IPv6 address, udp4
// otherwise.
func udpNet(ip string) string {
	if a := net.ParseIP(ip); a != nil && a.To4() == nil {
		return "udp6"
	}
	return "udp4"
}
