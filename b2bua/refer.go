package b2bua

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// referTo is a REFER's Refer-To, checked.
type referTo struct {
	uri sip.Uri
	// replaces is the dialog an attended transfer names (nil: blind).
	replaces *replaces
}

// replaces is a Replaces header (RFC 3891) carried in a Refer-To URI.
type replaces struct {
	callID, toTag, fromTag string
	earlyOnly              bool
}

// maxReferTo bounds the Refer-To value read.
const maxReferTo = 2048

// parseReferTo reads the one Refer-To header of a REFER (RFC 3515: exactly
// one). Errors say what is wrong, for the 400's Warning.
func parseReferTo(req *sip.Request) (*referTo, error) {
	var values []string
	for _, name := range []string{"Refer-To", "r"} {
		for _, h := range req.GetHeaders(name) {
			values = append(values, h.Value())
		}
	}
	switch len(values) {
	case 0:
		return nil, errors.New("no Refer-To header")
	case 1:
	default:
		return nil, fmt.Errorf("%d Refer-To headers; want one", len(values))
	}
	return parseReferToValue(values[0])
}

// parseReferToValue checks a Refer-To value: a sip or sips URI with a
// host; a user of the characters an extension has unless it carries
// Replaces (then the target is wagate itself); a Replaces that parses.
func parseReferToValue(v string) (*referTo, error) {
	if len(v) > maxReferTo {
		return nil, fmt.Errorf("Refer-To of %d bytes; at most %d", len(v), maxReferTo)
	}
	if strings.ContainsFunc(v, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		return nil, errors.New("Refer-To has control characters")
	}
	var rt referTo
	params := sip.NewParams()
	if _, err := sip.ParseAddressValue(v, &rt.uri, &params); err != nil {
		return nil, fmt.Errorf("Refer-To does not parse: %v", err)
	}
	u := &rt.uri
	switch strings.ToLower(u.Scheme) {
	case "sip", "sips":
	default:
		return nil, fmt.Errorf("Refer-To scheme %q; want sip or sips", u.Scheme)
	}
	if u.Host == "" || !validURIHost(u.Host) {
		return nil, fmt.Errorf("Refer-To host %q is not a host", u.Host)
	}
	if u.Headers != nil {
		for _, name := range []string{"Replaces", "replaces"} {
			raw, ok := u.Headers.Get(name)
			if !ok {
				continue
			}
			dec, err := url.PathUnescape(raw)
			if err != nil {
				return nil, fmt.Errorf("Refer-To Replaces is not percent-encoded text: %v", err)
			}
			if rt.replaces, err = parseReplaces(dec); err != nil {
				return nil, err
			}
			break
		}
	}
	if rt.replaces == nil && !validExtension(u.User) {
		return nil, fmt.Errorf("Refer-To user %q is not an extension (1–64 of A–Z a–z 0–9 + * # . _ ~ -)", u.User)
	}
	return &rt, nil
}

// parseReplaces reads "call-id;to-tag=…;from-tag=…[;early-only]".
func parseReplaces(v string) (*replaces, error) {
	parts := strings.Split(v, ";")
	r := &replaces{callID: strings.TrimSpace(parts[0])}
	if !validWord(r.callID) {
		return nil, fmt.Errorf("Replaces Call-ID %q is malformed", r.callID)
	}
	for _, p := range parts[1:] {
		k, val, _ := strings.Cut(strings.TrimSpace(p), "=")
		switch strings.ToLower(k) {
		case "to-tag":
			r.toTag = val
		case "from-tag":
			r.fromTag = val
		case "early-only":
			r.earlyOnly = true
		}
	}
	if !validWord(r.toTag) || !validWord(r.fromTag) {
		return nil, errors.New("Replaces needs a to-tag and a from-tag")
	}
	return r, nil
}

// validExtension: what a transfer may dial as a user.
func validExtension(u string) bool {
	if u == "" || len(u) > 64 {
		return false
	}
	for i := 0; i < len(u); i++ {
		switch c := u[i]; {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("+*#._~-", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// validWord is RFC 3261's word (Call-IDs and tags), 1–256 characters.
func validWord(w string) bool {
	if w == "" || len(w) > 256 {
		return false
	}
	for i := 0; i < len(w); i++ {
		switch c := w[i]; {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("-.!%*_+`'~()<>:\\\"/[]?{}@", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// validURIHost: a host name or an IP address (IPv6 in brackets or not).
func validURIHost(h string) bool {
	if len(h) > 255 {
		return false
	}
	for i := 0; i < len(h); i++ {
		switch c := h[i]; {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte(".-:[]", c) >= 0:
		default:
			return false
		}
	}
	return true
}
