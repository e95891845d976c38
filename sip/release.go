package sip

import "github.com/emiago/sipgo/sip"

// releasable is what Release needs of a sipgo request or response.
type releasable interface {
	Headers() []sip.Header
	RemoveHeader(name string) bool
	AppendHeader(h sip.Header)
	SetBody(body []byte)
}

// Release empties m, a message wagate has finished with that a sipgo
// transaction still keeps: a completed transaction lingers for
// sip.transaction_linger holding its request and last response, and
// these parsed messages are most of what a call costs once it ended
// (about 2 KB each). What the transaction still does with them then —
// match a retransmission by its key, resend a response it has, read the
// request's method — needs neither headers nor body, so both go; the
// start line stays. Headers already taken from m stay intact (a header
// is dropped from the message, never changed), so a dialog built from
// them is unaffected. The caller must be the last reader of m: nothing
// may read its headers or body afterwards. Release(nil) does nothing.
func Release(m releasable) {
	switch v := m.(type) {
	case nil:
		return
	case *sip.Request:
		if v == nil {
			return
		}
	case *sip.Response:
		if v == nil {
			return
		}
	}
	hs := m.Headers()
	// The names are copied first (removing shifts hs); a message rarely
	// has more than 32 headers, so the copy stays on the stack.
	var buf [32]string
	names := buf[:0]
	for _, h := range hs {
		names = append(names, h.Name())
	}
	// Removing by name also drops sipgo's references to the parsed Via,
	// From, Call-ID... of the message.
	for _, name := range names {
		m.RemoveHeader(name)
	}
	// SetBody(nil) adds a Content-Length: 0; it goes with the rest.
	m.SetBody(nil)
	m.RemoveHeader("Content-Length")
	// Removing shifts the array left, leaving its tail pointing at the
	// last headers: clear every slot of it. Headers returns sipgo's own
	// slice (TestReleaseEmptiesMessage checks the slots).
	left := m.Headers()
	clear(left[:cap(left)])
}
