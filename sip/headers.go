package sip

import (
	"strings"
	"time"
	"unicode/utf8"

	"github.com/emiago/sipgo/sip"
	"github.com/wagate/wagate/configs"
)

// The X-WABA header contract (DESIGN.md §4, docs/sip.md "X-WABA headers").
//
// wagate builds every B-leg request from scratch, so no header of one leg
// reaches the other unless this file writes it: the raw x-wa-meta-* headers
// of a UIC never reach the PBX, and nothing X-WABA (or otherwise internal)
// reaches Meta on a BIC. Header names are matched case-insensitively and
// after the parser has unfolded continuation lines; a header given twice
// with different values is refused (BIC) or dropped (UIC), never resolved
// by picking one.

// Header names wagate reads and writes.
const (
	hdrWABACallID         = "X-WABA-Call-ID"
	hdrWABADirection      = "X-WABA-Direction"
	hdrWABAPhoneNumberID  = "X-WABA-Phone-Number-ID"
	hdrWABABusinessNumber = "X-WABA-Business-Number"
	hdrWABAUser           = "X-WABA-User"
	hdrWABAUserID         = "X-WABA-User-ID"
	hdrWABAPayload        = "X-WABA-Payload"
	hdrWABAPayloadSource  = "X-WABA-Payload-Source"
	hdrWABASession        = "X-WABA-Session"
	hdrWABACallbackData   = "X-WABA-Callback-Data"
	hdrWABACampaignID     = "X-WABA-Campaign-ID"
	hdrWABAError          = "X-WABA-Error"
	hdrNodeUnavailable    = "X-Wagate-Node-Unavailable"

	hdrMetaWACID         = "x-wa-meta-wacid"
	hdrMetaUserID        = "x-wa-meta-user-id"
	hdrMetaPhoneNumberID = "x-wa-meta-phone-number-id"
	hdrMetaCTAPayload    = "x-wa-meta-cta-payload"
	hdrMetaDeeplink      = "x-wa-meta-deeplink-payload"
)

// Length limits, in characters (runes) of the value as received.
const (
	maxPhoneNumberID = 32
	maxCallbackData  = 512
	maxCampaignID    = 64
	maxPayload       = 512
	maxWACallID      = 256
	// maxUserID is a business-scoped user id's: as long as the BSUIDs a
	// BIC may call and the permission cache keys (maxBSUIDLen).
	maxUserID = maxBSUIDLen
)

// headerValue returns the value of the header called name (any case). A
// header given more than once must carry the same value each time; an
// empty value is malformed. present is false when the header is absent.
func headerValue(m interface{ Headers() []sip.Header }, name string) (value string, present, ok bool) {
	for _, h := range m.Headers() {
		if !strings.EqualFold(strings.TrimSpace(h.Name()), name) {
			continue
		}
		v := h.Value()
		if v == "" || (present && v != value) {
			return "", true, false
		}
		value, present = v, true
	}
	return value, present, true
}

// ---------------------------------------------------------------------------
// BIC: what the dialer must send

// BICInfo is what a valid BIC INVITE asks for.
type BICInfo struct {
	Number *configs.Number
	// Callee is the WhatsApp user, +E.164.
	Callee string
	// CallbackData and CampaignID are the optional X-WABA values, checked.
	CallbackData, CampaignID string
}

// checkBIC validates a business-initiated INVITE from endpoint ep against
// the X-WABA contract and the configuration. It reads the Request-URI, the
// From user and the X-WABA headers only.
func checkBIC(cfg *configs.Config, ep *configs.Endpoint, req *sip.Request) (*BICInfo, *Rejection) {
	callee, ok := normalizeE164(req.Recipient.User)
	if !ok {
		// Meta takes business-scoped user ids as callees too.
		if callee, ok = normalizeBSUID(req.Recipient.User); !ok {
			return nil, &Rejection{Code: 484, Reason: "Address Incomplete", Log: "callee is neither an E.164 number nor a BSUID"}
		}
	}
	info := &BICInfo{Callee: callee}

	// Each business header that is present names a number; the first in
	// DESIGN's order decides, the others must agree with it.
	type claim struct {
		header string
		num    *configs.Number
		digits string // for the agreement check: the number's digits
		id     string // or the phone-number-id
	}
	var claims []claim
	if v, present, ok := headerValue(req, hdrWABAPhoneNumberID); present {
		if !ok || !isPhoneNumberID(v) {
			return nil, malformed(hdrWABAPhoneNumberID)
		}
		claims = append(claims, claim{header: hdrWABAPhoneNumberID, num: cfg.NumberByPhoneNumberID(v), id: v})
	}
	if v, present, ok := headerValue(req, hdrWABABusinessNumber); present {
		if !ok || !isE164(v) {
			return nil, malformed(hdrWABABusinessNumber)
		}
		claims = append(claims, claim{header: hdrWABABusinessNumber, num: cfg.NumberByE164(v), digits: strings.TrimPrefix(v, "+")})
	}
	fromUser := ""
	if f := req.From(); f != nil {
		fromUser = f.Address.User
	}
	if len(claims) == 0 {
		claims = append(claims, claim{header: "From", num: cfg.NumberByE164(fromUser)})
	} else if isE164(fromUser) {
		// With X-WABA headers the From user is often the agent's or the
		// campaign's caller id; it only conflicts when it names another
		// of our business numbers.
		if n := cfg.NumberByE164(fromUser); n != nil {
			claims = append(claims, claim{header: "From", num: n, digits: strings.TrimPrefix(fromUser, "+")})
		}
	}
	first := claims[0]
	if first.num == nil {
		return nil, notAuthorized("business number in " + first.header + " is not configured")
	}
	for _, c := range claims[1:] {
		if c.num != first.num {
			return nil, &Rejection{Code: 400, Reason: "Bad Request",
				Warning: c.header + " does not name the same business number as " + first.header,
				Log:     "business headers disagree: " + c.header + " vs " + first.header}
		}
	}
	info.Number = first.num
	if !allowedDialer(info.Number, ep.Name) {
		return nil, notAuthorized("endpoint is not a dialer of " + info.Number.Number)
	}

	if v, present, ok := headerValue(req, hdrWABACallbackData); present {
		if !ok || !isCallbackData(v) {
			return nil, malformed(hdrWABACallbackData)
		}
		info.CallbackData = v
	}
	if v, present, ok := headerValue(req, hdrWABACampaignID); present {
		if !ok || !isCampaignID(v) {
			return nil, malformed(hdrWABACampaignID)
		}
		info.CampaignID = v
	}
	return info, nil
}

func malformed(header string) *Rejection {
	return &Rejection{Code: 400, Reason: "Bad Request", Warning: "malformed " + header, Log: "malformed " + header}
}

func notAuthorized(why string) *Rejection {
	return &Rejection{Code: 403, Reason: "Business Number Not Authorized", Log: why}
}

// isPhoneNumberID: Meta's phone-number-id, 1–32 ASCII digits.
func isPhoneNumberID(s string) bool {
	if s == "" || len(s) > maxPhoneNumberID {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// isCallbackData: up to 512 characters of printable UTF-8 (spaces
// allowed; control characters, DEL and C1 controls not).
func isCallbackData(s string) bool {
	return printableUTF8(s, maxCallbackData)
}

// isCampaignID: 1–64 characters of [A-Za-z0-9._~:/@+=-].
func isCampaignID(s string) bool {
	if s == "" || len(s) > maxCampaignID {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("._~:/@+=-", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// printableUTF8 reports whether s is 1–max runes of valid UTF-8 without
// control characters.
func printableUTF8(s string, max int) bool {
	if s == "" || !utf8.ValidString(s) || utf8.RuneCountInString(s) > max {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f) || r == 0x2028 || r == 0x2029 || r == 0xfeff {
			return false
		}
	}
	return true
}

// ---------------------------------------------------------------------------
// UIC: what the PBX is told

// UICInfo is what wagate learned from Meta's INVITE, checked, for the
// X-WABA headers of the B-leg.
type UICInfo struct {
	WACallID      string
	User          string // caller's +E.164, when revealed
	UserID        string // business-scoped user id
	Payload       string // raw, encoded when written
	PayloadSource string // "cta" or "deeplink"
	// Dropped names x-wa-meta headers that were malformed and not used.
	Dropped []string
}

// collectUIC reads Meta's headers of a user-initiated INVITE to business
// number num. A malformed optional value is dropped (and logged by the
// caller), never passed on and never a reason to refuse a customer's call.
func collectUIC(req *sip.Request, num *configs.Number) UICInfo {
	var u UICInfo
	get := func(name string, valid func(string) bool) string {
		v, present, ok := headerValue(req, name)
		if !present {
			return ""
		}
		if !ok || !valid(v) {
			u.Dropped = append(u.Dropped, name)
			return ""
		}
		return v
	}

	u.WACallID = get(hdrMetaWACID, isWACallID)
	if u.WACallID == "" {
		u.WACallID = wacidFromCallID(callIDOf(req))
	}

	if f := req.From(); f != nil {
		if user, ok := normalizeE164(f.Address.User); ok {
			u.User = user
		}
	}
	u.UserID = get(hdrMetaUserID, isUserID)
	if u.UserID == "" && u.User == "" {
		// The BSUID replaces the number in From when the user hides it.
		if f := req.From(); f != nil && isUserID(f.Address.User) {
			u.UserID = f.Address.User
		}
	}

	if id := get(hdrMetaPhoneNumberID, isPhoneNumberID); id != "" && id != num.PhoneNumberID {
		// The Request-URI decided the number; a disagreeing header is
		// reported, not trusted.
		u.Dropped = append(u.Dropped, hdrMetaPhoneNumberID+" (names another number)")
	}

	cta := get(hdrMetaCTAPayload, isPayload)
	deeplink := get(hdrMetaDeeplink, isPayload)
	switch {
	case cta != "":
		u.Payload, u.PayloadSource = cta, "cta"
		if deeplink != "" {
			u.Dropped = append(u.Dropped, hdrMetaDeeplink+" (a cta payload is present)")
		}
	case deeplink != "":
		u.Payload, u.PayloadSource = deeplink, "deeplink"
	}
	return u
}

// Headers returns the X-WABA Headers of the B-leg INVITE of a UIC.
func (u UICInfo) Headers(num *configs.Number, session string) []sip.Header {
	hs := make([]sip.Header, 0, 9)
	add := func(name, value string) {
		if value != "" {
			hs = append(hs, sip.NewHeader(name, value))
		}
	}
	add(hdrWABACallID, u.WACallID)
	add(hdrWABADirection, string(UIC))
	add(hdrWABAPhoneNumberID, num.PhoneNumberID)
	add(hdrWABABusinessNumber, num.Number)
	add(hdrWABAUser, u.User)
	add(hdrWABAUserID, u.UserID)
	if u.Payload != "" {
		add(hdrWABAPayload, percentEncode(u.Payload))
		add(hdrWABAPayloadSource, u.PayloadSource)
	}
	add(hdrWABASession, session)
	return hs
}

// isWACallID: a WhatsApp call id, "wacid." and base64 text as Meta writes
// it; 1–256 characters of [A-Za-z0-9._~+/=:-].
func isWACallID(s string) bool {
	if s == "" || len(s) > maxWACallID {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("._~+/=:-", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// wacidFromCallID derives the WhatsApp call id from Meta's Call-ID, which
// embeds it ("outgoing:wacid.HBgL…"): the text from "wacid." to the end
// or to an '@'. A Call-ID without one is used whole when it is a safe
// value; otherwise there is no call id to give.
func wacidFromCallID(cid string) string {
	if i := strings.Index(cid, "wacid."); i >= 0 {
		id := cid[i:]
		if at := strings.IndexByte(id, '@'); at >= 0 {
			id = id[:at]
		}
		if isWACallID(id) {
			return id
		}
		return ""
	}
	if isWACallID(strings.ReplaceAll(cid, "@", ":")) {
		return cid
	}
	return ""
}

// isUserID: a business-scoped user id, 1–256 characters of [A-Za-z0-9._-].
func isUserID(s string) bool {
	if s == "" || len(s) > maxUserID {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '.' || c == '_' || c == '-':
		default:
			return false
		}
	}
	return true
}

// isPayload: a CTA or deep-link payload, up to 512 characters of printable
// UTF-8.
func isPayload(s string) bool { return printableUTF8(s, maxPayload) }

// percentEncode writes s with every byte outside RFC 3986's unreserved set
// as %XX, so that any payload is a safe header value.
func percentEncode(s string) string {
	const hexDigits = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(s) * 3)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9',
			c == '-', c == '.', c == '_', c == '~':
			b.WriteByte(c)
		default:
			b.WriteByte('%')
			b.WriteByte(hexDigits[c>>4])
			b.WriteByte(hexDigits[c&15])
		}
	}
	return b.String()
}

// ---------------------------------------------------------------------------
// Rejections

// ReasonHeader is the Reason header of a response wagate generates itself
// (RFC 3326).
func ReasonHeader(code int, text string) sip.Header {
	return sip.NewHeader("Reason", "SIP;cause="+itoa(code)+";text=\""+strings.ReplaceAll(text, "\"", "'")+"\"")
}

// retryAfterSeconds rounds d up to whole seconds, at least 1.
func retryAfterSeconds(d time.Duration) int {
	s := int((d + time.Second - 1) / time.Second)
	return max(s, 1)
}

// maxBSUIDLen is the longest business-scoped user id Meta issues.
const maxBSUIDLen = 256

// normalizeBSUID accepts a business-scoped user id, "CC.id" (a two-letter
// country code, a dot, then letters, digits, '_' and '-'; at most 256
// characters in all), and returns it with the country code upper-cased.
func normalizeBSUID(s string) (string, bool) {
	if len(s) < 4 || len(s) > maxBSUIDLen || !isASCIILetter(s[0]) || !isASCIILetter(s[1]) || s[2] != '.' {
		return "", false
	}
	for i := 3; i < len(s); i++ {
		c := s[i]
		if !isASCIILetter(c) && (c < '0' || c > '9') && c != '_' && c != '-' {
			return "", false
		}
	}
	return strings.ToUpper(s[:2]) + s[2:], true
}

func isASCIILetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
