package media

import (
	"errors"
	"sync"
	"time"

	"github.com/wagate/wagate/codec"
)

// FrameSource is audio wagate plays toward a leg itself: a prompt, music
// on hold. ReadFrame fills pcm with the next 20 ms (PlaybackFrame samples
// of 8 kHz mono) and reports whether it did; false ends the playback. It
// is called on a pacer goroutine, once per 20 ms, and must not block:
// have the audio ready (decoded, in memory) before Play.
type FrameSource interface {
	ReadFrame(pcm []int16) bool
}

// GiveWay wraps src so that a playback of it gives way to the other
// side's audio: while that side sends audio toward the leg, its audio is
// played (through the playout buffer, as without a playback) and src
// waits; src fills the pauses, from where it stopped. This is music on
// hold under a PBX that holds with a=sendonly: it may play its own music
// (a contact centre's queue music) or send nothing (a phone's hold key),
// and the WhatsApp user should hear its music in the one case and ours
// in the other. Only toward a paced leg (WhatsApp, or transcoded): an
// immediate relay has no playout to tell the two apart, and there src
// replaces the other side's audio as any playback does.
func GiveWay(src FrameSource) FrameSource { return giveWay{src} }

type giveWay struct{ FrameSource }

// PlaybackFrame is the samples of one FrameSource frame: 20 ms at 8 kHz.
const PlaybackFrame = 160

// errNotStarted is returned by Play before Start.
var errNotStarted = errors.New("media: bridge not started")

// Playback is audio being played toward one leg (Bridge.Play).
type Playback struct {
	d     *direction
	src   FrameSource
	start time.Duration // on the direction's clock
	enc   *codec.Transcoder
	fmt   codecFmt
	pcm   [PlaybackFrame]int16
	begun bool
	// under: the other side's audio, when it comes, is played instead
	// (GiveWay).
	under bool
	// emit sends an encoded frame (made once: a closure per tick would
	// allocate); pt and now are set before each encode.
	emit func(frame []byte, samples int)
	pt   uint8
	now  time.Duration
	done chan struct{}
	once sync.Once
}

// Play plays src toward side's leg from at (the zero Time: at once) on the
// shared pacer, one 20 ms frame per tick, encoded to that leg's codec
// (Opus through an encoder of its own at the manager's settings, G.711 at
// the leg's ptime) in the leg's own outgoing stream: our SSRC, the next
// sequence numbers, timestamps moved on over the time before it, and the
// marker bit on its first packet. While it plays, what the other side
// sends toward that leg is discarded (a prompt or hold music replaces
// it; DTMF still passes). It ends when src runs out or Stop is called,
// and the leg's own audio resumes (toward WhatsApp, silence until the
// other side speaks). A new Play toward the same leg ends the one before.
// The bridge must be started (answered): nothing goes to a WhatsApp leg
// before that.
func (b *Bridge) Play(side Side, src FrameSource, at time.Time) (*Playback, error) {
	b.mu.Lock()
	dirs, closed := b.dirs, b.closed
	b.mu.Unlock()
	if closed {
		return nil, errClosed
	}
	d := dirs[side.other()] // the direction that writes to side
	if d == nil {
		return nil, errNotStarted
	}
	p := &Playback{d: d, src: src, done: make(chan struct{})}
	if g, ok := src.(giveWay); ok {
		p.src, p.under = g.FrameSource, true
	}
	p.emit = func(frame []byte, samples int) { d.emitOwn(p.pt, frame, samples, emitPlayback, p.now) }
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, errClosed
	}
	now := time.Now()
	if at.IsZero() || at.Before(now) {
		at = now
	}
	p.start = at.Sub(d.epoch)
	if old := d.play; old != nil {
		old.finish()
	}
	d.play = p
	// What the other side had in the playout buffer is not played after
	// the prompt.
	if d.pl != nil {
		d.pl.free()
		d.pl = nil
	}
	switch {
	case d.playJob == nil:
		d.playJob = d.b.m.pacer.Schedule(at, d.playTick)
		d.playAt = p.start
	case d.playAt == 0:
		d.playAt = p.start
		d.playJob.Wake(at)
	default:
		d.playJob.Wake(at)
	}
	return p, nil
}

// Stop ends the playback (if it is still the leg's); the leg's own audio
// resumes at the next tick. Safe from any goroutine, more than once.
func (p *Playback) Stop() {
	d := p.d
	d.mu.Lock()
	if d.play == p {
		d.endPlayback()
	}
	d.mu.Unlock()
	p.finish()
}

// Done is closed when the playback has ended: its source ran out, Stop,
// another Play toward the leg, or the bridge closed.
func (p *Playback) Done() <-chan struct{} { return p.done }

func (p *Playback) finish() {
	p.once.Do(func() {
		close(p.done)
	})
}

// endPlayback detaches the playback; called with d.mu held.
func (d *direction) endPlayback() {
	p := d.play
	d.play = nil
	if p.enc != nil {
		p.enc.Close()
		p.enc = nil
	}
	d.inSilence = true // the leg's own audio starts a new talk spurt
	d.silenceRun, d.silenceDue = 0, 0
	p.finish()
}

// underTalking reports whether a playback that gives way (GiveWay) has
// begun and the other side's audio is being played, or is there to be
// played, over it at the tick at sched: then the tick is the leg's
// normal one (pace), whose pauses come back to the playback (idle).
func (d *direction) underTalking(sched time.Duration) bool {
	p := d.play
	if !p.under || sched < p.start-time.Millisecond || !d.paced(d.cur) {
		return false
	}
	return d.pl != nil && (d.pl.talking || d.pl.held > 0) || d.xc != nil && d.xc.qn > 0
}

// playbackTick sends the playback's next frame for the tick at sched, or
// does the leg's normal tick while it has not begun, and returns when the
// next tick is due.
func (d *direction) playbackTick(sched, now time.Duration) time.Duration {
	p := d.play
	if sched < p.start-time.Millisecond {
		next := d.pace(sched, now)
		if next <= 0 || next > p.start {
			next = p.start
		}
		return next
	}
	rt := d.cur
	if !rt.ready() {
		return sched + silenceFrame
	}
	if p.enc == nil || p.fmt != rt.out {
		if p.enc != nil {
			p.enc.Close()
		}
		enc, err := codec.NewEncoder(rt.out.format(), d.b.m.opus)
		if err != nil {
			d.logOnce(&d.loggedCodec, "media: cannot encode a playback", "to_side", d.side.other(), "err", err)
			d.endPlayback()
			return sched + silenceFrame
		}
		p.enc, p.fmt = enc, rt.out
	}
	if !p.src.ReadFrame(p.pcm[:]) {
		d.endPlayback()
		return d.pace(sched, now)
	}
	if !p.begun {
		p.begun = true
		d.stream.marker = true
	}
	d.stamp(sched, rt)
	p.pt, p.now = rt.outPT, now
	if err := p.enc.WritePCM(p.pcm[:], p.emit); err != nil {
		d.endPlayback()
	}
	d.sent(sched, silenceFrame)
	d.inSilence = false
	return sched + silenceFrame
}
