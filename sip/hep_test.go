package sip

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"
)

// decodeHEP is a strict HEP v3 decoder written from the specification for
// the tests: every chunk must be generic, known, of its exact size and
// given once, and the lengths must add up.
func decodeHEP(b []byte) (hepPacket, error) {
	var p hepPacket
	if len(b) < hepHeaderLen || !bytes.Equal(b[:4], []byte("HEP3")) {
		return p, errors.New("no HEP3 header")
	}
	if n := int(binary.BigEndian.Uint16(b[4:])); n != len(b) {
		return p, fmt.Errorf("total length %d, packet %d", n, len(b))
	}
	seen := map[uint16]bool{}
	var family uint8
	var srcIP, dstIP netip.Addr
	var srcPort, dstPort uint16
	var sec, usec uint32
	for rest := b[hepHeaderLen:]; len(rest) > 0; {
		if len(rest) < hepChunkHead {
			return p, errors.New("truncated chunk header")
		}
		vendor, typ, n := binary.BigEndian.Uint16(rest), binary.BigEndian.Uint16(rest[2:]), int(binary.BigEndian.Uint16(rest[4:]))
		if vendor != 0 {
			return p, fmt.Errorf("vendor %d", vendor)
		}
		if n < hepChunkHead || n > len(rest) {
			return p, fmt.Errorf("chunk %#x length %d of %d left", typ, n, len(rest))
		}
		if seen[typ] {
			return p, fmt.Errorf("chunk %#x twice", typ)
		}
		seen[typ] = true
		v := rest[hepChunkHead:n]
		rest = rest[n:]
		size := map[uint16]int{hepChunkFamily: 1, hepChunkProto: 1, hepChunkSrcIPv4: 4, hepChunkDstIPv4: 4,
			hepChunkSrcIPv6: 16, hepChunkDstIPv6: 16, hepChunkSrcPort: 2, hepChunkDstPort: 2, hepChunkTimeSec: 4,
			hepChunkTimeUsec: 4, hepChunkProtoType: 1, hepChunkAgentID: 4}
		if want, fixed := size[typ]; fixed && len(v) != want {
			return p, fmt.Errorf("chunk %#x has %d bytes, want %d", typ, len(v), want)
		}
		switch typ {
		case hepChunkFamily:
			family = v[0]
		case hepChunkProto:
			p.Proto = v[0]
		case hepChunkSrcIPv4, hepChunkSrcIPv6:
			srcIP, _ = netip.AddrFromSlice(v)
		case hepChunkDstIPv4, hepChunkDstIPv6:
			dstIP, _ = netip.AddrFromSlice(v)
		case hepChunkSrcPort:
			srcPort = binary.BigEndian.Uint16(v)
		case hepChunkDstPort:
			dstPort = binary.BigEndian.Uint16(v)
		case hepChunkTimeSec:
			sec = binary.BigEndian.Uint32(v)
		case hepChunkTimeUsec:
			usec = binary.BigEndian.Uint32(v)
		case hepChunkProtoType:
			if v[0] != hepTypeSIP {
				return p, fmt.Errorf("protocol type %d", v[0])
			}
		case hepChunkAgentID:
			p.AgentID = binary.BigEndian.Uint32(v)
		case hepChunkNodeName:
			p.Node = string(v)
		case hepChunkAuthKey:
			p.AuthKey = string(v)
		case hepChunkCorrelation:
			p.CorrelationID = string(v)
		case hepChunkPayload:
			p.Payload = bytes.Clone(v)
		default:
			return p, fmt.Errorf("unknown chunk %#x", typ)
		}
	}
	for _, typ := range []uint16{hepChunkFamily, hepChunkProto, hepChunkSrcPort, hepChunkDstPort, hepChunkTimeSec,
		hepChunkTimeUsec, hepChunkProtoType, hepChunkAgentID, hepChunkPayload} {
		if !seen[typ] {
			return p, fmt.Errorf("chunk %#x missing", typ)
		}
	}
	switch {
	case family == hepFamilyIPv4 && seen[hepChunkSrcIPv4] && seen[hepChunkDstIPv4] && !seen[hepChunkSrcIPv6] && !seen[hepChunkDstIPv6]:
	case family == hepFamilyIPv6 && seen[hepChunkSrcIPv6] && seen[hepChunkDstIPv6] && !seen[hepChunkSrcIPv4] && !seen[hepChunkDstIPv4]:
	default:
		return p, fmt.Errorf("family %d does not match the address chunks", family)
	}
	if usec >= 1e6 {
		return p, fmt.Errorf("microseconds %d", usec)
	}
	p.Src, p.Dst = netip.AddrPortFrom(srcIP, srcPort), netip.AddrPortFrom(dstIP, dstPort)
	p.Time = time.Unix(int64(sec), int64(usec)*1000)
	return p, nil
}

// TestHEPSpecExample encodes the example packet of the HEP3 specification
// (rev. 37) and compares it byte for byte.
func TestHEPSpecExample(t *testing.T) {
	const want = "48455033" + "0071" +
		"00000001000702" + // IPv4
		"00000002000711" + // UDP
		"00000003000ad4ca0001" + // 212.202.0.1
		"00000004000a527400d3" + // 82.116.0.211
		"0000000700082eea" + // 12010
		"00000008000813c4" + // 5060
		"00000009000a4e4982cb" + // 1313440459
		"0000000a000a0001d4c0" + // 120000 µs
		"0000000b000701" + // SIP
		"0000000c000a000000e4" + // capture id 228
		"0000000f0014" + "494e56495445207369703a626f62" // "INVITE sip:bob"
	p := hepPacket{
		Src:     netip.MustParseAddrPort("212.202.0.1:12010"),
		Dst:     netip.MustParseAddrPort("82.116.0.211:5060"),
		Proto:   hepProtoUDP,
		Time:    time.Unix(1313440459, 120000*1000),
		AgentID: 228,
		Payload: []byte("INVITE sip:bob"),
	}
	got, err := appendHEP(nil, &p)
	if err != nil {
		t.Fatal(err)
	}
	if hex.EncodeToString(got) != want {
		t.Errorf("got  %x\nwant %s", got, want)
	}
}

func TestHEPRoundTrip(t *testing.T) {
	at := time.Date(2026, 3, 1, 12, 0, 0, 987654321, time.UTC)
	for _, p := range []hepPacket{
		{Src: netip.MustParseAddrPort("127.0.0.2:5060"), Dst: netip.MustParseAddrPort("127.0.0.1:5072"), Proto: hepProtoUDP,
			Time: at, AgentID: 1, Node: "wagate-east-1", CorrelationID: "abc@host", Payload: []byte("INVITE sip:x SIP/2.0\r\n\r\n")},
		{Src: netip.MustParseAddrPort("[2001:db8::1]:5061"), Dst: netip.MustParseAddrPort("[2001:db8::2]:40000"), Proto: hepProtoTLS,
			Time: at, AgentID: 4294967295, AuthKey: "s3cret", Payload: []byte("SIP/2.0 200 OK\r\n\r\n")},
		{Src: netip.MustParseAddrPort("10.0.0.1:1"), Dst: netip.MustParseAddrPort("10.0.0.2:65535"), Proto: hepProtoTCP,
			Time: time.Unix(0, 0)},
	} {
		b, err := appendHEP([]byte("prefix"), &p)
		if err != nil {
			t.Fatal(err)
		}
		if string(b[:6]) != "prefix" {
			t.Fatalf("appendHEP overwrote what was there: %q", b[:6])
		}
		got, err := decodeHEP(b[6:])
		if err != nil {
			t.Fatalf("decode: %v\n%x", err, b[6:])
		}
		checkHEPEqual(t, got, p)
	}
}

func checkHEPEqual(t *testing.T, got, want hepPacket) {
	t.Helper()
	want.Time = want.Time.Truncate(time.Microsecond)
	if got.Src != want.Src || got.Dst != want.Dst || got.Proto != want.Proto || !got.Time.Equal(want.Time) ||
		got.AgentID != want.AgentID || got.Node != want.Node || got.AuthKey != want.AuthKey ||
		got.CorrelationID != want.CorrelationID || !bytes.Equal(got.Payload, want.Payload) {
		t.Errorf("decoded %+v\nwant    %+v", got, want)
	}
}

// hepIPv4Overhead is the size of an IPv4 packet without node, key,
// correlation id and payload: the header, ten fixed chunks (87 bytes) and
// the payload chunk's head.
const hepIPv4Overhead = hepHeaderLen + 87 + hepChunkHead

func TestHEPRefuses(t *testing.T) {
	v4, v6 := netip.MustParseAddrPort("192.0.2.1:5060"), netip.MustParseAddrPort("[2001:db8::1]:5060")
	for name, p := range map[string]hepPacket{
		"mixed families":  {Src: v4, Dst: v6},
		"no source":       {Dst: v4},
		"mapped and IPv4": {Src: netip.MustParseAddrPort("[::ffff:192.0.2.2]:5060"), Dst: v4},
		"too long":        {Src: v4, Dst: v4, Payload: make([]byte, hepMaxLen)},
		"too long by one": {Src: v4, Dst: v4, Payload: make([]byte, hepMaxLen-hepIPv4Overhead+1)},
	} {
		b, err := appendHEP([]byte("x"), &p)
		if err == nil {
			t.Errorf("%s: encoded %d bytes, want an error", name, len(b))
		}
		if string(b) != "x" {
			t.Errorf("%s: dst changed to %q", name, b)
		}
	}
	// The largest payload that fits makes a packet of exactly 65535 bytes.
	p := hepPacket{Src: v4, Dst: v4, Payload: make([]byte, hepMaxLen-hepIPv4Overhead)}
	b, err := appendHEP(nil, &p)
	if err != nil || len(b) != hepMaxLen {
		t.Fatalf("largest packet: %d bytes, %v", len(b), err)
	}
	if _, err := decodeHEP(b); err != nil {
		t.Error(err)
	}
}

// FuzzHEPRoundTrip: whatever the fields, appendHEP either refuses them for
// a documented reason or writes a packet that decodes to the same fields.
func FuzzHEPRoundTrip(f *testing.F) {
	f.Add([]byte{127, 0, 0, 1}, []byte{127, 0, 0, 2}, uint16(5060), uint16(5072), uint8(17), int64(1700000000123456789),
		uint32(1), "node", "", "call@id", []byte("INVITE sip:a SIP/2.0\r\n\r\n"))
	f.Add(bytes.Repeat([]byte{0x20}, 16), bytes.Repeat([]byte{1}, 16), uint16(0), uint16(65535), uint8(22), int64(0),
		uint32(0xffffffff), "", "key", "", []byte{})
	f.Fuzz(func(t *testing.T, src, dst []byte, sport, dport uint16, proto uint8, nanos int64, agent uint32,
		node, key, cid string, payload []byte) {
		s, ok1 := netip.AddrFromSlice(src)
		d, ok2 := netip.AddrFromSlice(dst)
		if !ok1 || !ok2 || nanos < 0 || nanos/1e9 > 0xffffffff {
			return
		}
		p := hepPacket{Src: netip.AddrPortFrom(s, sport), Dst: netip.AddrPortFrom(d, dport), Proto: proto,
			Time: time.Unix(0, nanos), AgentID: agent, Node: node, AuthKey: key, CorrelationID: cid, Payload: payload}
		b, err := appendHEP(nil, &p)
		switch {
		case errors.Is(err, errHEPFamily):
			if s.Is4() == d.Is4() {
				t.Fatalf("refused addresses of one family: %v %v", s, d)
			}
			return
		case errors.Is(err, errHEPTooLong):
			n := hepIPv4Overhead + len(payload)
			for _, v := range []string{node, key, cid} {
				if v != "" {
					n += hepChunkHead + len(v)
				}
			}
			if !s.Is4() {
				n += 24
			}
			if n <= hepMaxLen {
				t.Fatalf("refused a packet of %d bytes as too long", n)
			}
			return
		case err != nil:
			t.Fatal(err)
		}
		got, err := decodeHEP(b)
		if err != nil {
			t.Fatalf("%v\n%x", err, b)
		}
		checkHEPEqual(t, got, p)
	})
}
