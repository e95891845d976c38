package metrics

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/wagate/wagate/b2bua"
	"github.com/wagate/wagate/events"
	"github.com/wagate/wagate/media"
	"github.com/wagate/wagate/prompt"
	"github.com/wagate/wagate/sip"
)

// scrape returns metric name → label string → value from m's handler.
func scrape(t *testing.T, m *Metrics) map[string]map[string]float64 {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("metrics do not parse: %v\n%s", err, body)
	}
	out := map[string]map[string]float64{}
	for name, f := range fams {
		out[name] = map[string]float64{}
		for _, mt := range f.Metric {
			var ls []string
			for _, l := range mt.Label {
				ls = append(ls, l.GetName()+"="+l.GetValue())
			}
			key := strings.Join(ls, ",")
			switch {
			case mt.Counter != nil:
				out[name][key] = mt.Counter.GetValue()
			case mt.Gauge != nil:
				out[name][key] = mt.Gauge.GetValue()
			case mt.Histogram != nil:
				out[name][key] = float64(mt.Histogram.GetSampleCount())
			}
		}
	}
	return out
}

func TestMetricsFromCalls(t *testing.T) {
	st := sip.Status{Draining: true}
	st.Edge.Refused = map[string]uint64{"stranger": 7}
	m := New(Sources{
		SIP:   func() sip.Status { return st },
		Calls: func() b2bua.Status { return b2bua.Status{Calls: 3} },
		Media: func() media.Stats {
			return media.Stats{PortsInUse: 12, PortsTotal: 100, PortsBound: 40, Totals: media.BridgeStats{Concealed: 4, Compressed: 2, Played: 50}}
		},
		SIPMessages: func() []sip.MessageCount {
			return []sip.MessageCount{{Direction: "in", Method: "INVITE", Count: 2}, {Direction: "out", Class: "2xx", Count: 5}}
		},
		Prompts: func() prompt.Stats {
			return prompt.Stats{Hits: 9, DiskHits: 2, Misses: 4, Renders: 3, RenderErrors: 1, Downloads: 6, DownloadErrors: 3, DownloadsRefused: 2}
		},
	})
	now := time.Now()
	call := events.Call{CallID: "c1", Direction: events.UIC, BusinessNumber: "+15550100001"}
	m.CallStarted(call)
	m.CallAnswered(call)
	m.CallEnded(events.CDR{CallID: "c1", Direction: events.UIC, BusinessNumber: "+15550100001", Outcome: events.Answered,
		AnsweredAt: now.Add(-30 * time.Second), EndedAt: now,
		A: events.Leg{Codec: "opus"}, B: events.Leg{Codec: "PCMU"},
		Media: events.Media{AtoB: events.MediaStats{Packets: 95, Lost: 5, JitterMS: 3, JitterBufferMS: 60},
			BtoA: events.MediaStats{Packets: 100}}})
	m.CallRefused(events.CDR{Direction: events.BIC, SIPCode: 403, WABAError: 138006})

	got := scrape(t, m)
	for _, c := range []struct {
		name, labels string
		want         float64
	}{
		{"wagate_calls_total", "direction=UIC,outcome=answered", 1},
		{"wagate_uic_calls_total", "business_number=+15550100001,outcome=answered", 1},
		{"wagate_calls_refused_total", "code=403,direction=BIC,waba_error=138006", 1},
		{"wagate_call_setup_seconds", "direction=UIC", 1},
		{"wagate_call_talk_seconds", "direction=UIC", 1},
		{"wagate_call_packet_loss_ratio", "leg=a", 1},
		{"wagate_calls_transcoded_total", "", 1},
		// A's audio went through a playout buffer; B's was relayed as it came.
		{"wagate_call_playout_delay_seconds", "leg=a", 1},
		{"wagate_call_playout_delay_seconds", "leg=b", 0},
		{"wagate_calls_active", "", 3},
		{"wagate_draining", "", 1},
		{"wagate_sip_edge_refused_total", "reason=stranger", 7},
		{"wagate_sip_edge_refused_total", "reason=too_large", 0},
		{"wagate_rtp_ports_free", "", 88},
		{"wagate_rtp_ports_bound", "", 40},
		{"wagate_media_playout_frames_total", "kind=concealed", 4},
		{"wagate_media_playout_frames_total", "kind=compressed", 2},
		{"wagate_media_prompt_packets_total", "", 50},
		{"wagate_sip_requests_total", "direction=in,method=INVITE", 2},
		{"wagate_sip_responses_total", "class=2xx,direction=out", 5},
		{"wagate_prompt_requests_total", "result=memory", 9},
		{"wagate_prompt_requests_total", "result=miss", 4},
		{"wagate_prompt_renders_total", "result=ok", 2},
		{"wagate_prompt_downloads_total", "result=ok", 3},
		{"wagate_prompt_downloads_total", "result=refused", 2},
		{"wagate_prompt_downloads_total", "result=failed", 1},
	} {
		v, ok := got[c.name][c.labels]
		if !ok || v != c.want {
			t.Errorf("%s{%s} = %v (present %v), want %v", c.name, c.labels, v, ok, c.want)
		}
	}
	if _, ok := got["go_goroutines"]; !ok {
		t.Error("no Go runtime metrics")
	}
	if n := len(m.started); n != 0 {
		t.Errorf("%d calls' start times kept after they ended", n)
	}
}

// TestPacerLatenessHistogram: the pacer's per-bucket counts become a
// Prometheus histogram with cumulative buckets, so that
// histogram_quantile and "share within 1 ms" queries read them right.
func TestPacerLatenessHistogram(t *testing.T) {
	var ps media.PacerStats
	ps.Counts = [9]uint64{70, 20, 5, 3, 0, 0, 0, 0, 2}
	ps.Late = 1500 * time.Millisecond
	m := New(Sources{Media: func() media.Stats { return media.Stats{Pacer: ps} }})
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(rec.Body)
	if err != nil {
		t.Fatal(err)
	}
	f := fams["wagate_media_pacer_lateness_seconds"]
	if f == nil || len(f.Metric) != 1 || f.Metric[0].Histogram == nil {
		t.Fatalf("wagate_media_pacer_lateness_seconds: %v, want one histogram", f)
	}
	h := f.Metric[0].Histogram
	if h.GetSampleCount() != 100 || h.GetSampleSum() != 1.5 {
		t.Errorf("count %d sum %v, want 100 and 1.5", h.GetSampleCount(), h.GetSampleSum())
	}
	want := map[float64]uint64{0.0005: 70, 0.001: 90, 0.002: 95, 0.005: 98, 0.01: 98, 0.1: 98}
	for _, b := range h.Bucket {
		if w, ok := want[b.GetUpperBound()]; ok && b.GetCumulativeCount() != w {
			t.Errorf("bucket le=%v: %d, want %d", b.GetUpperBound(), b.GetCumulativeCount(), w)
		}
		delete(want, b.GetUpperBound())
	}
	if len(want) != 0 {
		t.Errorf("buckets missing: %v", want)
	}
}
