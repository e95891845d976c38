package recording

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/wagate/wagate/configs"
)

func TestSweep(t *testing.T) {
	now := time.Date(2025, 6, 15, 12, 0, 0, 0, time.UTC) // retention 7 d → cutoff 2025-06-08 12:00
	clk := newFakeClock(now)
	m, _ := newTestManager(t, configs.Recording{RetentionDays: 7}, clk)
	rec := func(id string, start time.Time) *Recorder {
		return record(t, m, clk, Meta{CallID: id, StartTime: start}, 2)
	}
	day := func(y, mo, d int) time.Time { return time.Date(y, time.Month(mo), d, 23, 0, 0, 0, time.UTC) }
	rec("y2024", day(2024, 12, 31))
	rec("may", day(2025, 5, 20))
	rec("jun7a", day(2025, 6, 7))
	rec("jun7b", day(2025, 6, 7))
	rec("jun8", day(2025, 6, 8)) // ends after the cutoff: kept
	rec("jun14", day(2025, 6, 14))
	rec("foreign", day(2025, 6, 1))
	foreign := filepath.Join(m.Dir(), "2025", "06", "01", "notes.txt")
	os.WriteFile(foreign, []byte("operator notes"), 0o640)
	// A call that started on 2 June and is still going.
	long, err := m.Start(Meta{CallID: "long", StartTime: day(2025, 6, 2)})
	if err != nil {
		t.Fatal(err)
	}

	if n := m.Sweep(now); n != 5 { // y2024, may, jun7a, jun7b, foreign's recording
		t.Errorf("removed %d", n)
	}
	exists := func(rel string) bool {
		_, err := os.Lstat(filepath.Join(m.Dir(), filepath.FromSlash(rel)))
		return err == nil
	}
	for rel, want := range map[string]bool{
		"2024":                    false, // emptied year removed
		"2025/05":                 false,
		"2025/06/07":              false,
		"2025/06/08/jun8.wav":     true,
		"2025/06/08/jun8.json":    true,
		"2025/06/14/jun14.wav":    true,
		"2025/06/01/notes.txt":    true, // not ours: kept, and so is its directory
		"2025/06/01/foreign.wav":  false,
		"2025/06/01/foreign.json": false,
		"2025/06/02/long.wav":     true, // active
		"2025/06/02/long.json":    true,
	} {
		if got := exists(rel); got != want {
			t.Errorf("%s exists = %v, want %v", rel, got, want)
		}
	}
	long.Finish(EndInfo{})
	long.Wait()
	if n := m.Sweep(now); n != 1 {
		t.Errorf("second sweep removed %d, want the finished long call", n)
	}
	es, _ := m.List("", "", 0)
	if len(es) != 2 {
		t.Errorf("%d recordings left", len(es))
	}
	// 0 keeps everything.
	m.cfg.RetentionDays = 0
	if n := m.Sweep(now.Add(1000 * 24 * time.Hour)); n != 0 {
		t.Errorf("retention 0 removed %d", n)
	}
}
