package rtppeer

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
)

// MetaOpusFmtp is the a=fmtp WhatsApp puts on its Opus payload type.
const MetaOpusFmtp = "maxaveragebitrate=20000;maxplaybackrate=16000;minptime=20;sprop-maxcapturerate=16000;useinbandfec=1"

// Desc describes the audio stream a peer offers or answers.
type Desc struct {
	IP      string
	Port    int
	Codecs  []Codec // in preference order
	Fmtp    map[uint8]string
	EventPT uint8 // telephone-event/8000 (0: none)
	// NoEventFmtp leaves out "a=fmtp:<EventPT> 0-15" (Meta sends none).
	NoEventFmtp bool
	Crypto      *Crypto // nil: RTP/AVP; else RTP/SAVP with this a=crypto
	RTCPMux     bool
	Ptime       int // 0: none
	// Proto overrides the transport (UDP/TLS/RTP/SAVPF for DTLS-SRTP).
	Proto string
	// SessionAttrs and Attrs are more a= lines (without "a=") at session
	// level and on the audio stream (ICE and DTLS attributes).
	SessionAttrs, Attrs []string
}

// Marshal writes the SDP body.
func (d Desc) Marshal() []byte {
	var b bytes.Buffer
	id := rand.Uint32() >> 1
	af := "IP4"
	if udpNet(d.IP) == "udp6" {
		af = "IP6"
	}
	fmt.Fprintf(&b, "v=0\r\no=- %d %d IN %s %s\r\ns=-\r\nc=IN %s %s\r\nt=0 0\r\n", id, id, af, d.IP, af, d.IP)
	for _, a := range d.SessionAttrs {
		b.WriteString("a=" + a + "\r\n")
	}
	proto := "RTP/AVP"
	if d.Crypto != nil {
		proto = "RTP/SAVP"
	}
	if d.Proto != "" {
		proto = d.Proto
	}
	fmt.Fprintf(&b, "m=audio %d %s", d.Port, proto)
	for _, c := range d.Codecs {
		fmt.Fprintf(&b, " %d", c.PT)
	}
	if d.EventPT != 0 {
		fmt.Fprintf(&b, " %d", d.EventPT)
	}
	b.WriteString("\r\n")
	for _, c := range d.Codecs {
		fmt.Fprintf(&b, "a=rtpmap:%s\r\n", c.Rtpmap())
		if f := d.Fmtp[c.PT]; f != "" {
			fmt.Fprintf(&b, "a=fmtp:%d %s\r\n", c.PT, f)
		}
	}
	if d.EventPT != 0 {
		fmt.Fprintf(&b, "a=rtpmap:%d telephone-event/8000\r\n", d.EventPT)
		if !d.NoEventFmtp {
			fmt.Fprintf(&b, "a=fmtp:%d 0-15\r\n", d.EventPT)
		}
	}
	if d.Ptime != 0 {
		fmt.Fprintf(&b, "a=ptime:%d\r\n", d.Ptime)
	}
	if d.RTCPMux {
		b.WriteString("a=rtcp-mux\r\n")
	}
	if d.Crypto != nil {
		fmt.Fprintf(&b, "a=crypto:%s\r\n", d.Crypto.Line())
	}
	for _, a := range d.Attrs {
		b.WriteString("a=" + a + "\r\n")
	}
	b.WriteString("a=sendrecv\r\n")
	return b.Bytes()
}

// SDP is the part of a received SDP body the peers use: the first audio
// stream.
type SDP struct {
	IP      string
	Port    int
	Proto   string
	PTs     []uint8
	Rtpmap  map[uint8]string // "opus/48000/2"
	Fmtp    map[uint8]string
	Cryptos []string // a=crypto values
	RTCPMux bool
	Ptime   int
	Raw     string
}

// ParseSDP parses the first m=audio of body.
func ParseSDP(body []byte) (*SDP, error) {
	s := &SDP{Rtpmap: map[uint8]string{}, Fmtp: map[uint8]string{}, Raw: string(body)}
	var sessionC, mediaC string
	inAudio, seenAudio := false, false
	for _, l := range strings.Split(strings.ReplaceAll(string(body), "\r\n", "\n"), "\n") {
		l = strings.TrimSpace(l)
		switch {
		case strings.HasPrefix(l, "m="):
			inAudio = false
			f := strings.Fields(l[2:])
			if !seenAudio && len(f) >= 3 && f[0] == "audio" {
				inAudio, seenAudio = true, true
				p, err := strconv.Atoi(f[1])
				if err != nil {
					return nil, fmt.Errorf("sdp: bad m= line %q", l)
				}
				s.Port, s.Proto = p, f[2]
				for _, pt := range f[3:] {
					n, err := strconv.Atoi(pt)
					if err != nil || n < 0 || n > 127 {
						return nil, fmt.Errorf("sdp: bad payload type %q", pt)
					}
					s.PTs = append(s.PTs, uint8(n))
				}
			}
		case strings.HasPrefix(l, "c="):
			f := strings.Fields(l[2:])
			if len(f) != 3 {
				return nil, fmt.Errorf("sdp: bad c= line %q", l)
			}
			if inAudio {
				mediaC = f[2]
			} else if !seenAudio {
				sessionC = f[2]
			}
		case strings.HasPrefix(l, "a=") && inAudio:
			k, v, _ := strings.Cut(l[2:], ":")
			switch k {
			case "rtpmap", "fmtp":
				pt, rest, _ := strings.Cut(v, " ")
				n, err := strconv.Atoi(pt)
				if err != nil || n < 0 || n > 127 {
					continue
				}
				if k == "rtpmap" {
					s.Rtpmap[uint8(n)] = strings.TrimSpace(rest)
				} else {
					s.Fmtp[uint8(n)] = strings.TrimSpace(rest)
				}
			case "crypto":
				s.Cryptos = append(s.Cryptos, v)
			case "rtcp-mux":
				s.RTCPMux = true
			case "ptime":
				s.Ptime, _ = strconv.Atoi(v)
			}
		}
	}
	if !seenAudio {
		return nil, fmt.Errorf("sdp: no m=audio")
	}
	s.IP = mediaC
	if s.IP == "" {
		s.IP = sessionC
	}
	if net.ParseIP(s.IP) == nil {
		return nil, fmt.Errorf("sdp: no usable c= address (%q)", s.IP)
	}
	return s, nil
}

// Addr is the stream's RTP address.
func (s *SDP) Addr() *net.UDPAddr {
	return &net.UDPAddr{IP: net.ParseIP(s.IP), Port: s.Port}
}

// FindCodec returns the first payload type whose rtpmap names the codec
// (name and clock rate, case-insensitive), with static PCMU/PCMA accepted
// without an rtpmap.
func (s *SDP) FindCodec(name string, rate int) (uint8, bool) {
	for _, pt := range s.PTs {
		m, ok := s.Rtpmap[pt]
		if !ok {
			if (pt == 0 && strings.EqualFold(name, "PCMU")) || (pt == 8 && strings.EqualFold(name, "PCMA")) {
				return pt, true
			}
			continue
		}
		f := strings.Split(m, "/")
		if len(f) >= 2 && strings.EqualFold(f[0], name) && f[1] == strconv.Itoa(rate) {
			return pt, true
		}
	}
	return 0, false
}

// Crypto returns the first a=crypto line the peers can use.
func (s *SDP) Crypto() (*Crypto, error) {
	var firstErr error
	for _, c := range s.Cryptos {
		k, err := ParseCrypto(c)
		if err == nil {
			return k, nil
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	if firstErr == nil {
		firstErr = fmt.Errorf("sdp: no a=crypto line")
	}
	return nil, firstErr
}
