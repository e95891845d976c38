// Validation of what wagate writes out: recordings, CDRs and event
// subscribers (webhook URLs).

package configs

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"
)

func (v validator) recording() {
	r := &v.c.Recording
	if r.Directory == "" {
		v.add("recording.directory", "must not be empty; remove the key to use %q", DefaultRecordingDir)
	}
	switch r.SampleRate {
	case 8000, 16000:
	default:
		v.add("recording.sample_rate", "%d is not a sample rate wagate records at; use 8000 or 16000", r.SampleRate)
	}
	switch r.NameBy {
	case "a", "b":
	default:
		v.add("recording.name_by", "%q is not a leg; use a (the Call-ID of the incoming leg) or b (of the outgoing leg)", r.NameBy)
	}
	if r.RetentionDays < 0 {
		v.add("recording.retention_days", "%d is negative; use 0 to keep recordings forever", r.RetentionDays)
	}
}

func (v validator) cdr() {
	if n := v.c.CDR.RetentionDays; n < 0 {
		v.add("cdr.retention_days", "%d is negative; use 0 to keep call records forever", n)
	}
}

func (v validator) events() {
	e := &v.c.Events
	v.atLeastOne("events.max_attempts", e.MaxAttempts)
	v.atLeastOne("events.queue_size", e.QueueSize)
	if e.MaxPending < 0 {
		v.add("events.max_pending", "%d is negative; use 0 for no bound", e.MaxPending)
	}
	if e.RetentionDays < 0 {
		v.add("events.retention_days", "%d is negative; use 0 to keep delivered events forever", e.RetentionDays)
	}
	v.positive("events.backoff_base", e.BackoffBase)
	v.positive("events.backoff_max", e.BackoffMax)
	if e.BackoffBase > 0 && e.BackoffMax < e.BackoffBase {
		v.add("events.backoff_max", "%s is below backoff_base %s", e.BackoffMax, e.BackoffBase)
	}
	known := map[string]bool{}
	for _, t := range EventTypes() {
		known[t] = true
	}
	names := map[string]int{}
	for i := range e.Subscribers {
		s := &e.Subscribers[i]
		p := fmt.Sprintf("events.subscribers[%d]", i)
		switch {
		case s.Name == "":
			v.add(p+".name", "every subscriber needs a name (letters, digits, '_' and '-')")
		case !endpointName.MatchString(s.Name) || len(s.Name) > 64:
			v.add(p+".name", "%q may hold only letters, digits, '_' and '-' (at most 64)", s.Name)
		default:
			if first, dup := names[s.Name]; dup {
				v.add(p+".name", "subscriber %q is already listed at events.subscribers[%d]", s.Name, first)
			} else {
				names[s.Name] = i
			}
		}
		if msg := checkWebhookURL(s.URL); msg != "" {
			v.add(p+".url", "%s", msg)
		}
		if !s.Secret.IsSet() {
			v.add(p+".secret", "every subscriber needs a secret (value or env): it keys the signature receivers check")
		} else {
			v.secret(p+".secret", s.Secret)
		}
		seen := map[string]int{}
		for j, t := range s.Types {
			tp := fmt.Sprintf("%s.types[%d]", p, j)
			if !known[t] {
				v.add(tp, "%q is not an event type; use %s", t, strings.Join(EventTypes(), ", "))
			} else if first, dup := seen[t]; dup {
				v.add(tp, "%s is already listed at %s.types[%d]", t, p, first)
			} else {
				seen[t] = j
			}
		}
		v.positive(p+".timeout", s.Timeout)
		v.atLeastOne(p+".concurrency", s.Concurrency)
	}
}

// checkWebhookURL returns a sentence saying what is wrong with a
// subscriber's URL, or "".
func checkWebhookURL(raw string) string {
	if raw == "" {
		return "every subscriber needs the URL events are POSTed to, e.g. \"https://crm.example.com/wagate\""
	}
	u, err := url.Parse(raw)
	shown := redactUserinfo(raw)
	switch {
	case err != nil:
		return fmt.Sprintf("%q is not a URL", shown)
	case u.User != nil:
		return fmt.Sprintf("%s must not carry a user or password (it would show in logs); receivers authenticate wagate by the signature", shown)
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Sprintf("%q must start with http:// or https://", shown)
	case u.Host == "" || u.Hostname() == "":
		return fmt.Sprintf("%q has no host", shown)
	case u.Fragment != "":
		return fmt.Sprintf("%q has a #fragment, which is never sent", shown)
	}
	return ""
}

// userinfo matches the user[:password]@ of a URL's authority, parsed or
// not.
var userinfo = regexp.MustCompile(`^([A-Za-z][A-Za-z0-9+.-]*://)[^/?#]*@`)

// redactUserinfo returns raw with the user and password of its authority
// replaced, so that a problem about the URL does not repeat a password.
func redactUserinfo(raw string) string {
	return userinfo.ReplaceAllString(raw, "${1}[redacted]@")
}
