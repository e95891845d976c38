package sip

import (
	"bytes"
	"sync/atomic"

	"github.com/emiago/sipgo/sip"
)

// msgStats counts the SIP messages sipgo reads and writes, by direction
// and by method (requests) or class (responses). It is installed as
// sipgo's tracer, which sees every message on every connection, those
// toward Meta over TLS included; the edge's own stateless answers are
// counted by the edge.
type msgStats struct {
	counts [2][len(countedMethods) + 1 + 6]atomic.Uint64
	// next gets every message too (the trace and HEP export; nil: none).
	next atomic.Pointer[tracerBox]
}

type tracerBox struct{ t sip.SIPTracer }

// countedMethods are the request methods counted by name; anything else
// is "other".
var countedMethods = [...]string{"INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "INFO", "REFER", "NOTIFY", "UPDATE", "PRACK", "MESSAGE", "REGISTER", "SUBSCRIBE", "PUBLISH"}

const (
	dirIn  = 0
	dirOut = 1
)

func (m *msgStats) SIPTraceRead(transport, laddr, raddr string, b []byte) {
	m.count(dirIn, b)
	if n := m.next.Load(); n != nil {
		n.t.SIPTraceRead(transport, laddr, raddr, b)
	}
}

func (m *msgStats) SIPTraceWrite(transport, laddr, raddr string, b []byte) {
	m.count(dirOut, b)
	if n := m.next.Load(); n != nil {
		n.t.SIPTraceWrite(transport, laddr, raddr, b)
	}
}

// count classifies one message by its start line. A stream read may hold
// part of a message or several; only a start line at the front counts,
// which is exact for datagrams and for wagate's listeners (the edge hands
// sipgo whole messages) and close for sipgo's own client connections.
func (m *msgStats) count(dir int, b []byte) {
	if len(b) >= 12 && bytes.HasPrefix(b, []byte("SIP/2.0 ")) {
		if c := b[8]; c >= '1' && c <= '6' {
			m.counts[dir][len(countedMethods)+1+int(c-'1')].Add(1)
		}
		return
	}
	sp := bytes.IndexByte(b, ' ')
	if sp <= 0 {
		return
	}
	method := b[:sp]
	for i, name := range countedMethods {
		if string(method) == name {
			m.counts[dir][i].Add(1)
			return
		}
	}
	m.counts[dir][len(countedMethods)].Add(1)
}

// MessageCount is the number of SIP messages of one kind sent or received.
type MessageCount struct {
	// Direction is "in" or "out".
	Direction string
	// Method is a request method ("other" for the rest), empty for
	// responses; Class is "1xx"…"6xx", empty for requests.
	Method, Class string
	Count         uint64
}

// MessageCounts returns the SIP message counts since start.
func (s *Server) MessageCounts() []MessageCount {
	var out []MessageCount
	for dir, name := range [2]string{"in", "out"} {
		for i := range s.msgs.counts[dir] {
			n := s.msgs.counts[dir][i].Load()
			mc := MessageCount{Direction: name, Count: n}
			switch {
			case i < len(countedMethods):
				mc.Method = countedMethods[i]
			case i == len(countedMethods):
				mc.Method = "other"
			default:
				mc.Class = string(rune('1'+i-len(countedMethods)-1)) + "xx"
			}
			out = append(out, mc)
		}
	}
	return out
}
