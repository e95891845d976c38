package b2bua

import (
	"bytes"
	"context"
	"log/slog"
	"testing"
)

// TestLazyLogSameOutput: a logger whose With is deferred writes exactly
// what the eager one writes, groups and nesting included.
func TestLazyLogSameOutput(t *testing.T) {
	var eager, lazy bytes.Buffer
	opts := &slog.HandlerOptions{Level: slog.LevelInfo, ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}}
	for _, json := range []bool{true, false} {
		eager.Reset()
		lazy.Reset()
		mk := func(w *bytes.Buffer) *slog.Logger {
			if json {
				return slog.New(slog.NewJSONHandler(w, opts))
			}
			return slog.New(slog.NewTextHandler(w, opts))
		}
		for i, log := range []*slog.Logger{mk(&eager), lazyLog(mk(&lazy))} {
			call := log.With("call", "c1", "n", 3)
			leg := call.With("leg", "b").WithGroup("sip").With("code", 200)
			call.Info("answered", "after", "1s")
			leg.Warn("retry", "attempt", 2)
			leg.Debug("hidden") // below the level: nothing
			call.With(slog.Group("g", "k", "v")).Error("grouped")
			if i == 1 && lazyLog(log) != log {
				t.Error("lazyLog of a lazy logger wraps it again")
			}
		}
		if eager.String() != lazy.String() {
			t.Errorf("json=%v: lazy logger wrote\n%s\nthe eager one\n%s", json, lazy.String(), eager.String())
		}
		if eager.Len() == 0 {
			t.Fatal("nothing logged")
		}
	}
}

// countingHandler counts the WithAttrs calls that reach it.
type countingHandler struct {
	slog.Handler
	withs *int
}

func (h countingHandler) WithAttrs(as []slog.Attr) slog.Handler {
	*h.withs++
	return countingHandler{h.Handler.WithAttrs(as), h.withs}
}

// TestLazyLogDefersWith: attributes reach the handler only when a record
// at an enabled level is logged, once per derived logger however many
// records it logs.
func TestLazyLogDefersWith(t *testing.T) {
	var buf bytes.Buffer
	withs := 0
	log := lazyLog(slog.New(countingHandler{slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelWarn}), &withs}))
	call := log.With("call", "c1")
	leg := call.With("leg", "a")
	leg.Info("not logged")
	if !leg.Enabled(context.Background(), slog.LevelWarn) || leg.Enabled(context.Background(), slog.LevelInfo) {
		t.Error("Enabled is not the handler's")
	}
	if withs != 0 || buf.Len() != 0 {
		t.Fatalf("%d WithAttrs and %q before any enabled record", withs, buf.String())
	}
	leg.Warn("one")
	leg.Warn("two")
	if withs != 2 {
		t.Errorf("%d WithAttrs for a logger two With deep, want 2", withs)
	}
	if got := bytes.Count(buf.Bytes(), []byte(`"call":"c1","leg":"a"`)); got != 2 {
		t.Errorf("%d records with the attributes, want 2:\n%s", got, buf.String())
	}
}
