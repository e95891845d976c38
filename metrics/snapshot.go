package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/wagate/wagate/media"
	"github.com/wagate/wagate/sip"
)

// snapshotCollector turns the rooms' snapshots into metrics at scrape
// time.
type snapshotCollector struct {
	src Sources
}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

var (
	dCallsActive     = desc("wagate_calls_active", "Calls in progress (admitted, not ended).")
	dDraining        = desc("wagate_draining", "1 while wagate drains (SIGTERM): new calls get 503, OPTIONS 503, /readyz fails.")
	dEdgePassed      = desc("wagate_sip_edge_passed_total", "SIP messages the edge passed to the B2BUA.")
	dEdgeAnswered    = desc("wagate_sip_edge_answered_total", "Stateless answers the SIP edge sent itself (400, 403, 416, 420, 483, 501, 505, 513).")
	dEdgeRefused     = desc("wagate_sip_edge_refused_total", "SIP messages and connections the edge did not pass on, by reason.", "reason")
	dConnections     = desc("wagate_sip_tcp_connections", "Open inbound TCP and TLS connections.")
	dOverload        = desc("wagate_overload_refusals_total", "New calls refused with 503 by reason: ports (no free RTP port pair), concurrency (max_calls), draining, cpu (sip.max_cpu_percent), cps (an endpoint's max_cps), media_late (sip.max_late_media_percent).", "reason")
	dEdgePaced       = desc("wagate_sip_edge_paced_total", "SIP requests over TCP/TLS read late because their source was over sip.tcp.paced_request_rate (passed on, not refused).")
	dPanics          = desc("wagate_panics_recovered_total", "Handler panics recovered (each one is a bug).")
	dTLSFailures     = desc("wagate_tls_handshake_failures_total", "Failed TLS handshakes: inbound (client never finished, protocol error) and outbound (certificate did not verify).", "direction")
	dSIPRequests     = desc("wagate_sip_requests_total", "SIP requests read (in) and sent (out) by method.", "direction", "method")
	dSIPResponses    = desc("wagate_sip_responses_total", "SIP responses read (in) and sent (out) by class.", "direction", "class")
	dPortsInUse      = desc("wagate_rtp_ports_in_use", "RTP/RTCP ports held by live calls (four per call).")
	dPortsFree       = desc("wagate_rtp_ports_free", "RTP/RTCP ports of the configured range not held by a call (some may be in quarantine).")
	dPortsBound      = desc("wagate_rtp_ports_bound", "RTP/RTCP ports with an open socket, held by calls or kept bound while free (one descriptor each).")
	dBridges         = desc("wagate_media_bridges", "Media bridges open.")
	dRTPPackets      = desc("wagate_rtp_packets_total", "RTP packets sent toward each leg, of calls that have ended: relayed, transcoded and DTMF.", "direction")
	dRTPDropped      = desc("wagate_rtp_dropped_total", "RTP packets dropped, of calls that have ended, by reason: source (not the signalled or latched address), invalid, srtp_auth, srtp_replay, late; and on dtls legs' ports stun and dtls (not the ICE peer's, or not authentic).", "reason")
	dDTLS            = desc("wagate_dtls_handshakes_total", "Handshakes (ICE and DTLS) of dtls legs by result: keyed, timeout, fingerprint (the certificate did not match the SDP), ice_failed, failed; consent_lost counts keyed legs whose peer stopped answering ICE consent checks.", "result")
	dDTLSSeconds     = desc("wagate_dtls_handshake_seconds_total", "Time the keyed dtls legs took from the answer to their SRTP keys, summed (divide by wagate_dtls_handshakes_total{result=\"keyed\"}).")
	dRTPSilence      = desc("wagate_rtp_silence_packets_total", "Silence packets wagate sent toward WhatsApp while the other side was quiet, of calls that have ended.")
	dRTCP            = desc("wagate_rtcp_packets_total", "RTCP packets sent and received, of calls that have ended.", "direction")
	dPlayout         = desc("wagate_media_playout_frames_total", "Frames the playout buffers made up or dropped, of calls that have ended: concealed (the packet was missing at its time: FEC/PLC), expanded (added to grow the delay when jitter rose), compressed (dropped to shrink it when jitter fell).", "kind")
	dPacerLate       = desc("wagate_media_pacer_lateness_seconds", "How late the media pacer ran its jobs (packets wagate sends on a clock: silence, playout toward a leg, prompts, music, RTCP), from the start of the millisecond each was due in. Late jobs mean paced audio leaves late: the node is short of CPU, or its host wakes it late.")
	dPlayed          = desc("wagate_media_prompt_packets_total", "Packets of prompts and music wagate played into calls (Bridge.Play), of calls that have ended.")
	dDTMF            = desc("wagate_dtmf_events_total", "RFC 4733 DTMF events relayed, of calls that have ended.")
	dRecActive       = desc("wagate_recordings_active", "Recordings in progress.")
	dRecCompleted    = desc("wagate_recordings_completed_total", "Recordings that ran to the end of their call.")
	dRecFailed       = desc("wagate_recording_failures_total", "Recordings that could not start or stopped early (write error, size limit); the calls went on.")
	dRecDropped      = desc("wagate_recording_dropped_chunks_total", "Audio chunks dropped because a recording could not keep up with the disk.")
	dRecBytes        = desc("wagate_recording_bytes_total", "Bytes written to recordings.")
	dEvQueue         = desc("wagate_events_queue_length", "Records (CDRs and events) waiting to be written to the events store.")
	dEvQueueCap      = desc("wagate_events_queue_capacity", "Capacity of that queue; when full, records are dropped.")
	dEvDropped       = desc("wagate_events_dropped_total", "CDRs and events dropped because the queue was full.")
	dEvWriteErrors   = desc("wagate_events_write_errors_total", "Failed writes to the events store (disk full, …); the calls went on.")
	dCDRs            = desc("wagate_cdrs_written_total", "CDRs written.")
	dEvWritten       = desc("wagate_events_written_total", "Events written to the outbox.")
	dDeliveries      = desc("wagate_webhook_deliveries_total", "Webhook delivery results per subscriber: delivered (2xx), failed (an attempt failed; it is retried), dead (gave up), backlog_full (not queued: the subscriber's backlog was at events.max_pending).", "subscriber", "result")
	dPermUp          = desc("wagate_permission_store_up", "1 while the permission store answers (0: Redis down).", "backend")
	dAgentsShared    = desc("wagate_agent_state_shared", "1 while this node sees the other nodes' agents (calls, rings, wrap-up) through Redis; 0 before the first load and once Redis has been down longer than slot_ttl (per-node agent state).")
	dAgentsElsewhere = desc("wagate_agent_state_remote_agents", "Agents the other nodes hold marks of (on a call, ringing, last call end, wrap-up), as this node's mirror has them.")
	dAgentsBusyElse  = desc("wagate_agent_state_remote_busy", "Agents on a call or in wrap-up through another node, as this node's mirror has them: its hunt lists and queues treat them as busy.")
	dAgentsRingElse  = desc("wagate_agent_state_remote_ringing", "Agents an INVITE through another node rings now, as this node's mirror has them: its queues do not ring them too, and least_recent ranks them after the free agents.")
	dAgentsWriteErr  = desc("wagate_agent_state_write_errors_total", "Writes of this node's agent marks to Redis that failed (written again when Redis answers).")
	dPermErrors      = desc("wagate_permission_store_errors_total", "Permission store operations that failed (Redis unreachable, slow or answering garbage; a failed disk write).")
	dPermRefused     = desc("wagate_permission_refused_unavailable_total", "Business-initiated calls and permission requests refused because the store could not answer (on_down refuse).")
	dPermCached      = desc("wagate_permission_admitted_from_cache_total", "Calls admitted from the local cache while Redis was down (on_down cache).")
	dPermLearned     = desc("wagate_permission_learned_no_permission_total", "Pairs revoked because Meta itself answered 403 No Approved Call Permission Found.")
	dPermLearnedCap  = desc("wagate_permission_learned_daily_cap_total", "Times Meta answered 403 Business Initiated Connected Call Per Day Limit Hit for a pair below the cap here (the pair's window was filled).")
	dPermStale       = desc("wagate_permission_webhook_ignored_total", "Meta webhook messages ignored: stale (a reply older than the pair's last change), replayed (already applied) or stale_account_update (an account_update sent before the number's one in force).", "why")
	dPermRestrict    = desc("wagate_permission_restricted_refusals_total", "Business-initiated calls refused while Meta paused the number (138013).")
	dPermPending     = desc("wagate_permission_pending_outcomes", "Call outcomes made while Redis was down and not yet written back.")
	dWebhookUnknown  = desc("wagate_webhook_unknown_number_total", "Meta webhook replies for a phone_number_id no configured number has (logged, ignored).")
	dMetaSettings    = desc("wagate_meta_settings_updates_total", "Meta account_settings_update webhooks about a number's calling settings (SRTP keying, SIP status).")
	dMetaMismatch    = desc("wagate_meta_keying_mismatches_total", "Meta settings updates that left a number's SRTP keying different from its media_encryption (its calls will have no audio).")
	dMetaMismatched  = desc("wagate_meta_keying_mismatched_numbers", "Numbers whose SRTP keying, as Meta last reported it, differs from media_encryption now.")
	dMetaRefusals    = desc("wagate_meta_keying_refusals_total", "Business-initiated calls refused (488) because Meta's keying differs from media_encryption (refuse_keying_mismatch).")
	dMetaTooOld      = desc("wagate_meta_webhook_too_old_total", "Meta webhook messages ignored as older than wagate can tell a replay from a first delivery (7.5 days), by field.", "field")
	dMetaCalls       = desc("wagate_meta_call_reports_total", "Meta calls webhook events (call_created/connect, terminate) received.")
	dInFlight        = desc("wagate_webhook_in_flight", "Webhook requests in flight per subscriber.", "subscriber")
	dPromptCache     = desc("wagate_prompt_requests_total", "Prompts call flows asked for, by where they came from: memory, disk (the disk cache), or miss (rendered or downloaded).", "result")
	dPromptRenders   = desc("wagate_prompt_renders_total", "Text-to-speech renders by result: ok, failed.", "result")
	dPromptDownloads = desc("wagate_prompt_downloads_total", "Prompt file downloads by result: ok; refused (the URL, or a redirect, led to an address prompts.fetch_allow does not allow, or was not http(s)); failed (anything else: timeout, too large, not audio, HTTP error).", "result")
	dEndpointUp      = desc("wagate_endpoint_up", "1 while an endpoint with an OPTIONS probe is up, 0 once its probes marked it down (hunts skip it).", "endpoint")
	dCertExpiry      = desc("wagate_tls_certificate_expiry_timestamp_seconds", "When the certificate a TLS listener presents expires (Unix seconds): Meta refuses an expired one, so every user-initiated call would fail. A reload re-reads it.", "listener")
	dReloads         = desc("wagate_config_reloads_total", "Configuration reloads (SIGHUP) by result: applied, refused (the file did not load, or changed keys that take a restart; the running config stayed).", "result")
	dReloadOK        = desc("wagate_config_last_reload_successful", "1 when the last reload was applied (or none was tried since start), 0 when it was refused: the file on disk is not what runs.")
	dReloadAt        = desc("wagate_config_last_reload_success_timestamp_seconds", "When the configuration in force was loaded (Unix seconds): at start, or by the last reload applied.")
	dProbeFailures   = desc("wagate_endpoint_probe_failures_total", "OPTIONS probes of an endpoint that failed (no answer, transport error, 408, 5xx, 6xx).", "endpoint")
)

func (c *snapshotCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{dCallsActive, dDraining, dEdgePassed, dEdgeAnswered, dEdgeRefused, dConnections,
		dOverload, dPanics, dEdgePaced, dTLSFailures, dSIPRequests, dSIPResponses, dPortsInUse, dPortsFree, dPortsBound, dBridges, dRTPPackets, dRTPDropped,
		dRTPSilence, dRTCP, dDTMF, dDTLS, dDTLSSeconds, dPlayout, dPacerLate, dPlayed, dRecActive, dRecCompleted, dRecFailed, dRecDropped, dRecBytes, dEvQueue, dEvQueueCap,
		dEvDropped, dEvWriteErrors, dCDRs, dEvWritten, dDeliveries, dInFlight, dPermUp, dPermErrors, dPermRefused,
		dPermCached, dPermLearned, dPermStale, dPermRestrict, dPermPending, dWebhookUnknown, dEndpointUp, dProbeFailures,
		dMetaSettings, dMetaMismatch, dMetaMismatched, dMetaRefusals, dMetaCalls, dMetaTooOld, dPromptCache, dPromptRenders, dPromptDownloads,
		dReloads, dReloadOK, dReloadAt, dCertExpiry} {
		ch <- d
	}
}

func (c *snapshotCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	if c.src.SIP != nil {
		s := c.src.SIP()
		gauge(dDraining, b2f(s.Draining))
		counter(dEdgePassed, s.Edge.Passed)
		counter(dEdgeAnswered, s.Edge.Answered)
		for _, r := range sip.EdgeReasons() {
			counter(dEdgeRefused, s.Edge.Refused[r], r)
		}
		gauge(dConnections, float64(s.Edge.Connections))
		counter(dPanics, s.Edge.PanicsRecovered)
		counter(dEdgePaced, s.Edge.Paced)
		counter(dTLSFailures, s.TLSHandshakeFailures.Inbound, "inbound")
		counter(dTLSFailures, s.TLSHandshakeFailures.Outbound, "outbound")
		for _, c := range s.Certificates {
			if !c.NotAfter.IsZero() {
				gauge(dCertExpiry, float64(c.NotAfter.Unix()), c.Address)
			}
		}
	}
	if c.src.Calls != nil {
		s := c.src.Calls()
		gauge(dCallsActive, float64(s.Calls))
		for r, n := range s.Overload {
			counter(dOverload, n, r)
		}
	}
	if c.src.SIPMessages != nil {
		for _, m := range c.src.SIPMessages() {
			if m.Method != "" {
				counter(dSIPRequests, m.Count, m.Direction, m.Method)
			} else {
				counter(dSIPResponses, m.Count, m.Direction, m.Class)
			}
		}
	}
	if c.src.Media != nil {
		s := c.src.Media()
		gauge(dPortsInUse, float64(s.PortsInUse))
		gauge(dPortsFree, float64(max(0, s.PortsTotal-s.PortsInUse)))
		gauge(dPortsBound, float64(s.PortsBound))
		gauge(dBridges, float64(s.Bridges))
		t := s.Totals
		counter(dRTPPackets, t.AtoB, "a_to_b")
		counter(dRTPPackets, t.BtoA, "b_to_a")
		counter(dRTPDropped, t.DroppedSource, "source")
		counter(dRTPDropped, t.DroppedInvalid, "invalid")
		counter(dRTPDropped, t.DroppedAuth, "srtp_auth")
		counter(dRTPDropped, t.DroppedReplay, "srtp_replay")
		counter(dRTPDropped, t.DroppedLate, "late")
		counter(dRTPDropped, t.DroppedSTUN, "stun")
		counter(dRTPDropped, t.DroppedDTLS, "dtls")
		dt := s.DTLS
		counter(dDTLS, dt.Keyed, "keyed")
		counter(dDTLS, dt.Timeouts, "timeout")
		counter(dDTLS, dt.FingerprintMismatches, "fingerprint")
		counter(dDTLS, dt.ICEFailed, "ice_failed")
		counter(dDTLS, dt.Failed, "failed")
		counter(dDTLS, dt.ConsentLost, "consent_lost")
		ch <- prometheus.MustNewConstMetric(dDTLSSeconds, prometheus.CounterValue, dt.HandshakeSeconds)
		counter(dRTPSilence, t.Silence)
		counter(dRTCP, t.RTCPSent, "sent")
		counter(dRTCP, t.RTCPReceived, "received")
		counter(dDTMF, t.DTMFEvents)
		counter(dPlayout, t.Concealed, "concealed")
		counter(dPlayout, t.Expanded, "expanded")
		counter(dPlayout, t.Compressed, "compressed")
		counter(dPlayed, t.Played)
		ch <- pacerHistogram(s.Pacer)
	}
	if c.src.Recording != nil {
		s := c.src.Recording()
		gauge(dRecActive, float64(s.Active))
		counter(dRecCompleted, uint64(s.Completed))
		counter(dRecFailed, uint64(s.Failed))
		counter(dRecDropped, uint64(s.DroppedChunks))
		counter(dRecBytes, uint64(s.BytesWritten))
	}
	if c.src.Permissions != nil {
		s := c.src.Permissions()
		gauge(dPermUp, b2f(s.Up), s.Backend)
		counter(dPermErrors, s.Errors)
		counter(dPermRefused, s.RefusedUnavailable)
		counter(dPermCached, s.AdmittedFromCache)
		counter(dPermLearned, s.LearnedNoPermission)
		counter(dPermLearnedCap, s.LearnedDailyCap)
		counter(dPermStale, s.StaleReplies, "stale")
		counter(dPermStale, s.ReplayedMessages, "replayed")
		counter(dPermStale, s.StaleAccountUpdates, "stale_account_update")
		counter(dPermRestrict, s.RestrictedRefusals)
		gauge(dPermPending, float64(s.PendingOutcomes))
	}
	if c.src.Agents != nil {
		s := c.src.Agents()
		gauge(dAgentsShared, b2f(s.Shared))
		gauge(dAgentsElsewhere, float64(s.Agents))
		gauge(dAgentsBusyElse, float64(s.Busy))
		gauge(dAgentsRingElse, float64(s.Ringing))
		counter(dAgentsWriteErr, s.WriteErrors)
	}
	if c.src.MetaWebhook != nil {
		st := c.src.MetaWebhook()
		counter(dMetaSettings, st.SettingsUpdates)
		counter(dMetaMismatch, st.Mismatches)
		gauge(dMetaMismatched, float64(st.Mismatched))
		counter(dMetaRefusals, st.Refusals)
		counter(dMetaCalls, st.CallReports)
		for _, f := range []string{"call_permission_reply", "account_update", "account_settings_update", "calls"} {
			counter(dMetaTooOld, st.TooOld[f], f)
		}
	}
	if c.src.Endpoints != nil {
		for _, e := range c.src.Endpoints() {
			gauge(dEndpointUp, b2f(e.Up), e.Endpoint)
			counter(dProbeFailures, e.Failures, e.Endpoint)
		}
	}
	if c.src.Reloads != nil {
		r := c.src.Reloads()
		counter(dReloads, r.Applied, "applied")
		counter(dReloads, r.Refused, "refused")
		gauge(dReloadOK, b2f(r.LastOK))
		gauge(dReloadAt, float64(r.LastSuccess.UnixNano())/1e9)
	}
	if c.src.WebhookUnknownNumber != nil {
		counter(dWebhookUnknown, c.src.WebhookUnknownNumber())
	}
	if c.src.Prompts != nil {
		s := c.src.Prompts()
		counter(dPromptCache, s.Hits, "memory")
		counter(dPromptCache, s.DiskHits, "disk")
		counter(dPromptCache, s.Misses, "miss")
		// The library's counters are read one by one while fetches go
		// on: a part may be read after its whole moved on.
		minus := func(a, b uint64) uint64 { return a - min(a, b) }
		counter(dPromptRenders, minus(s.Renders, s.RenderErrors), "ok")
		counter(dPromptRenders, s.RenderErrors, "failed")
		counter(dPromptDownloads, minus(s.Downloads, s.DownloadErrors), "ok")
		counter(dPromptDownloads, min(s.DownloadsRefused, s.DownloadErrors), "refused")
		counter(dPromptDownloads, minus(s.DownloadErrors, s.DownloadsRefused), "failed")
	}
	if c.src.Events != nil {
		s := c.src.Events()
		gauge(dEvQueue, float64(s.QueueLength))
		gauge(dEvQueueCap, float64(s.QueueCapacity))
		counter(dEvDropped, s.Dropped)
		counter(dEvWriteErrors, s.WriteErrors)
		counter(dCDRs, s.CDRsWritten)
		counter(dEvWritten, s.EventsWritten)
		for _, sub := range s.Subscribers {
			counter(dDeliveries, sub.Delivered, sub.Name, "delivered")
			counter(dDeliveries, sub.Failed, sub.Name, "failed")
			counter(dDeliveries, sub.DeadLettered, sub.Name, "dead")
			counter(dDeliveries, sub.BacklogFull, sub.Name, "backlog_full")
			gauge(dInFlight, float64(sub.InFlight), sub.Name)
		}
	}
}

// pacerHistogram turns the pacer's per-bucket counts into Prometheus'
// cumulative ones.
func pacerHistogram(s media.PacerStats) prometheus.Metric {
	buckets := make(map[float64]uint64, len(media.PacerLatenessBuckets))
	var cum uint64
	for i, le := range media.PacerLatenessBuckets {
		cum += s.Counts[i]
		buckets[le] = cum
	}
	return prometheus.MustNewConstHistogram(dPacerLate, s.Runs(), s.Late.Seconds(), buckets)
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
