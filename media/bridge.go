package media

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Side names a side of a call: A, whose INVITE carried the offer, or B.
type Side uint8

// The sides of a call.
const (
	SideA Side = iota
	SideB
)

func (s Side) String() string {
	if s == SideB {
		return "B"
	}
	return "A"
}

func (s Side) other() Side { return 1 - s }

// Encryption values of LegConfig.
const (
	EncryptionDTLS = "dtls" // UDP/TLS/RTP/SAVP(F): ICE, then SRTP keyed by DTLS
	EncryptionSDES = "sdes" // RTP/SAVP keyed with a=crypto
	EncryptionNone = "none" // plain RTP/AVP
)

// Prefer values of LegConfig: what a WhatsApp leg takes when Meta offers
// (or may answer) G.711 beside Opus.
const (
	PreferTranscode   = "transcode"   // Opus toward Meta, transcoded by wagate
	PreferPassthrough = "passthrough" // G.711 end to end when the other side has it
)

// LegConfig is what a bridge must know about the endpoint on one leg.
type LegConfig struct {
	// Codecs are the codec names allowed on this leg, in preference
	// order: "opus", "PCMU", "PCMA" (case-insensitive). Empty allows all
	// three.
	Codecs []string
	// Encryption is "dtls" (ICE and DTLS-SRTP, UDP/TLS/RTP/SAVP[F]),
	// "sdes" (RTP/SAVP + a=crypto) or "none" (RTP/AVP); empty means
	// "none".
	Encryption string
	// Prefer, on a WhatsApp leg, chooses between Opus and the G.711 Meta
	// offers beside it: PreferTranscode takes Opus (and offers it first
	// to Meta), PreferPassthrough relays G.711 end to end when the other
	// side has it. Empty: relay whatever both sides share, in the
	// offerer's order.
	Prefer string
	// WhatsApp marks Meta's leg: wagate sends media first on it from
	// Start (silence until the other side speaks), keeps sending while the
	// other side is silent, and never sends it anything before Start.
	WhatsApp bool
	// BehindNAT says the peer's media may come from another port or
	// address than its SDP says. The relay then latches onto the first
	// valid packet (authenticated, on an SDES leg) from a candidate source:
	// the SDP's IP or SignalIP, any port (any address with
	// LatchAnyAddress). Another candidate takes the latch over only after
	// Manager's relatch_packets consecutive valid packets (see
	// docs/media.md); non-candidates are dropped and never sent anything.
	BehindNAT bool
	// SignalIP is the address this leg's SIP signalling comes from (side
	// A: the INVITE's source; side B: the endpoint's host when it is an IP
	// address), invalid when unknown. Behind NAT, media from it may latch.
	SignalIP netip.Addr
	// LatchAnyAddress, only with BehindNAT, makes every source address a
	// candidate, for peers whose media leaves from an address unrelated
	// to their SDP and SIP.
	LatchAnyAddress bool
}

// normalize checks c and returns it with canonical codec names.
func (c LegConfig) normalize(side Side) (LegConfig, error) {
	switch c.Encryption {
	case "":
		c.Encryption = EncryptionNone
	case EncryptionDTLS, EncryptionSDES, EncryptionNone:
	default:
		return c, fmt.Errorf("media: side %s encryption %q: want %q, %q or %q", side, c.Encryption, EncryptionDTLS, EncryptionSDES, EncryptionNone)
	}
	switch c.Prefer {
	case "", PreferTranscode, PreferPassthrough:
	default:
		return c, fmt.Errorf("media: side %s prefer %q: want %q or %q", side, c.Prefer, PreferTranscode, PreferPassthrough)
	}
	if len(c.Codecs) == 0 {
		c.Codecs = []string{"opus", "PCMU", "PCMA"}
	}
	names := make([]string, 0, len(c.Codecs))
	for _, n := range c.Codecs {
		canon := canonicalCodec(n)
		if canon == "" {
			return c, fmt.Errorf("media: side %s codec %q: want opus, PCMU or PCMA", side, n)
		}
		names = append(names, canon)
	}
	c.Codecs = names
	if c.LatchAnyAddress && !c.BehindNAT {
		return c, fmt.Errorf("media: side %s: LatchAnyAddress only applies with BehindNAT", side)
	}
	c.SignalIP = c.SignalIP.Unmap()
	return c, nil
}

// proto is the SDP transport of the leg in our offers.
func (c LegConfig) proto() string {
	switch c.Encryption {
	case EncryptionDTLS:
		return dtlsProtoF
	case EncryptionSDES:
		return secureRTP
	}
	return plainRTP
}

// accepts reports whether a peer's transport suits the leg.
func (c LegConfig) accepts(proto string) bool {
	if c.Encryption == EncryptionDTLS {
		return proto == dtlsProtoF || proto == dtlsProto
	}
	return proto == c.proto()
}

// PCMTap receives both sides' decoded audio, for recording. PCM is called
// from the relay goroutines with 8 kHz mono audio as received from side
// (concealment included when transcoding); pcm is reused after PCM returns,
// so copy it. PCM must not block.
type PCMTap interface {
	PCM(side Side, pcm []int16)
}

// tapHolder boxes a PCMTap for an atomic pointer.
type tapHolder struct{ tap PCMTap }

// legState is what both directions share about one leg: the sockets, our
// stream's SSRC and sender statistics, and the loss figures RTCP learns.
type legState struct {
	cfg  LegConfig
	pair *portPair
	ssrc uint32 // our SSRC toward this leg
	tx   txStats
	// peerLoss is the fraction lost (percent) the peer last reported for
	// our stream, -1 before any report; rxLoss what we lose of its.
	peerLoss, rxLoss atomic.Int32
	// sec is the ICE agent and DTLS endpoint of a dtls leg (nil
	// otherwise), set by Offer/AnswerB before Start.
	sec atomic.Pointer[secureLeg]
}

// Bridge relays one call's media between side A (the caller, whose INVITE
// carried the offer) and side B (the callee). Each side has its own port
// pair; the relay only accepts each side's media from the address that
// side's SDP signalled (or, behind NAT, the candidate source it latched).
//
// Use: Offer, AnswerB (again for each answer B sends), Start, Close. All
// methods are safe for concurrent use.
type Bridge struct {
	m     *Manager
	log   *slog.Logger
	cert  *Certificate // of dtls legs
	legs  [2]legState
	cname string
	epoch time.Time

	// Routes of the directions A→B and B→A, swapped by Offer/AnswerB and
	// read per packet by the relay goroutines.
	routeAB, routeBA atomic.Pointer[route]
	tap              atomic.Pointer[tapHolder]
	dtmfFn           dtmfHook // OnDTMF
	// localReady is closed when A, answered by AnswerLocal, can hear
	// what is sent to it: at once, or once a dtls leg is keyed
	// (LocalReady). Guarded by mu; nil before AnswerLocal.
	localReady chan struct{}

	aToB, bToA, droppedSource, droppedInvalid   atomic.Uint64
	droppedAuth, droppedReplay, droppedLate     atomic.Uint64
	rtcpSent, rtcpReceived, silence, dtmfEvents atomic.Uint64
	played, inbandKeys                          atomic.Uint64

	mu      sync.Mutex
	neg     negotiation
	started bool
	closed  bool
	// onTimeout is set by Start before the goroutines start and not
	// changed afterwards.
	onTimeout func(err error)

	// dirs are the relay directions once started, for Report.
	dirs     [2]*direction
	wg       sync.WaitGroup // the reader goroutines
	cr       *callReader    // the call's reader, if not one a direction
	closing  atomic.Bool    // Close has begun: no more onTimeout
	fired    atomic.Bool    // onTimeout was called
	released chan struct{}  // closed when Close has released everything
}

// BridgeStats counts a bridge's packets.
type BridgeStats struct {
	// AtoB and BtoA count media packets sent in each direction: relayed,
	// transcoded output and DTMF (silence is counted apart). Valid
	// packets from a side whose peer's address is not known yet (before
	// AnswerB) are neither relayed nor counted.
	AtoB, BtoA uint64
	// DroppedSource counts packets from an address other than the one the
	// sending side signalled (or latched), including any that arrived
	// before that address was known, and those of a behind-NAT peer's new
	// source before the relay moves to it.
	DroppedSource uint64
	// DroppedInvalid counts packets from the right source that are not
	// valid RTP/RTCP (bad header, truncated, too short for SRTP) or carry
	// a payload type that was not negotiated (e.g. CN).
	DroppedInvalid uint64
	// DroppedAuth and DroppedReplay count SRTP/SRTCP packets that failed
	// authentication (tampered, wrong key, plain RTP on an SDES leg) or
	// the replay check. The call goes on.
	DroppedAuth, DroppedReplay uint64
	// DroppedLate counts packets a playout buffer discarded because
	// their time had passed (or that it already held).
	DroppedLate uint64
	// Concealed counts frames made up because their packet was missing
	// at its playout time (Opus FEC or PLC, G.711 PLC; when relaying, a
	// gap the far end conceals). Expanded counts frames made up to grow
	// the playout delay when the jitter rose, Compressed input frames
	// dropped to shrink it when the jitter fell.
	Concealed, Expanded, Compressed uint64
	// Silence counts silence packets sent toward a WhatsApp leg; Played
	// the packets of playbacks (Bridge.Play).
	Silence, Played uint64
	// RTCPSent and RTCPReceived count our compound reports sent and valid
	// (authenticated) ones received, both legs together.
	RTCPSent, RTCPReceived uint64
	// DTMFEvents counts telephone events relayed (each key press once).
	DTMFEvents uint64
	// InbandDTMF counts keys found as tones in G.711 audio (a call
	// answered locally, inband.go).
	InbandDTMF uint64
	// DroppedSTUN and DroppedDTLS count datagrams on a dtls leg's port
	// that looked like STUN or DTLS but were not the ICE peer's or not
	// authentic (or came while the leg's queue was full).
	DroppedSTUN, DroppedDTLS uint64
}

func newBridge(m *Manager, log *slog.Logger, legA, legB *portPair, a, b LegConfig) *Bridge {
	br := &Bridge{m: m, log: log, released: make(chan struct{}), epoch: time.Now()}
	var id [6]byte
	for i := range id {
		id[i] = byte(rand.Uint32())
	}
	br.cname = "wagate-" + hex.EncodeToString(id[:])
	for i, p := range []*portPair{legA, legB} {
		l := &br.legs[i]
		l.pair, l.ssrc = p, rand.Uint32()
		l.peerLoss.Store(-1)
	}
	if br.legs[1].ssrc == br.legs[0].ssrc {
		br.legs[1].ssrc++
	}
	br.legs[0].cfg, br.legs[1].cfg = a, b
	return br
}

// LocalAnswerA returns the last SDP answer produced for A (to answer
// re-INVITEs from A locally), or nil before AnswerB. It is a copy.
func (b *Bridge) LocalAnswerA() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.neg.answerA)
}

// LocalOfferB returns the SDP offer produced for B, or nil before Offer.
// It is a copy.
func (b *Bridge) LocalOfferB() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.neg.offerB)
}

// SetTap sets (or with nil removes) the tap that receives both sides'
// decoded audio. Relayed audio is decoded only while a tap is set.
func (b *Bridge) SetTap(t PCMTap) {
	if t == nil {
		b.tap.Store(nil)
		return
	}
	b.tap.Store(&tapHolder{tap: t})
}

// Start begins relaying; later calls, and calls after Close, do nothing.
// Start means answered: a WhatsApp leg gets no media before it, and from
// it gets our media at once (silence until the other side speaks).
//
// Each side has RTPStartTimeout from Start to send its first valid RTP
// packet, then may go RTPTimeout without one (zero disables either). When a
// side exceeds that, or its socket fails, onTimeout (if not nil) is called
// once, on a goroutine of its own, with an error saying which side; the
// SIP layer then hangs up both legs and calls Close, which it may do from
// inside onTimeout. onTimeout is not called once Close has begun (a call
// already under way may still complete while Close runs).
func (b *Bridge) Start(onTimeout func(err error)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.started || b.closed {
		return
	}
	b.started = true
	b.onTimeout = onTimeout
	dirs := [2]*direction{
		newDirection(b, SideA, &b.routeAB, &b.aToB),
		newDirection(b, SideB, &b.routeBA, &b.bToA),
	}
	b.dirs = dirs
	// The legs' ICE agents start before the readers that feed them.
	for i := range b.legs {
		if s := b.legs[i].sec.Load(); s != nil {
			s.start()
		}
	}
	now := time.Now()
	for _, d := range dirs {
		d.start(b.m.pacer, now)
	}
	// One reader goroutine for the call on Linux (callreader_linux.go,
	// made with the bridge), else one a direction.
	if b.cr != nil {
		b.cr.attach(dirs)
		b.wg.Add(1)
		go b.runCall(b.cr)
	} else {
		b.wg.Add(len(dirs))
		for _, d := range dirs {
			go b.runDirection(d)
		}
	}
	b.log.Debug("media: relay started")
}

// runCall is the body of a call reader's goroutine.
func (b *Bridge) runCall(cr *callReader) {
	err := cr.run()
	b.wg.Done() // before fail, as in runDirection
	if err != nil {
		b.fail(err)
	}
}

// runDirection is the body of a reader goroutine.
func (b *Bridge) runDirection(d *direction) {
	err := d.run()
	// Done before the callback: onTimeout may call Close, which waits for
	// the reader goroutines and must not wait for this one.
	b.wg.Done()
	if err != nil {
		b.fail(err)
	}
}

// fail reports the end of the call's media to onTimeout, once, unless
// Close has begun. The callback runs on a goroutine of its own: it may
// come from a pacer job, which must not wait for the SIP layer.
func (b *Bridge) fail(err error) {
	if b.closing.Load() || !b.fired.CompareAndSwap(false, true) {
		return
	}
	b.log.Warn("media: relay ended", "err", err)
	if b.onTimeout != nil {
		go b.onTimeout(err)
	}
}

// Close stops relaying, ends the reader goroutines and the pacer jobs and
// returns the ports to the allocator (quarantined; their sockets stay
// bound for reuse). It is idempotent, safe from any goroutine (onTimeout
// included) and before Start; every call returns only once the bridge is
// fully released.
func (b *Bridge) Close() {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		<-b.released
		return
	}
	b.closed = true
	b.closing.Store(true)
	dirs, cr := b.dirs, b.cr
	b.mu.Unlock()

	// After stop no pacer job touches the sockets or the stages: each job
	// takes the direction's lock and finds it closed.
	for _, d := range dirs {
		if d != nil {
			d.stop()
		}
	}
	// A read deadline in the past ends the readers (the sockets stay open).
	b.legs[SideA].pair.stopReads()
	b.legs[SideB].pair.stopReads()
	if cr != nil {
		cr.stop()
	}
	b.wg.Wait()
	if cr != nil {
		cr.close() // before the ports go back: the set holds their sockets
	}
	// ICE and DTLS write through the sockets: end them before the ports
	// go back.
	for i := range b.legs {
		if s := b.legs[i].sec.Load(); s != nil {
			s.close()
		}
	}
	for _, d := range dirs {
		if d != nil {
			d.closeStages()
		}
	}
	b.m.ports.release(b.legs[SideA].pair)
	b.m.ports.release(b.legs[SideB].pair)
	b.m.bridges.Add(-1)
	s := b.Stats()
	b.m.account(s, b.transcoded())
	b.log.Debug("media: bridge closed", "a_to_b", s.AtoB, "b_to_a", s.BtoA,
		"dropped_source", s.DroppedSource, "dropped_invalid", s.DroppedInvalid,
		"dropped_auth", s.DroppedAuth, "dropped_replay", s.DroppedReplay, "dropped_late", s.DroppedLate,
		"silence", s.Silence, "played", s.Played, "concealed", s.Concealed, "expanded", s.Expanded, "compressed", s.Compressed,
		"rtcp_sent", s.RTCPSent, "rtcp_received", s.RTCPReceived, "dtmf_events", s.DTMFEvents, "inband_dtmf", s.InbandDTMF,
		"dropped_stun", s.DroppedSTUN, "dropped_dtls", s.DroppedDTLS)
	close(b.released)
}

// keyed gives a dtls leg's peer its ICE address and SRTP keys: the
// routes of both directions get them at once (the relay reads the next
// packet, and the pacer its next tick, with them).
func (b *Bridge) keyed(side Side, to netip.AddrPort, recv, send *sdesKey) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	old := b.neg.peerA
	if side == SideB {
		old = b.neg.peerB
	}
	if old == nil {
		return
	}
	b.swapRemote(old, &remote{rtp: to, rtcp: to, mux: true, secure: true, recvKey: recv, sendKey: send})
	if side == SideA {
		b.setLocalReadyLocked()
	}
}

// moved follows a keyed dtls leg's peer to the pair its controlling
// agent nominated instead.
func (b *Bridge) moved(side Side, to netip.AddrPort) {
	b.mu.Lock()
	defer b.mu.Unlock()
	old := b.neg.peerA
	if side == SideB {
		old = b.neg.peerB
	}
	if b.closed || old == nil || old.recvKey == nil {
		return
	}
	b.swapRemote(old, &remote{rtp: to, rtcp: to, mux: true, secure: true, recvKey: old.recvKey, sendKey: old.sendKey})
	b.log.Info("media: ICE peer moved to another pair", "side", side, "to", to)
}

// swapRemote replaces one side's remote in the routes and the
// negotiation. The caller holds b.mu.
func (b *Bridge) swapRemote(old, nr *remote) {
	for _, p := range []*atomic.Pointer[route]{&b.routeAB, &b.routeBA} {
		rt := p.Load()
		if rt == nil {
			continue
		}
		c := *rt
		if c.from == old {
			c.from = nr
		}
		if c.to == old {
			c.to = nr
		}
		p.Store(&c)
	}
	if b.neg.peerA == old {
		b.neg.peerA = nr
	}
	if b.neg.peerB == old {
		b.neg.peerB = nr
	}
	// Routes are rebuilt from the sides' agreed streams after a re-offer
	// (reoffer.go): they must name the keyed peer too.
	for _, sm := range b.neg.sides {
		if sm != nil && sm.peer == old {
			sm.peer = nr
		}
	}
}

// Stats returns the bridge's packet counters.
func (b *Bridge) Stats() BridgeStats {
	var c, e, k uint64
	b.mu.Lock()
	dirs := b.dirs
	b.mu.Unlock()
	for _, d := range dirs {
		if d == nil {
			continue
		}
		d.mu.Lock()
		if d.pl != nil {
			c, e, k = c+d.pl.concealed, e+d.pl.expanded, k+d.pl.compressed
		}
		d.mu.Unlock()
	}
	var stunDrops, dtlsDrops uint64
	for i := range b.legs {
		if s := b.legs[i].sec.Load(); s != nil {
			stunDrops += s.droppedSTUN.Load()
			dtlsDrops += s.droppedDTLS.Load()
		}
	}
	return BridgeStats{
		DroppedSTUN:    stunDrops,
		DroppedDTLS:    dtlsDrops,
		Concealed:      c,
		Expanded:       e,
		Compressed:     k,
		AtoB:           b.aToB.Load(),
		BtoA:           b.bToA.Load(),
		DroppedSource:  b.droppedSource.Load(),
		DroppedInvalid: b.droppedInvalid.Load(),
		DroppedAuth:    b.droppedAuth.Load(),
		DroppedReplay:  b.droppedReplay.Load(),
		DroppedLate:    b.droppedLate.Load(),
		Silence:        b.silence.Load(),
		Played:         b.played.Load(),
		RTCPSent:       b.rtcpSent.Load(),
		RTCPReceived:   b.rtcpReceived.Load(),
		DTMFEvents:     b.dtmfEvents.Load(),
		InbandDTMF:     b.inbandKeys.Load(),
	}
}

// legacyCodecs is what NewBridge allows on side A: anything.
var legacyCodecs = []string{"opus", "PCMU", "PCMA"}

// filterCodecs keeps the names wagate knows (legacy OfferB took any list).
func filterCodecs(names []string) []string {
	var out []string
	for _, n := range names {
		if c := canonicalCodec(strings.TrimSpace(n)); c != "" {
			out = append(out, c)
		}
	}
	return out
}
