//go:build !unix

package media

import (
	"errors"
	"fmt"
	"net"
	"os"
)

// reader is a direction's read side where the raw, buffer-free wait of
// reader_unix.go is not available: a blocking read into a pooled buffer.
type reader struct {
	d *direction
}

func (r *reader) init(d *direction) { r.d = d }

func (r *reader) run() error {
	d := r.d
	errs := 0
	for {
		buf := getBuf()
		n, from, err := d.in.pair.rtp.ReadFromUDPAddrPort(buf.b[:packetBufSize])
		if d.b.closing.Load() {
			putBuf(buf)
			return nil
		}
		if err != nil {
			putBuf(buf)
			switch {
			case errors.Is(err, net.ErrClosed):
				return nil
			case errors.Is(err, os.ErrDeadlineExceeded):
				continue
			}
			if errs++; errs >= maxReadErrors {
				return fmt.Errorf("media: read RTP from side %s: %w", d.side, err)
			}
			continue
		}
		errs = 0
		if !d.handle(buf, n, from, d.clock()) {
			putBuf(buf)
		}
	}
}
