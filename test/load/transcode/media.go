package main

// The load generator's media: cheap RTP/SRTP streams driven by one pacer.
//
// What makes it cheap enough to hold 150+ transcoded calls on the same two
// cores as wagate:
//
//   - Audio is encoded once, at start-up, into one-second loops of payloads
//     (Opus and PCMU) that every stream replays with its own RTP header
//     (SSRC, sequence, timestamp, marker). Only the SRTP protection is per
//     packet (it has to be: the key and the index are the stream's).
//   - All the streams of one side share one UDP socket (an "endpoint"):
//     every call's SDP names that socket's port, and what arrives is told
//     apart by its source, wagate's port for that call (wagate itself
//     accepts media only from the address in the SDP, which is the same
//     for every call, and sends from a port of its own per call). So the
//     generator sends with sendmmsg and receives with recvmmsg, a batch of
//     packets per system call, on two sockets, instead of one socket and
//     one goroutine woken per packet per call.
//   - One goroutine sends every stream, off one 2 ms ticker; each stream has
//     its own phase in the 20 ms frame so the packets reach wagate spread
//     over the frame, as independent clients' would, not in one burst.
//   - Receiving is one goroutine per endpoint that reads the RTP header,
//     authenticates and decrypts SRTP (so a bad tag from wagate is seen),
//     and keeps RFC 3550 counters and jitter. Only the few sampled calls
//     decode audio (Opus), to time tone onsets and check the tone.
//   - Arrival times are the kernel's (SO_TIMESTAMPNS), so the jitter of the
//     streams wagate sends is not inflated by the generator's scheduling.

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/pion/rtcp"
	"github.com/pion/srtp/v3"
	"golang.org/x/sys/unix"
	"gopkg.in/hraban/opus.v2"

	"github.com/wagate/wagate/test/internal/audio"
	"github.com/wagate/wagate/test/internal/pcmu"
	"github.com/wagate/wagate/test/internal/rtppeer"
)

const (
	frameDur  = 20 * time.Millisecond
	pacerTick = 2 * time.Millisecond
	// rtcpEvery is how often a Meta stream sends an RTCP sender report
	// (in frames: 5 s).
	rtcpEvery = 250
	// maxRecord bounds the decoded audio a sampled call keeps (48 kHz).
	maxRecord = 60 * 48000
	onsetDBFS = -30.0
	// batch is the most packets one sendmmsg/recvmmsg moves.
	batch   = 64
	pktSize = 1500
	oobSize = 64
	// smallPayload: Opus payloads up to this size are silence (see
	// stream.recvAtLastBig); srtpTagLen is AES_CM_128_HMAC_SHA1_80's tag.
	smallPayload = 12
	srtpTagLen   = 10
)

// ---------------------------------------------------------------------------
// Pre-encoded loops

// loop is a stretch of audio as payloads, replayed by every stream.
type loop struct {
	frames [][]byte
	// onsetFrame is the frame in which a tone burst starts (-1: none) and
	// onsetOff where in it the first loud sample is.
	onsetFrame int
	onsetOff   time.Duration
}

// loops are the payload loops the streams play.
type loops struct {
	metaAudio  *loop // Meta, unsampled calls: speech-like (5 s) or 1 kHz (1 s)
	opusBursts *loop // 200 ms of 1 kHz every second (Meta, sampled calls)
	pbxAudio   *loop // PBX, unsampled calls: speech-like (5 s) or 440 Hz (1 s)
	pcmuTone   *loop // 440 Hz (PBX, sampled calls with -pbx tone)
}

// speechLike is the codec package's benchmark signal (codec/helpers_test.go,
// copied): a voiced, formant-shaped, amplitude-modulated harmonic series
// with a gliding pitch, so Opus works as hard as on speech. (A pure tone
// is cheaper to encode: wagate's Opus encoder costs about a fifth less on
// one.)
func speechLike(rate int, dur float64) []int16 {
	n := int(dur * float64(rate))
	out := make([]int16, n)
	var ph float64
	for i := range out {
		t := float64(i) / float64(rate)
		f0 := 170 + 50*math.Sin(2*math.Pi*0.7*t)
		ph += 2 * math.Pi * f0 / float64(rate)
		f1 := 600 + 250*math.Sin(2*math.Pi*1.3*t)
		f2 := 1700 + 600*math.Sin(2*math.Pi*0.9*t)
		var v float64
		for h := 1; float64(h)*f0 < 3600; h++ {
			fh := float64(h) * f0
			g := 1/(1+math.Pow((fh-f1)/150, 2)) + 0.6/(1+math.Pow((fh-f2)/250, 2)) + 0.05
			v += g / float64(h) * math.Sin(float64(h)*ph)
		}
		env := 0.55 + 0.45*math.Sin(2*math.Pi*4*t)
		out[i] = int16(math.Max(-32767, math.Min(32767, 6000*env*v)))
	}
	return out
}

// newOpusEncoder is the encoder rtppeer uses, as WhatsApp's client encodes:
// 48 kHz mono VoIP, 20 kbit/s, wideband, in-band FEC.
func newOpusEncoder() (*opus.Encoder, error) {
	e, err := opus.NewEncoder(48000, 1, opus.AppVoIP)
	if err != nil {
		return nil, err
	}
	if err := e.SetBitrate(20000); err != nil {
		return nil, err
	}
	if err := e.SetMaxBandwidth(opus.Wideband); err != nil {
		return nil, err
	}
	if err := e.SetInBandFEC(true); err != nil {
		return nil, err
	}
	return e, nil
}

// encodeOpusLoop encodes warm frames and then n frames of pcm(i) for frame
// i, and keeps those n.
func encodeOpusLoop(pcm func(i int) []int16, warm, n int) (*loop, error) {
	e, err := newOpusEncoder()
	if err != nil {
		return nil, err
	}
	l := &loop{onsetFrame: -1}
	buf := make([]byte, 1500)
	for i := 0; i < warm+n; i++ {
		k, err := e.Encode(pcm(i), buf)
		if err != nil {
			return nil, err
		}
		if i >= warm {
			l.frames = append(l.frames, append([]byte(nil), buf[:k]...))
		}
	}
	return l, nil
}

func firstLoud(pcm []int16) int {
	thr := int(math.Pow(10, onsetDBFS/20) * math.Sqrt2 * 32768)
	for i, v := range pcm {
		if int(v) >= thr || int(v) <= -thr {
			return i
		}
	}
	return -1
}

func makeLoops(speech bool) (*loops, error) {
	const amp = toneAmp
	var ls loops
	var err error
	// 440 Hz: 440 periods in one second, so the 50-frame loop is seamless.
	ls.pcmuTone = &loop{onsetFrame: -1}
	for i := 0; i < 50; i++ {
		ls.pcmuTone.frames = append(ls.pcmuTone.frames, pcmu.Tone(440, amp, i*160, 160))
	}
	if speech {
		// Five seconds, as the codec benchmark uses.
		const frames = 250
		s48 := speechLike(48000, float64(frames+25)/50)
		ls.metaAudio, err = encodeOpusLoop(func(i int) []int16 { return s48[i*960 : (i+1)*960] }, 25, frames)
		if err != nil {
			return nil, err
		}
		s8 := speechLike(8000, float64(frames)/50)
		ls.pbxAudio = &loop{onsetFrame: -1}
		for i := 0; i < frames; i++ {
			f := make([]byte, 160)
			for k := range f {
				f[k] = pcmu.Encode(s8[i*160+k])
			}
			ls.pbxAudio.frames = append(ls.pbxAudio.frames, f)
		}
	} else {
		// 1 kHz has a whole number of periods in 20 ms, so every frame of
		// the tone is the same waveform and the loop wraps without a click.
		ls.metaAudio, err = encodeOpusLoop(func(i int) []int16 { return audio.Tone(1000, amp, 48000, i*960, 960) }, 25, 50)
		if err != nil {
			return nil, err
		}
		ls.pbxAudio = ls.pcmuTone
	}
	// Bursts: frames 0-9 of each second carry the tone. Two seconds are
	// encoded, the second kept, so the encoder is warm.
	burst := func(i int) []int16 {
		if i%50 < int(burstOn/frameDur) {
			return audio.Tone(1000, amp, 48000, (i%50)*960, 960)
		}
		return make([]int16, 960)
	}
	ls.opusBursts, err = encodeOpusLoop(burst, 50, 50)
	if err != nil {
		return nil, err
	}
	k := firstLoud(burst(0))
	ls.opusBursts.onsetFrame = 0
	ls.opusBursts.onsetOff = time.Duration(k) * time.Second / 48000
	return &ls, nil
}

// ---------------------------------------------------------------------------
// Endpoints: one shared socket per side, batched I/O

// mmsghdr is struct mmsghdr of sendmmsg(2)/recvmmsg(2).
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
	_   [4]byte
}

// endpoint is one UDP socket shared by the streams of one side.
type endpoint struct {
	conn *net.UDPConn
	rc   syscall.RawConn
	addr netip.AddrPort

	mu      sync.RWMutex
	streams map[netip.AddrPort]*stream // by the remote (wagate) address

	unmatched atomic.Uint64 // packets from no registered stream's remote
	polled    bool
	done      chan struct{}
	in        *recvBatch

	// Send batch: the pacer's only.
	out      [batch]mmsghdr
	outIov   [batch]unix.Iovec
	outName  [batch]unix.RawSockaddrInet4
	outBuf   []byte // batch × pktSize
	outN     int
	sendErrs uint64
}

// listenEndpoint binds a shared socket on ip. A polled endpoint is read by
// the pacer after each tick (drain): no goroutine is woken per packet, and
// the kernel's arrival timestamps keep the timing exact. Otherwise a
// goroutine of its own reads it as packets arrive (the echo, which must
// answer at once).
func listenEndpoint(ip string, polled bool) (*endpoint, error) {
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(ip)})
	if err != nil {
		return nil, err
	}
	rc, err := conn.SyscallConn()
	if err != nil {
		conn.Close()
		return nil, err
	}
	_ = rc.Control(func(fd uintptr) {
		// Room for bursts: wagate sends every call's packets here.
		if syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUFFORCE, 8<<20) != nil {
			_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4<<20)
		}
		_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF, 4<<20)
		_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_TIMESTAMPNS, 1)
	})
	e := &endpoint{conn: conn, rc: rc, addr: conn.LocalAddr().(*net.UDPAddr).AddrPort(), polled: polled,
		streams: map[netip.AddrPort]*stream{}, done: make(chan struct{}), outBuf: make([]byte, batch*pktSize),
		in: newRecvBatch()}
	if polled {
		close(e.done)
	} else {
		go e.readLoop()
	}
	return e, nil
}

func (e *endpoint) port() int { return int(e.addr.Port()) }

func (e *endpoint) close() {
	e.conn.Close()
	<-e.done
}

func (e *endpoint) register(s *stream) {
	e.mu.Lock()
	e.streams[s.remote] = s
	e.mu.Unlock()
}

func (e *endpoint) unregister(s *stream) {
	e.mu.Lock()
	if e.streams[s.remote] == s {
		delete(e.streams, s.remote)
	}
	e.mu.Unlock()
}

// slot returns the buffer of the next packet in the send batch, flushing a
// full batch first.
func (e *endpoint) slot() []byte {
	if e.outN == batch {
		e.flush()
	}
	return e.outBuf[e.outN*pktSize : (e.outN+1)*pktSize]
}

// queue adds the packet just written into slot() (n bytes) for dst.
func (e *endpoint) queue(n int, dst netip.AddrPort) {
	i := e.outN
	e.outIov[i] = unix.Iovec{Base: &e.outBuf[i*pktSize]}
	e.outIov[i].SetLen(n)
	e.outName[i] = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: dst.Addr().As4()}
	binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&e.outName[i].Port))[:], dst.Port())
	h := &e.out[i].hdr
	*h = unix.Msghdr{Name: (*byte)(unsafe.Pointer(&e.outName[i])), Namelen: unix.SizeofSockaddrInet4, Iov: &e.outIov[i]}
	h.SetIovlen(1)
	e.outN++
}

// flush sends the queued packets with sendmmsg (bounded retries).
func (e *endpoint) flush() {
	sent := 0
	for tries := 0; sent < e.outN && tries < 4*batch; tries++ {
		var n uintptr
		var errno syscall.Errno
		err := e.rc.Write(func(fd uintptr) bool {
			n, _, errno = syscall.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&e.out[sent])), uintptr(e.outN-sent), 0, 0, 0)
			return errno != syscall.EAGAIN
		})
		switch {
		case err != nil: // closed
			e.sendErrs += uint64(e.outN - sent)
			sent = e.outN
		case errno == syscall.EINTR:
		case errno != 0:
			// A message that cannot be sent is skipped; the rest go on.
			e.sendErrs++
			sent++
		default:
			sent += int(n)
		}
	}
	e.outN = 0
}

// recvBatch is the receive side of recvmmsg: buffers for a batch.
type recvBatch struct {
	msgs  [batch]mmsghdr
	iov   [batch]unix.Iovec
	names [batch]unix.RawSockaddrInet4
	bufs  []byte
	oobs  []byte
	dbuf  []byte
}

func newRecvBatch() *recvBatch {
	b := &recvBatch{bufs: make([]byte, batch*pktSize), oobs: make([]byte, batch*oobSize), dbuf: make([]byte, pktSize)}
	for i := range b.msgs {
		b.iov[i] = unix.Iovec{Base: &b.bufs[i*pktSize]}
		b.iov[i].SetLen(pktSize)
		b.msgs[i].hdr = unix.Msghdr{Name: (*byte)(unsafe.Pointer(&b.names[i])), Iov: &b.iov[i], Control: &b.oobs[i*oobSize]}
		b.msgs[i].hdr.SetIovlen(1)
	}
	return b
}

// recv reads up to a batch with recvmmsg; wait blocks (through Go's
// poller) until something arrives. It returns the count, and closed once
// the socket is closed.
func (e *endpoint) recv(wait bool) (n int, closed bool) {
	b := e.in
	for i := range b.msgs {
		b.msgs[i].hdr.Namelen = unix.SizeofSockaddrInet4
		b.msgs[i].hdr.SetControllen(oobSize)
		b.msgs[i].hdr.Flags = 0
		b.msgs[i].n = 0
	}
	var got uintptr
	var errno syscall.Errno
	err := e.rc.Read(func(fd uintptr) bool {
		got, _, errno = syscall.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&b.msgs[0])), batch, unix.MSG_DONTWAIT, 0, 0)
		return !wait || errno != syscall.EAGAIN
	})
	if err != nil {
		return 0, true
	}
	if errno != 0 {
		return 0, false
	}
	return int(got), false
}

// dispatch hands the n packets of the last recv to their streams.
func (e *endpoint) dispatch(n int) {
	b := e.in
	e.mu.RLock()
	defer e.mu.RUnlock()
	for i := 0; i < n; i++ {
		from := netip.AddrPortFrom(netip.AddrFrom4(b.names[i].Addr), binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&b.names[i].Port))[:]))
		s := e.streams[from]
		if s == nil {
			e.unmatched.Add(1)
			continue
		}
		at := rxTime(b.oobs[i*oobSize : i*oobSize+int(b.msgs[i].hdr.Controllen)])
		s.handle(b.bufs[i*pktSize:i*pktSize+int(b.msgs[i].n)], b.dbuf, at)
	}
}

// drain reads and dispatches what has arrived (a polled endpoint, from the
// pacer), bounded so one tick cannot run away.
func (e *endpoint) drain() {
	for range 64 {
		n, closed := e.recv(false)
		if closed || n == 0 {
			return
		}
		e.dispatch(n)
		if n < batch {
			return
		}
	}
}

func (e *endpoint) readLoop() {
	defer close(e.done)
	for {
		n, closed := e.recv(true)
		if closed {
			return
		}
		e.dispatch(n)
	}
}

// rxTime reads the SO_TIMESTAMPNS control message, else now.
func rxTime(oob []byte) time.Time {
	const hdr = int(unsafe.Sizeof(syscall.Cmsghdr{}))
	for len(oob) >= hdr {
		h := (*syscall.Cmsghdr)(unsafe.Pointer(&oob[0]))
		l := int(h.Len)
		if l < hdr || l > len(oob) {
			break
		}
		if h.Level == syscall.SOL_SOCKET && h.Type == syscall.SCM_TIMESTAMPNS && l >= hdr+16 {
			sec := int64(binary.NativeEndian.Uint64(oob[hdr:]))
			nsec := int64(binary.NativeEndian.Uint64(oob[hdr+8:]))
			return time.Unix(sec, nsec)
		}
		l = (l + 7) &^ 7
		if l > len(oob) {
			break
		}
		oob = oob[l:]
	}
	return time.Now()
}

// udpDrops reads /proc/net/udp: the receive-queue drops of every UDP
// socket bound to ip, by local port, and their sum.
func udpDrops(ip netip.Addr) (map[uint16]uint64, uint64, error) {
	f, err := os.Open("/proc/net/udp")
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	a4 := ip.As4()
	want := strings.ToUpper(hex.EncodeToString([]byte{a4[3], a4[2], a4[1], a4[0]})) // little-endian on x86/arm64
	out := map[uint16]uint64{}
	var sum uint64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 13 || fs[0] == "sl" {
			continue
		}
		h, p, ok := strings.Cut(fs[1], ":")
		if !ok || h != want {
			continue
		}
		port, err := strconv.ParseUint(p, 16, 16)
		if err != nil {
			continue
		}
		d, _ := strconv.ParseUint(fs[len(fs)-1], 10, 64)
		out[uint16(port)] += d
		sum += d
	}
	return out, sum, sc.Err()
}

// ---------------------------------------------------------------------------
// Streams

// jitterEst is the RFC 3550 interarrival jitter estimator (A.8), in ms.
type jitterEst struct {
	rate        float64
	have        bool
	lastTransit float64
	j           float64
}

// update takes a packet's arrival (or send) time and RTP timestamp.
func (e *jitterEst) update(at time.Time, ts uint32) {
	transit := float64(at.UnixNano())/1e9*e.rate - float64(ts)
	if e.have {
		d := math.Abs(transit - e.lastTransit)
		if d < e.rate*10 { // not a timestamp jump
			e.j += (d/e.rate*1000 - e.j) / 16
		}
	}
	e.lastTransit, e.have = transit, true
}

// seqTrack is RFC 3550 A.1's sequence accounting (no probation).
type seqTrack struct {
	have      bool
	base, max uint16
	cycles    uint32
	received  uint64
}

func (s *seqTrack) update(seq uint16) {
	s.received++
	if !s.have {
		s.have, s.base, s.max = true, seq, seq
		return
	}
	if d := seq - s.max; d != 0 && d < 0x8000 {
		if seq < s.max {
			s.cycles += 1 << 16
		}
		s.max = seq
	}
}

// lost is expected − received (negative with duplicates).
func (s *seqTrack) lost() int64 {
	if !s.have {
		return 0
	}
	expected := int64(s.cycles) + int64(s.max) - int64(s.base) + 1
	return expected - int64(s.received)
}

type side int

const (
	sideMeta side = iota // WhatsApp leg: Opus over (S)RTP, rtcp-mux
	sidePBX              // PBX leg: PCMU over plain RTP
)

// stream is one leg's media at the generator: what it sends (through the
// pacer) and what it receives (through its endpoint's reader).
type stream struct {
	ep      *endpoint
	side    side
	sampled bool // decode and time onsets (Meta)
	echo    bool // send back every RTP packet received (PBX, sampled)
	auth    bool // authenticate/decrypt what arrives (SRTP legs)
	// protected: what arrives is SRTP (decrypted only with auth).
	protected bool
	remote    netip.AddrPort

	// Sender state: the pacer's only (and, for an echo, the reader's).
	lp          *loop
	tx          *srtp.Context
	pt          uint8
	ssrc        uint32
	seq         uint16
	ts          uint32
	tsStep      uint32
	rate        float64
	idx         int
	next        time.Time
	marker      bool
	sendJit     jitterEst
	rtcpPackets uint32
	rtcpOctets  uint32
	sentOnsets  []time.Time // sampled: when each burst's onset left (under the pacer's lock)

	// Receiver state: the endpoint reader's.
	rx         *srtp.Context
	dec        *opus.Decoder
	pcm        []int16
	lastLoud   bool
	recvOnsets []time.Time
	rec        []int16
	recording  atomic.Bool
	seqs       seqTrack
	recvJit    jitterEst

	// Counters read while the streams run.
	sent, recv, recvRTCP, authFail, sentRTCP atomic.Uint64
	// recvAtLastBig is recv when the last audio payload over smallPayload
	// bytes arrived: what comes after it once the other side has stopped
	// is wagate's silence (its Opus silence frames are 6-8 bytes, after
	// two larger ones that carry the encoder's tail).
	recvAtLastBig            atomic.Uint64
	jitRecvBits, jitSendBits atomic.Uint64
	muted                    atomic.Bool // the pacer sends nothing more
}

// newStream makes a stream on ep; start it once the remote is known.
func newStream(ep *endpoint, sd side, sampled, echo, auth bool) (*stream, error) {
	s := &stream{
		ep: ep, side: sd, sampled: sampled, echo: echo, auth: auth,
		ssrc: rand.Uint32(), seq: uint16(rand.UintN(1 << 16)), ts: rand.Uint32(), marker: true,
	}
	if sd == sideMeta {
		s.rate, s.tsStep, s.pt = 48000, 960, 111
	} else {
		s.rate, s.tsStep, s.pt = 8000, 160, 0
	}
	s.sendJit.rate, s.recvJit.rate = s.rate, s.rate
	if sampled && sd == sideMeta {
		var err error
		if s.dec, err = opus.NewDecoder(48000, 1); err != nil {
			return nil, err
		}
		s.pcm = make([]int16, 5760)
	}
	return s, nil
}

// start sets the remote address (wagate's port for this leg), checks the
// payload type (the generator sends and expects 111 Opus / 0 PCMU), sets
// the SRTP keys (nil: plain RTP) and registers the stream with its
// endpoint. Call before the stream is added to the pacer.
func (s *stream) start(remote netip.AddrPort, pt uint8, local, remoteKey *rtppeer.Crypto) error {
	if pt != s.pt {
		return fmt.Errorf("negotiated payload type %d, the generator sends and expects %d", pt, s.pt)
	}
	if local != nil {
		tx, err := srtp.CreateContext(local.Key[:16], local.Key[16:], profile(local))
		if err != nil {
			return err
		}
		s.tx = tx
	}
	s.protected = remoteKey != nil
	if remoteKey != nil && s.auth {
		rx, err := srtp.CreateContext(remoteKey.Key[:16], remoteKey.Key[16:], profile(remoteKey),
			srtp.SRTPReplayProtection(256), srtp.SRTCPReplayProtection(256))
		if err != nil {
			return err
		}
		s.rx = rx
	}
	s.remote = remote
	s.ep.register(s)
	return nil
}

func profile(c *rtppeer.Crypto) srtp.ProtectionProfile {
	if c.Suite == "AES_CM_128_HMAC_SHA1_32" {
		return srtp.ProtectionProfileAes128CmHmacSha1_32
	}
	return srtp.ProtectionProfileAes128CmHmacSha1_80
}

// stop ends the stream's sending and receiving.
func (s *stream) stop() {
	s.muted.Store(true)
	if s.remote.IsValid() {
		s.ep.unregister(s)
	}
}

// queueFrame puts the next frame of the loop into the endpoint's send
// batch (pacer goroutine); at is the time it is due out.
func (s *stream) queueFrame(at time.Time) {
	payload := s.lp.frames[s.idx%len(s.lp.frames)]
	var plain [pktSize]byte
	p := plain[:12+len(payload)]
	p[0] = 0x80
	p[1] = s.pt & 0x7f
	if s.marker {
		p[1] |= 0x80
		s.marker = false
	}
	s.seq++
	binary.BigEndian.PutUint16(p[2:], s.seq)
	binary.BigEndian.PutUint32(p[4:], s.ts)
	binary.BigEndian.PutUint32(p[8:], s.ssrc)
	copy(p[12:], payload)
	dst := s.ep.slot()
	n := len(p)
	if s.tx != nil {
		out, err := s.tx.EncryptRTP(dst[:0], p, nil)
		if err != nil || &out[0] != &dst[0] {
			return
		}
		n = len(out)
	} else {
		copy(dst, p)
	}
	s.ep.queue(n, s.remote)
	s.sent.Add(1)
	s.rtcpPackets++
	s.rtcpOctets += uint32(len(payload))
	s.sendJit.update(at, s.ts)
	s.jitSendBits.Store(math.Float64bits(s.sendJit.j))
	if s.lp.onsetFrame >= 0 && s.idx%len(s.lp.frames) == s.lp.onsetFrame {
		s.sentOnsets = append(s.sentOnsets, at.Add(s.lp.onsetOff))
	}
	s.ts += s.tsStep
	s.idx++
	if s.side == sideMeta && s.idx%rtcpEvery == 0 {
		s.queueSR(at)
	}
}

// queueSR queues an RTCP sender report on the RTP port (rtcp-mux), as
// SRTCP on an SDES leg.
func (s *stream) queueSR(now time.Time) {
	const ntpEpochOffset = 2208988800
	ntp := uint64(now.Unix()+ntpEpochOffset)<<32 | uint64(now.Nanosecond())*(1<<32)/1e9
	sr := &rtcp.SenderReport{SSRC: s.ssrc, NTPTime: ntp, RTPTime: s.ts, PacketCount: s.rtcpPackets, OctetCount: s.rtcpOctets}
	raw, err := sr.Marshal()
	if err != nil {
		return
	}
	if s.tx != nil {
		if raw, err = s.tx.EncryptRTCP(nil, raw, nil); err != nil {
			return
		}
	}
	dst := s.ep.slot()
	s.ep.queue(copy(dst, raw), s.remote)
	s.sentRTCP.Add(1)
}

func isRTCP(p []byte) bool { return len(p) >= 2 && p[1] >= 192 && p[1] <= 223 }

// handle takes one datagram from the stream's remote (endpoint reader).
func (s *stream) handle(pkt, dbuf []byte, at time.Time) {
	if len(pkt) < 12 || pkt[0]>>6 != 2 {
		return
	}
	if isRTCP(pkt) {
		s.recvRTCP.Add(1)
		return
	}
	if s.rx != nil {
		plain, err := s.rx.DecryptRTP(dbuf[:0], pkt, nil)
		if err != nil {
			s.authFail.Add(1)
			return
		}
		pkt = plain
	}
	if pkt[1]&0x7f != s.pt {
		return // telephone-event or anything else: not audio
	}
	hl := 12 + 4*int(pkt[0]&0x0f)
	if pkt[0]&0x10 != 0 && len(pkt) >= hl+4 {
		hl += 4 + 4*int(binary.BigEndian.Uint16(pkt[hl+2:]))
	}
	if hl > len(pkt) {
		return
	}
	seq, ts := binary.BigEndian.Uint16(pkt[2:]), binary.BigEndian.Uint32(pkt[4:])
	n := s.recv.Add(1)
	plen := len(pkt) - hl
	if s.rx == nil && s.protected {
		plen -= srtpTagLen // not decrypted: the tag is in the length
	}
	if plen > smallPayload {
		s.recvAtLastBig.Store(n)
	}
	s.seqs.update(seq)
	s.recvJit.update(at, ts)
	s.jitRecvBits.Store(math.Float64bits(s.recvJit.j))
	if s.echo {
		// The same bytes straight back, as SIPp's -rtp_echo does.
		if !s.muted.Load() {
			if _, err := s.ep.conn.WriteToUDPAddrPort(pkt, s.remote); err == nil {
				s.sent.Add(1)
				s.sendJit.update(time.Now(), ts)
				s.jitSendBits.Store(math.Float64bits(s.sendJit.j))
			}
		}
		return
	}
	if s.dec == nil || (s.protected && s.rx == nil) {
		return // not decoded, or still encrypted
	}
	end := len(pkt)
	if pkt[0]&0x20 != 0 && end > hl {
		end -= int(pkt[end-1])
	}
	if end < hl {
		return
	}
	k, err := s.dec.Decode(pkt[hl:end], s.pcm)
	if err != nil {
		return
	}
	pcm := s.pcm[:k]
	j := firstLoud(pcm)
	if j >= 0 && !s.lastLoud {
		s.recvOnsets = append(s.recvOnsets, at.Add(time.Duration(j)*time.Second/48000))
	}
	s.lastLoud = j >= 0
	if s.recording.Load() && len(s.rec)+k <= maxRecord {
		s.rec = append(s.rec, pcm...)
	}
}

func (s *stream) recvJitter() float64 { return math.Float64frombits(s.jitRecvBits.Load()) }
func (s *stream) sendJitter() float64 { return math.Float64frombits(s.jitSendBits.Load()) }

// ---------------------------------------------------------------------------
// Pacer

// pacer sends every stream's frames from one goroutine.
type pacer struct {
	mu      sync.Mutex
	streams []*stream
	added   int
	eps     map[*endpoint]bool

	// Generator health, read under mu.
	maxLate  time.Duration
	late5ms  uint64 // frames sent more than 5 ms after their time
	frames   uint64
	resyncs  uint64
	stop     chan struct{}
	finished chan struct{}
}

func newPacer() *pacer {
	p := &pacer{stop: make(chan struct{}), finished: make(chan struct{}), eps: map[*endpoint]bool{}}
	go p.run()
	return p
}

// add starts sending s's loop: its first frame at the next free phase of
// the 20 ms frame, so streams are spread evenly over it.
func (p *pacer) add(s *stream, lp *loop) {
	p.mu.Lock()
	defer p.mu.Unlock()
	s.lp = lp
	phase := time.Duration(p.added%10) * pacerTick
	p.added++
	s.next = time.Now().Truncate(frameDur).Add(frameDur + phase)
	p.streams = append(p.streams, s)
	p.eps[s.ep] = true
}

// addEndpoint has the pacer drain a polled endpoint after every tick (and
// flush what is queued on it).
func (p *pacer) addEndpoint(e *endpoint) {
	p.mu.Lock()
	p.eps[e] = true
	p.mu.Unlock()
}

// health returns and resets the pacer's lateness counters.
func (p *pacer) health() (maxLate time.Duration, late5, frames, resyncs uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	maxLate, late5, frames, resyncs = p.maxLate, p.late5ms, p.frames, p.resyncs
	p.maxLate, p.late5ms, p.frames, p.resyncs = 0, 0, 0, 0
	return
}

// sentOnsets returns a copy of the burst onsets s has sent so far.
func (p *pacer) sentOnsets(s *stream) []time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]time.Time(nil), s.sentOnsets...)
}

func (p *pacer) close() {
	close(p.stop)
	<-p.finished
}

func (p *pacer) run() {
	defer close(p.finished)
	t := time.NewTicker(pacerTick)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
		}
		now := time.Now()
		p.mu.Lock()
		live := p.streams[:0]
		for _, s := range p.streams {
			if s.muted.Load() {
				continue
			}
			live = append(live, s)
			if now.Sub(s.next) > time.Second {
				// More than a second behind: skip ahead rather than burst.
				p.resyncs++
				s.next = now
			}
			for !s.next.After(now) {
				late := now.Sub(s.next)
				p.frames++
				if late > p.maxLate {
					p.maxLate = late
				}
				if late > 5*time.Millisecond {
					p.late5ms++
				}
				s.queueFrame(now)
				s.next = s.next.Add(frameDur)
			}
		}
		clear(p.streams[len(live):])
		p.streams = live
		for e := range p.eps {
			if e.outN > 0 {
				e.flush()
			}
		}
		for e := range p.eps {
			if e.polled {
				e.drain()
			}
		}
		p.mu.Unlock()
	}
}
