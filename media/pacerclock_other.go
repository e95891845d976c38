//go:build !linux

package media

import "time"

// pacerClock is Linux's timerfd; elsewhere shards sleep on runtime timers.
type pacerClock struct{}

func newPacerClock() *pacerClock    { return nil }
func (c *pacerClock) arm(time.Time) {}
func (c *pacerClock) wait() error   { return nil }
func (c *pacerClock) close()        {}
