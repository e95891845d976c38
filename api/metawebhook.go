package api

import (
	"context"
	"errors"
	"time"

	"github.com/wagate/wagate/events"
)

// MetaCallStore keeps Meta's reports of calls (the calls webhook) beside
// the CDRs (*events.Sink).
type MetaCallStore interface {
	// RecordMetaCall stores a report durably; events.ErrNoCDRStore means
	// there is nowhere to keep it (acknowledged, not retried).
	RecordMetaCall(ctx context.Context, m events.MetaCall) error
}

// metaCallTimeout bounds one report's write, inside the 10 s the server
// gives a request.
const metaCallTimeout = 5 * time.Second

// applySettings hands account_settings_update changes to the handler
// wagate installed; false when it could not keep one (worth a retry).
func (h *webhook) applySettings(updates []MetaSettingsUpdate) bool {
	ok := true
	for _, u := range updates {
		h.settingsUpdates.Add(1)
		if h.onSettings == nil {
			h.log.Error("webhook: Meta changed a number's calling settings; nothing in wagate follows them",
				"phone_number_id", u.PhoneNumberID, "srtp_key_exchange", u.SRTPKeyExchange, "sip_status", u.SIPStatus)
			continue
		}
		if err := h.onSettings(u); err != nil {
			h.log.Error("webhook: calling settings not kept; asking Meta to deliver again", "phone_number_id", u.PhoneNumberID, "error", err)
			ok = false
		}
	}
	return ok
}

// applyCalls stores Meta's reports of calls; false when the store failed
// (worth a retry: the CDR would lack Meta's view).
func (h *webhook) applyCalls(ctx context.Context, calls []events.MetaCall) bool {
	ok := true
	for _, m := range calls {
		h.callReports.Add(1)
		if h.metaCalls == nil {
			h.log.Debug("webhook: Meta call report not kept: CDRs are off", "wa_call_id", m.WACallID, "event", m.Event)
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, metaCallTimeout)
		err := h.metaCalls.RecordMetaCall(cctx, m)
		cancel()
		switch {
		case err == nil:
			h.log.Info("webhook: Meta call report kept", "wa_call_id", m.WACallID, "event", m.Event, "status", m.Status,
				"phone_number_id", m.PhoneNumberID)
		case errors.Is(err, events.ErrNoCDRStore):
			h.log.Debug("webhook: Meta call report not kept: CDRs are off", "wa_call_id", m.WACallID, "event", m.Event)
		default:
			h.log.Error("webhook: Meta call report not persisted; asking Meta to deliver again", "wa_call_id", m.WACallID, "error", err)
			ok = false
		}
	}
	return ok
}
