package configs

import (
	"fmt"
	"path"
	"strings"
)

// Transfer is what an endpoint may transfer its calls to (REFER). Only
// the targets listed are dialled: a transfer is a call wagate places on
// the endpoint's word, so an open list would let anyone who can send it a
// REFER make calls at the business's expense.
type Transfer struct {
	// Allow lists the targets: extensions of pbx endpoints.
	Allow []TransferRule `yaml:"allow"`
}

// TransferRule allows transfers to users of one pbx endpoint, or to one
// hunt list.
type TransferRule struct {
	// Endpoint names a pbx endpoint.
	Endpoint string `yaml:"endpoint"`
	// Hunt names a hunt list (instead of Endpoint and Users): a REFER to
	// sip:<hunt list>@<wagate's host> rings it.
	Hunt string `yaml:"hunt"`
	// Users are the Request-URI users allowed there, as patterns: '*'
	// matches any run of characters, '?' one character, [0-9] a class
	// ("1???" is every four-digit extension starting with 1). Empty:
	// any user.
	Users []string `yaml:"users"`
}

// Allows reports whether t allows a transfer to user at the endpoint
// named ep.
func (t *Transfer) Allows(ep, user string) bool {
	if t == nil || user == "" {
		return false
	}
	for _, r := range t.Allow {
		if r.Hunt != "" || r.Endpoint != ep {
			continue
		}
		if len(r.Users) == 0 {
			return true
		}
		for _, pat := range r.Users {
			if ok, err := path.Match(pat, user); err == nil && ok {
				return true
			}
		}
	}
	return false
}

// AllowsHunt reports whether t allows a transfer to the hunt list named
// name.
func (t *Transfer) AllowsHunt(name string) bool {
	if t == nil || name == "" {
		return false
	}
	for _, r := range t.Allow {
		if r.Hunt == name {
			return true
		}
	}
	return false
}

// callControl checks transfer rules, fallback routes and music on hold.
func (v validator) callControl() {
	for i := range v.c.Endpoints {
		e := &v.c.Endpoints[i]
		if e.Transfer == nil {
			continue
		}
		p := fmt.Sprintf("endpoints[%d].transfer", i)
		if e.Kind != KindPBX && e.Kind != KindDialer {
			v.add(p, "only pbx and dialer endpoints transfer calls (Meta does not send REFER); remove the key")
			continue
		}
		if len(e.Transfer.Allow) == 0 {
			v.add(p+".allow", "list at least one target ({endpoint: <pbx>, users: [...]}); remove transfer to refuse every REFER")
		}
		for j, r := range e.Transfer.Allow {
			rp := fmt.Sprintf("%s.allow[%d]", p, j)
			if r.Hunt != "" {
				switch {
				case r.Endpoint != "" || len(r.Users) > 0:
					v.add(rp+".hunt", "give either hunt or endpoint (and users), not both")
				case v.huntList(r.Hunt) == nil:
					v.add(rp+".hunt", "%q is not a hunt list under hunt_lists", r.Hunt)
				}
				continue
			}
			switch t := v.endpoint(r.Endpoint); {
			case r.Endpoint == "":
				v.add(rp+".endpoint", "name the pbx endpoint whose extensions calls may be transferred to (or hunt, naming a hunt list)")
			case t == nil:
				v.add(rp+".endpoint", "%q is not a defined endpoint", r.Endpoint)
			case t.Kind != KindPBX:
				v.add(rp+".endpoint", "endpoint %q has kind %s; calls are transferred only to pbx endpoints", t.Name, t.Kind)
			}
			if v.t.has(rp+".users") && len(r.Users) == 0 {
				v.add(rp+".users", "the list is empty; remove the key to allow every user of the endpoint")
			}
			for k, u := range r.Users {
				up := fmt.Sprintf("%s.users[%d]", rp, k)
				if _, err := path.Match(u, ""); err != nil || u == "" {
					v.add(up, "%q is not a pattern: use digits and letters, '*' for any run, '?' for one character, [0-9] for a class", u)
					continue
				}
				if strings.ContainsAny(u, "@:/") || hasControl(u) || strings.ContainsRune(u, ' ') {
					v.add(up, "%q must be only a user part (e.g. \"1*\"), without \"sip:\", \"@host\", spaces or control characters", u)
				}
			}
		}
	}
	for i := range v.c.Numbers {
		n := &v.c.Numbers[i]
		if n.Fallback != nil {
			v.routeTo(fmt.Sprintf("numbers[%d].fallback", i), *n.Fallback, "the fallback route")
		}
	}
	if f := v.c.Media.MusicOnHold; f != "" {
		v.readable("media.music_on_hold", f)
	} else if v.t.has("media.music_on_hold") {
		v.add("media.music_on_hold", "must name a WAV file; remove the key to play comfort noise")
	}
}
