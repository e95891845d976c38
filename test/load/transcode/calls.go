// Calls: placing the Meta side's calls and answering them on the PBX
// side, with their streams.

package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/wagate/wagate/test/internal/rtppeer"
	"github.com/wagate/wagate/test/internal/sipua"
)

type metaCall struct {
	idx           int
	s             *stream
	d             *sipua.Dialog
	answered, end time.Time
}

type pbxCall struct {
	idx int
	s   *stream
	d   *sipua.Dialog
}

func userOf(i int) string { return fmt.Sprintf("+4477009%05d", i) }

// userIndex is i of userOf(i), or -1.
func userIndex(u string) int {
	u = strings.TrimSpace(u)
	if !strings.HasPrefix(u, "+4477009") || len(u) != len("+4477009")+5 {
		return -1
	}
	n, err := strconv.Atoi(u[len("+4477009"):])
	if err != nil {
		return -1
	}
	return n
}

// placeCall places call i as Meta does and starts its media.
func placeCall(ctx context.Context, ua *sipua.UA, ep *endpoint, o options, ls *loops, p *pacer, i int, sampled bool) (*metaCall, error) {
	ip2 := o.netPrefix + ".2"
	s, err := newStream(ep, sideMeta, sampled, false, o.srtp && (o.authAll || sampled))
	if err != nil {
		return nil, err
	}
	var key *rtppeer.Crypto
	if o.srtp {
		key = rtppeer.NewCrypto()
	}
	desc := rtppeer.Desc{IP: ip2, Port: ep.port(), Codecs: []rtppeer.Codec{rtppeer.Opus},
		Fmtp: map[uint8]string{rtppeer.Opus.PT: rtppeer.MetaOpusFmtp}, EventPT: 126, NoEventFmtp: true,
		Crypto: key, RTCPMux: true, Ptime: 20}
	target := fmt.Sprintf("%s.1:%d", o.netPrefix, o.sipPort)
	taddr, err := net.ResolveUDPAddr("udp4", target)
	if err != nil {
		return nil, err
	}
	wacid := fmt.Sprintf("wacid.%s.%d", strconv.FormatInt(time.Now().UnixNano(), 36), i)
	req := sipua.InviteRequest{
		Target: taddr,
		RURI:   fmt.Sprintf("sip:%s@%s;transport=udp", businessNumber, target),
		To:     fmt.Sprintf("sip:%s@%s", businessNumber, target),
		From:   fmt.Sprintf("sip:%s@wa.meta.vc", userOf(i)),
		CallID: "outgoing:" + wacid,
		Headers: []sipua.Header{
			{Name: "Record-Route", Value: fmt.Sprintf("<sip:%s;transport=udp;lr>", ua.Addr())},
			{Name: "x-wa-meta-wacid", Value: wacid},
		},
		SDP: desc.Marshal(),
	}
	d, err := ua.Invite(ctx, req)
	if err != nil {
		return nil, err
	}
	c := &metaCall{idx: i, s: s, d: d, answered: time.Now()}
	fail := func(err error) (*metaCall, error) {
		bctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		d.Bye(bctx)
		s.stop()
		return nil, err
	}
	ans, err := rtppeer.ParseSDP(d.RemoteSDP)
	if err != nil {
		return fail(fmt.Errorf("answer: %v", err))
	}
	pt, ok := ans.FindCodec("opus", 48000)
	if !ok {
		return fail(fmt.Errorf("answer has no opus/48000:\n%s", d.RemoteSDP))
	}
	var rkey *rtppeer.Crypto
	if o.srtp {
		if rkey, err = ans.Crypto(); err != nil {
			return fail(fmt.Errorf("answer: %v", err))
		}
	}
	addr, err := netip.ParseAddr(ans.IP)
	if err != nil {
		return fail(err)
	}
	if err := s.start(netip.AddrPortFrom(addr, uint16(ans.Port)), pt, key, rkey); err != nil {
		return fail(err)
	}
	lp := ls.metaAudio
	if sampled {
		lp = ls.opusBursts
	}
	p.add(s, lp)
	return c, nil
}

// answerCall answers one INVITE at the PBX with PCMU and starts its media
// once the ACK is in: its own 440 Hz, or an echo for a sampled call.
func answerCall(in *sipua.Incoming, ep, echoEP *endpoint, o options, ls *loops, p *pacer, sampledSet map[int]bool) (*pbxCall, error) {
	offer, err := rtppeer.ParseSDP(in.Req.Body)
	if err != nil {
		in.Reject(488, "Not Acceptable Here")
		return nil, fmt.Errorf("offer: %v", err)
	}
	pt, ok := offer.FindCodec("PCMU", 8000)
	if !ok {
		in.Reject(488, "Not Acceptable Here")
		return nil, fmt.Errorf("offer has no PCMU:\n%s", in.Req.Body)
	}
	evPT, hasEv := offer.FindCodec("telephone-event", 8000)
	if !hasEv {
		evPT = 0
	}
	idx := userIndex(in.Req.Get("X-WABA-User"))
	echo := o.pbxMode == "echo" && sampledSet[idx]
	ip3 := o.netPrefix + ".3"
	if echo {
		ep = echoEP
	}
	s, err := newStream(ep, sidePBX, echo, echo, false)
	if err != nil {
		in.Reject(500, "Server Internal Error")
		return nil, err
	}
	addr, err := netip.ParseAddr(offer.IP)
	if err == nil {
		err = s.start(netip.AddrPortFrom(addr, uint16(offer.Port)), pt, nil, nil)
	}
	if err != nil {
		in.Reject(488, "Not Acceptable Here")
		s.stop()
		return nil, err
	}
	desc := rtppeer.Desc{IP: ip3, Port: ep.port(), Codecs: []rtppeer.Codec{{Name: "PCMU", PT: pt, Rate: 8000, Channels: 1}},
		EventPT: evPT, Ptime: 20}
	d, err := in.Answer(desc.Marshal())
	if err != nil {
		s.stop()
		return nil, err
	}
	select {
	case <-d.Acked():
	case <-time.After(5 * time.Second):
		s.stop()
		return nil, errors.New("no ACK for the PBX's 200 within 5 s")
	}
	if !echo {
		lp := ls.pbxAudio
		if sampledSet[idx] {
			lp = ls.pcmuTone // -pbx tone: the sampled calls check 440 Hz
		}
		p.add(s, lp)
	}
	return &pbxCall{idx: idx, s: s, d: d}, nil
}
