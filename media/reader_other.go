//go:build !unix

package media

import (
	"errors"
	"fmt"
	"net"
	"os"
)

// reader is a direction's read side where the raw, buffer-free wait of
// reader_unix.go is not available: a goroutine blocked in a read into a
// pooled buffer, ended with a read deadline in the past.
type reader struct {
	d    *direction
	done chan struct{}
}

func (r *reader) init(d *direction) { r.d = d }

// start begins reading (Bridge.Start). A socket that keeps failing ends
// the call's media through Bridge.fail.
func (r *reader) start() {
	r.done = make(chan struct{})
	relayReaders.Add(1)
	go func() {
		err := r.run()
		relayReaders.Add(-1)
		// Done before the callback: onTimeout may call Close, which
		// waits for this reader and must not wait for itself.
		close(r.done)
		if err != nil {
			r.d.b.fail(err)
		}
	}()
}

// stop ends reading and returns once no packet is being handled
// (Bridge.Close, after closing is set). The socket stays open.
func (r *reader) stop() {
	if r.done == nil {
		return
	}
	r.d.in.pair.stopReads()
	<-r.done
}

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
