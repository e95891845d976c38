// Package metapeer is a Go test peer that plays WhatsApp's SIP edge toward
// wagate: it places user-initiated calls (UIC) the way Meta does — an
// INVITE for the business number with a Record-Route, x-wa-meta-* headers
// and Meta's SDES offer (m=audio PORT RTP/SAVP 111 126, opus/48000/2 with
// Meta's fmtp, telephone-event/8000, ptime 20, rtcp-mux, one
// AES_CM_128_HMAC_SHA1_80 a=crypto) — and answers business-initiated calls
// (BIC) with an SDES answer. Media is Opus 20 ms frames encoded at 48 kHz
// mono over SRTP, RTP and RTCP on one port.
//
// The same peer also plays the other side of wagate (ProfileG711): a PBX
// that answers with PCMU/PCMA on plain RTP, or a dialer that calls with it,
// so that a test can send and check audio and DTMF on both legs with one
// SIP and media stack that shares no code with wagate.
package metapeer

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/wagate/wagate/test/internal/dtlspeer"
	"github.com/wagate/wagate/test/internal/rtppeer"
	"github.com/wagate/wagate/test/internal/sipua"
)

// Profile is which kind of endpoint the peer plays.
type Profile int

const (
	// ProfileMeta is WhatsApp: Opus/48000/2 PT 111, telephone-event 126,
	// SDES-SRTP (unless Plain), rtcp-mux.
	ProfileMeta Profile = iota
	// ProfileG711 is a PBX or dialer: G.711 on plain RTP/AVP, separate
	// RTCP port (none sent), telephone-event 101.
	ProfileG711
)

// Config configures a peer.
type Config struct {
	// SIP is the ip:port the peer's SIP UA listens on.
	SIP string
	// MediaIP is where its RTP sockets bind (default: SIP's IP).
	MediaIP string
	Profile Profile
	// Plain turns SRTP off on a Meta peer (RTP/AVP, for debugging).
	Plain bool
	// DTLS keys a Meta peer's media the way Meta does by default: ICE
	// (lite), DTLS (server side), UDP/TLS/RTP/SAVPF (see dtls.go).
	DTLS bool
	// DTLSPeer tunes the DTLS endpoint (failure tests).
	DTLSPeer dtlspeer.Config
	// OfferG711 puts PCMU and PCMA after Opus in a Meta peer's offers (a
	// number with Meta's additional_codecs), and AnswerG711 makes it
	// answer G.711 whenever an offer has it; the call then uses
	// the codec agreed (DTLS mode only).
	OfferG711, AnswerG711 bool
	// G711 is the codec of a G.711 peer (default PCMU).
	G711 rtppeer.Codec
	// EventPT overrides the telephone-event payload type (Meta 126, G.711
	// 101); 255 offers none.
	EventPT uint8
	// Echo makes every answered/placed call echo the RTP it receives.
	Echo bool
	// NoRecord stops keeping decoded audio (load tests).
	NoRecord bool
	// KeepFrames keeps every received audio packet's header, arrival and
	// level (rtppeer.Session.Frames).
	KeepFrames bool
	// NoDecode leaves received audio undecoded (load tools; see
	// rtppeer.Config.NoDecode).
	NoDecode bool
	// User is the user part of our Contact.
	User string
	// NoTrying sends no 100 Trying to an INVITE (sipua.Config.NoTrying):
	// with Accept and no Ring, the INVITE has no provisional response at
	// all, as when Meta is slow to take a call.
	NoTrying bool
	// Logf gets one line per SIP message (optional).
	Logf func(string, ...any)
}

// Peer is one SIP UA with media.
type Peer struct {
	cfg Config
	UA  *sipua.UA
}

// New starts a peer's SIP UA.
func New(cfg Config) (*Peer, error) {
	if cfg.G711.Name == "" {
		cfg.G711 = rtppeer.PCMU
	}
	if cfg.EventPT == 0 {
		if cfg.Profile == ProfileMeta {
			cfg.EventPT = 126
		} else {
			cfg.EventPT = 101
		}
	}
	if cfg.EventPT == 255 {
		cfg.EventPT = 0
	}
	if cfg.MediaIP == "" {
		host, _, err := net.SplitHostPort(cfg.SIP)
		if err != nil {
			return nil, err
		}
		cfg.MediaIP = host
	}
	ua, err := sipua.Listen(sipua.Config{Addr: cfg.SIP, User: cfg.User, Logf: cfg.Logf, NoTrying: cfg.NoTrying})
	if err != nil {
		return nil, err
	}
	return &Peer{cfg: cfg, UA: ua}, nil
}

// Close stops the UA.
func (p *Peer) Close() error { return p.UA.Close() }

func (p *Peer) srtp() bool { return p.cfg.Profile == ProfileMeta && !p.cfg.Plain }

func (p *Peer) codec() rtppeer.Codec {
	if p.cfg.Profile == ProfileMeta {
		return rtppeer.Opus
	}
	return p.cfg.G711
}

// Call is one call with its media session.
type Call struct {
	Dialog *sipua.Dialog
	Media  *rtppeer.Session
	// Local and Remote are the SDP bodies sent and received.
	Local, Remote []byte
	RemoteSDP     *rtppeer.SDP
	// Provisional are the 1xx (other than 100) received while calling.
	Provisional []*sipua.Msg
	// DTLS is the call's ICE/DTLS endpoint (DTLS mode), keyed is closed
	// when media is keyed or keying failed (keyErr), handshake is how
	// long that took from the INVITE or the 200.
	DTLS      *dtlspeer.Endpoint
	keyed     chan struct{}
	keyErr    error
	Handshake time.Duration
	// Invited is when the peer sent its INVITE (calls it placed).
	Invited time.Time
	codec   rtppeer.Codec
}

// Hangup sends BYE (unless the remote side already did) and closes the
// media.
func (c *Call) Hangup(ctx context.Context) error {
	defer c.closeMedia()
	select {
	case <-c.Dialog.Done():
		return nil
	default:
	}
	code, err := c.Dialog.Bye(ctx)
	if err != nil {
		return err
	}
	if code != 200 {
		return fmt.Errorf("BYE answered %d", code)
	}
	return nil
}

// CallSpec is a call to place.
type CallSpec struct {
	// Target is the ip:port the INVITE goes to (wagate).
	Target string
	// To is the user called (business number for a UIC, WhatsApp user for a
	// BIC) and From the caller's user.
	To, From string
	// FromHost is the From URI's host (default: wa.meta.vc for a Meta
	// peer, our own address for a G.711 peer).
	FromHost string
	// Headers are added to the INVITE (a Meta peer adds a Record-Route to
	// itself, Meta's x-wa-meta-wacid and Call-ID form on its own).
	Headers []sipua.Header
	// SDPAddr, when set ("ip:port"), is written in the offer instead of
	// the media socket's address, as AnswerSpec.SDPAddr.
	SDPAddr string
	// LoseAnswers and OnAnswer are sipua.InviteRequest's: the first
	// LoseAnswers 2xx are taken as lost (not ACKed).
	LoseAnswers int
	OnAnswer    func(*sipua.Msg)
}

// sdpAddr applies an SDPAddr override to desc.
func sdpAddr(desc *rtppeer.Desc, addr string) error {
	if addr == "" {
		return nil
	}
	host, port, err := net.SplitHostPort(addr)
	n, perr := strconv.Atoi(port)
	if err != nil || perr != nil {
		return fmt.Errorf("metapeer: SDPAddr %q is not ip:port", addr)
	}
	desc.IP, desc.Port = host, n
	return nil
}

// Call places a call and returns it answered, with media started (sending
// nothing until Media.SetSource).
func (p *Peer) Call(ctx context.Context, spec CallSpec) (*Call, error) {
	if p.cfg.DTLS {
		return p.callDTLS(ctx, spec)
	}
	target, err := net.ResolveUDPAddr("udp4", spec.Target)
	if err != nil {
		return nil, err
	}
	var key *rtppeer.Crypto
	if p.srtp() {
		key = rtppeer.NewCrypto()
	}
	codec := p.codec()
	sess, err := rtppeer.Listen(rtppeer.Config{
		IP: p.cfg.MediaIP, Codec: codec, EventPT: p.cfg.EventPT, Local: key,
		RTCPMux: p.cfg.Profile == ProfileMeta, Echo: p.cfg.Echo, NoRecord: p.cfg.NoRecord, KeepFrames: p.cfg.KeepFrames, NoDecode: p.cfg.NoDecode, Logf: p.cfg.Logf,
	})
	if err != nil {
		return nil, err
	}
	desc := rtppeer.Desc{IP: p.cfg.MediaIP, Port: sess.Port(), Codecs: []rtppeer.Codec{codec}, EventPT: p.cfg.EventPT, Crypto: key, Ptime: 20}
	if err := sdpAddr(&desc, spec.SDPAddr); err != nil {
		sess.Close()
		return nil, err
	}
	req := sipua.InviteRequest{
		Target: target,
		RURI:   fmt.Sprintf("sip:%s@%s;transport=udp", spec.To, spec.Target),
		To:     fmt.Sprintf("sip:%s@%s", spec.To, spec.Target),

		LoseAnswers: spec.LoseAnswers,
		OnAnswer:    spec.OnAnswer,
	}
	fromHost := spec.FromHost
	if p.cfg.Profile == ProfileMeta {
		desc.Fmtp = map[uint8]string{rtppeer.Opus.PT: rtppeer.MetaOpusFmtp}
		desc.NoEventFmtp = true
		desc.RTCPMux = true
		if fromHost == "" {
			fromHost = "wa.meta.vc"
		}
		wacid := "wacid." + strconv.FormatInt(time.Now().UnixNano(), 36)
		req.CallID = "outgoing:" + wacid
		// Meta's edge proxy record-routes; here the peer is its own proxy.
		req.Headers = append(req.Headers,
			sipua.Header{Name: "Record-Route", Value: fmt.Sprintf("<sip:%s;transport=udp;lr>", p.UA.Addr())},
			sipua.Header{Name: "x-wa-meta-wacid", Value: wacid},
		)
	} else if fromHost == "" {
		fromHost = p.UA.Addr()
	}
	req.From = fmt.Sprintf("sip:%s@%s", spec.From, fromHost)
	req.Headers = append(req.Headers, spec.Headers...)
	req.SDP = desc.Marshal()
	c := &Call{Media: sess, Local: req.SDP, Invited: time.Now()}
	req.OnProvisional = func(m *sipua.Msg) { c.Provisional = append(c.Provisional, m) }
	d, err := p.UA.Invite(ctx, req)
	if err != nil {
		sess.Close()
		return nil, err
	}
	c.Dialog, c.Remote = d, d.RemoteSDP
	if err := p.startMedia(c, codec.PT); err != nil {
		d.Bye(ctx)
		sess.Close()
		return nil, err
	}
	return c, nil
}

// startMedia checks the remote SDP against what we offered or answered and
// starts the media session toward it.
func (p *Peer) startMedia(c *Call, pt uint8) error {
	sdp, err := rtppeer.ParseSDP(c.Remote)
	if err != nil {
		return fmt.Errorf("remote SDP: %v\n%s", err, c.Remote)
	}
	c.RemoteSDP = sdp
	codec := p.codec()
	got, ok := sdp.FindCodec(codec.Name, codec.Rate)
	if !ok || got != pt {
		return fmt.Errorf("remote SDP does not carry %s/%d as PT %d:\n%s", codec.Name, codec.Rate, pt, c.Remote)
	}
	var rkey *rtppeer.Crypto
	if p.srtp() {
		if sdp.Proto != "RTP/SAVP" {
			return fmt.Errorf("remote SDP proto %s, want RTP/SAVP:\n%s", sdp.Proto, c.Remote)
		}
		if rkey, err = sdp.Crypto(); err != nil {
			return fmt.Errorf("remote SDP: %v:\n%s", err, c.Remote)
		}
	}
	return c.Media.Start(sdp.Addr(), rkey)
}

// AnswerSpec says how to answer the next call.
type AnswerSpec struct {
	// Ring sends 180 and waits this long before the 200 (0: answer at once).
	Ring time.Duration
	// RingUntil, when set, rings (after Ring) until it is closed: the
	// test answers (or, with Reject, rejects) when it has done what it
	// does while the call rings.
	RingUntil <-chan struct{}
	// Reject, when set, answers with this final code instead.
	Reject int
	// OwnEventPT answers telephone-event with the peer's own payload type
	// (Config.EventPT) rather than the offer's, and sends and expects that
	// one — as RFC 3264 §6.1 allows for dynamic types and as PBXs that
	// always use 101 do. The offerer must then remap.
	OwnEventPT bool
	// SDPAddr, when set ("ip:port"), is written in the answer's c= and m=
	// lines instead of the media socket's own address: a peer behind NAT,
	// whose media leaves from another address and port than it signals
	// (and which gets nothing sent to the signalled one).
	SDPAddr string
}

// ErrRejected is returned by Answer when it rejected the call as asked.
var ErrRejected = errors.New("metapeer: call rejected as asked")

// Answer waits for an INVITE and answers it: with the offer's codec and
// telephone-event payload types, and for a Meta peer an a=crypto with the
// offer's tag and a fresh key and rtcp-mux. Media starts (sending nothing
// until Media.SetSource) before the 200 leaves.
func (p *Peer) Answer(ctx context.Context, spec AnswerSpec) (*Call, *sipua.Incoming, error) {
	in, err := p.UA.Accept(ctx)
	if err != nil {
		return nil, nil, err
	}
	if spec.Reject != 0 {
		if spec.RingUntil != nil {
			in.Ring()
			select {
			case <-spec.RingUntil:
			case <-ctx.Done():
			}
		}
		in.Reject(spec.Reject, "Rejected")
		return nil, in, ErrRejected
	}
	if p.cfg.DTLS {
		return p.answerDTLS(ctx, in, spec)
	}
	offer, err := rtppeer.ParseSDP(in.Req.Body)
	if err != nil {
		in.Reject(488, "Not Acceptable Here")
		return nil, in, fmt.Errorf("offer: %v\n%s", err, in.Req.Body)
	}
	codec := p.codec()
	pt, ok := offer.FindCodec(codec.Name, codec.Rate)
	if !ok {
		in.Reject(488, "Not Acceptable Here")
		return nil, in, fmt.Errorf("offer has no %s/%d:\n%s", codec.Name, codec.Rate, in.Req.Body)
	}
	codec.PT = pt
	evPT, hasEv := offer.FindCodec("telephone-event", 8000)
	switch {
	case !hasEv || p.cfg.EventPT == 0:
		evPT = 0
	case spec.OwnEventPT:
		evPT = p.cfg.EventPT
	}
	var key, rkey *rtppeer.Crypto
	if p.srtp() {
		if offer.Proto != "RTP/SAVP" {
			in.Reject(488, "Not Acceptable Here")
			return nil, in, fmt.Errorf("offer proto %s, want RTP/SAVP:\n%s", offer.Proto, in.Req.Body)
		}
		if rkey, err = offer.Crypto(); err != nil {
			in.Reject(488, "Not Acceptable Here")
			return nil, in, fmt.Errorf("offer: %v", err)
		}
		key = rtppeer.NewCrypto()
		key.Tag, key.Suite = rkey.Tag, rkey.Suite
	}
	sess, err := rtppeer.Listen(rtppeer.Config{
		IP: p.cfg.MediaIP, Codec: codec, EventPT: evPT, Local: key,
		RTCPMux: p.cfg.Profile == ProfileMeta && offer.RTCPMux, Echo: p.cfg.Echo, NoRecord: p.cfg.NoRecord, KeepFrames: p.cfg.KeepFrames, NoDecode: p.cfg.NoDecode, Logf: p.cfg.Logf,
	})
	if err != nil {
		in.Reject(500, "Server Internal Error")
		return nil, in, err
	}
	desc := rtppeer.Desc{IP: p.cfg.MediaIP, Port: sess.Port(), Codecs: []rtppeer.Codec{codec}, EventPT: evPT, Crypto: key, Ptime: 20,
		RTCPMux: p.cfg.Profile == ProfileMeta && offer.RTCPMux}
	if err := sdpAddr(&desc, spec.SDPAddr); err != nil {
		in.Reject(500, "Server Internal Error")
		sess.Close()
		return nil, in, err
	}
	if p.cfg.Profile == ProfileMeta {
		desc.Fmtp = map[uint8]string{codec.PT: rtppeer.MetaOpusFmtp}
		desc.NoEventFmtp = true
	}
	c := &Call{Media: sess, Remote: in.Req.Body, RemoteSDP: offer, Local: desc.Marshal()}
	if err := sess.Start(offer.Addr(), rkey); err != nil {
		in.Reject(500, "Server Internal Error")
		sess.Close()
		return nil, in, err
	}
	if spec.Ring > 0 || spec.RingUntil != nil {
		in.Ring()
		select {
		case <-waitBoth(spec.Ring, spec.RingUntil):
		case <-in.Cancelled():
			sess.Close()
			return nil, in, errors.New("metapeer: caller cancelled")
		case <-ctx.Done():
			sess.Close()
			return nil, in, ctx.Err()
		}
	}
	d, err := in.Answer(c.Local)
	if err != nil {
		sess.Close()
		return nil, in, err
	}
	c.Dialog = d
	return c, in, nil
}

// waitBoth is closed once d has passed and until (when not nil) is closed.
func waitBoth(d time.Duration, until <-chan struct{}) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		time.Sleep(d)
		if until != nil {
			<-until
		}
		close(done)
	}()
	return done
}
