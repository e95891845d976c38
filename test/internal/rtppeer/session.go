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
	"math"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"

	"github.com/wagate/wagate/test/internal/audio"
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
	// arrival, level of its decoded audio).
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

// delayedPkt is an audio packet waiting for its (jittered) send time.
type delayedPkt struct {
	pkt []byte
	ts  uint32
	due time.Time
}

// SetSendJitter delays every audio packet sent from now on by a random
// 0..max (uniform), keeping their order: a packet never leaves before the
// one sent before it. 0 sends at once again.
func (s *Session) SetSendJitter(max time.Duration) { s.jitterMax.Store(int64(max)) }

// delayLoop writes the delayed packets at their times.
func (s *Session) delayLoop() {
	defer s.wg.Done()
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case d := <-s.delayed:
			if w := time.Until(d.due); w > 0 {
				t.Reset(w)
				select {
				case <-t.C:
				case <-s.stop:
					return
				}
			}
			s.writeAudio(d.pkt, d.ts)
		}
	}
}

// sendAudio writes an audio packet now, or hands it to delayLoop when a
// send jitter is set.
func (s *Session) sendAudio(pkt []byte, ts uint32) {
	max := time.Duration(s.jitterMax.Load())
	if max <= 0 && len(s.delayed) == 0 {
		s.writeAudio(pkt, ts)
		return
	}
	due := time.Now()
	if max > 0 {
		due = due.Add(time.Duration(rand.Int64N(int64(max) + 1)))
	}
	if due.Before(s.lastDue) {
		due = s.lastDue // order kept
	}
	s.lastDue = due
	select {
	case s.delayed <- delayedPkt{pkt, ts, due}:
	case <-s.stop:
	}
}

// writeAudio writes an audio packet with timestamp ts and keeps the send
// statistics: the input jitter (the receiver's estimator over our write
// times, send jitter included) and the longest gap.
func (s *Session) writeAudio(pkt []byte, ts uint32) {
	now := time.Now()
	s.write(pkt)
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.lastWrite.IsZero() {
		gap := now.Sub(s.lastWrite)
		s.st.MaxSendGap = max(s.st.MaxSendGap, gap)
		if gap > 50*time.Millisecond {
			s.st.SendStalls = append(s.st.SendStalls, gap)
		}
	}
	s.lastWrite = now
	transit := float64(now.Sub(s.startTime))/float64(time.Second)*float64(s.cfg.Codec.Rate) - float64(ts)
	if s.sendHaveTransit {
		d := math.Abs(transit - s.sendLastTransit)
		s.st.SendJitter += (d/float64(s.cfg.Codec.Rate)*1000 - s.st.SendJitter) / 16
	}
	s.sendLastTransit, s.sendHaveTransit = transit, true
}

// bindEven binds ip:port, or a free even port when port is 0.
func bindEven(ip string, port int) (*net.UDPConn, error) {
	if port != 0 {
		return net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(ip), Port: port})
	}
	for range 100 {
		p := 20000 + 2*rand.IntN(5000)
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(ip), Port: p})
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

// SetSource sets what the sender sends from the next frame on (nil: send
// no audio, only RTCP).
func (s *Session) SetSource(src Source) {
	s.srcMu.Lock()
	s.src = src
	s.srcMu.Unlock()
}

// SetEncodedLoop makes the session send frames, already encoded in its
// codec, in turn and over again instead of encoding its source (load
// tools: the generator must cost little next to what it measures).
// nil goes back to the source.
func (s *Session) SetEncodedLoop(frames [][]byte) {
	s.srcMu.Lock()
	s.encLoop, s.encPos = frames, 0
	s.srcMu.Unlock()
}

// EncodeLoop encodes n frames of src in codec c (at its default bitrate),
// for SetEncodedLoop.
func EncodeLoop(c Codec, src Source, n int) ([][]byte, error) {
	enc, err := newEncoder(c, 0)
	if err != nil {
		return nil, err
	}
	pcm := make([]int16, c.FrameSamples())
	out := make([][]byte, 0, n)
	for range n {
		src.Read(pcm)
		p, err := enc.encode(pcm)
		if err != nil {
			return nil, err
		}
		out = append(out, append([]byte(nil), p...))
	}
	return out, nil
}

// SendDTMF queues digits as RFC 4733 events of the given length each
// (the last event packet is sent three times), with gap between them. No
// audio is sent while an event is; in the gaps the source plays as usual.
func (s *Session) SendDTMF(digits string, length, gap time.Duration) error {
	if s.cfg.EventPT == 0 {
		return errors.New("rtppeer: no telephone-event payload type")
	}
	s.srcMu.Lock()
	defer s.srcMu.Unlock()
	for i := 0; i < len(digits); i++ {
		code, ok := eventCode(digits[i])
		if !ok {
			return fmt.Errorf("rtppeer: %q is not a DTMF digit", digits[i])
		}
		s.dtmf = append(s.dtmf, dtmfReq{code: code, frames: max(1, int(length/(20*time.Millisecond))), gap: int(gap / (20 * time.Millisecond))})
	}
	return nil
}

// DTMFPending reports whether queued digits are still being sent.
func (s *Session) DTMFPending() bool {
	s.srcMu.Lock()
	defer s.srcMu.Unlock()
	return len(s.dtmf) > 0
}

type dtmfReq struct {
	code   byte
	frames int // frames of event
	gap    int // frames of no event after it
	sent   int // frames sent so far (event, ends, gap)
	ts     uint32
}

func eventCode(d byte) (byte, bool) {
	switch {
	case d >= '0' && d <= '9':
		return d - '0', true
	case d == '*':
		return 10, true
	case d == '#':
		return 11, true
	case d >= 'A' && d <= 'D':
		return 12 + d - 'A', true
	}
	return 0, false
}

func eventDigit(code byte) byte {
	switch {
	case code <= 9:
		return '0' + code
	case code == 10:
		return '*'
	case code == 11:
		return '#'
	case code <= 15:
		return 'A' + code - 12
	}
	return '?'
}

// sendLoop sends a frame every 20 ms of wall time. When the process was
// not scheduled for a while (a loaded machine), it sends the frames it owes
// at once rather than skipping them, as a real-time source with a capture
// buffer does; after more than a second behind it resynchronises.
func (s *Session) sendLoop() {
	defer s.wg.Done()
	pcm := make([]int16, s.cfg.Codec.FrameSamples())
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	lastRTCP := time.Now()
	marker := true
	next := time.Now()
	for {
		select {
		case <-s.stop:
			return
		case <-tick.C:
		}
		now := time.Now()
		if now.Sub(next) > time.Second {
			next = now
		}
		for !next.After(now) {
			s.sendFrame(pcm, &marker)
			next = next.Add(20 * time.Millisecond)
		}
		if s.cfg.RTCPMux && time.Since(lastRTCP) >= time.Second {
			lastRTCP = time.Now()
			s.sendSR()
		}
	}
}

// sendFrame sends the next 20 ms: a DTMF step, or a frame of the source,
// or nothing (media time still advances).
func (s *Session) sendFrame(pcm []int16, marker *bool) {
	frame := len(pcm)
	s.srcMu.Lock()
	src := s.src
	var ev *dtmfReq
	if len(s.dtmf) > 0 {
		ev = &s.dtmf[0]
	}
	if ev != nil && ev.sent < ev.frames+2 {
		s.sendEventFrame(ev)
		s.srcMu.Unlock()
		*marker = true
		return
	}
	if ev != nil { // the gap after an event: audio as usual
		ev.sent++
		if ev.sent >= ev.frames+2+ev.gap {
			s.dtmf = s.dtmf[1:]
		}
	}
	var pre []byte
	if len(s.encLoop) > 0 {
		pre = s.encLoop[s.encPos%len(s.encLoop)]
		s.encPos++
	}
	s.srcMu.Unlock()
	if pre != nil {
		s.sendRTP(s.cfg.Codec.PT, *marker, pre, uint32(frame))
		*marker = false
		return
	}
	if src == nil {
		s.txMu.Lock()
		s.ts += uint32(frame) // media time goes on while silent
		s.txMu.Unlock()
		*marker = true
		s.mu.Lock()
		s.lastWrite = time.Time{} // a pause is not a stall
		s.mu.Unlock()
		return
	}
	src.Read(pcm)
	payload, err := s.enc.encode(pcm)
	if err != nil {
		s.logf("encode: %v", err)
		return
	}
	s.noteSent(pcm)
	s.sendRTP(s.cfg.Codec.PT, *marker, payload, uint32(frame))
	*marker = false
}

// sendEventFrame sends one 20 ms step of a DTMF event: event packets
// (marker on the first), the last one with the end bit, then two more
// copies of it. Called with srcMu held.
func (s *Session) sendEventFrame(ev *dtmfReq) {
	const step = 160 // telephone-event/8000: 20 ms
	s.txMu.Lock()
	if ev.sent == 0 {
		ev.ts = s.ts
	}
	s.txMu.Unlock()
	switch {
	case ev.sent < ev.frames:
		dur := uint16((ev.sent + 1) * step)
		end := ev.sent == ev.frames-1
		s.sendEvent(ev, ev.sent == 0, end, dur)
	default:
		s.sendEvent(ev, false, true, uint16(ev.frames*step))
	}
	ev.sent++
	s.txMu.Lock()
	s.ts += uint32(s.cfg.Codec.FrameSamples())
	s.txMu.Unlock()
}

func (s *Session) sendEvent(ev *dtmfReq, marker, end bool, dur uint16) {
	p := []byte{ev.code, 10, byte(dur >> 8), byte(dur)} // volume -10 dBm0
	if end {
		p[1] |= 0x80
	}
	s.txMu.Lock()
	s.seq++
	h := rtp.Header{Version: 2, Marker: marker, PayloadType: s.cfg.EventPT, SequenceNumber: s.seq, Timestamp: ev.ts, SSRC: s.ssrc}
	pkt, err := s.protect(h, p)
	s.txMu.Unlock()
	if err != nil {
		s.logf("protect event: %v", err)
		return
	}
	s.write(pkt)
	s.mu.Lock()
	s.st.SentEvents++
	s.mu.Unlock()
}

func (s *Session) sendRTP(pt uint8, marker bool, payload []byte, adv uint32) {
	now := time.Now()
	s.txMu.Lock()
	s.seq++
	ts := s.ts
	h := rtp.Header{Version: 2, Marker: marker, PayloadType: pt, SequenceNumber: s.seq, Timestamp: ts, SSRC: s.ssrc}
	s.ts += adv
	pkt, err := s.protect(h, payload)
	s.txMu.Unlock()
	if err != nil {
		s.logf("protect: %v", err)
		return
	}
	s.sendAudio(pkt, ts)
	s.mu.Lock()
	s.st.Sent++
	s.rtcpCount++
	s.rtcpOctets += uint32(len(payload))
	if s.st.FirstSent.IsZero() {
		s.st.FirstSent = now
	}
	s.mu.Unlock()
}

// protect marshals (and encrypts) an RTP packet. Called with txMu held.
func (s *Session) protect(h rtp.Header, payload []byte) ([]byte, error) {
	p := rtp.Packet{Header: h, Payload: payload}
	raw, err := p.Marshal()
	if err != nil {
		return nil, err
	}
	if s.tx == nil {
		return raw, nil
	}
	return s.tx.EncryptRTP(nil, raw, nil)
}

func (s *Session) write(pkt []byte) {
	s.mu.Lock()
	remote := s.remote
	s.mu.Unlock()
	if remote == nil {
		return
	}
	if _, err := s.conn.WriteToUDP(pkt, remote); err != nil {
		select {
		case <-s.stop:
		default:
			s.logf("write: %v", err)
		}
	}
}

// sendSR sends an RTCP sender report (SRTCP with a key) on the RTP port.
func (s *Session) sendSR() {
	now := time.Now()
	ntp := toNTP(now)
	s.txMu.Lock()
	ts := s.ts
	s.txMu.Unlock()
	s.mu.Lock()
	sr := &rtcp.SenderReport{SSRC: s.ssrc, NTPTime: ntp, RTPTime: ts, PacketCount: s.rtcpCount, OctetCount: s.rtcpOctets}
	s.srNTP[uint32(ntp>>16)] = now
	s.mu.Unlock()
	raw, err := sr.Marshal()
	if err != nil {
		return
	}
	if s.tx != nil {
		s.txMu.Lock()
		raw, err = s.tx.EncryptRTCP(nil, raw, nil)
		s.txMu.Unlock()
		if err != nil {
			s.logf("protect RTCP: %v", err)
			return
		}
	}
	s.write(raw)
	s.mu.Lock()
	s.st.RTCPSent++
	s.mu.Unlock()
}

func toNTP(t time.Time) uint64 {
	const ntpEpochOffset = 2208988800
	secs := uint64(t.Unix()) + ntpEpochOffset
	frac := uint64(t.Nanosecond()) * (1 << 32) / 1e9
	return secs<<32 | frac
}

func (s *Session) noteSent(pcm []int16) {
	k := s.firstLoud(pcm)
	now := time.Now()
	s.mu.Lock()
	if k >= 0 && !s.sentLoud {
		s.sentOnsets = append(s.sentOnsets, now.Add(s.sampleTime(k)))
	}
	s.sentLoud = k >= 0
	s.mu.Unlock()
}

// firstLoud is the index of the first sample of pcm whose magnitude reaches
// the peak of a sine at OnsetDBFS, or -1.
func (s *Session) firstLoud(pcm []int16) int {
	thr := int(math.Pow(10, s.cfg.OnsetDBFS/20) * math.Sqrt2 * 32768)
	for i, v := range pcm {
		if int(v) >= thr || int(v) <= -thr {
			return i
		}
	}
	return -1
}

func (s *Session) sampleTime(k int) time.Duration {
	return time.Duration(k) * time.Second / time.Duration(s.cfg.Codec.Rate)
}

func (s *Session) readLoop() {
	defer s.wg.Done()
	buf := make([]byte, 2048)
	for {
		n, from, err := s.conn.ReadFromUDP(buf)
		if err != nil {
			return
		}
		now := time.Now()
		pkt := append([]byte(nil), buf[:n]...)
		s.mu.Lock()
		started := s.started
		if !started {
			if len(s.early) < 200 {
				s.early = append(s.early, earlyPkt{pkt, from, now})
			} else {
				s.st.EarlyDropped++
			}
		}
		s.mu.Unlock()
		if started {
			s.handle(pkt, from, now)
		}
	}
}

// isRTCP tells RTCP from RTP on a multiplexed port (RFC 5761 §4).
func isRTCP(p []byte) bool { return len(p) >= 2 && p[1] >= 192 && p[1] <= 223 }

type earlyPkt struct {
	pkt  []byte
	from *net.UDPAddr
	at   time.Time
}

func (s *Session) handle(pkt []byte, from *net.UDPAddr, now time.Time) {
	s.handleMu.Lock()
	defer s.handleMu.Unlock()
	s.mu.Lock()
	remote, rx := s.remote, s.rx
	s.mu.Unlock()
	if len(pkt) < 12 || pkt[0]>>6 != 2 {
		return
	}
	if remote != nil && (!from.IP.Equal(remote.IP) || from.Port != remote.Port) {
		s.mu.Lock()
		s.st.WrongSource++
		s.st.LastWrongSource = from.String()
		s.mu.Unlock()
		return
	}
	if isRTCP(pkt) {
		raw := pkt
		if rx != nil {
			var err error
			if raw, err = rx.DecryptRTCP(nil, pkt, nil); err != nil {
				s.mu.Lock()
				s.st.AuthFailures++
				s.mu.Unlock()
				return
			}
		}
		s.handleRTCP(raw, now)
		return
	}
	raw := pkt
	if rx != nil {
		var err error
		if raw, err = rx.DecryptRTP(nil, pkt, nil); err != nil {
			s.mu.Lock()
			s.st.AuthFailures++
			s.mu.Unlock()
			return
		}
	}
	var p rtp.Packet
	if err := p.Unmarshal(raw); err != nil {
		return
	}
	if s.cfg.Echo {
		s.echo(&p)
	}
	s.mu.Lock()
	s.st.Received++
	s.st.PTs[p.PayloadType]++
	s.st.SSRCs[p.SSRC]++
	if s.st.FirstRecv.IsZero() {
		s.st.FirstRecv = now
	}
	s.st.LastRecv = now
	s.mu.Unlock()

	switch {
	case p.PayloadType == s.cfg.Codec.PT:
		s.handleAudio(&p, now)
	case s.cfg.EventPT != 0 && p.PayloadType == s.cfg.EventPT:
		s.handleEvent(&p, now)
	}
}

func (s *Session) echo(p *rtp.Packet) {
	s.txMu.Lock()
	pkt, err := s.protect(p.Header, p.Payload)
	s.txMu.Unlock()
	if err == nil {
		s.write(pkt)
		s.mu.Lock()
		s.st.Sent++
		s.mu.Unlock()
	}
}

func (s *Session) handleAudio(p *rtp.Packet, now time.Time) {
	var pcm []int16
	if (!s.cfg.Echo || !s.cfg.NoRecord) && !s.cfg.NoDecode {
		var err error
		pcm, err = s.dec.decode(p.Payload)
		if err != nil {
			s.mu.Lock()
			s.st.DecodeErrors++
			s.mu.Unlock()
			pcm = nil
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.st.ReceivedAudio++
	// Sequence accounting (RFC 3550 A.1, without probation).
	if !s.haveSeq {
		s.haveSeq, s.baseSeq, s.maxSeq = true, p.SequenceNumber, p.SequenceNumber
	} else if d := p.SequenceNumber - s.maxSeq; d < 0x8000 {
		if p.SequenceNumber < s.maxSeq {
			s.cycles += 1 << 16
		}
		s.maxSeq = p.SequenceNumber
	}
	s.st.Expected = int64(s.cycles) + int64(s.maxSeq) - int64(s.baseSeq) + 1
	s.st.Lost = s.st.Expected - int64(s.st.ReceivedAudio)
	// Interarrival jitter (RFC 3550 A.8), in ms.
	rate := float64(s.cfg.Codec.Rate)
	transit := float64(now.Sub(s.startTime))/float64(time.Second)*rate - float64(p.Timestamp)
	if s.haveTransit {
		d := math.Abs(transit - s.lastTransit)
		if d < rate*10 { // ignore a timestamp jump (new stream, gap)
			s.st.Jitter += (d/rate*1000 - s.st.Jitter) / 16
		}
	}
	s.lastTransit, s.haveTransit = transit, true
	if s.cfg.KeepFrames {
		f := Frame{Seq: p.SequenceNumber, TS: p.Timestamp, Marker: p.Marker, At: now, DBFS: -120, Size: len(p.Payload), Onset: -1}
		if pcm != nil {
			f.DBFS = audio.DBFS(pcm)
			if k := s.firstLoud(pcm); k >= 0 && !s.lastLoud {
				f.Onset = k
			}
		}
		s.frames = append(s.frames, f)
	}
	if pcm != nil {
		k := s.firstLoud(pcm)
		if k >= 0 && !s.lastLoud {
			s.recvOnsets = append(s.recvOnsets, now.Add(s.sampleTime(k)))
		}
		s.lastLoud = k >= 0
		if !s.cfg.NoRecord {
			s.rec = append(s.rec, pcm...)
		}
	}
}

func (s *Session) handleEvent(p *rtp.Packet, now time.Time) {
	if len(p.Payload) < 4 {
		return
	}
	code, end, dur := p.Payload[0], p.Payload[1]&0x80 != 0, uint16(p.Payload[2])<<8|uint16(p.Payload[3])
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.events {
		if e.SSRC == p.SSRC && e.Timestamp == p.Timestamp {
			e.Packets++
			e.Duration = max(e.Duration, dur)
			e.Ended = e.Ended || end
			return
		}
	}
	s.events = append(s.events, &Event{Digit: eventDigit(code), PT: p.PayloadType, Timestamp: p.Timestamp, SSRC: p.SSRC, Ended: end, Duration: dur, Packets: 1, At: now})
}

func (s *Session) handleRTCP(raw []byte, now time.Time) {
	pkts, err := rtcp.Unmarshal(raw)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.st.RTCPReceived++
	if err != nil {
		return
	}
	for _, p := range pkts {
		var reports []rtcp.ReceptionReport
		switch r := p.(type) {
		case *rtcp.SenderReport:
			reports = r.Reports
		case *rtcp.ReceiverReport:
			reports = r.Reports
		}
		for _, rr := range reports {
			if rr.SSRC != s.ssrc || rr.LastSenderReport == 0 {
				continue
			}
			if sent, ok := s.srNTP[rr.LastSenderReport]; ok {
				rtt := now.Sub(sent) - time.Duration(rr.Delay)*time.Second/65536
				s.st.RTT = append(s.st.RTT, rtt)
			}
		}
	}
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

// ResetRecording drops the audio recorded so far.
func (s *Session) ResetRecording() {
	s.mu.Lock()
	s.rec = nil
	s.mu.Unlock()
}

// Events returns the telephone-events received so far.
func (s *Session) Events() []Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Event, len(s.events))
	for i, e := range s.events {
		out[i] = *e
	}
	return out
}

// Digits returns the received events' digits in order.
func (s *Session) Digits() string {
	var b []byte
	for _, e := range s.Events() {
		b = append(b, e.Digit)
	}
	return string(b)
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

// Sources

// Source fills 20 ms of mono PCM at the codec's rate.
type Source interface{ Read(pcm []int16) }

// Tone is a continuous sine.
type Tone struct {
	Freq, Amp float64
	Rate      int
	n         atomic.Int64
}

// NewTone returns a tone source at rate Hz.
func NewTone(freq, amp float64, rate int) *Tone { return &Tone{Freq: freq, Amp: amp, Rate: rate} }

func (t *Tone) Read(pcm []int16) {
	start := int(t.n.Add(int64(len(pcm)))) - len(pcm)
	copy(pcm, audio.Tone(t.Freq, t.Amp, t.Rate, start, len(pcm)))
}

// Silence is digital silence.
type Silence struct{}

func (Silence) Read(pcm []int16) { clear(pcm) }

// Bursts is a tone On long every Period, silence in between (for latency:
// each burst's onset is timed leaving and coming back).
type Bursts struct {
	Freq, Amp  float64
	Rate       int
	On, Period time.Duration
	n          atomic.Int64
}

func (b *Bursts) Read(pcm []int16) {
	start := int(b.n.Add(int64(len(pcm)))) - len(pcm)
	on := int(b.On.Seconds() * float64(b.Rate))
	period := int(b.Period.Seconds() * float64(b.Rate))
	tone := audio.Tone(b.Freq, b.Amp, b.Rate, start, len(pcm))
	for i := range pcm {
		if (start+i)%period < on {
			pcm[i] = tone[i]
		} else {
			pcm[i] = 0
		}
	}
}
