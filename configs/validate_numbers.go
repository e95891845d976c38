// Validation of the numbers: E.164 form, routes, hunt lists, hours and
// blocklists.

package configs

import (
	"fmt"
	"regexp"
	"strings"
)

var (
	e164Number = regexp.MustCompile(`^\+[0-9]{8,15}$`)
	digitsOnly = regexp.MustCompile(`^[0-9]+$`)
)

func (v validator) numbers() {
	if len(v.c.Numbers) > 0 && !v.hasKind(KindWhatsApp) {
		v.add("numbers", "business numbers are configured but no endpoint has kind whatsapp to carry their calls")
	}
	byNumber := map[string]int{}
	byID := map[string]int{}
	for i := range v.c.Numbers {
		n := &v.c.Numbers[i]
		p := fmt.Sprintf("numbers[%d]", i)

		switch {
		case n.Number == "":
			v.add(p+".number", "every business number needs its number in +E.164 form")
		case !e164Number.MatchString(n.Number):
			v.add(p+".number", "%q is not +E.164 (a '+' followed by 8 to 15 digits)", n.Number)
		default:
			if first, dup := byNumber[n.Number]; dup {
				v.add(p+".number", "%s is already configured at numbers[%d]", n.Number, first)
			} else {
				byNumber[n.Number] = i
			}
		}

		switch {
		case n.PhoneNumberID == "":
			v.add(p+".phone_number_id", "every business number needs Meta's phone_number_id")
		case !digitsOnly.MatchString(n.PhoneNumberID):
			v.add(p+".phone_number_id", "%q must be digits only", n.PhoneNumberID)
		default:
			if first, dup := byID[n.PhoneNumberID]; dup {
				v.add(p+".phone_number_id", "%s is already used by numbers[%d]", n.PhoneNumberID, first)
			} else {
				byID[n.PhoneNumberID] = i
			}
		}

		switch {
		case !v.t.has(p + ".route"):
			v.add(p+".route", "every business number needs a route: the pbx endpoint and user (or the hunt list) that take its user-initiated calls, or a callflow")
		default:
			v.anyRoute(p+".route", n.Route, "the route")
		}
		if n.Hours != nil {
			v.hours(p+".hours", n.Hours)
		}
		if n.Blocklist != nil {
			v.blocklist(p+".blocklist", n.Blocklist)
		}

		v.secret(p+".digest", n.Digest)

		switch me := strings.ToLower(n.MediaEncryption); me {
		case "", MediaEncryptionDTLS, MediaEncryptionSDES, MediaEncryptionNone:
			n.MediaEncryption = me
		default:
			v.add(p+".media_encryption", "%q is not a media encryption; use dtls, sdes or none (or remove the key to use the whatsapp endpoint's)", n.MediaEncryption)
		}

		for j, name := range n.Dialers {
			pp := fmt.Sprintf("%s.dialers[%d]", p, j)
			switch e := v.endpoint(name); {
			case e == nil:
				v.add(pp, "%q is not a defined endpoint", name)
			case e.Kind != KindDialer && e.Kind != KindPBX:
				v.add(pp, "endpoint %q has kind %s; only dialer and pbx endpoints may originate calls", e.Name, e.Kind)
			}
		}
	}
}
