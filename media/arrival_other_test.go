//go:build !linux

package media

import (
	"net"
	"time"
)

// stampArrivals does nothing here: recvAt stamps a packet when the test
// reads it.
func stampArrivals(*net.UDPConn) {}

func arrivalOf([]byte, time.Time) (time.Time, bool) { return time.Time{}, false }
