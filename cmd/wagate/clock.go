package main

import (
	"fmt"
	"os"
	"time"
)

// fakeNowVar is a test hook: when set (RFC 3339, e.g.
// "2025-06-02T10:00:00+01:00"), routing reads business hours on a clock
// that starts at that instant and runs at the real pace, so the end-to-end
// tests can place a call in and out of hours. Nothing else (timers, logs,
// records) sees it. Unset in production.
const fakeNowVar = "WAGATE_FAKE_NOW"

// routingClock returns the clock of routing decisions: the real one, or
// the fake one WAGATE_FAKE_NOW asks for (with the instant, to log it).
func routingClock() (func() time.Time, string, error) {
	v := os.Getenv(fakeNowVar)
	if v == "" {
		return time.Now, "", nil
	}
	at, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return nil, "", fmt.Errorf("%s=%q is not an RFC 3339 time (2025-06-02T10:00:00Z): %w", fakeNowVar, v, err)
	}
	offset := time.Until(at)
	return func() time.Time { return time.Now().Add(offset) }, at.Format(time.RFC3339), nil
}
