package media

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
	"github.com/pion/transport/v3/replaydetector"
)

// dropReason says why an inbound packet was discarded.
type dropReason uint8

const (
	keep          dropReason = iota
	dropAuth                 // SRTP/SRTCP authentication failed (tampered, wrong key, plain RTP)
	dropReplay               // SRTP/SRTCP replay check failed
	dropMalformed            // too short to be SRTP, bad header
)

const (
	// srtpOverhead is the most a packet grows when encrypted: the 16-byte
	// GCM tag or a 10-byte HMAC tag, a 4-byte SRTCP index, and an MKI.
	srtpOverhead = 16 + 4 + maxMKILen
	// maxKnownSSRC bounds the SSRCs an inbound context keeps state for,
	// see srtpIn.
	maxKnownSSRC = 8
	// probeResetAfter recreates the probe context after this many
	// packets that failed to authenticate, which bounds its per-SSRC
	// state under a flood of forged SSRCs.
	probeResetAfter = 256
	// srtcpIndexMax is SRTCP's 31-bit index limit.
	srtcpIndexMax = 0x7fffffff
)

// newContext creates a pion/srtp context for k with replay protection.
//
// Replay protection is pion's own sliding window (what
// srtp.SRTPReplayProtection installs), wrapped so a rejection can be told
// apart from an authentication failure: pion reports replays with an
// unexported error type. replayed, when not nil, is set on each rejection.
func (k *sdesKey) newContext(replayed *bool) (*srtp.Context, error) {
	window := uint(k.window)
	wrap := func(d replaydetector.ReplayDetector) replaydetector.ReplayDetector {
		if replayed == nil {
			return d
		}
		return &flaggingDetector{d: d, hit: replayed}
	}
	km := k.keys[0]
	opts := []srtp.ContextOption{
		srtp.SRTPReplayDetectorFactory(func() replaydetector.ReplayDetector {
			return wrap(replaydetector.New(window, 1<<48-1))
		}),
		srtp.SRTCPReplayDetectorFactory(func() replaydetector.ReplayDetector {
			return wrap(replaydetector.New(window, srtcpIndexMax))
		}),
	}
	if km.mki != nil {
		opts = append(opts, srtp.MasterKeyIndicator(km.mki))
	}
	ctx, err := srtp.CreateContext(km.key, km.salt, k.suite.profile, opts...)
	if err != nil {
		return nil, fmt.Errorf("media: SRTP context %s: %w", k.suite.name, err)
	}
	for _, more := range k.keys[1:] {
		if err := ctx.AddCipherForMKI(more.mki, more.key, more.salt); err != nil {
			return nil, fmt.Errorf("media: SRTP context %s: key with MKI %x: %w", k.suite.name, more.mki, err)
		}
	}
	return ctx, nil
}

// flaggingDetector is a replay detector that records its rejections.
type flaggingDetector struct {
	d   replaydetector.ReplayDetector
	hit *bool
}

func (f *flaggingDetector) Check(seq uint64) (func() bool, bool) {
	accept, ok := f.d.Check(seq)
	if !ok {
		*f.hit = true
	}
	return accept, ok
}

// srtpIn authenticates and decrypts what one peer sends (SRTP and SRTCP).
// It is owned by the goroutine reading that peer's sockets.
//
// pion/srtp creates per-SSRC state (replay window, rollover counter) before
// it checks a packet's authentication tag, so every forged packet with a
// new SSRC would grow the context for good. To bound that, only SSRCs that
// have authenticated reach the main context; a packet with an unknown SSRC
// is first checked on a copy against a throwaway probe context, and only
// if it authenticates there is it decrypted by the main one (whose state
// for that SSRC then starts with this packet). The probe is recreated after
// probeResetAfter failures, so a flood costs bounded memory and one HMAC
// (or GCM) per packet, and never touches the real streams' state.
type srtpIn struct {
	key         *sdesKey
	main, probe *srtp.Context
	probeFails  int
	replayed    bool // set by the contexts' replay detectors

	knownRTP, knownRTCP ssrcSet

	hdr     rtp.Header
	rtcpHdr rtcp.Header
	scratch []byte
}

func newSRTPIn(k *sdesKey) (*srtpIn, error) {
	s := &srtpIn{key: k, scratch: make([]byte, packetBufSize+srtpOverhead)}
	var err error
	if s.main, err = k.newContext(&s.replayed); err != nil {
		return nil, err
	}
	return s, nil
}

// ssrcSet is a tiny set of SSRCs; it forgets the oldest when full.
type ssrcSet struct {
	v    [maxKnownSSRC]uint32
	n    int
	next int
}

func (s *ssrcSet) has(ssrc uint32) bool {
	for _, v := range s.v[:s.n] {
		if v == ssrc {
			return true
		}
	}
	return false
}

func (s *ssrcSet) add(ssrc uint32) {
	if s.n < len(s.v) {
		s.v[s.n] = ssrc
		s.n++
		return
	}
	s.v[s.next] = ssrc
	s.next = (s.next + 1) % len(s.v)
}

// rtp authenticates and decrypts pkt (a packet that passed rtpHeaderLen)
// in place, returning the plain RTP packet.
func (s *srtpIn) rtp(pkt []byte) ([]byte, dropReason) {
	ssrc := binary.BigEndian.Uint32(pkt[8:])
	if !s.knownRTP.has(ssrc) {
		if r := s.probeCheck(pkt, false); r != keep {
			return nil, r
		}
		s.knownRTP.add(ssrc)
	}
	s.replayed = false
	out, err := s.main.DecryptRTP(pkt, pkt, &s.hdr)
	if err != nil {
		return nil, s.classify(err)
	}
	return out, keep
}

// rtcp authenticates and decrypts an SRTCP packet in place.
func (s *srtpIn) rtcp(pkt []byte) ([]byte, dropReason) {
	if len(pkt) < 8 {
		return nil, dropMalformed
	}
	ssrc := binary.BigEndian.Uint32(pkt[4:])
	if !s.knownRTCP.has(ssrc) {
		if r := s.probeCheck(pkt, true); r != keep {
			return nil, r
		}
		s.knownRTCP.add(ssrc)
	}
	s.replayed = false
	out, err := s.main.DecryptRTCP(pkt, pkt, &s.rtcpHdr)
	if err != nil {
		return nil, s.classify(err)
	}
	return out, keep
}

// probeCheck authenticates a copy of pkt against the probe context.
func (s *srtpIn) probeCheck(pkt []byte, isRTCP bool) dropReason {
	if s.probe == nil {
		p, err := s.key.newContext(&s.replayed)
		if err != nil {
			return dropAuth
		}
		s.probe, s.probeFails = p, 0
	}
	buf := append(s.scratch[:0], pkt...)
	s.replayed = false
	var err error
	if isRTCP {
		_, err = s.probe.DecryptRTCP(buf, buf, &s.rtcpHdr)
	} else {
		_, err = s.probe.DecryptRTP(buf, buf, &s.hdr)
	}
	if err != nil {
		if s.probeFails++; s.probeFails >= probeResetAfter {
			s.probe = nil
		}
		return s.classify(err)
	}
	return keep
}

func (s *srtpIn) classify(err error) dropReason {
	switch {
	case s.replayed:
		return dropReplay
	case errors.Is(err, srtp.ErrFailedToVerifyAuthTag), errors.Is(err, srtp.ErrMKINotFound):
		return dropAuth
	}
	// Too short for the tag, or a header pion cannot parse. A plain RTP
	// packet of a normal size fails authentication instead.
	return dropMalformed
}

// srtpOut encrypts what we send to one peer, SRTP or SRTCP. RTP and RTCP
// toward a peer are sent by different goroutines, so each has its own
// srtpOut built from the same key: SRTP and SRTCP state are independent
// in a context anyway, and their session keys differ by label.
type srtpOut struct {
	key     *sdesKey
	ctx     *srtp.Context
	hdr     rtp.Header
	rtcpHdr rtcp.Header
}

func newSRTPOut(k *sdesKey) (*srtpOut, error) {
	ctx, err := k.newContext(nil)
	if err != nil {
		return nil, err
	}
	return &srtpOut{key: k, ctx: ctx}, nil
}

// rtp encrypts the plain RTP packet pkt into dst (whose capacity must hold
// pkt plus srtpOverhead; dst must not overlap pkt).
func (s *srtpOut) rtp(dst, pkt []byte) ([]byte, error) {
	return s.ctx.EncryptRTP(dst[:0], pkt, &s.hdr)
}

// rtcp encrypts a plain RTCP compound packet into dst.
func (s *srtpOut) rtcp(dst, pkt []byte) ([]byte, error) {
	return s.ctx.EncryptRTCP(dst[:0], pkt, &s.rtcpHdr)
}
