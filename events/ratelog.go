package events

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// rateLog logs at most one line per key every interval, so that a full disk
// or a dead subscriber under load writes a line every few seconds, not one
// per record; the next line says how many were suppressed.
type rateLog struct {
	every time.Duration

	mu         sync.Mutex
	last       map[string]time.Time
	suppressed map[string]int
}

func (r *rateLog) log(l *slog.Logger, level slog.Level, key, msg string, args ...any) {
	now := time.Now()
	r.mu.Lock()
	if r.last == nil {
		r.last, r.suppressed = map[string]time.Time{}, map[string]int{}
	}
	if t, ok := r.last[key]; ok && now.Sub(t) < r.every {
		r.suppressed[key]++
		r.mu.Unlock()
		return
	}
	r.last[key] = now
	n := r.suppressed[key]
	delete(r.suppressed, key)
	r.mu.Unlock()
	if n > 0 {
		args = append(args, "suppressed_since_last", n)
	}
	l.Log(context.Background(), level, msg, args...)
}
