package b2bua

import (
	"bytes"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/wagate/wagate/media"
	sipedge "github.com/wagate/wagate/sip"
)

func TestCPSGuard(t *testing.T) {
	g := newCPSGuard()
	now := time.Unix(1000, 0)
	g.now = func() time.Time { return now }
	allowed := 0
	for range 10 {
		if g.allow("dialer", 3) {
			allowed++
		}
	}
	if allowed != 3 {
		t.Errorf("%d of 10 calls at once allowed at 3 calls/s, want the second's worth, 3", allowed)
	}
	now = now.Add(time.Second)
	if !g.allow("dialer", 3) || !g.allow("pbx", 3) {
		t.Error("a second later, calls are still refused")
	}
	for range 100 {
		if !g.allow("other", 0) {
			t.Fatal("an endpoint without max_cps was limited")
		}
	}
}

// TestOverloadWarnsOncePerInterval: a burst of refusals is one warn line
// (with the count), not one per call.
func TestOverloadWarnsOncePerInterval(t *testing.T) {
	var buf bytes.Buffer
	o := overload{log: slog.New(slog.NewTextHandler(&buf, nil))}
	for range 50 {
		o.note(overPorts, "all pairs in use")
	}
	if n := strings.Count(buf.String(), "overload: new calls refused"); n != 1 {
		t.Errorf("%d warn lines for 50 refusals in a burst, want 1:\n%s", n, buf.String())
	}
	if got := o.snapshot()["ports"]; got != 50 {
		t.Errorf("ports refusals = %d, want 50", got)
	}
	o.warned[overPorts] = time.Now().Add(-overloadWarnEvery)
	o.note(overPorts, "again")
	if !strings.Contains(buf.String(), "refused_since_last_warning=50") {
		t.Errorf("second warning does not say how many were refused since the first:\n%s", buf.String())
	}
}

// TestLateShare: the share counts only the jobs run between the two
// snapshots, and a quiet node (under minLateJobs) never reads as late.
func TestLateShare(t *testing.T) {
	snap := func(onTime, late uint64) media.PacerStats {
		var s media.PacerStats
		s.Counts[0] = onTime
		s.Counts[len(s.Counts)-1] = late // later than every bucket
		return s
	}
	for _, c := range []struct {
		name      string
		prev, cur media.PacerStats
		want      int64
	}{
		{"all on time", snap(1000, 0), snap(2000, 0), 0},
		{"a quarter late", snap(1000, 10), snap(1150, 60), 2500},
		{"old lateness does not count", snap(0, 5000), snap(1000, 5000), 0},
		{"too few jobs to tell", snap(1000, 0), snap(1000, minLateJobs-1), 0},
	} {
		if got := lateShareBP(c.prev, c.cur); got != c.want {
			t.Errorf("%s: %d hundredths of a percent, want %d", c.name, got, c.want)
		}
	}
}

// TestFlowRefusedWhileMediaLate: with sip.max_late_media_percent set,
// while the media pacer runs late (here a real pacer whose one shard is
// held 8 ms by a job every tick, so every other job waits) a new call
// gets 503 with Retry-After before anything reaches the PBX, counted as
// media_late, and so does a click-to-call. Once the pacer keeps time
// again, calls go through. Off (0), a late pacer refuses nothing.
func TestFlowRefusedWhileMediaLate(t *testing.T) {
	pacer := media.NewPacer(1)
	f := startFlow(t, "", "", "", func(e *Engine) { e.SetPacerStats(pacer.Stats) })

	var hold atomic.Bool
	hold.Store(true)
	hog := pacer.Schedule(time.Now(), func(now time.Time) time.Time {
		if !hold.Load() {
			return time.Time{}
		}
		time.Sleep(8 * time.Millisecond)
		return now.Add(time.Millisecond)
	})
	defer hog.Cancel()
	tick := pacer.Schedule(time.Now(), func(now time.Time) time.Time { return now.Add(time.Millisecond) })
	defer tick.Cancel()
	const limit = 20
	// waitLate waits for the engine's last sample to be over the limit
	// (late) or within it: samples come once a second.
	waitLate := func(late bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for (f.srv.over.lateBP.Load() > limit*100) != late {
			if time.Now().After(deadline) {
				t.Fatalf("the pacer's lateness read %d hundredths of a percent, want over %d %%: %v", f.srv.over.lateBP.Load(), limit, late)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitLate(true)

	// Off: the late pacer refuses nothing.
	inv := metaUICInvite(f)
	f.meta.send(f.addr, inv)
	b := f.pbx.request(sip.INVITE)
	f.pbx.reply(b, 486, "Busy Here", "p1", nil)
	f.pbx.request(sip.ACK)
	res := f.meta.response(486)
	f.meta.send(f.addr, ackFor(inv, res))

	cfg := *f.edge.Config()
	cfg.SIP.MaxLateMediaPercent = limit
	f.edge.Reload(&cfg)
	inv = metaUICInvite(f)
	f.meta.send(f.addr, inv)
	res = f.meta.response(503)
	if ra := res.GetHeader("Retry-After"); ra == nil || ra.Value() != "5" {
		t.Errorf("the 503 has Retry-After %v, want 5", ra)
	}
	f.meta.send(f.addr, ackFor(inv, res))
	// A click-to-call is refused the same way: the API answers 503.
	_, ref, err := f.srv.Originate(sipedge.ClickToCall{Business: "+15550100001", User: "+447700900123", AgentEndpoint: "pbx", AgentUser: "1001"})
	if err != nil || ref == nil || ref.Code != 503 || ref.RetryAfter != 5*time.Second {
		t.Errorf("click-to-call while media is late: refusal %+v, error %v; want 503 with Retry-After 5s", ref, err)
	}
	f.pbx.silent(300 * time.Millisecond)
	if n := f.srv.Status().Overload["media_late"]; n != 2 {
		t.Errorf("media_late refusals = %d, want 2 (the INVITE and the click-to-call)", n)
	}

	hold.Store(false)
	waitLate(false)
	inv = metaUICInvite(f)
	f.meta.send(f.addr, inv)
	b = f.pbx.request(sip.INVITE)
	f.pbx.reply(b, 486, "Busy Here", "p2", nil)
	f.pbx.request(sip.ACK)
	res = f.meta.response(486)
	f.meta.send(f.addr, ackFor(inv, res))
	if n := f.srv.Status().Overload["media_late"]; n != 2 {
		t.Errorf("media_late refusals = %d after the pacer kept time again, want still 2", n)
	}
}
