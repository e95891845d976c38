package media

import (
	"fmt"
	"net/netip"
	"slices"
	"time"
)

// sideMedia is one side's agreed stream: the peer, the audio codec used
// on that leg, the payload types and packet times each way, and whether
// the peer holds. The relay's routes are built from the two sides'
// (buildRoutes), so that one side can change — a re-INVITE, a new peer
// after a transfer — while the other keeps what it agreed: there is no
// re-INVITE toward WhatsApp, so its side never changes once answered.
type sideMedia struct {
	peer *remote
	// codec is the audio codec on this leg; its PT is what we send it.
	codec Codec
	// recvAudio are the payload types the peer may send its audio with
	// (ours from our SDP, and its own where it answered with others).
	recvAudio []uint8
	// event is the telephone-event we send it (Name "": none);
	// recvEvent the payload types it may send events with.
	event     Codec
	recvEvent []uint8
	// ptime is the packet time the peer declared (what it wants to
	// receive, and usually sends); askPtime what our SDP asked it to send
	// (0: not signalled).
	ptime, askPtime int
	// noSend: the peer does not want our media (it offered sendonly or
	// inactive, or c=0.0.0.0). quiet: it may send nothing (any direction
	// but sendrecv: a held PBX rarely sends its own music), so its RTP
	// timeout is suspended.
	noSend, quiet bool
	// otherLaw[:nOtherLaw] are the payload types the peer may send G.711
	// of the other law than codec with: its answer listed both laws of
	// our offer, so it may send either (RFC 3264 §6.1), and some PBXs do
	// switch mid-call (Asterisk forwarding an A-law phone's or music
	// source's packets as they are). They are converted to codec's law
	// on arrival, one table look-up a byte. (An array, not a slice: a
	// sideMedia stays in its size class.)
	otherLaw  [2]uint8
	nOtherLaw uint8
	// linked: the peer is another call's side on this host (Link); it
	// has no RTP timeout at all, whatever RTCP it sends.
	linked bool
}

// name is the side's canonical codec name.
func (s *sideMedia) name() string { return canonicalCodec(s.codec.Name) }

// buildRoute is the route of the direction that reads from and writes to
// to. Same codec: relay; else transcode. The error wraps ErrNoCommonCodec
// when wagate cannot convert between the two.
func buildRoute(from, to *sideMedia) (*route, error) {
	in, out := from.name(), to.name()
	rt := &route{from: from.peer, to: to.peer, pt: newPTMap(), eventOut: ptDrop, outPT: to.codec.PT,
		mute: to.noSend, quiet: from.quiet, linked: from.linked}
	fin := codecFmt{name: in, rate: codecClock(in)}
	fout := codecFmt{name: out, rate: codecClock(out)}
	switch {
	case in == out:
		rt.mode = modeRelay
		rt.in, rt.out = withPtime(fin, from.ptime), withPtime(fout, to.ptime)
	case canTranscode(in, out):
		// Each side sends at the ptime it was asked for and gets the one
		// it asked for.
		rt.mode = modeTranscode
		rt.in, rt.out = withPtime(fin, from.askPtime), withPtime(fout, to.ptime)
	default:
		return nil, fmt.Errorf("%w: cannot convert %s to %s", ErrNoCommonCodec, from.codec.Name, to.codec.Name)
	}
	rt.frame = frameTicks(from.codec, from.ptime)
	rt.inFrame = packetTime(from.askPtime)
	// Events first: an audio payload type that clashes with one wins.
	for _, pt := range from.recvEvent {
		rt.class[pt] = classEvent
		if to.event.Name != "" {
			rt.pt[pt], rt.eventOut = to.event.PT, to.event.PT
		}
	}
	for _, pt := range from.recvAudio {
		rt.class[pt], rt.pt[pt] = classAudio, to.codec.PT
	}
	if lawConversion(in) != nil {
		for _, pt := range from.otherLaw[:from.nOtherLaw] {
			if rt.class[pt] == classDrop {
				rt.class[pt], rt.pt[pt] = classOtherLaw, to.codec.PT
			}
		}
	}
	return rt, nil
}

// buildRoutes returns the routes A→B and B→A of two agreed sides.
func buildRoutes(a, b *sideMedia) (ab, ba *route, err error) {
	if ab, err = buildRoute(a, b); err != nil {
		return nil, nil, err
	}
	if ba, err = buildRoute(b, a); err != nil {
		return nil, nil, err
	}
	return ab, ba, nil
}

// installLocked builds and stores the routes of the agreed sides and
// wakes the directions' timeout jobs, which re-read them (a side that
// stopped holding is timed from now). Called with b.mu held.
func (b *Bridge) installLocked() error {
	n := &b.neg
	if n.sides[SideA] == nil || n.sides[SideB] == nil {
		return fmt.Errorf("media: the call's media is not agreed yet")
	}
	ab, ba, err := buildRoutes(n.sides[SideA], n.sides[SideB])
	if err != nil {
		return err
	}
	// A side whose peer is being replaced (a transfer rings its target,
	// OfferSide) may send nothing until the new peer answers: the old
	// one may have hung up, and the other side hears music on hold, not
	// it. Its RTP timeout waits for the new peer, or for the offer to be
	// withdrawn (then it counts from then, as after a hold).
	if n.pending[SideA] != nil {
		ab.quiet, ab.replacing = true, true
	}
	if n.pending[SideB] != nil {
		ba.quiet, ba.replacing = true, true
	}
	n.markLeaving(ab, ba)
	b.routeAB.Store(ab)
	b.routeBA.Store(ba)
	for _, d := range b.dirs {
		if d != nil && d.timeoutJob != nil {
			d.timeoutJob.Wake(time.Time{})
		}
	}
	return nil
}

// Held reports, per side, whether its peer holds (does not want media
// from wagate): what the last SDP it sent said.
func (b *Bridge) Held(s Side) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	sm := b.neg.sides[s]
	return sm != nil && sm.noSend
}

// LocalSDP returns the last SDP wagate sent side s (an answer to a
// re-INVITE, the offer to a new peer, the first offer or answer), or nil.
// It is a copy.
func (b *Bridge) LocalSDP(s Side) []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.neg.sent[s])
}

// Remote returns where side s's media goes now (its SDP address, or the
// source latched behind NAT); invalid while unknown (behind NAT at an
// address the sockets cannot reach, before the latch) or on hold at
// 0.0.0.0.
func (b *Bridge) Remote(s Side) netip.AddrPort {
	b.mu.Lock()
	defer b.mu.Unlock()
	if sm := b.neg.sides[s]; sm != nil {
		return sm.peer.dst()
	}
	return netip.AddrPort{}
}

// reverse is the direction an answer takes to an offer's (RFC 3264 §6.1).
func reverse(d Direction) Direction {
	switch d {
	case SendOnly:
		return RecvOnly
	case RecvOnly:
		return SendOnly
	case Inactive:
		return Inactive
	}
	return SendRecv
}

// holdDirection is what an offer's direction means when its address is
// 0.0.0.0 (RFC 3264 §8.4, the RFC 2543 way to hold): the peer receives
// nothing.
func holdDirection(d Direction, addr netip.AddrPort) Direction {
	if addr.IsValid() {
		return d
	}
	switch d {
	case SendRecv, "":
		return SendOnly
	case RecvOnly:
		return Inactive
	}
	return d
}
