package sip

import (
	"runtime/debug"

	"github.com/emiago/sipgo/sip"
)

// guard runs a request handler so that a panic in it ends that request,
// not the process. The edge guarantees every handler the headers it
// relies on, so a panic here is a bug: it is logged at error with the
// message's Call-ID and the stack, counted (sip_edge.panics_recovered in
// /v1/status), and answered 500 when the request still can be. The
// end-to-end tests fail on any "panic recovered" line, so recovery never
// hides a bug from make test.
func (s *Server) guard(h func(*sip.Request, sip.ServerTransaction)) func(*sip.Request, sip.ServerTransaction) {
	return func(req *sip.Request, tx sip.ServerTransaction) {
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			s.edge.stats.panics.Add(1)
			s.log.Error("panic recovered", "method", string(req.Method), "sip_call_id", truncate(callIDOf(req), 128),
				"source", req.Source(), "panic", v, "stack", string(debug.Stack()))
			if req.IsAck() {
				return
			}
			defer func() { _ = recover() }() // the answer is best effort
			res := sip.NewResponseFromRequest(req, 500, "Server Internal Error", nil)
			_ = tx.Respond(res)
		}()
		h(req, tx)
	}
}
