package recording

import (
	"bufio"
	"encoding/binary"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wagate/wagate/configs"
)

const crashEnv = "WAGATE_RECORDING_CRASH_DIR"

// TestCrashChild is the child process of TestCrashRecovery: it records
// until it is killed.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashEnv)
	if dir == "" {
		t.Skip("child process of TestCrashRecovery")
	}
	clk := newFakeClock(t0)
	m, err := New(configs.Recording{Directory: dir}, nil, WithClock(clk))
	if err != nil {
		t.Fatal(err)
	}
	r, err := m.Start(Meta{CallID: "crash/../call", ACallID: "crash/../call", Direction: "BIC",
		BusinessNumber: "+15550001", UserNumber: "+447700900002", WhatsAppSide: SideB})
	if err != nil {
		t.Fatal(err)
	}
	os.Stdout.WriteString("RECORDING " + r.Path() + "\n")
	a, b := &tone{freq: 440, amp: 8000}, &tone{freq: 1000, amp: 8000}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		clk.Advance(20 * time.Millisecond)
		r.PCM(SideA, a.next(160))
		r.PCM(SideB, b.next(160))
		waitQueue(r)
		time.Sleep(200 * time.Microsecond) // ~50× real time
	}
	os.Exit(3) // never reached: the parent kills us
}

// TestCrashRecovery records in a child process, SIGKILLs it mid-call and
// checks that New repairs the file into a playable WAV and marks the
// sidecar, logging it once.
func TestCrashRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns a child process")
	}
	dir := filepath.Join(t.TempDir(), "rec")
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashEnv+"="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	var path string
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if p, ok := strings.CutPrefix(sc.Text(), "RECORDING "); ok {
			path = p
			break
		}
	}
	if path == "" {
		t.Fatal("child did not start recording")
	}
	go func() {
		for sc.Scan() {
		}
	}()
	// Let it record at least 5 s of audio, then kill -9.
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := os.Stat(path)
		if err == nil && st.Size() > 5*8000*frameBytes+headerSize+int64(time.Now().UnixNano()%7)*1001 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("child recorded too little")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()

	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	hdrData := binary.LittleEndian.Uint32(raw[dataSizeOff:])
	t.Logf("after SIGKILL: file %d bytes, header says %d data bytes", len(raw), hdrData)
	// Make sure there is something to repair: a torn last frame.
	f, _ := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	f.Write([]byte{1, 2, 3})
	f.Close()
	jsonPath := strings.TrimSuffix(path, ".wav") + ".json"
	if e := readEntry(t, jsonPath); !e.InProgress {
		t.Fatalf("sidecar of the killed recording not in progress: %+v", e)
	}

	log, lb := testLogger(t)
	m, err := New(configs.Recording{Directory: dir}, log)
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
	if n := lb.count("repaired a recording"); n != 1 {
		t.Fatalf("repair logged %d times:\n%s", n, lb.String())
	}
	w := parseWAV(t, path)
	if w.size != int64(len(raw)) || w.size%4 != 0 {
		t.Errorf("repaired size %d (was %d + 3 torn bytes)", w.size, len(raw))
	}
	if d := w.seconds(); d < 4 {
		t.Errorf("repaired file lasts %.2f s", d)
	}
	// BIC: WhatsApp is side B (1000 Hz) on the left.
	mid := window(w.left, w.rate, 1, 3)
	if goertzel(mid, w.rate, 1000) < 100*goertzel(mid, w.rate, 440) {
		t.Error("left channel does not carry side B's tone")
	}
	e := readEntry(t, jsonPath)
	if !e.Recovered || !e.CutShort || e.InProgress || e.CallID != "crash/../call" || e.Bytes != w.size ||
		math.Abs(e.DurationSeconds-w.seconds()) > 0.001 || e.Error == "" || e.Direction != "BIC" {
		t.Errorf("sidecar after repair %+v", e)
	}
	if sox, err := exec.LookPath("sox"); err == nil {
		out, err := exec.Command(sox, "--i", "-D", path).CombinedOutput()
		if err != nil {
			t.Fatalf("sox --i: %v: %s", err, out)
		}
		d, err := strconv.ParseFloat(strings.TrimSpace(string(out)), 64)
		if err != nil || math.Abs(d-w.seconds()) > 0.01 {
			t.Errorf("sox says %q s, we say %.3f s", out, w.seconds())
		}
		t.Logf("sox --i -D: %s", strings.TrimSpace(string(out)))
	} else {
		t.Log("sox not installed; sox check skipped")
	}

	// A second start has nothing to repair and says nothing.
	log2, lb2 := testLogger(t)
	m2, err := New(configs.Recording{Directory: dir}, log2)
	if err != nil {
		t.Fatal(err)
	}
	m2.Close()
	if strings.Contains(lb2.String(), "repaired") {
		t.Errorf("second start repaired again:\n%s", lb2.String())
	}
}

// TestRepairCases: the start-up repair on hand-made damage.
func TestRepairCases(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "rec")
	day := filepath.Join(dir, "2025", "03", "04")
	os.MkdirAll(day, 0o750)
	write := func(name string, b []byte) string {
		p := filepath.Join(day, name)
		if err := os.WriteFile(p, b, 0o640); err != nil {
			t.Fatal(err)
		}
		return p
	}
	audio := make([]byte, 16000*frameBytes+2) // 1 s at 16 kHz + a torn frame
	for i := range audio {
		audio[i] = byte(i)
	}
	// 1: header says no data, no sidecar at all.
	noSide := write("nosidecar.wav", append(wavHeader(16000, 0), audio...))
	// 2: header never completed (killed right after creation), sidecar in progress.
	short := write("short.wav", []byte("RIFF\x24\x00"))
	write("short.json", []byte(`{"call_id":"short","sample_rate":16000,"in_progress":true,"answer_time":"2025-03-04T10:00:00Z"}`))
	// 3: a finished recording: untouched.
	good := write("good.wav", append(wavHeader(8000, 8), 1, 2, 3, 4, 5, 6, 7, 8))
	goodJSON := `{"call_id":"good","sample_rate":8000,"cut_short":false}`
	write("good.json", []byte(goodJSON))
	// 4: not ours: left alone.
	foreign := write("foreign.wav", []byte("this is not a wav file at all, not even close; it is long enough"))
	// 5: a sidecar in progress whose WAV is gone.
	write("orphan.json", []byte(`{"call_id":"orphan","in_progress":true}`))
	// 6: a leftover temporary sidecar.
	tmp := write(".good.json.tmp", []byte("{"))

	log, lb := testLogger(t)
	m, err := New(configs.Recording{Directory: dir}, log)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()

	w := parseWAV(t, noSide)
	if w.data != 16000*frameBytes || w.rate != 16000 {
		t.Errorf("nosidecar: data %d rate %d", w.data, w.rate)
	}
	e := readEntry(t, filepath.Join(day, "nosidecar.json"))
	if !e.Recovered || !e.CutShort || e.SampleRate != 16000 || e.File != "2025/03/04/nosidecar.wav" || math.Abs(e.DurationSeconds-1) > 1e-9 {
		t.Errorf("nosidecar sidecar %+v", e)
	}
	w = parseWAV(t, short)
	if w.data != 0 || w.rate != 16000 {
		t.Errorf("short: data %d rate %d", w.data, w.rate)
	}
	if e := readEntry(t, filepath.Join(day, "short.json")); !e.Recovered || e.InProgress || e.CallID != "short" || !e.EndTime.Equal(e.AnswerTime) {
		t.Errorf("short sidecar %+v", e)
	}
	if b, _ := os.ReadFile(filepath.Join(day, "good.json")); string(b) != goodJSON {
		t.Errorf("good sidecar rewritten: %s", b)
	}
	parseWAV(t, good)
	if b, _ := os.ReadFile(foreign); !strings.HasPrefix(string(b), "this is not") {
		t.Error("foreign file modified")
	}
	if e := readEntry(t, filepath.Join(day, "orphan.json")); !e.Recovered || e.InProgress {
		t.Errorf("orphan sidecar %+v", e)
	}
	if _, err := os.Stat(tmp); !os.IsNotExist(err) {
		t.Error("temporary sidecar left")
	}
	if n := lb.count("repaired a recording"); n != 2 {
		t.Errorf("%d repairs logged:\n%s", n, lb.String())
	}
	// Listing shows them; the repaired ones flagged.
	es, err := m.List("2025-03-04", "", 0)
	if err != nil || len(es) != 4 {
		t.Fatalf("List = %d entries, %v", len(es), err)
	}
}
