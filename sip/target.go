package sip

import (
	"github.com/emiago/sipgo/sip"
)

// TransferHeaders are the X-WABA headers of a new agent leg of an
// answered call (a transfer target, a fallback route), so that the new
// agent learns what the first one did: on a UIC the same headers; on a
// BIC, whose agent was the dialer, the business number, the WhatsApp
// user, the campaign and callback data, direction BIC.
func (d *Decision) TransferHeaders(session string) []sip.Header {
	if d.Dir == UIC {
		return d.UIC.Headers(d.Number, session)
	}
	hs := make([]sip.Header, 0, 8)
	add := func(name, value string) {
		if value != "" {
			hs = append(hs, sip.NewHeader(name, value))
		}
	}
	add(hdrWABADirection, string(BIC))
	add(hdrWABAPhoneNumberID, d.Number.PhoneNumberID)
	add(hdrWABABusinessNumber, d.Number.Number)
	if isE164(d.User) {
		add(hdrWABAUser, d.User)
	} else {
		add(hdrWABAUserID, d.User)
	}
	if d.BIC != nil {
		add(hdrWABACampaignID, d.BIC.CampaignID)
		add(hdrWABACallbackData, d.BIC.CallbackData)
	}
	add(hdrWABASession, session)
	return hs
}
