package b2bua

import (
	"context"
	"log/slog"
	"sync"
)

// lazyLog returns log with its With and WithGroup deferred until a record
// is logged. slog's JSON and text handlers format a logger's attributes as
// soon as With is called, whatever the level; the engine derives a logger
// per call, leg and attempt, and under load (log level warn) almost none
// of them ever logs, so the formatting was work thrown away on every call.
// What is logged is the same: the attributes are applied, in order, to
// the handler the first time a record at an enabled level reaches it.
func lazyLog(log *slog.Logger) *slog.Logger {
	if log == nil {
		return nil
	}
	if _, ok := log.Handler().(*lazyHandler); ok {
		return log
	}
	return slog.New(&lazyHandler{h: log.Handler(), built: true})
}

// lazyHandler is a handler whose WithAttrs/WithGroup were not yet applied:
// h is parent's handler with attrs (or group) added, built on first use.
type lazyHandler struct {
	root   slog.Handler // decides Enabled; WithAttrs does not change it
	parent *lazyHandler
	attrs  []slog.Attr
	group  string

	once  sync.Once
	built bool // h is set (the root)
	h     slog.Handler
}

func (l *lazyHandler) rootHandler() slog.Handler {
	if l.root != nil {
		return l.root
	}
	return l.h
}

// handler is the real handler, built once.
func (l *lazyHandler) handler() slog.Handler {
	if l.built {
		return l.h
	}
	l.once.Do(func() {
		h := l.parent.handler()
		if l.group != "" {
			l.h = h.WithGroup(l.group)
		} else {
			l.h = h.WithAttrs(l.attrs)
		}
	})
	return l.h
}

func (l *lazyHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return l.rootHandler().Enabled(ctx, level)
}

func (l *lazyHandler) Handle(ctx context.Context, r slog.Record) error {
	return l.handler().Handle(ctx, r)
}

func (l *lazyHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	if len(attrs) == 0 {
		return l
	}
	// A LogValuer is resolved now, as the eager handlers do, so that a
	// value that changes later is logged as it was at With.
	for i, a := range attrs {
		if a.Value.Kind() == slog.KindLogValuer {
			attrs[i].Value = a.Value.Resolve()
		}
	}
	return &lazyHandler{root: l.rootHandler(), parent: l, attrs: attrs}
}

func (l *lazyHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return l
	}
	return &lazyHandler{root: l.rootHandler(), parent: l, group: name}
}
