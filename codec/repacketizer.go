package codec

// framer is the repacketizer: decoded 8 kHz PCM goes in in whatever chunks
// the input packets give (10, 30, 40 ms G.711, 20 ms Opus, concealment),
// and fixed output frames come out (Opus's exact 20 ms, or the PBX's
// ptime). A partial frame stays buffered until the next input completes it,
// so over any run of packets the output duration equals the input duration
// minus less than one frame, and no sample is dropped or duplicated.
//
// The buffer is one flat slice: fill first slides the unread tail (always
// shorter than one frame) to the front, then copies in as much as fits.
// There is no allocation after newFramer.
type framer struct {
	buf   []int16
	r, w  int // unread samples are buf[r:w]
	frame int
}

// newFramer returns a framer for frames of frame samples; room is how many
// samples beyond one frame it can hold, which only changes how often fill
// returns early, not correctness.
func newFramer(frame, room int) framer {
	return framer{buf: make([]int16, frame+max(room, frame)), frame: frame}
}

// resize changes the frame size (the PBX's ptime changed mid-call),
// keeping the samples waiting: the next take cuts them into frames of the
// new size. The buffer grows when the new frame needs it.
func (f *framer) resize(frame, room int) {
	if need := frame + max(room, frame); len(f.buf) < need {
		buf := make([]int16, need)
		f.w = copy(buf, f.buf[f.r:f.w])
		f.r = 0
		f.buf = buf
	}
	f.frame = frame
}

// fill copies as much of pcm as fits and returns how many samples it took.
// Frames taken before the call are no longer valid afterwards.
func (f *framer) fill(pcm []int16) int {
	if f.r > 0 {
		f.w = copy(f.buf, f.buf[f.r:f.w])
		f.r = 0
	}
	k := copy(f.buf[f.w:], pcm)
	f.w += k
	return k
}

// take returns the next complete frame, valid until the next fill.
func (f *framer) take() ([]int16, bool) {
	if f.w-f.r < f.frame {
		return nil, false
	}
	fr := f.buf[f.r : f.r+f.frame : f.r+f.frame]
	f.r += f.frame
	return fr, true
}

// buffered is the number of samples waiting for a complete frame.
func (f *framer) buffered() int { return f.w - f.r }
