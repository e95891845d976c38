package configs

import (
	"fmt"
	"time"
)

// QueueRoute is a number's route when its callers wait in line for a hunt
// list's agents (an ACD queue) without a web service: wagate answers the
// call, plays music and announcements of the caller's place, connects it
// through the hunt when an agent is free, and after LimitTime takes the
// fallback. It runs the call-flow engine's "queue" action; see
// docs/callflow.md.
type QueueRoute struct {
	// Hunt names the hunt list whose agents take the calls.
	Hunt string `yaml:"hunt"`
	// Priority orders this number's callers against other queues' callers
	// of the same hunt list: 0–9, higher first (default 0).
	Priority int `yaml:"priority"`
	// VIP lists callers (+E.164 numbers or business-scoped user ids) who
	// wait with VIPPriority instead.
	VIP []string `yaml:"vip"`
	// VIPPriority is the VIP callers' priority, 0–9 (default 9).
	VIPPriority int `yaml:"vip_priority"`
	// LimitTime bounds the wait (5s–1h, default 5m); then the fallback.
	LimitTime Duration `yaml:"limit_time"`
	// Music is a WAV or MP3 at an http(s) URL; default a built-in tune.
	Music string `yaml:"music"`
	// AnnouncePosition says the caller's place in line (and the estimated
	// wait once there is one) every AnnounceEvery (default true, 30s).
	AnnouncePosition *bool    `yaml:"announce_position"`
	AnnounceEvery    Duration `yaml:"announce_every"`
	// Voice speaks the announcements (default the prompts' voice).
	Voice string `yaml:"voice"`
	// Fallback is the extension the call goes to after LimitTime (or when
	// the queue cannot be joined); without it the call is hung up.
	Fallback *FallbackRoute `yaml:"fallback"`

	// VIPSet is derived by Load: the VIP callers, numbers with '+'.
	VIPSet map[string]bool `yaml:"-"`
}

// Defaults of a queue route.
const (
	DefaultQueueLimitTime     = Duration(5 * time.Minute)
	DefaultQueueAnnounceEvery = Duration(30 * time.Second)
	DefaultQueueVIPPriority   = 9
)

// queueDefaults fills the keys a queue route leaves out; p is its path.
func queueDefaults(q *QueueRoute, p string, set func(string) bool) {
	if !set(p + ".limit_time") {
		q.LimitTime = DefaultQueueLimitTime
	}
	if !set(p + ".announce_every") {
		q.AnnounceEvery = DefaultQueueAnnounceEvery
	}
	if !set(p + ".vip_priority") {
		q.VIPPriority = DefaultQueueVIPPriority
	}
	if q.AnnouncePosition == nil {
		on := true
		q.AnnouncePosition = &on
	}
}

// PriorityOf is the priority a caller waits with, given its number and
// business-scoped user id (either may be empty).
func (q *QueueRoute) PriorityOf(callers ...string) int {
	for _, c := range callers {
		if k, ok := BlocklistKey(c); ok && q.VIPSet[k] {
			return q.VIPPriority
		}
	}
	return q.Priority
}

// queueRoute checks a number's queue route at path p.
func (v validator) queueRoute(p string, q *QueueRoute) {
	switch {
	case q.Hunt == "":
		v.add(p+".hunt", "a queue route needs the hunt list whose agents take its calls")
	case v.huntList(q.Hunt) == nil:
		v.add(p+".hunt", "%q is not a hunt list under hunt_lists", q.Hunt)
	}
	if q.Priority < 0 || q.Priority > 9 {
		v.add(p+".priority", "%d is outside 0–9", q.Priority)
	}
	if q.VIPPriority < 0 || q.VIPPriority > 9 {
		v.add(p+".vip_priority", "%d is outside 0–9", q.VIPPriority)
	}
	q.VIPSet = map[string]bool{}
	for i, c := range q.VIP {
		cp := fmt.Sprintf("%s.vip[%d]", p, i)
		key, ok := BlocklistKey(c)
		switch {
		case !ok:
			v.add(cp, "%q is neither a +E.164 number nor a business-scoped user id (letters, digits, '.', '_', '-')", c)
		case q.VIPSet[key]:
			v.add(cp, "%s is listed twice", key)
		default:
			q.VIPSet[key] = true
		}
	}
	if d := q.LimitTime.D(); d < 5*time.Second || d > time.Hour {
		v.add(p+".limit_time", "%s must be between 5s and 1h", d)
	}
	if d := q.AnnounceEvery.D(); d < 5*time.Second || d > 10*time.Minute {
		v.add(p+".announce_every", "%s must be between 5s and 10m", d)
	}
	if q.Music != "" {
		if msg := checkWebhookURL(q.Music); msg != "" {
			v.add(p+".music", "%s (music is a WAV or MP3 file at an http or https URL)", msg)
		}
	}
	if q.Voice != "" && !voiceTag.MatchString(q.Voice) {
		v.add(p+".voice", "%q is not a voice name like en-US (letters, digits, '-', '_' and '+')", q.Voice)
	}
	if q.Fallback != nil {
		v.routeTo(p+".fallback", Route{Endpoint: q.Fallback.Endpoint, User: q.Fallback.User}, "a queue's fallback")
	}
}

// anyRoute checks a number's route (or its after-hours route) at p: one
// of an extension, a hunt list, a callflow or a queue. what names it in
// messages.
func (v validator) anyRoute(p string, r Route, what string) {
	switch {
	case r.CallFlow != nil && r.Queue != nil:
		v.addAt(p+".queue", p, "give either callflow (run the business's call flows) or queue (wait for a hunt list's agents), not both")
	case r.CallFlow == nil && r.Queue == nil:
		v.routeTo(p, r, what)
	case r.Endpoint != "" || r.User != "" || r.Hunt != "":
		at := p + ".endpoint"
		switch {
		case r.Hunt != "":
			at = p + ".hunt"
		case r.Endpoint == "":
			at = p + ".user"
		}
		v.addAt(at, p, "give either endpoint and user (ring an extension), hunt (a hunt list), callflow (run the business's call flows) or queue (wait for a hunt list's agents), not two; a callflow's or queue's own fallback names the extension")
	case r.Queue != nil:
		v.queueRoute(p+".queue", r.Queue)
	default:
		v.callFlow(p+".callflow", r.CallFlow)
	}
}
