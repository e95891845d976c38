package sip

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"
)

// sipgo keeps its logger, UDP MTU, transaction timers and message tracer in
// package variables that its goroutines read without locks. A process runs
// one Server, but tests build several, and a later New writing those
// variables while an earlier server's goroutines read them is a data race.
// So they are written once per process; what belongs to one Server (its
// logger, its message counters) is reached through atomic pointers that the
// once-installed values forward to, the newest Server winning.
var sipgoGlobals struct {
	once sync.Once
	// linger is the transaction linger the timers were set from.
	linger time.Duration
	log    atomic.Pointer[slog.Logger]
	msgs   atomic.Pointer[msgStats]
}

// useSipgoGlobals points sipgo's logger and tracer at this server's and, the
// first time only, sets sipgo's package settings. It reports whether the
// linger asked for differs from the one in force (a second Server in one
// process with another sip.transaction_linger).
func useSipgoGlobals(log *slog.Logger, msgs *msgStats, linger time.Duration) (differs bool) {
	sipgoGlobals.log.Store(sipgoLogger(log))
	sipgoGlobals.msgs.Store(msgs)
	sipgoGlobals.once.Do(func() {
		sip.SetDefaultLogger(slog.New(forwardHandler{}))
		sip.UDPMTUSize = udpMaxMessage + 200
		// Completed transactions over UDP linger for sip.transaction_linger
		// instead of 64·T1 (Timers J, L, M); see configs.SIP.TransactionLinger.
		// sipgo reads these package timers when a transaction starts.
		sip.Timer_J, sip.Timer_L, sip.Timer_M = linger, linger, linger
		sipgoGlobals.linger = linger
		// sipgo's tracer hook sees every message on every connection; it is
		// the one place that can count (and trace) what goes to Meta over TLS.
		sip.SIPDebug = true
		sip.SIPDebugTracer(forwardTracer{})
	})
	return linger != sipgoGlobals.linger
}

// forwardTracer hands every message sipgo traces to the current Server's
// counters.
type forwardTracer struct{}

func (forwardTracer) SIPTraceRead(transport, laddr, raddr string, b []byte) {
	if m := sipgoGlobals.msgs.Load(); m != nil {
		m.SIPTraceRead(transport, laddr, raddr, b)
	}
}

func (forwardTracer) SIPTraceWrite(transport, laddr, raddr string, b []byte) {
	if m := sipgoGlobals.msgs.Load(); m != nil {
		m.SIPTraceWrite(transport, laddr, raddr, b)
	}
}

// forwardHandler logs through the current Server's sipgo logger. sipgo
// derives its component loggers with With/WithGroup when it builds them, so
// those are kept as steps and replayed on the logger in force.
type forwardHandler struct {
	steps []func(slog.Handler) slog.Handler
}

func (h forwardHandler) current() slog.Handler {
	l := sipgoGlobals.log.Load()
	if l == nil {
		return nil
	}
	hd := l.Handler()
	for _, s := range h.steps {
		hd = s(hd)
	}
	return hd
}

func (h forwardHandler) Enabled(ctx context.Context, lv slog.Level) bool {
	l := sipgoGlobals.log.Load()
	return l != nil && l.Handler().Enabled(ctx, lv)
}

func (h forwardHandler) Handle(ctx context.Context, r slog.Record) error {
	if hd := h.current(); hd != nil {
		return hd.Handle(ctx, r)
	}
	return nil
}

func (h forwardHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return h.with(func(hd slog.Handler) slog.Handler { return hd.WithAttrs(as) })
}

func (h forwardHandler) WithGroup(name string) slog.Handler {
	return h.with(func(hd slog.Handler) slog.Handler { return hd.WithGroup(name) })
}

func (h forwardHandler) with(step func(slog.Handler) slog.Handler) slog.Handler {
	steps := make([]func(slog.Handler) slog.Handler, len(h.steps), len(h.steps)+1)
	copy(steps, h.steps)
	return forwardHandler{steps: append(steps, step)}
}
