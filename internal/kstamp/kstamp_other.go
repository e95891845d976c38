//go:build !linux

package kstamp

import (
	"errors"
	"time"
)

// Enable reports that arrival stamps are read on Linux only; readers
// then stamp a datagram when they read it.
func Enable(uintptr) error { return errors.New("kstamp: arrival stamps are read on Linux only") }

// Arrival returns now: there is no kernel stamp to read.
func Arrival(_ []byte, now time.Time) time.Time { return now }
