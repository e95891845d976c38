package main

// The SIP messages this tool sends (an INVITE with SDP as a dialer or PBX
// would send it, an OPTIONS) and the little it reads of responses.

import (
	"bytes"
	"fmt"
	"strconv"
)

const businessNumber = "+15550100001"

// inviteMsg appends the i-th INVITE of run to buf: a BIC-shaped INVITE
// from a SIP trunk, with a G.711 offer, about 900 bytes. Its Call-ID,
// branch and From tag are unique per i; the index is fixed-width so every
// INVITE has the same size.
func inviteMsg(buf []byte, transport, run string, i int, src string, srcPort int, dst string, dstPort int) []byte {
	sdp := fmt.Sprintf("v=0\r\n"+
		"o=- %010d 1 IN IP4 %s\r\n"+
		"s=-\r\n"+
		"c=IN IP4 %s\r\n"+
		"t=0 0\r\n"+
		"m=audio %d RTP/AVP 0 8 101\r\n"+
		"a=rtpmap:0 PCMU/8000\r\n"+
		"a=rtpmap:8 PCMA/8000\r\n"+
		"a=rtpmap:101 telephone-event/8000\r\n"+
		"a=fmtp:101 0-16\r\n"+
		"a=ptime:20\r\n"+
		"a=maxptime:150\r\n"+
		"a=sendrecv\r\n", i, src, src, 40000+2*(i%5000))
	return fmt.Appendf(buf, "INVITE sip:+4477009%05d@%s:%d SIP/2.0\r\n"+
		"Via: SIP/2.0/%s %s:%d;rport;branch=z9hG4bK-%s-%08d\r\n"+
		"Max-Forwards: 70\r\n"+
		"From: \"Campaign 7\" <sip:%s@%s>;tag=ft%s%08d\r\n"+
		"To: <sip:+4477009%05d@%s>\r\n"+
		"Call-ID: %s%s-%08d@%s\r\n"+
		"CSeq: 1 INVITE\r\n"+
		"Contact: <sip:%s@%s:%d>\r\n"+
		"P-Asserted-Identity: <sip:%s@%s>\r\n"+
		"X-WABA-Phone-Number-ID: 100000000000001\r\n"+
		"Allow: INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE, INFO\r\n"+
		"Supported: replaces, timer\r\n"+
		"Session-Expires: 1800;refresher=uac\r\n"+
		"Min-SE: 90\r\n"+
		"User-Agent: DialerSuite/4.2.1\r\n"+
		"Content-Type: application/sdp\r\n"+
		"Content-Length: %d\r\n\r\n%s",
		i%100000, dst, dstPort,
		transport, src, srcPort, run, i,
		businessNumber, src, run, i,
		i%100000, dst,
		floodPrefix, run, i, src,
		businessNumber, src, srcPort,
		businessNumber, src,
		len(sdp), sdp)
}

// optionsMsg is the i-th OPTIONS of the probe.
func optionsMsg(run string, i int, src string, srcPort int, dst string, dstPort int) []byte {
	return fmt.Appendf(nil, "OPTIONS sip:%s:%d SIP/2.0\r\n"+
		"Via: SIP/2.0/UDP %s:%d;rport;branch=z9hG4bK-p%s-%08d\r\n"+
		"Max-Forwards: 70\r\n"+
		"From: <sip:probe@%s>;tag=pt%s%08d\r\n"+
		"To: <sip:%s:%d>\r\n"+
		"Call-ID: %s%s-%08d@%s\r\n"+
		"CSeq: 1 OPTIONS\r\n"+
		"Contact: <sip:probe@%s:%d>\r\n"+
		"Accept: application/sdp\r\n"+
		"Content-Length: 0\r\n\r\n",
		dst, dstPort,
		src, srcPort, run, i,
		src, run, i,
		dst, dstPort,
		probePrefix, run, i, src,
		src, srcPort)
}

const (
	floodPrefix = "flood-"
	probePrefix = "probe-"
)

// response is what this tool reads of a SIP response.
type response struct {
	code   int
	callID []byte
}

// parseResponse reads the status code and Call-ID of a SIP response; ok
// is false for anything else.
func parseResponse(b []byte) (r response, ok bool) {
	if len(b) < 12 || !bytes.HasPrefix(b, []byte("SIP/2.0 ")) {
		return r, false
	}
	for _, c := range b[8:11] {
		if c < '0' || c > '9' {
			return r, false
		}
		r.code = r.code*10 + int(c-'0')
	}
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			break
		}
		b = b[i+1:]
		if len(b) == 0 || b[0] == '\r' || b[0] == '\n' {
			break // end of headers
		}
		name, val, found := bytes.Cut(b, []byte(":"))
		if !found {
			continue
		}
		name = bytes.TrimSpace(name)
		if bytes.EqualFold(name, []byte("Call-ID")) || bytes.EqualFold(name, []byte("i")) {
			if j := bytes.IndexByte(val, '\n'); j >= 0 {
				val = val[:j]
			}
			r.callID = bytes.TrimSpace(val)
			break
		}
	}
	return r, true
}

// callIndex is i of a Call-ID "<prefix><run>-<i>@host", or -1.
func callIndex(id []byte, prefix, run string) int {
	p := prefix + run + "-"
	if !bytes.HasPrefix(id, []byte(p)) {
		return -1
	}
	rest := id[len(p):]
	if j := bytes.IndexByte(rest, '@'); j >= 0 {
		rest = rest[:j]
	}
	n, err := strconv.Atoi(string(rest))
	if err != nil || n < 0 {
		return -1
	}
	return n
}
