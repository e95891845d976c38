//go:build unix && !linux

package media

import (
	"errors"
	"fmt"
	"net"
	"os"
)

// readerWait, where there is no epoll, is a goroutine per reader that
// waits through the runtime's poller (syscall.RawConn.Read) and ends with
// a read deadline in the past.
type readerWait struct {
	fn   func(fd uintptr) bool
	done chan struct{}
}

func (w *readerWait) init(r *reader) { w.fn = r.read }

// start begins reading (Bridge.Start). A socket that keeps failing ends
// the call's media through Bridge.fail.
func (r *reader) start() {
	r.wait.done = make(chan struct{})
	relayReaders.Add(1)
	go func() {
		err := r.run()
		relayReaders.Add(-1)
		// Done before the callback: onTimeout may call Close, which
		// waits for this reader and must not wait for itself.
		close(r.wait.done)
		if err != nil {
			r.d.b.fail(err)
		}
	}()
}

// stop ends reading and returns once no packet is being handled
// (Bridge.Close, after closing is set). The socket stays open.
func (r *reader) stop() {
	if r.wait.done == nil {
		return
	}
	r.d.in.pair.stopReads()
	<-r.wait.done
}

// run reads until the bridge closes (nil) or the socket keeps failing.
func (r *reader) run() error {
	d := r.d
	raw, err := d.in.pair.rtp.SyscallConn()
	if err != nil {
		return fmt.Errorf("media: side %s socket: %w", d.side, err)
	}
	for {
		err := raw.Read(r.wait.fn)
		switch {
		case d.b.closing.Load():
			return nil
		case r.errs >= maxReadErrors:
			return fmt.Errorf("media: read RTP from side %s: %w", d.side, r.err)
		case err == nil, errors.Is(err, os.ErrDeadlineExceeded):
			continue
		case errors.Is(err, net.ErrClosed):
			return nil
		}
		return fmt.Errorf("media: side %s socket: %w", d.side, err)
	}
}
