package sip

import (
	"context"
	"log/slog"
)

// maxLogValue bounds any string attribute sipgo logs: on a parse failure it
// logs the whole datagram, which would let any sender write 64 KB log lines
// at will.
const maxLogValue = 256

// truncatingHandler shortens long string attributes before they are logged.
type truncatingHandler struct{ slog.Handler }

func (h truncatingHandler) Handle(ctx context.Context, r slog.Record) error {
	long := false
	r.Attrs(func(a slog.Attr) bool {
		if a.Value.Kind() == slog.KindString && len(a.Value.String()) > maxLogValue {
			long = true
			return false
		}
		return true
	})
	if !long {
		return h.Handler.Handle(ctx, r)
	}
	nr := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		if a.Value.Kind() == slog.KindString {
			if s := a.Value.String(); len(s) > maxLogValue {
				a = slog.String(a.Key, s[:maxLogValue]+"…(truncated)")
			}
		}
		nr.AddAttrs(a)
		return true
	})
	return h.Handler.Handle(ctx, nr)
}

func (h truncatingHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return truncatingHandler{h.Handler.WithAttrs(as)}
}

func (h truncatingHandler) WithGroup(name string) slog.Handler {
	return truncatingHandler{h.Handler.WithGroup(name)}
}

// sipgoLogger is the logger handed to sipgo.
func sipgoLogger(log *slog.Logger) *slog.Logger {
	return slog.New(truncatingHandler{log.Handler()}).With("component", "sipgo")
}
