package sip

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"time"
)

// HEP v3 (the Homer Encapsulation Protocol, also called EEP) carries a copy
// of a captured message to a collector such as Homer or heplify-server: a
// "HEP3" header and its total length, then chunks of vendor id, type id,
// length (of the whole chunk) and payload, all in network byte order.
// wagate writes only generic chunks (vendor 0).

// HEP chunk types wagate writes.
const (
	hepChunkFamily      = 0x0001 // uint8: 2 IPv4, 10 IPv6
	hepChunkProto       = 0x0002 // uint8: IP protocol id
	hepChunkSrcIPv4     = 0x0003
	hepChunkDstIPv4     = 0x0004
	hepChunkSrcIPv6     = 0x0005
	hepChunkDstIPv6     = 0x0006
	hepChunkSrcPort     = 0x0007 // uint16
	hepChunkDstPort     = 0x0008 // uint16
	hepChunkTimeSec     = 0x0009 // uint32, seconds since the epoch
	hepChunkTimeUsec    = 0x000a // uint32, microseconds added to it
	hepChunkProtoType   = 0x000b // uint8: 1 SIP
	hepChunkAgentID     = 0x000c // uint32
	hepChunkAuthKey     = 0x000e // octets
	hepChunkPayload     = 0x000f // octets
	hepChunkCorrelation = 0x0011 // octets: the Call-ID
	hepChunkNodeName    = 0x0013 // octets: the capture agent's name
)

// Values of the family, protocol and protocol type chunks.
const (
	hepFamilyIPv4 = 2
	hepFamilyIPv6 = 10
	hepProtoTCP   = 6
	hepProtoUDP   = 17
	// hepProtoTLS is the IP protocol id HEP senders write for SIP over TLS
	// (Kamailio's siptrace uses IPPROTO_IDP, 22, and Homer shows it as
	// TLS): the capture is of the decrypted messages, so there is no real
	// protocol number for it.
	hepProtoTLS = 22
	hepTypeSIP  = 1
)

const (
	hepHeaderLen = 6 // "HEP3" and the total length
	hepChunkHead = 6 // vendor, type, length
	// hepMaxLen is the largest packet the 16-bit total length can say.
	hepMaxLen = 65535
)

var hepMagic = [4]byte{'H', 'E', 'P', '3'}

// hepPacket is one captured message and what HEP says about it.
type hepPacket struct {
	Src, Dst netip.AddrPort
	// Proto is the IP protocol id: hepProtoUDP, hepProtoTCP or hepProtoTLS.
	Proto   uint8
	Time    time.Time
	AgentID uint32
	// Node names the capture agent (wagate's node_id); "" leaves it out.
	Node string
	// AuthKey is the collector's password; "" leaves it out.
	AuthKey string
	// CorrelationID ties the packets of one call together (the Call-ID);
	// "" leaves it out.
	CorrelationID string
	Payload       []byte
}

var (
	errHEPFamily  = errors.New("hep: source and destination are not both IPv4 or both IPv6")
	errHEPTooLong = errors.New("hep: packet longer than 65535 bytes")
)

// appendHEP appends p, encoded as one HEP v3 packet, to dst. The addresses
// must be of one family (an IPv4-mapped IPv6 address counts as IPv6, so
// callers unmap first); a packet that would be longer than HEP's 16-bit
// length is refused, and dst is returned unchanged with the error.
func appendHEP(dst []byte, p *hepPacket) ([]byte, error) {
	src, dstIP := p.Src.Addr(), p.Dst.Addr()
	if !src.IsValid() || !dstIP.IsValid() || src.Is4() != dstIP.Is4() {
		return dst, errHEPFamily
	}
	start := len(dst)
	dst = append(dst, hepMagic[:]...)
	dst = append(dst, 0, 0) // total length, set at the end
	if src.Is4() {
		dst = appendChunkUint8(dst, hepChunkFamily, hepFamilyIPv4)
		dst = appendChunkUint8(dst, hepChunkProto, p.Proto)
		a, b := src.As4(), dstIP.As4()
		dst = appendChunk(dst, hepChunkSrcIPv4, a[:])
		dst = appendChunk(dst, hepChunkDstIPv4, b[:])
	} else {
		dst = appendChunkUint8(dst, hepChunkFamily, hepFamilyIPv6)
		dst = appendChunkUint8(dst, hepChunkProto, p.Proto)
		a, b := src.As16(), dstIP.As16()
		dst = appendChunk(dst, hepChunkSrcIPv6, a[:])
		dst = appendChunk(dst, hepChunkDstIPv6, b[:])
	}
	dst = appendChunkUint16(dst, hepChunkSrcPort, p.Src.Port())
	dst = appendChunkUint16(dst, hepChunkDstPort, p.Dst.Port())
	dst = appendChunkUint32(dst, hepChunkTimeSec, uint32(p.Time.Unix()))
	dst = appendChunkUint32(dst, hepChunkTimeUsec, uint32(p.Time.Nanosecond()/1000))
	dst = appendChunkUint8(dst, hepChunkProtoType, hepTypeSIP)
	dst = appendChunkUint32(dst, hepChunkAgentID, p.AgentID)
	if p.Node != "" {
		dst = appendChunk(dst, hepChunkNodeName, []byte(p.Node))
	}
	if p.AuthKey != "" {
		dst = appendChunk(dst, hepChunkAuthKey, []byte(p.AuthKey))
	}
	if p.CorrelationID != "" {
		dst = appendChunk(dst, hepChunkCorrelation, []byte(p.CorrelationID))
	}
	if len(dst)-start+hepChunkHead+len(p.Payload) > hepMaxLen {
		return dst[:start], errHEPTooLong
	}
	dst = appendChunk(dst, hepChunkPayload, p.Payload)
	binary.BigEndian.PutUint16(dst[start+4:], uint16(len(dst)-start))
	return dst, nil
}

func appendChunkHead(dst []byte, typ uint16, payloadLen int) []byte {
	dst = binary.BigEndian.AppendUint16(dst, 0) // generic vendor
	dst = binary.BigEndian.AppendUint16(dst, typ)
	return binary.BigEndian.AppendUint16(dst, uint16(hepChunkHead+payloadLen))
}

func appendChunk(dst []byte, typ uint16, v []byte) []byte {
	return append(appendChunkHead(dst, typ, len(v)), v...)
}

func appendChunkUint8(dst []byte, typ uint16, v uint8) []byte {
	return append(appendChunkHead(dst, typ, 1), v)
}

func appendChunkUint16(dst []byte, typ uint16, v uint16) []byte {
	return binary.BigEndian.AppendUint16(appendChunkHead(dst, typ, 2), v)
}

func appendChunkUint32(dst []byte, typ uint16, v uint32) []byte {
	return binary.BigEndian.AppendUint32(appendChunkHead(dst, typ, 4), v)
}
