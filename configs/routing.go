package configs

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	// A host without the system's zoneinfo still knows every IANA zone a
	// number's business hours may name.
	_ "time/tzdata"
)

// Route is where a business number's user-initiated calls go: one PBX
// extension (Endpoint and User), a hunt list (Hunt), or a call flow run
// by wagate itself (CallFlow), or a queue for a hunt list's agents
// (Queue); exactly one of the four.
type Route struct {
	// Endpoint names a pbx endpoint.
	Endpoint string `yaml:"endpoint"`
	// User is the Request-URI user at that endpoint (an extension).
	User string `yaml:"user"`
	// CallFlow answers the call in wagate and runs the business's call
	// flows (an IVR), falling back to an extension.
	CallFlow *CallFlow `yaml:"callflow"`
	// Hunt names a hunt list (instead of Endpoint and User).
	Hunt string `yaml:"hunt"`
	// Queue answers the call in wagate and keeps it waiting, with music,
	// for a free agent of a hunt list.
	Queue *QueueRoute `yaml:"queue"`
}

// Hunt strategies.
const (
	// HuntSequential rings the targets one after the other, in order.
	HuntSequential = "sequential"
	// HuntParallel rings every target at once; the first answer wins.
	HuntParallel = "parallel"
	// HuntRoundRobin rings them one after the other, each call starting
	// one target further down the list than the last.
	HuntRoundRobin = "round_robin"
	// HuntLeastRecent rings them one after the other, the agent whose
	// last call ended longest ago first.
	HuntLeastRecent = "least_recent"
)

// What a hunt does when a target declines (6xx).
const (
	DeclineStop = "stop" // the hunt ends; A gets the 6xx
	DeclineNext = "next" // the hunt goes on to the next target
)

// HuntList is a named list of targets to ring for one call.
type HuntList struct {
	// Name is what routes refer to it by.
	Name string `yaml:"name"`
	// Strategy is sequential (default), parallel, round_robin or
	// least_recent.
	Strategy string `yaml:"strategy"`
	// RingTimeout is each target's default ring time (default
	// sip.ring_timeout).
	RingTimeout Duration `yaml:"ring_timeout"`
	// OnDecline is stop (default) or next: whether a target's 6xx ends
	// the hunt.
	OnDecline string `yaml:"on_decline"`
	// RejectBackoff is how long a queue waiting for this list leaves an
	// agent alone after ringing it failed (busy, declined, no answer,
	// unreachable), 0–10m (default 10s; 0: ring it again at the next
	// look, every second).
	RejectBackoff Duration `yaml:"reject_backoff"`
	// WrapUp is the after-call work time: after an agent's leg reached
	// through this list leaves its call, no hunt list or queue rings
	// that agent for this long, 0–10m (default 0s: off).
	WrapUp Duration `yaml:"wrap_up"`
	// Targets are rung in this order (sequential, parallel) or in the
	// strategy's order.
	Targets []HuntTarget `yaml:"targets"`
}

// HuntTarget is one extension of a hunt list.
type HuntTarget struct {
	// Endpoint names a pbx endpoint.
	Endpoint string `yaml:"endpoint"`
	// User is the Request-URI user at that endpoint.
	User string `yaml:"user"`
	// RingTimeout is how long this target rings before the hunt moves
	// on (default: the list's ring_timeout).
	RingTimeout Duration `yaml:"ring_timeout"`
}

// Hours are a number's business hours.
type Hours struct {
	// Timezone is an IANA time zone name, e.g. "Europe/London".
	Timezone string `yaml:"timezone"`
	// Weekly lists the opening ranges of the week.
	Weekly []WeeklyHours `yaml:"weekly"`
	// Holidays are dates (YYYY-MM-DD, in Timezone) closed all day.
	Holidays []string `yaml:"holidays"`
	// AfterHours is the route of calls outside the hours (an extension,
	// a hunt list, a callflow or a queue); without it
	// they get 480 Temporarily Unavailable.
	AfterHours *Route `yaml:"after_hours"`

	// Location, Open and Closed are derived by Load: the zone, the
	// opening ranges as minutes of the week from Monday 00:00, and the
	// holidays.
	Location *time.Location  `yaml:"-"`
	Open     []MinuteRange   `yaml:"-"`
	Closed   map[string]bool `yaml:"-"`
}

// MinuteRange is [From, To) in minutes from Monday 00:00 (0–10080).
type MinuteRange struct{ From, To int }

// WeeklyHours is one opening range on some days of the week.
type WeeklyHours struct {
	// Days are mon, tue, wed, thu, fri, sat, sun (or mon-fri style
	// ranges).
	Days []string `yaml:"days"`
	// From and To are "HH:MM" local times; To may be "24:00" and must be
	// after From (split a range across midnight in two).
	From string `yaml:"from"`
	To   string `yaml:"to"`
}

// Blocklist refuses user-initiated calls from some callers.
type Blocklist struct {
	// Callers are +E.164 numbers or business-scoped user ids (BSUIDs).
	Callers []string `yaml:"callers"`
	// Code is the final response they get (default 603 Decline).
	Code int `yaml:"code"`

	// Set is derived by Load: the callers, numbers written with '+'.
	Set map[string]bool `yaml:"-"`
}

// This file checks what decides where a user-initiated call goes besides
// the plain route: hunt lists, business hours, blocklists, and the
// endpoints' redirect and probe settings.

// maxHuntTargets bounds a hunt list: a parallel hunt sends one INVITE per
// target at once, and a sequential one of 50 agents ringing 15 s each
// already outlasts any caller.
const maxHuntTargets = 50

// maxRejectBackoff bounds a hunt list's reject_backoff: longer, and an
// agent who missed one call would sit idle while callers wait.
const maxRejectBackoff = Duration(10 * time.Minute)

// maxWrapUp bounds a hunt list's wrap_up, for the same reason: after-call
// work of more than 10 minutes is an agent logged out, which the PBX
// knows better.
const maxWrapUp = Duration(10 * time.Minute)

// HuntList returns the hunt list called name, or nil.
func (c *Config) HuntList(name string) *HuntList {
	return c.lookups().hunts[name]
}

// routeTo checks a route at p: one extension (endpoint and user) or a
// hunt list, not both. what names the route in messages.
func (v validator) routeTo(p string, r Route, what string) {
	if r.Hunt != "" {
		if r.Endpoint != "" || r.User != "" {
			v.add(p+".hunt", "give either hunt or endpoint and user, not both")
		}
		if v.huntList(r.Hunt) == nil {
			v.add(p+".hunt", "%q is not a hunt list under hunt_lists", r.Hunt)
		}
		return
	}
	switch e := v.endpoint(r.Endpoint); {
	case r.Endpoint == "":
		v.add(p+".endpoint", "%s needs the pbx endpoint that takes the calls (or hunt, naming a hunt list)", what)
	case e == nil:
		v.add(p+".endpoint", "route to an undefined endpoint %q", r.Endpoint)
	case e.Kind != KindPBX:
		v.add(p+".endpoint", "endpoint %q has kind %s; a route must name an endpoint of kind pbx", e.Name, e.Kind)
	}
	v.extension(p+".user", r.User, what)
}

// extension checks the user part of a PBX Request-URI.
func (v validator) extension(p, u, what string) {
	switch {
	case u == "":
		v.add(p, "%s needs the user (extension) to call at the pbx, e.g. \"1001\"", what)
	case strings.ContainsAny(u, "@:"):
		v.add(p, "%q must be only the user part of the URI (e.g. \"1001\"), without \"sip:\" or \"@host\"", u)
	case strings.ContainsFunc(u, func(c rune) bool { return c <= ' ' || c == 0x7f }):
		v.add(p, "%q must not contain spaces or control characters", u)
	}
}

func (v validator) huntList(name string) *HuntList {
	for i := range v.c.HuntLists {
		if v.c.HuntLists[i].Name == name {
			return &v.c.HuntLists[i]
		}
	}
	return nil
}

func (v validator) huntLists() {
	names := map[string]int{}
	for i := range v.c.HuntLists {
		h := &v.c.HuntLists[i]
		p := fmt.Sprintf("hunt_lists[%d]", i)
		switch {
		case h.Name == "":
			v.add(p+".name", "every hunt list needs a name")
		case !endpointName.MatchString(h.Name):
			v.add(p+".name", "%q may only contain letters, digits, '_' and '-'", h.Name)
		default:
			if first, dup := names[h.Name]; dup {
				v.add(p+".name", "hunt list name %q is already used by hunt_lists[%d]", h.Name, first)
			} else {
				names[h.Name] = i
			}
		}
		switch h.Strategy {
		case HuntSequential, HuntParallel, HuntRoundRobin, HuntLeastRecent:
		default:
			v.add(p+".strategy", "%q is not a strategy; use sequential, parallel, round_robin or least_recent", h.Strategy)
		}
		switch h.OnDecline {
		case DeclineStop, DeclineNext:
		default:
			v.add(p+".on_decline", "%q is not stop (a 6xx ends the hunt) or next (the hunt goes on)", h.OnDecline)
		}
		v.positive(p+".ring_timeout", h.RingTimeout)
		if d := h.RejectBackoff.D(); d < 0 || d > maxRejectBackoff.D() {
			v.add(p+".reject_backoff", "%s must be between 0s (no back-off) and %s", d, maxRejectBackoff.D())
		}
		if d := h.WrapUp.D(); d < 0 || d > maxWrapUp.D() {
			v.add(p+".wrap_up", "%s must be between 0s (no wrap-up) and %s", d, maxWrapUp.D())
		}
		switch n := len(h.Targets); {
		case n == 0:
			v.add(p+".targets", "a hunt list needs at least one target (endpoint and user)")
		case n > maxHuntTargets:
			v.add(p+".targets", "%d targets are more than %d", n, maxHuntTargets)
		}
		seen := map[string]int{}
		var first *Endpoint
		firstAt := 0
		for j, t := range h.Targets {
			tp := fmt.Sprintf("%s.targets[%d]", p, j)
			e := v.endpoint(t.Endpoint)
			switch {
			case t.Endpoint == "":
				v.add(tp+".endpoint", "every target needs the pbx endpoint it is at")
			case e == nil:
				v.add(tp+".endpoint", "target at an undefined endpoint %q", t.Endpoint)
			case e.Kind != KindPBX:
				v.add(tp+".endpoint", "endpoint %q has kind %s; hunt targets must be at endpoints of kind pbx", e.Name, e.Kind)
			case first == nil:
				first, firstAt = e, j
			default:
				// Every target is sent the same offer, built once from
				// the first target's endpoint.
				if msg := mediaMismatch(first, e); msg != "" {
					v.add(tp+".endpoint", "endpoint %q %s (at targets[%d]); every target of a list is sent the same SDP offer", e.Name, msg, firstAt)
				}
			}
			v.extension(tp+".user", t.User, "a target")
			key := t.Endpoint + "\x00" + t.User
			if at, dup := seen[key]; dup && t.Endpoint != "" && t.User != "" {
				v.add(tp, "%s at %s is already listed at targets[%d]", t.User, t.Endpoint, at)
			} else {
				seen[key] = j
			}
			v.positive(tp+".ring_timeout", t.RingTimeout)
		}
	}
}

// mediaMismatch says how b's media settings differ from a's, or "".
func mediaMismatch(a, b *Endpoint) string {
	switch {
	case !slices.Equal(a.Codecs, b.Codecs):
		return fmt.Sprintf("has codecs %v where %q has %v", b.Codecs, a.Name, a.Codecs)
	case a.MediaEncryption != b.MediaEncryption:
		return fmt.Sprintf("has media_encryption %s where %q has %s", b.MediaEncryption, a.Name, a.MediaEncryption)
	case a.BehindNAT != b.BehindNAT || a.LatchAnyAddress != b.LatchAnyAddress:
		return fmt.Sprintf("differs from %q in behind_nat or latch_any_address", a.Name)
	}
	return ""
}

// MediaCompatible reports whether a B-leg offer built for endpoint a
// suits endpoint b too (a redirect from a to b keeps the offer).
func MediaCompatible(a, b *Endpoint) bool { return mediaMismatch(a, b) == "" }

// redirectsAndProbe checks the pbx-only keys of endpoint e at p.
func (v validator) redirectsAndProbe(p string, e *Endpoint) {
	if e.FollowRedirects && e.Kind != KindPBX {
		v.add(p+".follow_redirects", "only pbx endpoints' redirects are followed; this one is %s", e.Kind)
	}
	pr := e.Probe
	if pr == nil {
		return
	}
	if e.Kind != KindPBX {
		v.add(p+".probe", "only pbx endpoints are probed; this one is %s", e.Kind)
		return
	}
	pp := p + ".probe"
	if pr.Interval < Duration(100*time.Millisecond) {
		v.add(pp+".interval", "%s is below 100ms", pr.Interval)
	}
	switch {
	case pr.Timeout <= 0:
		v.add(pp+".timeout", "%s must be greater than 0", pr.Timeout)
	case pr.Timeout > pr.Interval:
		v.add(pp+".timeout", "%s is longer than the interval %s", pr.Timeout, pr.Interval)
	}
	v.atLeastOne(pp+".down_after", pr.DownAfter)
	v.atLeastOne(pp+".up_after", pr.UpAfter)
}

var (
	clockTime = regexp.MustCompile(`^([01][0-9]|2[0-3]):[0-5][0-9]$`)
	weekDays  = []string{"mon", "tue", "wed", "thu", "fri", "sat", "sun"}
)

// hours checks a number's business hours at p and derives their zone,
// ranges and holidays.
func (v validator) hours(p string, h *Hours) {
	h.Location, h.Open, h.Closed = nil, nil, nil
	switch loc, err := time.LoadLocation(h.Timezone); {
	case h.Timezone == "":
		v.add(p+".timezone", "business hours need an IANA time zone, e.g. \"Europe/London\"")
	case err != nil || h.Timezone == "Local":
		v.add(p+".timezone", "%q is not an IANA time zone name (e.g. \"America/New_York\", \"UTC\")", h.Timezone)
	default:
		h.Location = loc
	}
	if len(h.Weekly) == 0 {
		v.add(p+".weekly", "at least one opening range is needed, e.g. {days: [mon-fri], from: \"09:00\", to: \"17:00\"}")
	}
	for i, w := range h.Weekly {
		wp := fmt.Sprintf("%s.weekly[%d]", p, i)
		from, okF := clockMinutes(w.From, false)
		if !okF {
			v.add(wp+".from", "%q is not a time of day HH:MM (00:00–23:59)", w.From)
		}
		to, okT := clockMinutes(w.To, true)
		if !okT {
			v.add(wp+".to", "%q is not a time of day HH:MM (00:01–24:00)", w.To)
		}
		if okF && okT && to <= from {
			v.add(wp+".to", "%s is not after from %s; split a range across midnight in two (…–24:00 and 00:00–…)", w.To, w.From)
			okT = false
		}
		if len(w.Days) == 0 {
			v.add(wp+".days", "name the days the range applies to, e.g. [mon-fri] or [sat, sun]")
		}
		for j, d := range w.Days {
			days, ok := parseDays(d)
			if !ok {
				v.add(fmt.Sprintf("%s.days[%d]", wp, j), "%q is not a day (mon, tue, wed, thu, fri, sat, sun) or a range like mon-fri", d)
				continue
			}
			if okF && okT {
				for _, day := range days {
					h.Open = append(h.Open, MinuteRange{From: day*1440 + from, To: day*1440 + to})
				}
			}
		}
	}
	for i, d := range h.Holidays {
		t, err := time.Parse(time.DateOnly, d)
		if err != nil {
			v.add(fmt.Sprintf("%s.holidays[%d]", p, i), "%q is not a date YYYY-MM-DD", d)
			continue
		}
		if h.Closed == nil {
			h.Closed = map[string]bool{}
		}
		h.Closed[t.Format(time.DateOnly)] = true
	}
	if h.AfterHours != nil {
		v.anyRoute(p+".after_hours", *h.AfterHours, "the after-hours route")
	}
}

// clockMinutes reads "HH:MM" as minutes after midnight; end allows 24:00.
func clockMinutes(s string, end bool) (int, bool) {
	if end && s == "24:00" {
		return 1440, true
	}
	if !clockTime.MatchString(s) {
		return 0, false
	}
	hh, _ := strconv.Atoi(s[:2])
	mm, _ := strconv.Atoi(s[3:])
	m := hh*60 + mm
	return m, !end || m > 0
}

// parseDays reads "mon" or "mon-fri" (any case) as day numbers, Monday 0.
func parseDays(s string) ([]int, bool) {
	s = strings.ToLower(strings.TrimSpace(s))
	a, b, isRange := strings.Cut(s, "-")
	i := slices.Index(weekDays, a)
	if i < 0 {
		return nil, false
	}
	if !isRange {
		return []int{i}, true
	}
	j := slices.Index(weekDays, b)
	if j < 0 || j < i {
		return nil, false
	}
	var out []int
	for d := i; d <= j; d++ {
		out = append(out, d)
	}
	return out, true
}

// bsuid is the form of a business-scoped user id (x-wa-meta-user-id).
var bsuid = regexp.MustCompile(`^[A-Za-z0-9._-]{1,128}$`)

// blocklist checks a blocklist at p and derives its caller set.
func (v validator) blocklist(p string, b *Blocklist) {
	b.Set = map[string]bool{}
	if len(b.Callers) == 0 {
		v.add(p+".callers", "the list is empty; remove the blocklist or list +E.164 numbers and business-scoped user ids")
	}
	for i, c := range b.Callers {
		cp := fmt.Sprintf("%s.callers[%d]", p, i)
		key, ok := BlocklistKey(c)
		if !ok {
			v.add(cp, "%q is neither a +E.164 number nor a business-scoped user id (letters, digits, '.', '_', '-')", c)
			continue
		}
		if b.Set[key] {
			v.add(cp, "%s is listed twice", key)
		}
		b.Set[key] = true
	}
	switch {
	case b.Code < 400 || b.Code > 699:
		v.add(p+".code", "%d is not a final error response code (400–699)", b.Code)
	case b.Code == 401 || b.Code == 407:
		v.add(p+".code", "%d is a challenge, not a refusal; use 403 or 603", b.Code)
	}
}

// BlocklistKey is the form a caller identity is listed and looked up in:
// a number (digits, '+' optional) as +digits, a business-scoped user id as
// written. It reports false for anything that is neither.
func BlocklistKey(s string) (string, bool) {
	d := strings.TrimPrefix(s, "+")
	if digitsOnly.MatchString(d) {
		if !e164Number.MatchString("+" + d) {
			return "", false
		}
		return "+" + d, true
	}
	if strings.HasPrefix(s, "+") || !bsuid.MatchString(s) {
		return "", false
	}
	return s, true
}
