package media

import (
	"bytes"
	"encoding/binary"
	"net/netip"

	"github.com/pion/stun/v3"
)

// One port of a dtls leg carries STUN, DTLS and SRTP/SRTCP; the first byte
// tells them apart (RFC 7983 §7). The relay's reader hands STUN and DTLS
// to the leg here, after checks that cost little and keep strangers out
// of pion: STUN must be a Binding message for this leg (a request with
// our ufrag and password, a response from an address of the peer with
// the peer's password), DTLS must be well-formed records from the ICE
// peer. Anything else is dropped and counted (DroppedSTUN, DroppedDTLS);
// none of it ends the call or keeps it alive.

// Datagram kinds by first byte.
const (
	kindOther = iota
	kindSTUN
	kindDTLS
)

func demuxKind(first byte) int {
	switch {
	case first <= 3:
		return kindSTUN
	case first >= 20 && first <= 63:
		return kindDTLS
	}
	return kindOther // RTP and RTCP are 128–191; the rest is noise
}

// maxKnownPeers bounds the peer addresses a leg remembers (candidates
// from its SDP plus peer-reflexive ones learned from checks).
const maxKnownPeers = 40

// DTLS record header: type, version (2), epoch (2), sequence (6), length.
const dtlsRecordHeader = 13

// validDTLSRecords reports whether pkt is one or more whole DTLS 1.0/1.2
// records of a content type DTLS-SRTP uses (change_cipher_spec, alert,
// handshake, application_data, heartbeat).
func validDTLSRecords(pkt []byte) bool {
	if len(pkt) == 0 {
		return false
	}
	for len(pkt) > 0 {
		if len(pkt) < dtlsRecordHeader {
			return false
		}
		if ct := pkt[0]; ct < 20 || ct > 24 {
			return false
		}
		if pkt[1] != 0xfe || (pkt[2] != 0xff && pkt[2] != 0xfd) {
			return false
		}
		n := int(binary.BigEndian.Uint16(pkt[11:13]))
		if n == 0 || dtlsRecordHeader+n > len(pkt) {
			return false
		}
		pkt = pkt[dtlsRecordHeader+n:]
	}
	return true
}

// stunCheck is the verdict on a STUN datagram.
type stunCheck uint8

const (
	stunDrop    stunCheck = iota // not for us, or not authentic
	stunPass                     // for pion's agent
	stunRequest                  // an authentic check: its source is a peer address
	stunIgnore                   // a keepalive indication: nothing to do
)

// checkSTUN classifies a STUN datagram for a leg whose credentials are
// ufrag/pwd and whose peer's password is peerPwd; known says whether from
// is an address of the peer. m is reused (it must not share memory with
// pkt's caller: Check rewrites the length field in place).
func checkSTUN(m *stun.Message, pkt []byte, ufrag, pwd, peerPwd string, known bool) stunCheck {
	if len(pkt) > packetBufSize || !stun.IsMessage(pkt) {
		return stunDrop
	}
	m.Raw = append(m.Raw[:0], pkt...)
	if err := m.Decode(); err != nil || m.Type.Method != stun.MethodBinding {
		return stunDrop
	}
	switch m.Type.Class {
	case stun.ClassRequest:
		u, err := m.Get(stun.AttrUsername)
		if err != nil || len(u) <= len(ufrag) || !bytes.HasPrefix(u, []byte(ufrag)) || u[len(ufrag)] != ':' {
			return stunDrop
		}
		if stun.NewShortTermIntegrity(pwd).Check(m) != nil {
			return stunDrop
		}
		return stunRequest
	case stun.ClassSuccessResponse, stun.ClassErrorResponse:
		if !known || stun.NewShortTermIntegrity(peerPwd).Check(m) != nil {
			return stunDrop
		}
		return stunPass
	case stun.ClassIndication:
		if known {
			return stunIgnore
		}
	}
	return stunDrop
}

// demux takes a STUN or DTLS datagram from the leg's socket (the reader
// goroutine's; pkt is its buffer, copied if kept). It reports whether
// the datagram was one of those (the reader is then done with it).
func (s *secureLeg) demux(pkt []byte, from netip.AddrPort) bool {
	switch demuxKind(pkt[0]) {
	case kindSTUN:
		s.stun(pkt, from)
	case kindDTLS:
		s.dtlsRecord(pkt, from)
	default:
		return false
	}
	return true
}

func (s *secureLeg) stun(pkt []byte, from netip.AddrPort) {
	if s.stunQ == nil {
		s.dropped(&s.droppedSTUN, "STUN", from)
		return
	}
	switch checkSTUN(&s.msg, pkt, s.ufrag, s.pwd, s.peer.pwd, s.isKnown(from)) {
	case stunDrop:
		s.dropped(&s.droppedSTUN, "STUN", from)
		return
	case stunIgnore:
		return
	case stunRequest:
		s.learn(from)
	}
	if !s.stunQ.offer(pkt, from) {
		s.dropped(&s.droppedSTUN, "STUN", from)
	}
}

func (s *secureLeg) dtlsRecord(pkt []byte, from netip.AddrPort) {
	ok := s.dtlsQ != nil && validDTLSRecords(pkt)
	if ok {
		if sel := s.selected.Load(); sel != nil {
			ok = from == *sel
		} else {
			ok = s.isKnown(from) // a DTLS client may start as soon as it is nominated
		}
	}
	if !ok || !s.dtlsQ.offer(pkt, from) {
		s.dropped(&s.droppedDTLS, "DTLS", from)
		return
	}
	if !s.client && clientHelloSCSV(pkt) {
		s.scsv.Store(true)
	}
}

// clientHelloSCSV reports whether pkt (whole DTLS records, checked) is an
// unfragmented ClientHello whose cipher suites include
// TLS_EMPTY_RENEGOTIATION_INFO_SCSV (RFC 5746), the way OpenSSL's clients
// say they support secure renegotiation. pion's server answers only the
// extension form; OpenSSL 3 clients then refuse the handshake ("unsafe
// legacy renegotiation disabled"), so the leg tells pion (see handshake).
func clientHelloSCSV(pkt []byte) bool {
	if len(pkt) < dtlsRecordHeader+12 || pkt[0] != 22 {
		return false
	}
	n := int(binary.BigEndian.Uint16(pkt[11:13]))
	b := pkt[dtlsRecordHeader:min(len(pkt), dtlsRecordHeader+n)]
	// Handshake header: type, length (3), message_seq (2), fragment
	// offset (3), fragment length (3).
	if len(b) < 12 || b[0] != 1 || b[6] != 0 || b[7] != 0 || b[8] != 0 || !bytes.Equal(b[1:4], b[9:12]) {
		return false
	}
	b = b[12:]
	if len(b) < 2+32+1 {
		return false
	}
	b = b[34:]    // client_version, random
	for range 2 { // session_id, cookie
		if len(b) < 1 || len(b) < 1+int(b[0]) {
			return false
		}
		b = b[1+int(b[0]):]
	}
	if len(b) < 2 {
		return false
	}
	cs := int(binary.BigEndian.Uint16(b))
	if cs%2 != 0 || len(b) < 2+cs {
		return false
	}
	for i := 2; i < 2+cs; i += 2 {
		if b[i] == 0x00 && b[i+1] == 0xff {
			return true
		}
	}
	return false
}

func (s *secureLeg) isKnown(a netip.AddrPort) bool {
	for _, k := range s.known {
		if k == a {
			return true
		}
	}
	return false
}

// learn remembers the source of an authentic check (a peer-reflexive
// address of the peer).
func (s *secureLeg) learn(a netip.AddrPort) {
	if !s.isKnown(a) && len(s.known) < maxKnownPeers {
		s.known = append(s.known, a)
	}
}

func (s *secureLeg) dropped(n interface{ Add(uint64) uint64 }, what string, from netip.AddrPort) {
	n.Add(1)
	if !s.loggedDrop {
		s.loggedDrop = true
		s.log.Info("media: dropping "+what+" that is not from the ICE peer or not authentic", "from", from)
	}
}
