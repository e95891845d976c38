package test

import (
	"testing"
	"time"
)

// TestConcurrentCalls: 200 UICs overlap (SIPp caller at 100 calls/s, each
// held 4 s, at most 200 at once; 50 calls/s held 6 s when wagate is built
// with -race), all are answered and hung up cleanly, and afterwards wagate
// holds no call and no RTP port. Not parallel: it runs alone, before the
// parallel tests.
func TestConcurrentCalls(t *testing.T) {
	const calls = 200
	rate, hold := "100", "4000"
	if wagateRace {
		rate, hold = "50", "6000"
	}
	e := newEnv(t)
	w := e.startWagate(wagateOpts{LogLevel: "warn"})

	pbx := e.startSipp(sippSpec{Name: "pbx", Scenario: "uas.xml", Peer: e.PBX, Calls: calls, NoTrace: true})
	meta := e.startSipp(sippSpec{Name: "meta", Scenario: "uac.xml", Peer: e.Meta, Remote: w.SIPAddr, Calls: calls, NoTrace: true,
		Args: callArgs(businessNumber, waUser, "-d", hold, "-r", rate, "-l", "200")})

	// Watch the live-call count while the calls run (bounded by the sipp
	// run, itself bounded by -timeout).
	var peakCalls, peakPorts int
	deadline := time.Now().Add(sippWaitLimit)
watch:
	for time.Now().Before(deadline) {
		if s, err := w.tryStatus(); err == nil {
			peakCalls = max(peakCalls, s.Calls)
			peakPorts = max(peakPorts, s.PortsInUse)
		}
		select {
		case <-meta.exited:
			break watch
		case <-time.After(50 * time.Millisecond):
		}
	}
	meta.requireOK()
	pbx.requireOK()
	t.Logf("peak: %d calls, %d ports in use", peakCalls, peakPorts)
	if peakCalls < calls {
		t.Errorf("at most %d calls were up at once, want all %d to overlap", peakCalls, calls)
	}

	s := w.waitIdle()
	w.expectCounts(s, calls, calls)
}
