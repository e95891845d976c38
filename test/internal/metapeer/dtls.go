package metapeer

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/wagate/wagate/test/internal/dtlspeer"
	"github.com/wagate/wagate/test/internal/rtppeer"
	"github.com/wagate/wagate/test/internal/sipua"
)

// DTLS mode: Meta's default keying. The offer (UIC) or answer (BIC) is
//
//	m=audio PORT UDP/TLS/RTP/SAVPF 111 [0 8] 126
//	a=ice-lite (session level), a=ice-ufrag, a=ice-pwd,
//	a=fingerprint:sha-256 …, a=setup:actpass (offer) | passive (answer),
//	a=candidate:… typ host, a=rtcp-mux
//
// and the call's media starts once ICE and the DTLS handshake are done,
// on a goroutine of the call's (Call.WaitKeyed waits for it).

const dtlsProto = "UDP/TLS/RTP/SAVPF"

// keyTimeout bounds ICE and DTLS in the peer: longer than any timeout a
// test gives wagate, so wagate's verdict comes first.
const keyTimeout = 30 * time.Second

// WaitKeyed waits until the call's media is keyed (nil) or keying failed.
// Outside DTLS mode it returns nil at once.
func (c *Call) WaitKeyed(ctx context.Context) error {
	if c.keyed == nil {
		return nil
	}
	select {
	case <-c.keyed:
		return c.keyErr
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Codec is the audio codec the call uses.
func (c *Call) Codec() rtppeer.Codec { return c.codec }

// closeMedia ends the call's media and its DTLS endpoint, and waits for
// the keying goroutine.
func (c *Call) closeMedia() {
	if c.DTLS != nil {
		c.DTLS.Close()
	}
	if c.keyed != nil {
		<-c.keyed
	}
	c.Media.Close()
}

func (p *Peer) dtlsEndpoint() (*dtlspeer.Endpoint, error) {
	cfg := p.cfg.DTLSPeer
	cfg.IP = p.cfg.MediaIP
	if cfg.Logf == nil {
		cfg.Logf = p.cfg.Logf
	}
	return dtlspeer.Listen(cfg)
}

// metaCodecs are the codecs a Meta peer offers.
func (p *Peer) metaCodecs() []rtppeer.Codec {
	cs := []rtppeer.Codec{rtppeer.Opus}
	if p.cfg.OfferG711 {
		cs = append(cs, rtppeer.PCMU, rtppeer.PCMA)
	}
	return cs
}

func (p *Peer) session(ep *dtlspeer.Endpoint, codec rtppeer.Codec, evPT uint8) (*rtppeer.Session, error) {
	return rtppeer.Listen(rtppeer.Config{
		Conn: ep.RTPConn(), Codec: codec, EventPT: evPT, RTCPMux: true,
		Echo: p.cfg.Echo, NoRecord: p.cfg.NoRecord, KeepFrames: p.cfg.KeepFrames, Logf: p.cfg.Logf,
	})
}

// key runs ICE and DTLS with the other side and starts the media; began
// is when the clock of Call.Handshake starts.
func (c *Call) key(r *dtlspeer.Remote, offerer bool, began time.Time) {
	defer close(c.keyed)
	ctx, cancel := context.WithTimeout(context.Background(), keyTimeout)
	defer cancel()
	local, remote, peer, err := c.DTLS.Connect(ctx, r, offerer)
	if err != nil {
		c.keyErr = err
		return
	}
	if err := c.Media.StartKeyed(peer, local, remote); err != nil {
		c.keyErr = err
		return
	}
	c.Handshake = time.Since(began)
}

// callDTLS is Call in DTLS mode.
func (p *Peer) callDTLS(ctx context.Context, spec CallSpec) (*Call, error) {
	target, err := net.ResolveUDPAddr("udp4", spec.Target)
	if err != nil {
		return nil, err
	}
	ep, err := p.dtlsEndpoint()
	if err != nil {
		return nil, err
	}
	desc := rtppeer.Desc{IP: p.cfg.MediaIP, Port: ep.Port(), Codecs: p.metaCodecs(), EventPT: p.cfg.EventPT, Ptime: 20,
		Fmtp: map[uint8]string{rtppeer.Opus.PT: rtppeer.MetaOpusFmtp}, NoEventFmtp: true, RTCPMux: true,
		Proto: dtlsProto, SessionAttrs: ep.SessionAttrs(), Attrs: ep.MediaAttrs("actpass")}
	wacid := "wacid." + strconv.FormatInt(time.Now().UnixNano(), 36)
	fromHost := spec.FromHost
	if fromHost == "" {
		fromHost = "wa.meta.vc"
	}
	req := sipua.InviteRequest{
		Target: target,
		RURI:   fmt.Sprintf("sip:%s@%s;transport=udp", spec.To, spec.Target),
		To:     fmt.Sprintf("sip:%s@%s", spec.To, spec.Target),
		From:   fmt.Sprintf("sip:%s@%s", spec.From, fromHost),
		CallID: "outgoing:" + wacid,
		Headers: append([]sipua.Header{
			{Name: "Record-Route", Value: fmt.Sprintf("<sip:%s;transport=udp;lr>", p.UA.Addr())},
			{Name: "x-wa-meta-wacid", Value: wacid},
		}, spec.Headers...),
		SDP: desc.Marshal(),
	}
	c := &Call{Local: req.SDP, DTLS: ep}
	req.OnProvisional = func(m *sipua.Msg) { c.Provisional = append(c.Provisional, m) }
	began := time.Now()
	d, err := p.UA.Invite(ctx, req)
	if err != nil {
		ep.Close()
		return nil, err
	}
	c.Dialog, c.Remote, c.Invited = d, d.RemoteSDP, began
	fail := func(err error) (*Call, error) {
		d.Bye(ctx)
		ep.Close()
		return nil, err
	}
	sdp, err := rtppeer.ParseSDP(c.Remote)
	if err != nil {
		return fail(fmt.Errorf("remote SDP: %v\n%s", err, c.Remote))
	}
	c.RemoteSDP = sdp
	if sdp.Proto != dtlsProto && sdp.Proto != "UDP/TLS/RTP/SAVP" {
		return fail(fmt.Errorf("answer proto %s, want %s:\n%s", sdp.Proto, dtlsProto, c.Remote))
	}
	codec, ok := chosen(sdp, p.metaCodecs())
	if !ok {
		return fail(fmt.Errorf("answer has none of the offered codecs:\n%s", c.Remote))
	}
	r, err := dtlspeer.ParseRemote(c.Remote)
	if err != nil {
		return fail(err)
	}
	if c.Media, err = p.session(ep, codec, p.cfg.EventPT); err != nil {
		return fail(err)
	}
	c.codec, c.keyed = codec, make(chan struct{})
	go c.key(r, true, began)
	return c, nil
}

// chosen is the first codec of an answer that was offered, with the
// answer's payload type.
func chosen(sdp *rtppeer.SDP, offered []rtppeer.Codec) (rtppeer.Codec, bool) {
	for _, pt := range sdp.PTs {
		for _, c := range offered {
			if got, ok := sdp.FindCodec(c.Name, c.Rate); ok && got == pt {
				c.PT = pt
				return c, true
			}
		}
	}
	return rtppeer.Codec{}, false
}

// answerDTLS is Answer in DTLS mode: Opus (or, with AnswerG711, the first
// G.711 codec the offer lists before Opus), setup passive (Meta is the
// DTLS server), ICE and DTLS started before the 200 leaves.
func (p *Peer) answerDTLS(ctx context.Context, in *sipua.Incoming, spec AnswerSpec) (*Call, *sipua.Incoming, error) {
	reject := func(code int, err error) (*Call, *sipua.Incoming, error) {
		in.Reject(code, "Not Acceptable Here")
		return nil, in, err
	}
	offer, err := rtppeer.ParseSDP(in.Req.Body)
	if err != nil {
		return reject(488, fmt.Errorf("offer: %v\n%s", err, in.Req.Body))
	}
	if offer.Proto != dtlsProto && offer.Proto != "UDP/TLS/RTP/SAVP" {
		return reject(488, fmt.Errorf("offer proto %s, want %s:\n%s", offer.Proto, dtlsProto, in.Req.Body))
	}
	cands := []rtppeer.Codec{rtppeer.Opus}
	if p.cfg.AnswerG711 {
		cands = []rtppeer.Codec{rtppeer.PCMU, rtppeer.PCMA, rtppeer.Opus}
	}
	codec, ok := chosenInOrder(offer, cands)
	if !ok {
		return reject(488, fmt.Errorf("offer has no codec the peer takes:\n%s", in.Req.Body))
	}
	evPT, hasEv := offer.FindCodec("telephone-event", 8000)
	if !hasEv || p.cfg.EventPT == 0 {
		evPT = 0
	}
	r, err := dtlspeer.ParseRemote(in.Req.Body)
	if err != nil {
		return reject(488, err)
	}
	ep, err := p.dtlsEndpoint()
	if err != nil {
		return reject(500, err)
	}
	sess, err := p.session(ep, codec, evPT)
	if err != nil {
		ep.Close()
		return reject(500, err)
	}
	desc := rtppeer.Desc{IP: p.cfg.MediaIP, Port: ep.Port(), Codecs: []rtppeer.Codec{codec}, EventPT: evPT, Ptime: 20, RTCPMux: true,
		NoEventFmtp: true, Proto: offer.Proto, SessionAttrs: ep.SessionAttrs(), Attrs: ep.MediaAttrs(ep.AnswerSetup(setupOf(in.Req.Body)))}
	if codec.Name == "opus" {
		desc.Fmtp = map[uint8]string{codec.PT: rtppeer.MetaOpusFmtp}
	}
	c := &Call{Media: sess, Remote: in.Req.Body, RemoteSDP: offer, Local: desc.Marshal(), DTLS: ep, codec: codec, keyed: make(chan struct{})}
	if spec.Ring > 0 {
		in.Ring()
		select {
		case <-time.After(spec.Ring):
		case <-in.Cancelled():
			ep.Close()
			sess.Close()
			return nil, in, errors.New("metapeer: caller cancelled")
		case <-ctx.Done():
			ep.Close()
			sess.Close()
			return nil, in, ctx.Err()
		}
	}
	// Ready for wagate's checks before it has the answer.
	go c.key(r, false, time.Now())
	d, err := in.Answer(c.Local)
	if err != nil {
		c.closeMedia()
		return nil, in, err
	}
	c.Dialog = d
	return c, in, nil
}

// chosenInOrder is the first codec of cands (our preference) that the
// offer has, with the offer's payload type.
func chosenInOrder(sdp *rtppeer.SDP, cands []rtppeer.Codec) (rtppeer.Codec, bool) {
	for _, c := range cands {
		if pt, ok := sdp.FindCodec(c.Name, c.Rate); ok {
			c.PT = pt
			return c, true
		}
	}
	return rtppeer.Codec{}, false
}

func setupOf(body []byte) string {
	for _, l := range strings.Split(strings.ReplaceAll(string(body), "\r\n", "\n"), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "a=setup:"); ok {
			return v
		}
	}
	return "actpass"
}
