package recording

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wagate/wagate/configs"
)

// TestChannelsAndAlignment simulates a 30 s call: side A (WhatsApp when
// waSide is A) plays 440 Hz, switching to 660 Hz at 20 s; side B plays
// 1000 Hz but sends nothing from 10 s to 20 s. The file must last 30 s,
// carry WhatsApp on the left and the contact centre on the right, stay
// silent on the right during the gap and resume exactly when A switches.
func TestChannelsAndAlignment(t *testing.T) {
	for _, tc := range []struct {
		rate   int
		waSide Side
	}{{8000, SideA}, {16000, SideA}, {8000, SideB}} {
		t.Run(fmt.Sprintf("%d_whatsapp_%s", tc.rate, tc.waSide), func(t *testing.T) {
			clk := newFakeClock(t0)
			m, _ := newTestManager(t, configs.Recording{SampleRate: tc.rate}, clk)
			r, err := m.Start(Meta{
				CallID: "align@test", ACallID: "align@test", BCallID: "b-leg",
				WhatsAppCallID: "wacid.1", SessionID: "s1", Direction: "UIC",
				BusinessNumber: "+15550001", UserNumber: "+447700900001",
				AEndpoint: "meta", BEndpoint: "pbx", WhatsAppSide: tc.waSide,
				StartTime: t0.Add(-4 * time.Second),
			})
			if err != nil {
				t.Fatal(err)
			}
			a := &tone{freq: 440, amp: 10000}
			b := &tone{freq: 1000, amp: 10000}
			const step = 20 * time.Millisecond
			for i := range 1500 { // 30 s
				clk.Advance(step)
				el := time.Duration(i) * step
				if el == 20*time.Second {
					a.freq = 660
				}
				r.PCM(SideA, a.next(160))
				if el < 10*time.Second || el >= 20*time.Second {
					r.PCM(SideB, b.next(160))
				}
				waitQueue(r)
			}
			r.Finish(EndInfo{HangupSide: "b", Cause: "BYE"})
			r.Wait()

			if s := m.Stats(); s.Completed != 1 || s.Active != 0 || s.DroppedChunks != 0 || s.Failed != 0 {
				t.Fatalf("stats %+v", s)
			}
			w := parseWAV(t, r.Path())
			if w.rate != tc.rate {
				t.Fatalf("rate %d, want %d", w.rate, tc.rate)
			}
			if d := w.seconds(); math.Abs(d-30) > 1 {
				t.Fatalf("duration %.3f s, want 30 ± 1", d)
			}
			// WhatsApp is always on the left, the contact centre on the right.
			// Channel carrying side A:
			sideA, sideB := w.left, w.right
			if tc.waSide == SideB {
				sideA, sideB = w.right, w.left
			}
			rate := w.rate
			check := func(name string, x []int16, from, to float64, want, not float64) {
				t.Helper()
				win := window(x, rate, from, to)
				pw, pn := goertzel(win, rate, want), goertzel(win, rate, not)
				if pw < 1000*pn || pw < 1e5 {
					t.Errorf("%s %.0f–%.0f s: %.0f Hz power %.3g, %.0f Hz %.3g", name, from, to, want, pw, not, pn)
				}
			}
			check("side A", sideA, 1, 9, 440, 1000)
			check("side B", sideB, 1, 9, 1000, 440)
			check("side A", sideA, 21, 29, 660, 1000)
			check("side B", sideB, 21, 29, 1000, 660)
			if v := rms(window(sideB, rate, 10.2, 19.8)); v > 1 {
				t.Errorf("side B rms %.1f during its silent stretch", v)
			}
			if v := rms(window(sideA, rate, 10.2, 19.8)); v < 5000 {
				t.Errorf("side A rms %.1f during B's silent stretch", v)
			}
			// Where does B resume, where does A switch to 660 Hz?
			onB := -1.0
			for i := int(15 * rate); i < len(sideB); i++ {
				if abs16(sideB[i]) > 2000 {
					onB = float64(i) / float64(rate)
					break
				}
			}
			swA := -1.0
			win := rate / 50 // 20 ms
			for i := int(15 * rate); i+win < len(sideA); i += win / 4 {
				x := sideA[i : i+win]
				if goertzel(x, rate, 660) > goertzel(x, rate, 440) {
					swA = float64(i+win/2) / float64(rate)
					break
				}
			}
			if math.Abs(onB-20) > 0.05 || math.Abs(swA-20) > 0.05 || math.Abs(onB-swA) > 0.04 {
				t.Errorf("B resumes at %.3f s, A switches at %.3f s; want both at 20 s", onB, swA)
			}
			// The first chunks land at the start, not later.
			if v := rms(window(sideA, rate, 0, 0.1)); v < 5000 {
				t.Errorf("side A rms %.1f in the first 100 ms", v)
			}

			e := readEntry(t, strings.TrimSuffix(r.Path(), ".wav")+".json")
			if e.CallID != "align@test" || e.ACallID != "align@test" || e.BCallID != "b-leg" ||
				e.WhatsAppCallID != "wacid.1" || e.Direction != "UIC" || e.BusinessNumber != "+15550001" ||
				e.UserNumber != "+447700900001" || e.AEndpoint != "meta" || e.BEndpoint != "pbx" ||
				e.HangupSide != "b" || e.HangupCause != "BYE" || e.SampleRate != tc.rate ||
				e.InProgress || e.CutShort || e.Bytes != w.size || e.WhatsAppSide != tc.waSide.String() ||
				e.SessionID != "s1" || e.NameBy != "a" {
				t.Errorf("sidecar %+v", e)
			}
			if !e.StartTime.Equal(t0.Add(-4*time.Second)) || !e.AnswerTime.Equal(t0) || !e.EndTime.Equal(t0.Add(30*time.Second)) {
				t.Errorf("times %v %v %v", e.StartTime, e.AnswerTime, e.EndTime)
			}
			if math.Abs(e.DurationSeconds-w.seconds()) > 0.001 {
				t.Errorf("sidecar duration %.3f, file %.3f", e.DurationSeconds, w.seconds())
			}
			if want := filepath.Join(m.Dir(), "2025", "03", "04", "align@test.wav"); r.Path() != want {
				t.Errorf("path %s, want %s", r.Path(), want)
			}
		})
	}
}

func abs16(v int16) int {
	if v < 0 {
		return -int(v)
	}
	return int(v)
}

// TestBothSidesSilent: a call in which nobody sends anything (hold, DTX)
// still gives a file as long as the call.
func TestBothSidesSilent(t *testing.T) {
	clk := newFakeClock(t0)
	m, _ := newTestManager(t, configs.Recording{}, clk)
	r, err := m.Start(Meta{CallID: "quiet"})
	if err != nil {
		t.Fatal(err)
	}
	g := &tone{freq: 500, amp: 5000}
	r.PCM(SideA, g.next(160))
	for range 50 {
		clk.Advance(200 * time.Millisecond)
		r.tickForTest()
	}
	r.Finish(EndInfo{})
	r.Wait()
	w := parseWAV(t, r.Path())
	if d := w.seconds(); math.Abs(d-10) > 1 {
		t.Fatalf("duration %.3f s, want 10", d)
	}
}

// tickForTest waits until the writer has taken everything queued so far.
func (r *Recorder) tickForTest() {
	waitQueue(r)
	for len(r.ch) > 0 {
		time.Sleep(50 * time.Microsecond)
	}
}

// TestEarlyAudioTrimmed: a side that sends far more than real time (a
// burst, a fast clock) is trimmed so the file still matches the call.
func TestEarlyAudioTrimmed(t *testing.T) {
	clk := newFakeClock(t0)
	m, _ := newTestManager(t, configs.Recording{}, clk)
	r, err := m.Start(Meta{CallID: "burst"})
	if err != nil {
		t.Fatal(err)
	}
	g := &tone{freq: 500, amp: 5000}
	for range 100 { // 4 s of audio while the clock moves 2 s
		r.PCM(SideA, g.next(160))
		r.PCM(SideA, g.next(160))
		clk.Advance(20 * time.Millisecond)
		waitQueue(r)
	}
	r.Finish(EndInfo{})
	r.Wait()
	w := parseWAV(t, r.Path())
	if d := w.seconds(); d > 2.0+float64(tolEarly)/inRate+0.001 || d < 2.0 {
		t.Fatalf("duration %.3f s, want 2 s (+ at most %d ms)", d, tolEarly*1000/inRate)
	}
}

// TestPCMAfterFinishAndNil: PCM and Finish on a finished or nil recorder
// are no-ops.
func TestPCMAfterFinishAndNil(t *testing.T) {
	var nilRec *Recorder
	nilRec.PCM(SideA, []int16{1, 2, 3})
	nilRec.Finish(EndInfo{})
	nilRec.Wait()
	<-nilRec.Done()
	var nilMgr *Manager
	if r, err := nilMgr.Start(Meta{CallID: "x"}); r != nil || err != nil {
		t.Fatalf("nil manager Start = %v, %v", r, err)
	}
	clk := newFakeClock(t0)
	m, _ := newTestManager(t, configs.Recording{}, clk)
	r := record(t, m, clk, Meta{CallID: "done"}, 10)
	r.PCM(SideA, make([]int16, 160))
	r.PCM(Side(7), make([]int16, 160))
	r.Finish(EndInfo{})
	r.Wait()
	if s := m.Stats(); s.Completed != 1 || s.Active != 0 {
		t.Fatalf("stats %+v", s)
	}
}

// TestCloseFinishesActive: Close ends every recording (cause shutdown) and
// its goroutine; Start is refused afterwards.
func TestCloseFinishesActive(t *testing.T) {
	clk := newFakeClock(t0)
	m, _ := newTestManager(t, configs.Recording{RetentionDays: 3}, clk, func(m *Manager) { m.noSweepLoop = false })
	var recs []*Recorder
	for i := range 3 {
		r, err := m.Start(Meta{CallID: fmt.Sprintf("c%d", i)})
		if err != nil {
			t.Fatal(err)
		}
		r.PCM(SideA, make([]int16, 160))
		recs = append(recs, r)
	}
	clk.Advance(2 * time.Second)
	if s := m.Stats(); s.Active != 3 {
		t.Fatalf("active %d", s.Active)
	}
	m.Close()
	for _, r := range recs {
		select {
		case <-r.exited:
		default:
			t.Fatal("writer goroutine still running after Close")
		}
		e := readEntry(t, strings.TrimSuffix(r.Path(), ".wav")+".json")
		if e.HangupSide != "wagate" || e.HangupCause != "shutdown" || e.InProgress {
			t.Errorf("sidecar %+v", e)
		}
		parseWAV(t, r.Path())
		r.PCM(SideB, make([]int16, 160))
		r.Finish(EndInfo{Cause: "late"})
		r.Wait()
	}
	if s := m.Stats(); s.Active != 0 || s.Completed != 3 {
		t.Fatalf("stats %+v", s)
	}
	if _, err := m.Start(Meta{CallID: "late"}); err != ErrClosed {
		t.Fatalf("Start after Close: %v", err)
	}
	m.Close()
}

func TestNewValidates(t *testing.T) {
	dir := t.TempDir()
	for _, cfg := range []configs.Recording{
		{},
		{Directory: dir, SampleRate: 44100},
		{Directory: dir, NameBy: "c"},
		{Directory: dir, RetentionDays: -1},
	} {
		if _, err := New(cfg, nil); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
	// The directory is created 0750.
	sub := filepath.Join(dir, "a", "b")
	m, err := New(configs.Recording{Directory: sub}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if st, err := os.Stat(sub); err != nil || st.Mode().Perm() != 0o750 {
		t.Fatalf("stat %v %v", st, err)
	}
}

// TestNameBy: an empty Meta.CallID names the file after the leg name_by says.
func TestNameBy(t *testing.T) {
	for _, by := range []string{"a", "b"} {
		clk := newFakeClock(t0)
		m, _ := newTestManager(t, configs.Recording{NameBy: by}, clk)
		r := record(t, m, clk, Meta{ACallID: "leg-a", BCallID: "leg-b"}, 5)
		if want := "leg-" + by + ".wav"; filepath.Base(r.Path()) != want {
			t.Errorf("name_by %s: %s", by, r.Path())
		}
		e := readEntry(t, strings.TrimSuffix(r.Path(), ".wav")+".json")
		if e.CallID != "leg-"+by || e.NameBy != by {
			t.Errorf("sidecar %+v", e)
		}
	}
}

// TestNodeIDInSidecar: a manager given a node id writes it into every
// sidecar, so recordings gathered from several nodes say where each was
// made.
func TestNodeIDInSidecar(t *testing.T) {
	clk := newFakeClock(t0)
	m, _ := newTestManager(t, configs.Recording{}, clk, WithNodeID("node2"))
	r := record(t, m, clk, Meta{CallID: "n"}, 10)
	r.Finish(EndInfo{})
	r.Wait()
	es, err := m.List("", "n", 10)
	if err != nil || len(es) != 1 || es[0].NodeID != "node2" {
		t.Fatalf("entries %+v, %v", es, err)
	}
}

// TestVoicemailKindAndEntry: a voicemail (only the WhatsApp side speaks)
// is marked in its sidecar, reported with its kind, and Entry returns the
// finished sidecar once Done is closed.
func TestVoicemailKindAndEntry(t *testing.T) {
	clk := newFakeClock(t0)
	m, _ := newTestManager(t, configs.Recording{SampleRate: 8000}, clk)
	var reported []Entry
	m.SetObserver(func(e Entry) { reported = append(reported, e) })
	r, err := m.Start(Meta{CallID: "vm@test", SessionID: "s1", Kind: KindVoicemail})
	if err != nil {
		t.Fatal(err)
	}
	if e := r.Entry(); !e.InProgress || e.File != r.File() {
		t.Fatalf("Entry before Done: %+v", e)
	}
	a := &tone{freq: 440, amp: 10000}
	for range 100 { // 2 s
		clk.Advance(20 * time.Millisecond)
		r.PCM(SideA, a.next(160))
		waitQueue(r)
	}
	r.Finish(EndInfo{HangupSide: "wagate", Cause: "maxDuration"})
	<-r.Done()
	e := r.Entry()
	if e.Kind != KindVoicemail || e.InProgress || math.Abs(e.DurationSeconds-2) > 0.05 || e.Bytes <= headerSize {
		t.Fatalf("Entry after Done: %+v", e)
	}
	if side := readEntry(t, abs(m, strings.TrimSuffix(e.File, ".wav")+".json")); side.Kind != KindVoicemail {
		t.Fatalf("sidecar kind %q", side.Kind)
	}
	if len(reported) != 1 || reported[0].Kind != KindVoicemail {
		t.Fatalf("reported %+v", reported)
	}
	w := parseWAV(t, r.Path())
	if rms(w.left) < 1000 || rms(w.right) != 0 {
		t.Fatalf("left rms %.0f, right rms %.0f: want the caller on the left, silence on the right", rms(w.left), rms(w.right))
	}
}
