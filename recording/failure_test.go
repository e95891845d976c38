package recording

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/wagate/wagate/configs"
)

// failingFile is a file that runs out of space after limit bytes.
type failingFile struct {
	*os.File
	mu    sync.Mutex
	limit int64
}

func (f *failingFile) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if int64(len(p)) > f.limit {
		n, _ := f.File.Write(p[:f.limit])
		f.limit = 0
		return n, &os.PathError{Op: "write", Path: f.Name(), Err: syscall.ENOSPC}
	}
	f.limit -= int64(len(p))
	return f.File.Write(p)
}

// stallingFile blocks writes while stalled.
type stallingFile struct {
	*os.File
	mu   sync.Mutex
	gate chan struct{} // nil: not stalled
}

func (f *stallingFile) Write(p []byte) (int, error) {
	f.mu.Lock()
	g := f.gate
	f.mu.Unlock()
	if g != nil {
		<-g
	}
	return f.File.Write(p)
}

func (f *stallingFile) stall() {
	f.mu.Lock()
	f.gate = make(chan struct{})
	f.mu.Unlock()
}

func (f *stallingFile) unstall() {
	f.mu.Lock()
	if f.gate != nil {
		close(f.gate)
		f.gate = nil
	}
	f.mu.Unlock()
}

// feedAndCheckNoBlock feeds n chunks per side from another goroutine (as
// the media layer does) and fails the test if that does not finish in
// time: PCM must never wait for the disk, even one that is stuck.
func feedAndCheckNoBlock(t *testing.T, r *Recorder, clk *fakeClock, n int) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		a, b := &tone{freq: 440, amp: 8000}, &tone{freq: 1000, amp: 8000}
		for range n {
			clk.Advance(20 * time.Millisecond)
			r.PCM(SideA, a.next(160))
			r.PCM(SideB, b.next(160))
		}
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("PCM calls blocked")
	}
}

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestWriteErrorMidCall: the disk fills up in the middle of a call (an
// injected writer): the recording stops, is counted and logged once, PCM
// keeps returning at once, and the sidecar says the file was cut short.
func TestWriteErrorMidCall(t *testing.T) {
	clk := newFakeClock(t0)
	m, lb := newTestManager(t, configs.Recording{}, clk, func(m *Manager) {
		m.wrap = func(f *os.File) wavFile { return &failingFile{File: f, limit: 100 << 10} }
	})
	r, err := m.Start(Meta{CallID: "full"})
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		feedAndCheckNoBlock(t, r, clk, 50)
		waitQueue(r)
	}
	waitFor(t, "the failure", func() bool { return m.Stats().Failed == 1 })
	feedAndCheckNoBlock(t, r, clk, 1000) // no-ops now
	if len(r.ch) != 0 && !r.stopped.Load() {
		t.Error("PCM still queues after the failure")
	}
	r.Finish(EndInfo{HangupSide: "a", Cause: "BYE"})
	r.Wait()
	s := m.Stats()
	if s.Failed != 1 || s.Completed != 0 || s.Active != 0 {
		t.Fatalf("stats %+v", s)
	}
	if n := lb.count("recording stopped"); n != 1 {
		t.Errorf("failure logged %d times", n)
	}
	e := readEntry(t, strings.TrimSuffix(r.Path(), ".wav")+".json")
	if !e.CutShort || !strings.Contains(e.Error, "no space") || e.InProgress || e.HangupCause != "BYE" {
		t.Errorf("sidecar %+v", e)
	}
	// What reached the disk is still a valid WAV (header fixed on failure).
	w := parseWAV(t, r.Path())
	if w.seconds() < 2 {
		t.Errorf("%.2f s kept", w.seconds())
	}
}

// TestPCMNeverBlocks: a disk that stalls makes the recorder drop chunks
// (counted) instead of holding up the media goroutines; when the disk
// comes back the channels are still aligned and the file as long as the call.
func TestPCMNeverBlocks(t *testing.T) {
	clk := newFakeClock(t0)
	sf := make(chan *stallingFile, 1)
	m, _ := newTestManager(t, configs.Recording{}, clk, func(m *Manager) {
		m.wrap = func(f *os.File) wavFile {
			s := &stallingFile{File: f}
			sf <- s
			return s
		}
	})
	r, err := m.Start(Meta{CallID: "stall"})
	if err != nil {
		t.Fatal(err)
	}
	f := <-sf
	f.stall()
	defer f.unstall()
	feedAndCheckNoBlock(t, r, clk, 1500) // 30 s with a stuck disk
	if s := m.Stats(); s.DroppedChunks == 0 {
		t.Fatalf("no chunk dropped: %+v", s)
	}
	f.unstall()
	for range 50 {
		feedAndCheckNoBlock(t, r, clk, 1)
		waitQueue(r)
	}
	r.Finish(EndInfo{})
	r.Wait()
	w := parseWAV(t, r.Path())
	if d := w.seconds(); d < 30 || d > 32 {
		t.Errorf("duration %.2f s, want 31", d)
	}
	e := readEntry(t, strings.TrimSuffix(r.Path(), ".wav")+".json")
	if e.DroppedChunks == 0 || e.CutShort {
		t.Errorf("sidecar %+v", e)
	}
}

// TestDiskFull: a real full file system when we can mount a tiny tmpfs
// (root), else skipped (TestWriteErrorMidCall covers the logic).
func TestDiskFull(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "rec")
	os.MkdirAll(dir, 0o750)
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=64k"); err != nil {
		t.Skipf("cannot mount a tmpfs (%v); covered by TestWriteErrorMidCall", err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, 0) })
	clk := newFakeClock(t0)
	m, lb := newTestManager(t, configs.Recording{Directory: dir}, clk)
	r, err := m.Start(Meta{CallID: "tmpfs-full"})
	if err != nil {
		t.Fatal(err)
	}
	for range 10 {
		feedAndCheckNoBlock(t, r, clk, 50)
		waitQueue(r)
	}
	waitFor(t, "the failure", func() bool { return m.Stats().Failed == 1 })
	r.Finish(EndInfo{})
	r.Wait()
	if s := m.Stats(); s.Failed != 1 || s.Completed != 0 || s.Active != 0 {
		t.Fatalf("stats %+v", s)
	}
	if !strings.Contains(lb.String(), "no space left") {
		t.Errorf("log:\n%s", lb.String())
	}
	parseWAV(t, r.Path())
}

// TestReadOnlyDirectory: when nothing can be created, Start fails (the
// call goes on without a recording) and the failure is counted.
func TestReadOnlyDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "rec")
	os.MkdirAll(dir, 0o750)
	if os.Geteuid() == 0 {
		// chmod does not stop root: use a read-only tmpfs.
		if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_RDONLY, "size=64k"); err != nil {
			t.Skipf("root and cannot mount a read-only tmpfs (%v); covered by TestWriteErrorMidCall", err)
		}
		t.Cleanup(func() { syscall.Unmount(dir, 0) })
	} else {
		os.Chmod(dir, 0o500)
		t.Cleanup(func() { os.Chmod(dir, 0o750) })
	}
	clk := newFakeClock(t0)
	m, lb := newTestManager(t, configs.Recording{Directory: dir}, clk)
	for i := range 5 {
		r, err := m.Start(Meta{CallID: fmt.Sprintf("ro-%d", i)})
		if err == nil || r != nil {
			t.Fatalf("Start on a read-only directory: %v, %v", r, err)
		}
		r.PCM(SideA, make([]int16, 160)) // the call's tap holds a nil recorder: harmless
		r.Finish(EndInfo{})
		r.Wait()
	}
	if s := m.Stats(); s.Failed != 5 || s.Active != 0 {
		t.Fatalf("stats %+v", s)
	}
	// One log line for five calls failing the same way.
	if n := lb.count("recording not started"); n != 1 {
		t.Errorf("logged %d times:\n%s", n, lb.String())
	}
}

// TestSizeLimit: a recording that reaches the 4 GiB WAV limit stops
// cleanly. The writer is driven by hand (no goroutine) so that it can be
// told 4 GiB are already written.
func TestSizeLimit(t *testing.T) {
	clk := newFakeClock(t0)
	m, lb := newTestManager(t, configs.Recording{}, clk)
	r, err := m.create(Meta{CallID: "huge"}, clk)
	if err != nil {
		t.Fatal(err)
	}
	r.data = maxDataBytes - 100
	r.hdrData = r.data
	g := &tone{freq: 300, amp: 1000}
	for range 10 {
		clk.Advance(20 * time.Millisecond)
		for _, s := range []Side{SideA, SideB} {
			bp := bufPool.Get().(*[]int16)
			*bp = append((*bp)[:0], g.next(160)...)
			r.handle(chunk{at: clk.Now(), buf: bp, side: s})
		}
	}
	r.flush()
	if r.err != errSizeLimit || !r.stopped.Load() || m.Stats().Failed != 1 {
		t.Fatalf("err %v, stats %+v", r.err, m.Stats())
	}
	if r.data != maxDataBytes {
		t.Errorf("data %d, want %d", r.data, maxDataBytes)
	}
	r.finalize()
	close(r.exited)
	e := readEntry(t, strings.TrimSuffix(r.Path(), ".wav")+".json")
	if !e.CutShort || !strings.Contains(e.Error, "size limit") {
		t.Errorf("sidecar %+v", e)
	}
	if !strings.Contains(lb.String(), "size limit") {
		t.Errorf("not logged:\n%s", lb.String())
	}
}
