// Package pcmu makes G.711 μ-law test audio for the end-to-end tests and the
// load script: RTP payloads of a tone, and a pcap file of an RTP stream that
// SIPp can play with <exec play_pcap_audio="..."/>.
package pcmu

import (
	"bufio"
	"encoding/binary"
	"io"
	"math"
)

// Encode converts one 16-bit linear PCM sample to μ-law (ITU-T G.711).
func Encode(sample int16) byte {
	const (
		bias = 0x84
		clip = 32635
	)
	s := int(sample)
	sign := 0
	if s < 0 {
		s = -s
		sign = 0x80
	}
	if s > clip {
		s = clip
	}
	s += bias
	exp := 7
	for mask := 0x4000; s&mask == 0 && exp > 0; mask >>= 1 {
		exp--
	}
	mant := (s >> (exp + 3)) & 0x0f
	return ^byte(sign | exp<<4 | mant)
}

// Tone returns n μ-law samples of a sine of freq Hz at 8 kHz, starting at
// sample index start (so consecutive calls continue the same waveform), at
// the given amplitude (0..1 of full scale).
func Tone(freq, amplitude float64, start, n int) []byte {
	out := make([]byte, n)
	for i := range out {
		v := amplitude * 32767 * math.Sin(2*math.Pi*freq*float64(start+i)/8000)
		out[i] = Encode(int16(v))
	}
	return out
}

// Packet is an RTP packet header plus payload (no extensions, no CSRC).
func Packet(pt uint8, seq uint16, ts, ssrc uint32, marker bool, payload []byte) []byte {
	p := make([]byte, 12+len(payload))
	p[0] = 0x80
	p[1] = pt & 0x7f
	if marker {
		p[1] |= 0x80
	}
	binary.BigEndian.PutUint16(p[2:], seq)
	binary.BigEndian.PutUint32(p[4:], ts)
	binary.BigEndian.PutUint32(p[8:], ssrc)
	copy(p[12:], payload)
	return p
}

// WritePcap writes a classic pcap (Ethernet link type) holding an RTP stream
// of PCMU (payload type 0), 20 ms packets of a freq Hz tone, lasting
// duration seconds. Addresses in the file are placeholders: SIPp replaces
// them with the call's media addresses when it plays the file. The output is
// deterministic (fixed SSRC, sequence, timestamps and capture times).
func WritePcap(w io.Writer, seconds, freq float64) error {
	const (
		samplesPerPacket = 160
		ssrc             = 0x5741_4741 // "WAGA"
	)
	bw := bufio.NewWriter(w)
	le := binary.LittleEndian
	var gh [24]byte
	le.PutUint32(gh[0:], 0xa1b2c3d4) // microsecond timestamps
	le.PutUint16(gh[4:], 2)
	le.PutUint16(gh[6:], 4)
	le.PutUint32(gh[16:], 65535) // snaplen
	le.PutUint32(gh[20:], 1)     // LINKTYPE_ETHERNET
	if _, err := bw.Write(gh[:]); err != nil {
		return err
	}
	packets := int(seconds * 50)
	for i := 0; i < packets; i++ {
		payload := Tone(freq, 0.25, i*samplesPerPacket, samplesPerPacket)
		rtp := Packet(0, uint16(1000+i), uint32(i*samplesPerPacket), ssrc, i == 0, payload)
		frame := ethernetIPv4UDP([4]byte{10, 0, 0, 1}, [4]byte{10, 0, 0, 2}, 6000, 6000, rtp)
		usec := int64(i) * 20000
		var ph [16]byte
		le.PutUint32(ph[0:], uint32(1_700_000_000+usec/1_000_000))
		le.PutUint32(ph[4:], uint32(usec%1_000_000))
		le.PutUint32(ph[8:], uint32(len(frame)))
		le.PutUint32(ph[12:], uint32(len(frame)))
		if _, err := bw.Write(ph[:]); err != nil {
			return err
		}
		if _, err := bw.Write(frame); err != nil {
			return err
		}
	}
	return bw.Flush()
}

func ethernetIPv4UDP(src, dst [4]byte, sport, dport uint16, payload []byte) []byte {
	be := binary.BigEndian
	f := make([]byte, 14+20+8+len(payload))
	// Ethernet: locally administered MACs, EtherType IPv4.
	copy(f[0:6], []byte{0x02, 0, 0, 0, 0, 2})
	copy(f[6:12], []byte{0x02, 0, 0, 0, 0, 1})
	be.PutUint16(f[12:], 0x0800)
	ip := f[14:34]
	ip[0] = 0x45
	be.PutUint16(ip[2:], uint16(20+8+len(payload)))
	ip[8] = 64 // TTL
	ip[9] = 17 // UDP
	copy(ip[12:16], src[:])
	copy(ip[16:20], dst[:])
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(be.Uint16(ip[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	be.PutUint16(ip[10:], ^uint16(sum))
	udp := f[34:42]
	be.PutUint16(udp[0:], sport)
	be.PutUint16(udp[2:], dport)
	be.PutUint16(udp[4:], uint16(8+len(payload)))
	// UDP checksum 0: "not computed", valid for IPv4.
	copy(f[42:], payload)
	return f
}
