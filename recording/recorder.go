package recording

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// inRate is the rate of the PCM the media layer hands over.
	inRate = 8000
	// queueLen is the per-recorder buffer between the media goroutines
	// and the writer, in chunks: ~2.5 s of audio per side at 20 ms chunks.
	queueLen = 256
	// tolLate: a side whose audio ends more than this before wall-clock
	// time is re-anchored (silence fills the gap); the other side is padded
	// with silence up to this far behind wall-clock time.
	tolLate = inRate / 10 // 100 ms
	// tolEarly: audio ending more than this after wall-clock time (a burst
	// after a stall, a sender whose clock runs fast) is trimmed to it.
	tolEarly = inRate * 3 / 10 // 300 ms
	// tickEvery is how often the writer pads silent sides and flushes.
	tickEvery = 250 * time.Millisecond
	// outBufBytes is the writer's output buffer (~0.5 s at 8 kHz stereo).
	outBufBytes = 16 << 10
	// maxPooledSamples keeps oversized chunk buffers out of the pool.
	maxPooledSamples = 4096
)

var errSizeLimit = errors.New("WAV size limit (4 GiB) reached")

// wavFile is what a recorder writes to: an *os.File, or in tests a writer
// that fails or stalls.
type wavFile interface {
	io.Writer
	io.WriterAt
	Sync() error
	Close() error
}

// chunk is one PCM call: a copy of the samples, the side and the time of
// arrival (which is when the chunk's last sample was current).
type chunk struct {
	at   time.Time
	buf  *[]int16
	side Side
}

var bufPool = sync.Pool{New: func() any { b := make([]int16, 0, 320); return &b }}

func putBuf(bp *[]int16) {
	if cap(*bp) <= maxPooledSamples {
		bufPool.Put(bp)
	}
}

// seg is a run of one side's audio waiting to be interleaved: samples of a
// pooled chunk buffer from off, or (buf nil) a run of silence.
type seg struct {
	buf   *[]int16
	off   int
	zeros int64
}

func (s *seg) avail() int64 {
	if s.buf == nil {
		return s.zeros
	}
	return int64(len(*s.buf) - s.off)
}

// sideQueue is a FIFO of segs. Silence costs no memory, so a long gap is
// one seg however long it is.
type sideQueue struct {
	segs []seg
	head int
}

func (q *sideQueue) pushZeros(n int64) {
	if n <= 0 {
		return
	}
	if l := len(q.segs); l > q.head && q.segs[l-1].buf == nil {
		q.segs[l-1].zeros += n
		return
	}
	q.segs = append(q.segs, seg{zeros: n})
}

func (q *sideQueue) pushPCM(bp *[]int16, off int) {
	q.segs = append(q.segs, seg{buf: bp, off: off})
}

func (q *sideQueue) front() *seg { return &q.segs[q.head] }

func (q *sideQueue) consume(n int64) {
	s := &q.segs[q.head]
	if s.buf == nil {
		s.zeros -= n
	} else {
		s.off += int(n)
	}
	if s.avail() > 0 {
		return
	}
	if s.buf != nil {
		putBuf(s.buf)
	}
	q.segs[q.head] = seg{}
	q.head++
	switch {
	case q.head == len(q.segs):
		q.segs, q.head = q.segs[:0], 0
	case q.head >= 64 && q.head*2 >= len(q.segs):
		n := copy(q.segs, q.segs[q.head:])
		clear(q.segs[n:])
		q.segs, q.head = q.segs[:n], 0
	}
}

func (q *sideQueue) release() {
	for i := q.head; i < len(q.segs); i++ {
		if q.segs[i].buf != nil {
			putBuf(q.segs[i].buf)
		}
	}
	clear(q.segs)
	q.segs, q.head = q.segs[:0], 0
}

// Recorder records one call. PCM may be called from any goroutine (one per
// side, concurrently); Finish ends the recording. All methods are no-ops on
// a nil *Recorder.
type Recorder struct {
	m          *Manager
	clock      Clock
	rel        string // WAV path relative to the recordings directory
	jsonRel    string
	ch         chan chunk
	done       chan struct{}
	exited     chan struct{}
	stopped    atomic.Bool
	dropped    atomic.Int64
	finishOnce sync.Once
	end        EndInfo // written before done is closed
	final      Entry   // written before exited is closed

	// Everything below belongs to the writer goroutine.
	f          wavFile
	fileClosed bool
	entry      Entry
	t0         time.Time
	up         int64 // output samples per input sample: 1 (8 kHz) or 2 (16 kHz)
	left       Side  // the side on the left channel (WhatsApp)
	q          [2]sideQueue
	cursor     [2]int64 // input samples queued so far per side (audio + silence)
	silent     [2]bool  // the side's last queued audio is padding silence
	emitted    int64    // input-rate frames interleaved so far
	prev       [2]int16 // upsampler memory, by side
	out        []byte
	data       int64 // data-chunk bytes in the file
	hdrData    int64 // data size the header says
	err        error
	filled     int64 // silence inserted to re-anchor a side, input samples
	trimmed    int64 // audio dropped because it ran ahead, input samples
}

func newRecorder(m *Manager, clock Clock, f wavFile, rel, jsonRel string, e Entry, meta Meta) *Recorder {
	return &Recorder{
		m:       m,
		clock:   clock,
		rel:     rel,
		jsonRel: jsonRel,
		ch:      make(chan chunk, queueLen),
		done:    make(chan struct{}),
		exited:  make(chan struct{}),
		f:       f,
		entry:   e,
		t0:      clock.Now(),
		up:      int64(m.rate / inRate),
		left:    meta.WhatsAppSide,
		out:     make([]byte, 0, outBufBytes),
	}
}

// File is the recording's WAV path relative to the recordings directory.
func (r *Recorder) File() string {
	if r == nil {
		return ""
	}
	return r.rel
}

// Path is the recording's absolute WAV path.
func (r *Recorder) Path() string {
	if r == nil {
		return ""
	}
	return filepath.Join(r.m.dir, filepath.FromSlash(r.rel))
}

// PCM hands the recorder audio from one side: 8 kHz mono samples that
// have just been decoded (the last sample is "now"). The samples are
// copied; pcm may be reused as soon as PCM returns. PCM never blocks: when
// the recorder's buffer is full the chunk is dropped and counted (the gap
// becomes silence, the channels stay aligned). After Finish, or once the
// recording failed, PCM does nothing.
func (r *Recorder) PCM(side Side, pcm []int16) {
	if r == nil || len(pcm) == 0 || side > SideB || r.stopped.Load() {
		return
	}
	at := r.clock.Now()
	bp := bufPool.Get().(*[]int16)
	*bp = append((*bp)[:0], pcm...)
	select {
	case r.ch <- chunk{at: at, buf: bp, side: side}:
	default:
		putBuf(bp)
		r.dropped.Add(1)
		r.m.dropped.Add(1)
	}
}

// Finish ends the recording and returns at once: the recorder's own
// goroutine then writes the audio still buffered, pads both channels to
// the end of the call, puts the final sizes in the header, syncs and
// closes the file and completes the sidecar. Wait blocks until that is
// done; Manager.Close waits for every recorder. Finishing never waits for
// the disk, so it is safe to call from signalling code. Later calls (and
// calls after Close finished the recording) do nothing.
func (r *Recorder) Finish(end EndInfo) {
	if r == nil {
		return
	}
	r.finishOnce.Do(func() {
		r.end = end
		r.stopped.Store(true)
		close(r.done)
	})
}

// Entry is the finished recording as its sidecar describes it; valid
// once Done is closed (before, it is the entry at Start).
func (r *Recorder) Entry() Entry {
	select {
	case <-r.exited:
		return r.final
	default:
		return Entry{CallID: r.entry.CallID, File: r.rel, InProgress: true}
	}
}

// Wait blocks until the recording is finalized after Finish (or Close).
func (r *Recorder) Wait() {
	if r == nil {
		return
	}
	<-r.exited
}

// Done is closed when the recording is finalized.
func (r *Recorder) Done() <-chan struct{} {
	if r == nil {
		c := make(chan struct{})
		close(c)
		return c
	}
	return r.exited
}

// abandon undoes a recording that was created but never started.
func (r *Recorder) abandon() {
	r.f.Close()
	r.m.root.Remove(filepath.FromSlash(r.rel))
	r.m.root.Remove(filepath.FromSlash(r.jsonRel))
	close(r.exited)
}

// run is the writer goroutine: the only one that touches the file.
func (r *Recorder) run() {
	defer close(r.exited)
	t := time.NewTicker(tickEvery)
	defer t.Stop()
	for {
		select {
		case c := <-r.ch:
			r.handle(c)
		case <-t.C:
			r.tick()
		case <-r.done:
			for drained := false; !drained; {
				select {
				case c := <-r.ch:
					r.handle(c)
				default:
					drained = true
				}
			}
			r.finalize()
			return
		}
	}
}

// pos converts a time to a position in input samples since the start.
func (r *Recorder) pos(at time.Time) int64 {
	d := at.Sub(r.t0)
	if d <= 0 {
		return 0
	}
	return int64(d/time.Second)*inRate + int64(d%time.Second)*inRate/int64(time.Second)
}

func (r *Recorder) handle(c chunk) {
	if r.err != nil {
		putBuf(c.buf)
		return
	}
	now := r.pos(c.at)
	r.place(c.side, now, c.buf)
	r.padTo(now - tolLate)
	r.emit()
	if len(r.out) >= outBufBytes/2 {
		r.flush()
	}
}

// tick pads the sides that have gone quiet and flushes. It pads only when
// nothing is queued: queued chunks carry earlier timestamps, and padding to
// the present first would make them look early (after a disk stall, say).
// A chunk stamped just before the clock is read here still fits: the
// padding stops tolLate short of the present.
func (r *Recorder) tick() {
	if r.err != nil {
		return
	}
	if len(r.ch) == 0 {
		r.padTo(r.pos(r.clock.Now()) - tolLate)
		r.emit()
	}
	r.flush()
}

// place queues a chunk of side s that arrived at position now, aligning
// it to wall-clock time: a side that lags (it sent nothing, or its chunks
// were dropped) gets silence so the chunk ends at now; a chunk that would
// end more than tolEarly after now loses its oldest samples.
func (r *Recorder) place(s Side, now int64, bp *[]int16) {
	n := int64(len(*bp))
	end := r.cursor[s] + n
	off := int64(0)
	switch {
	case end < now-tolLate || (r.silent[s] && end < now):
		gap := now - end
		r.q[s].pushZeros(gap)
		r.cursor[s] += gap
		r.filled += gap
	case end > now+tolEarly:
		off = end - (now + tolEarly)
		if off >= n {
			r.trimmed += n
			putBuf(bp)
			return
		}
		r.trimmed += off
	}
	r.q[s].pushPCM(bp, int(off))
	r.cursor[s] += n - off
	r.silent[s] = false
}

// padTo fills each side that is behind target with silence.
func (r *Recorder) padTo(target int64) {
	for s := range r.cursor {
		if gap := target - r.cursor[s]; gap > 0 {
			r.q[s].pushZeros(gap)
			r.cursor[s] = target
			r.silent[s] = true
		}
	}
}

// emit interleaves every frame both sides have audio (or silence) for
// into the output buffer, flushing it to the file when full.
func (r *Recorder) emit() {
	right := r.left.other()
	fb := int64(frameBytes) * r.up
	for r.err == nil {
		frames := min(r.cursor[0], r.cursor[1]) - r.emitted
		if frames <= 0 {
			return
		}
		space := int64(cap(r.out)-len(r.out)) / fb
		if space == 0 {
			r.flush()
			continue
		}
		L, R := r.q[r.left].front(), r.q[right].front()
		k := min(frames, L.avail(), R.avail(), space)
		r.interleave(L, R, k)
		r.q[r.left].consume(k)
		r.q[right].consume(k)
		r.emitted += k
	}
}

// interleave appends k frames from L (left) and R (right), upsampled to
// the output rate: at 16 kHz each input sample is preceded by the mean of
// it and the one before (linear interpolation).
func (r *Recorder) interleave(L, R *seg, k int64) {
	right := r.left.other()
	pl, pr := r.prev[r.left], r.prev[right]
	var ls, rs []int16
	if L.buf != nil {
		ls = (*L.buf)[L.off : L.off+int(k)]
	}
	if R.buf != nil {
		rs = (*R.buf)[R.off : R.off+int(k)]
	}
	n := len(r.out)
	b := r.out[:n+int(k*frameBytes*r.up)]
	for i := range int(k) {
		var l, rr int16
		if ls != nil {
			l = ls[i]
		}
		if rs != nil {
			rr = rs[i]
		}
		if r.up == 2 {
			binary.LittleEndian.PutUint16(b[n:], uint16(int16((int32(pl)+int32(l))>>1)))
			binary.LittleEndian.PutUint16(b[n+2:], uint16(int16((int32(pr)+int32(rr))>>1)))
			n += 4
		}
		binary.LittleEndian.PutUint16(b[n:], uint16(l))
		binary.LittleEndian.PutUint16(b[n+2:], uint16(rr))
		n += 4
		pl, pr = l, rr
	}
	r.prev[r.left], r.prev[right] = pl, pr
	r.out = b
}

// flush writes the output buffer and, once a second of audio has been
// written since the last time, the sizes in the header, so that a crash
// leaves a file whose header is at most a second behind its data.
func (r *Recorder) flush() {
	if r.err != nil {
		return
	}
	if len(r.out) > 0 {
		buf := r.out
		limited := false
		if room := maxDataBytes - r.data; int64(len(buf)) > room {
			buf, limited = buf[:room], true
		}
		n, err := r.f.Write(buf)
		r.data += int64(n)
		r.m.bytes.Add(int64(n))
		r.out = r.out[:0]
		if err == nil && limited {
			err = errSizeLimit
		}
		if err != nil {
			r.fail(err)
			return
		}
	}
	if r.data-r.hdrData >= int64(r.m.rate*frameBytes) {
		if err := r.putSizes(); err != nil {
			r.fail(err)
		}
	}
}

// putSizes writes the current sizes into the header.
func (r *Recorder) putSizes() error {
	d := r.data / frameBytes * frameBytes
	riff, data := sizeFields(d)
	if _, err := r.f.WriteAt(riff[:], riffSizeOff); err != nil {
		return fmt.Errorf("updating WAV header: %w", err)
	}
	if _, err := r.f.WriteAt(data[:], dataSizeOff); err != nil {
		return fmt.Errorf("updating WAV header: %w", err)
	}
	r.hdrData = d
	return nil
}

// fail stops the recording after a write error: logged once, counted,
// the file closed with the best header it can get; the call goes on and
// PCM becomes a no-op.
func (r *Recorder) fail(err error) {
	if r.err != nil {
		return
	}
	r.err = err
	r.stopped.Store(true)
	r.m.failed.Add(1)
	r.m.logFailure("recording stopped; the call goes on without it", err,
		"call_id", r.entry.CallID, "file", r.rel)
	if !r.fileClosed {
		_ = r.putSizes() // best effort; the start-up repair fixes the rest
		r.f.Close()
		r.fileClosed = true
	}
	r.q[0].release()
	r.q[1].release()
	r.out = r.out[:0]
}

// finalize completes the file and the sidecar after Finish.
func (r *Recorder) finalize() {
	if r.err == nil {
		// The file lasts as long as the call: pad both sides to now (or to
		// the side that ran ahead, by at most tolEarly).
		target := max(r.pos(r.clock.Now()), r.cursor[0], r.cursor[1])
		r.padTo(target)
		r.emit()
		r.flush()
		if r.err == nil && r.hdrData != r.data {
			if err := r.putSizes(); err != nil {
				r.fail(err)
			}
		}
		if r.err == nil && !r.m.noSync {
			if err := r.f.Sync(); err != nil {
				r.fail(err)
			}
		}
		if r.err == nil {
			r.fileClosed = true
			if err := r.f.Close(); err != nil {
				r.fail(err)
			}
		}
	}
	r.q[0].release()
	r.q[1].release()

	end := r.end
	if end.Time.IsZero() {
		end.Time = r.clock.Now()
	}
	e := r.entry
	e.EndTime = end.Time.UTC()
	e.HangupSide = end.HangupSide
	e.HangupCause = end.Cause
	e.InProgress = false
	data := r.data / frameBytes * frameBytes
	e.Bytes = headerSize + data
	e.DurationSeconds = float64(data) / float64(r.m.rate*frameBytes)
	e.DroppedChunks = r.dropped.Load()
	if r.err != nil {
		e.CutShort = true
		e.Error = r.err.Error()
	}
	r.final = e
	if err := r.m.replaceSidecar(r.jsonRel, &e); err != nil {
		r.m.log.Warn("recording sidecar not written", "call_id", e.CallID, "file", r.jsonRel, "error", err)
	}
	if r.err == nil {
		r.m.completed.Add(1)
	}
	r.m.report(e)
	if r.filled > 0 || r.trimmed > 0 {
		r.m.log.Debug("recording aligned to wall-clock time", "file", r.rel,
			"silence_inserted", time.Duration(r.filled)*time.Second/inRate,
			"audio_trimmed", time.Duration(r.trimmed)*time.Second/inRate)
	}
	r.m.finished(r)
}
