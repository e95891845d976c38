package main

import (
	"github.com/wagate/wagate/b2bua"
	"github.com/wagate/wagate/events"
	"github.com/wagate/wagate/media"
	"github.com/wagate/wagate/metrics"
	"github.com/wagate/wagate/permissions"
	"github.com/wagate/wagate/prompt"
	"github.com/wagate/wagate/recording"
	"github.com/wagate/wagate/sip"
)

// newMetrics builds the Prometheus registry over the running rooms and
// makes it a call observer.
func newMetrics(srv *sip.Server, calls *b2bua.Engine, mm *media.Manager, rec *recording.Manager, sink *events.Sink, perms permissions.Store, agents *permissions.AgentBoard, webhookUnknown func() uint64,
	metaWebhook func() metrics.MetaWebhookStats, prompts func() prompt.Stats, reloads func() metrics.ReloadStats) *metrics.Metrics {
	src := metrics.Sources{SIP: srv.Status, Calls: calls.Status, Media: mm.Stats, SIPMessages: srv.MessageCounts,
		WebhookUnknownNumber: webhookUnknown, Endpoints: srv.Health, MetaWebhook: metaWebhook, Reloads: reloads}
	if perms != nil {
		src.Permissions = perms.Stats
	}
	if agents != nil {
		src.Agents = agents.Stats
	}
	if rec != nil {
		src.Recording = rec.Stats
	}
	src.Prompts = prompts
	if sink != nil {
		src.Events = sink.Stats
	}
	m := metrics.New(src)
	calls.AddObserver(m)
	return m
}

// readiness is /readyz: wagate takes new calls once every SIP listener is
// bound, and stops when it drains. Stores that fail to open stop wagate
// at start, so an open process has them.
func readiness(srv *sip.Server) func() (bool, []string) {
	return func() (bool, []string) {
		var why []string
		select {
		case <-srv.Ready():
		default:
			why = append(why, "sip listeners not bound yet")
		}
		if srv.Status().Draining {
			why = append(why, "draining")
		}
		return len(why) == 0, why
	}
}
