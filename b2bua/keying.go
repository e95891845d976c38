package b2bua

import (
	"log/slog"

	sipedge "github.com/wagate/wagate/sip"
)

// MetaKeying knows the SRTP keying Meta last reported for each business
// number (account_settings_update), for business-initiated calls.
type MetaKeying interface {
	// Mismatch reports Meta's keying of the number ("dtls", "sdes") and
	// whether it differs from configured; false when Meta reported none.
	Mismatch(phoneNumberID, configured string) (reported string, mismatch bool)
	// Refused counts a call refused for a mismatch.
	Refused(phoneNumberID string)
}

type keyingBox struct{ k MetaKeying }

// SetMetaKeying installs what Meta reported of numbers' keying (nil: no
// check). It may be called while the server runs.
func (s *Engine) SetMetaKeying(k MetaKeying) {
	if k == nil {
		s.keying.Store(nil)
		return
	}
	s.keying.Store(&keyingBox{k: k})
}

// checkKeying refuses a business-initiated call whose media_encryption
// toward Meta differs from the keying Meta last reported for the number,
// when the whatsapp endpoint says refuse_keying_mismatch: the call would
// connect and then carry no audio. Without that setting the mismatch is
// only logged, since Meta's report may be older than a change the
// business made since.
func (s *Engine) checkKeying(dec *sipedge.Decision, log *slog.Logger) *sipedge.Rejection {
	b := s.keying.Load()
	if b == nil || dec.BEP == nil || dec.Number == nil {
		return nil
	}
	configured := legConfig(dec.BEP, dec.Number).Encryption
	reported, mismatch := b.k.Mismatch(dec.Number.PhoneNumberID, configured)
	if !mismatch {
		return nil
	}
	if !dec.BEP.RefuseKeyingMismatch {
		log.Warn("business-initiated call placed although Meta reported another keying for the number",
			"phone_number_id", dec.Number.PhoneNumberID, "meta_keying", reported, "media_encryption", configured, "endpoint", dec.BEP.Name)
		return nil
	}
	b.k.Refused(dec.Number.PhoneNumberID)
	return &sipedge.Rejection{Code: 488, Reason: "Not Acceptable Here",
		Warning: "Meta keys this number's media with " + reported + "; wagate is configured for " + configured,
		Log:     "keying mismatch with Meta (refuse_keying_mismatch)"}
}
