package b2bua

import (
	"context"
	"errors"
	"slices"
	"sync"

	"github.com/wagate/wagate/media"
)

// player is the one media.FrameSource a call flow plays toward A through:
// prompts queue on it and follow each other without a gap, since the
// playback goes on reading the next one in the same 20 ms tick the last
// one ended in. When the queue runs dry the playback ends and A hears the
// bridge's silence; the next prompt starts a new playback.
type player struct {
	// start begins a playback of the player toward A (Bridge.Play).
	start func(src media.FrameSource) (*media.Playback, error)

	mu      sync.Mutex
	queue   []*playItem // queue[0] is playing
	running bool        // a playback is reading the player
	pb      *media.Playback
}

// playItem is one audio queued, or looping until removed.
type playItem struct {
	pcm  []int16
	pos  int
	loop bool
	done chan struct{} // closed when played out or removed
	shut bool
}

func (it *playItem) finish() {
	if !it.shut {
		it.shut = true
		close(it.done)
	}
}

// errPlayerEnded: the call ended while its audio was waiting to play.
var errPlayerEnded = errors.New("b2bua: call ended")

// ReadFrame implements media.FrameSource; called on the pacer, under the
// media direction's lock: it never calls the bridge.
func (p *player) ReadFrame(pcm []int16) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for n < len(pcm) && len(p.queue) > 0 {
		it := p.queue[0]
		k := copy(pcm[n:], it.pcm[it.pos:])
		n += k
		it.pos += k
		if it.pos < len(it.pcm) {
			continue
		}
		if it.loop && len(it.pcm) > 0 {
			it.pos = 0
			continue
		}
		p.queue = p.queue[1:]
		it.finish()
	}
	if n == 0 {
		p.running, p.pb = false, nil
		return false
	}
	clear(pcm[n:])
	return true
}

// play queues pcm and waits until it has been played out (nil), ctx is
// done (ctx.Err()) or ended is closed (errPlayerEnded).
func (p *player) play(ctx context.Context, ended <-chan struct{}, pcm []int16, loop bool) error {
	it := &playItem{pcm: pcm, loop: loop, done: make(chan struct{})}
	if len(pcm) == 0 {
		return nil
	}
	for {
		pb, err := p.add(it)
		if err != nil {
			return err
		}
		var pbDone <-chan struct{}
		if pb != nil {
			pbDone = pb.Done()
		}
		select {
		case <-it.done:
			return nil
		case <-ctx.Done():
			p.remove(it)
			return ctx.Err()
		case <-ended:
			p.remove(it)
			return errPlayerEnded
		case <-pbDone:
			// The playback ended without running dry: the bridge closed
			// (the call is ending) or another playback took A over. Go
			// on with a new one unless the call is over.
			p.mu.Lock()
			if p.pb == pb {
				p.running, p.pb = false, nil
			}
			p.mu.Unlock()
			select {
			case <-ended:
				p.remove(it)
				return errPlayerEnded
			case <-it.done:
				return nil
			default:
			}
		}
	}
}

// loop plays pcm over and over until the returned stop is called.
func (p *player) loop(pcm []int16) (stop func()) {
	it := &playItem{pcm: pcm, loop: true, done: make(chan struct{})}
	if _, err := p.add(it); err != nil {
		return func() {}
	}
	return func() { p.remove(it) }
}

// add queues it (once) and makes sure a playback reads the queue; it
// returns the playback that will play it.
func (p *player) add(it *playItem) (*media.Playback, error) {
	p.mu.Lock()
	if !slices.Contains(p.queue, it) {
		p.queue = append(p.queue, it)
	}
	if p.running {
		pb := p.pb
		p.mu.Unlock()
		return pb, nil
	}
	p.running = true
	p.mu.Unlock()
	// Not under p.mu: Play takes the media direction's lock, under which
	// ReadFrame takes p.mu.
	pb, err := p.start(p)
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		p.running = false
		p.queue = slices.DeleteFunc(p.queue, func(x *playItem) bool { return x == it })
		it.finish()
		return nil, errPlayerEnded
	}
	if p.running && p.pb == nil {
		p.pb = pb
	}
	return pb, nil
}

// remove takes it out of the queue (a prompt cut short, a loop stopped).
func (p *player) remove(it *playItem) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.queue = slices.DeleteFunc(p.queue, func(x *playItem) bool { return x == it })
	it.finish()
}
