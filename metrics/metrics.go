// Package metrics is wagate's Prometheus registry: the definitions of every
// metric and the handler that serves them. Counts that only the call path
// knows come in as call events (Metrics is a b2bua.CallObserver); the rest
// is read from the other rooms' snapshots when Prometheus scrapes, so
// nothing on the packet path pays for metrics.
//
// Every label has a bounded set of values: no call ids, no user numbers.
// The business-number label takes only configured numbers.
package metrics

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/wagate/wagate/b2bua"
	"github.com/wagate/wagate/events"
	"github.com/wagate/wagate/media"
	"github.com/wagate/wagate/permissions"
	"github.com/wagate/wagate/prompt"
	"github.com/wagate/wagate/recording"
	"github.com/wagate/wagate/sip"
)

// Sources are the snapshots the scrape reads; a nil func leaves its
// metrics out (recording or events off).
type Sources struct {
	SIP func() sip.Status
	// Calls is the B2BUA's snapshot (live calls, 503s by reason).
	Calls     func() b2bua.Status
	Media     func() media.Stats
	Recording func() recording.Stats
	Events    func() events.Stats
	// SIPMessages is the SIP message counts by direction, method/class.
	SIPMessages func() []sip.MessageCount
	// Permissions is the permission store's counters (nil: permissions off).
	Permissions func() permissions.Stats
	// Agents is the shared agent state's counters (nil: not shared, no
	// Redis).
	Agents func() permissions.AgentBoardStats
	// WebhookUnknownNumber counts Meta webhook replies for numbers wagate
	// does not serve.
	WebhookUnknownNumber func() uint64
	// Endpoints is the health of the endpoints with an OPTIONS probe.
	Endpoints func() []sip.EndpointHealth
	// MetaWebhook counts Meta's settings and call reports (nil: left out).
	MetaWebhook func() MetaWebhookStats
	// Prompts is the call flows' prompt library (nil: call flows off).
	Prompts func() prompt.Stats
	// Reloads is what came of the SIGHUPs (nil: left out).
	Reloads func() ReloadStats
}

// ReloadStats counts configuration reloads (SIGHUP) by what came of them.
type ReloadStats struct {
	// Applied and Refused count the reloads applied and those refused
	// (the file did not load, or changed keys that take a restart).
	Applied, Refused uint64
	// LastOK is whether the last reload was applied (true before any);
	// LastSuccess when the config in force was loaded: at start, or by
	// the last reload applied.
	LastOK      bool
	LastSuccess time.Time
}

// MetaWebhookStats counts what Meta's account_settings_update and calls
// webhooks brought and what followed.
type MetaWebhookStats struct {
	// SettingsUpdates of numbers' calling settings; Mismatches among them
	// left a number's keying different from its media_encryption;
	// Mismatched is how many numbers differ now; Refusals are business-
	// initiated calls refused for it (refuse_keying_mismatch).
	SettingsUpdates, Mismatches, Refusals uint64
	Mismatched                            int
	// CallReports are call_created/connect and terminate events.
	CallReports uint64
	// TooOld are messages ignored as too old to tell from a replay, by
	// webhook field (call_permission_reply, account_update,
	// account_settings_update, calls).
	TooOld map[string]uint64
}

// Metrics holds the registry.
type Metrics struct {
	reg *prometheus.Registry

	calls      *prometheus.CounterVec   // direction, outcome
	refused    *prometheus.CounterVec   // direction, code, waba_error
	setup      *prometheus.HistogramVec // direction
	uic        *prometheus.CounterVec   // business_number, outcome
	talk       *prometheus.HistogramVec // direction
	jitter     *prometheus.HistogramVec // leg
	lossRatio  *prometheus.HistogramVec // leg
	playout    *prometheus.HistogramVec // leg
	transcoded prometheus.Counter

	mu      sync.Mutex
	started map[string]time.Time // call id → when call.started came
}

// Durations of call set-up: from the INVITE's admission to the answer.
var setupBuckets = []float64{0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 8, 13, 20, 30, 45, 60}

// New registers every metric, reading the snapshots of src on scrape.
func New(src Sources) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry(), started: make(map[string]time.Time)}
	f := factory{m.reg}
	m.calls = f.counterVec("wagate_calls_total", "Calls that ended, by direction and outcome (answered, unanswered, busy, cancelled, failed).", "direction", "outcome")
	m.refused = f.counterVec("wagate_calls_refused_total", "INVITEs wagate refused itself before any call existed, by direction, SIP code and Meta error code (X-WABA-Error, 0 when none).", "direction", "code", "waba_error")
	m.setup = f.histogramVec("wagate_call_setup_seconds", "Time from an INVITE's admission to its answer.", setupBuckets, "direction")
	m.uic = f.counterVec("wagate_uic_calls_total", "User-initiated calls by business number and outcome: Meta hides the call button of a number whose pickup rate is low.", "business_number", "outcome")
	m.talk = f.histogramVec("wagate_call_talk_seconds", "Talk time of answered calls.", prometheus.ExponentialBuckets(5, 2, 12), "direction")
	m.jitter = f.histogramVec("wagate_call_jitter_seconds", "Interarrival jitter (RFC 3550) at the end of each answered call, of what each leg sent.", []float64{0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.08, 0.12, 0.2}, "leg")
	m.lossRatio = f.histogramVec("wagate_call_packet_loss_ratio", "Fraction of RTP packets each leg sent that were lost, per answered call.", []float64{0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2}, "leg")
	m.playout = f.histogramVec("wagate_call_playout_delay_seconds", "Mean depth of the playout (jitter) buffer wagate ran for what each leg sent, per answered call, where wagate paces it (toward WhatsApp, and transcoded directions): the delay it added to follow that leg's jitter.", []float64{0.02, 0.04, 0.06, 0.08, 0.1, 0.12, 0.16, 0.2, 0.3}, "leg")
	m.transcoded = f.counter("wagate_calls_transcoded_total", "Answered calls whose media was transcoded (the legs' codecs differ).")

	// Series that exist from the start, so dashboards and alerts see them
	// at zero rather than missing.
	for _, dir := range []string{string(events.UIC), string(events.BIC)} {
		m.setup.WithLabelValues(dir)
		m.talk.WithLabelValues(dir)
		for _, o := range []events.Outcome{events.Answered, events.Unanswered, events.Busy, events.Cancelled, events.Failed} {
			m.calls.WithLabelValues(dir, string(o))
		}
	}
	for _, leg := range []string{"a", "b"} {
		m.jitter.WithLabelValues(leg)
		m.lossRatio.WithLabelValues(leg)
		m.playout.WithLabelValues(leg)
	}

	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.reg.MustRegister(&snapshotCollector{src: src})
	return m
}

// Handler serves the metrics in Prometheus' text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// CallStarted notes when a call was admitted, for its set-up time.
func (m *Metrics) CallStarted(c events.Call) {
	m.mu.Lock()
	m.started[c.CallID] = time.Now()
	m.mu.Unlock()
}

// CallRinging has nothing to count.
func (m *Metrics) CallRinging(events.Call) {}

// CallAnswered observes the call's set-up time.
func (m *Metrics) CallAnswered(c events.Call) {
	m.mu.Lock()
	t, ok := m.started[c.CallID]
	m.mu.Unlock()
	if ok {
		m.setup.WithLabelValues(string(c.Direction)).Observe(time.Since(t).Seconds())
	}
}

// CallEnded counts the call by outcome and observes its media.
func (m *Metrics) CallEnded(cdr events.CDR) {
	m.mu.Lock()
	delete(m.started, cdr.CallID)
	m.mu.Unlock()
	dir := string(cdr.Direction)
	m.calls.WithLabelValues(dir, string(cdr.Outcome)).Inc()
	if cdr.Direction == events.UIC && cdr.BusinessNumber != "" {
		m.uic.WithLabelValues(cdr.BusinessNumber, string(cdr.Outcome)).Inc()
	}
	if cdr.Outcome != events.Answered {
		return
	}
	if !cdr.AnsweredAt.IsZero() && !cdr.EndedAt.IsZero() {
		m.talk.WithLabelValues(dir).Observe(cdr.EndedAt.Sub(cdr.AnsweredAt).Seconds())
	}
	if cdr.A.Codec != "" && cdr.B.Codec != "" && cdr.A.Codec != cdr.B.Codec {
		m.transcoded.Inc()
	}
	for _, d := range []struct {
		leg string
		s   events.MediaStats
	}{{"a", cdr.Media.AtoB}, {"b", cdr.Media.BtoA}} {
		if d.s.Packets == 0 {
			continue
		}
		m.jitter.WithLabelValues(d.leg).Observe(d.s.JitterMS / 1000)
		m.lossRatio.WithLabelValues(d.leg).Observe(float64(d.s.Lost) / float64(d.s.Lost+d.s.Packets))
		if d.s.JitterBufferMS > 0 { // 0: relayed as it came, no playout buffer
			m.playout.WithLabelValues(d.leg).Observe(d.s.JitterBufferMS / 1000)
		}
	}
}

// CallRecovered counts nothing: a record recovered from the journal at a
// restart is of a call the previous process counted when it ended.
// Counters restart from zero with the process and Prometheus's
// increase() adds what each process counted, so counting it here too
// counted the call twice. (A call that ended after the previous process's
// last scrape is then not counted at all: its count died with the
// process, as every count since that scrape did.)
func (m *Metrics) CallRecovered(cdr events.CDR) {
	m.mu.Lock()
	delete(m.started, cdr.CallID)
	m.mu.Unlock()
}

// CallRefused counts a refusal by code and Meta error.
func (m *Metrics) CallRefused(cdr events.CDR) {
	m.refused.WithLabelValues(string(cdr.Direction), strconv.Itoa(cdr.SIPCode), strconv.Itoa(cdr.WABAError)).Inc()
	if cdr.Direction == events.UIC && cdr.BusinessNumber != "" {
		m.uic.WithLabelValues(cdr.BusinessNumber, string(events.Refused)).Inc()
	}
}

type factory struct{ reg *prometheus.Registry }

func (f factory) counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	f.reg.MustRegister(c)
	return c
}

func (f factory) counter(name, help string) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	f.reg.MustRegister(c)
	return c
}

func (f factory) histogramVec(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, labels)
	f.reg.MustRegister(h)
	return h
}
