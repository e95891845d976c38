package permissions

import "time"

// Clock tells the cache what time it is. Tests inject a clock they move by
// hand so that 24-hour windows and 168-hour expiries are checked in
// microseconds.
type Clock interface{ Now() time.Time }

// SystemClock is the wall clock.
type SystemClock struct{}

// Now returns time.Now().
func (SystemClock) Now() time.Time { return time.Now() }
