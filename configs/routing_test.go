package configs

import (
	"slices"
	"testing"
	"time"
)

// huntBlock adds a second pbx and a number routed to a hunt list to
// endpointsBlock; cases append their own hunt_lists.
const huntBlock = endpointsBlock + `  - {name: pbx2, kind: pbx, host: 127.0.0.5, source_cidrs: [127.0.0.5]}
numbers:
  - {number: "+15550100001", phone_number_id: "1", route: {hunt: support}}
`

func TestRoutingProblems(t *testing.T) {
	for _, tt := range []struct{ name, yaml, want string }{
		{"route to unknown hunt list", endpointsBlock + `
numbers:
  - number: "+15550100001"
    phone_number_id: "1"
    route: {hunt: sales} # <-
`, `numbers[0].route.hunt: "sales" is not a hunt list under hunt_lists`},
		{"route with hunt and endpoint", endpointsBlock + `
hunt_lists:
  - {name: sales, targets: [{endpoint: pbx, user: "1001"}]}
numbers:
  - number: "+15550100001"
    phone_number_id: "1"
    route: {hunt: sales, endpoint: pbx, user: "1001"} # <-
`, `numbers[0].route.hunt: give either hunt or endpoint and user, not both`},
		{"hunt list without name", huntBlock + `
hunt_lists:
  - {name: support, targets: [{endpoint: pbx, user: "1001"}]}
  - {targets: [{endpoint: pbx, user: "1002"}]} # <-
`, `hunt_lists[1].name: every hunt list needs a name`},
		{"hunt list name twice", huntBlock + `
hunt_lists:
  - {name: support, targets: [{endpoint: pbx, user: "1001"}]}
  - {name: support, targets: [{endpoint: pbx, user: "1002"}]} # <-
`, `hunt_lists[1].name: hunt list name "support" is already used by hunt_lists[0]`},
		{"bad strategy", huntBlock + `
hunt_lists:
  - name: support
    strategy: random # <-
    targets: [{endpoint: pbx, user: "1001"}]
`, `hunt_lists[0].strategy: "random" is not a strategy; use sequential, parallel, round_robin or least_recent`},
		{"bad on_decline", huntBlock + `
hunt_lists:
  - name: support
    on_decline: ignore # <-
    targets: [{endpoint: pbx, user: "1001"}]
`, `hunt_lists[0].on_decline: "ignore" is not stop`},
		{"reject_backoff too long", huntBlock + `
hunt_lists:
  - name: support
    reject_backoff: 11m # <-
    targets: [{endpoint: pbx, user: "1001"}]
`, `hunt_lists[0].reject_backoff: 11m0s must be between 0s (no back-off) and 10m0s`},
		{"reject_backoff negative", huntBlock + `
hunt_lists:
  - name: support
    reject_backoff: -5s # <-
    targets: [{endpoint: pbx, user: "1001"}]
`, `hunt_lists[0].reject_backoff: -5s must be between 0s`},
		{"empty hunt list", huntBlock + `
hunt_lists:
  - name: support
    targets: [] # <-
`, `hunt_lists[0].targets: a hunt list needs at least one target`},
		{"target at unknown endpoint", huntBlock + `
hunt_lists:
  - name: support
    targets:
      - {endpoint: pbx, user: "1001"}
      - {endpoint: pbx9, user: "1002"} # <-
`, `hunt_lists[0].targets[1].endpoint: target at an undefined endpoint "pbx9"`},
		{"target at a dialer", huntBlock + `
hunt_lists:
  - name: support
    targets:
      - {endpoint: dialer, user: "1002"} # <-
`, `endpoint "dialer" has kind dialer; hunt targets must be at endpoints of kind pbx`},
		{"target without user", huntBlock + `
hunt_lists:
  - name: support
    targets:
      - {endpoint: pbx} # <-
`, `hunt_lists[0].targets[0].user: a target needs the user`},
		{"target twice", huntBlock + `
hunt_lists:
  - name: support
    targets:
      - {endpoint: pbx, user: "1001"}
      - {endpoint: pbx, user: "1001"} # <-
`, `hunt_lists[0].targets[1]: 1001 at pbx is already listed at targets[0]`},
		{"target ring timeout zero", huntBlock + `
hunt_lists:
  - name: support
    targets:
      - {endpoint: pbx, user: "1001", ring_timeout: 0s} # <-
`, `hunt_lists[0].targets[0].ring_timeout: 0s must be greater than 0`},
		{"targets with different codecs", endpointsBlock + `  - {name: pbx2, kind: pbx, host: 127.0.0.5, source_cidrs: [127.0.0.5], codecs: [PCMA]}
hunt_lists:
  - name: support
    targets:
      - {endpoint: pbx, user: "1001"}
      - {endpoint: pbx2, user: "1002"} # <-
`, `endpoint "pbx2" has codecs [PCMA] where "pbx" has [PCMU PCMA] (at targets[0]); every target of a list is sent the same SDP offer`},
		{"follow_redirects on a dialer", `
endpoints:
  - name: dialer
    kind: dialer
    source_cidrs: [127.0.0.4]
    follow_redirects: true # <-
`, `endpoints[0].follow_redirects: only pbx endpoints' redirects are followed; this one is dialer`},
		{"probe on whatsapp", `
endpoints:
  - name: meta
    kind: whatsapp
    host: 127.0.0.2
    source_cidrs: [127.0.0.2]
    probe: {interval: 5s} # <-
`, `endpoints[0].probe: only pbx endpoints are probed; this one is whatsapp`},
		{"probe timeout over interval", `
endpoints:
  - name: pbx
    kind: pbx
    host: 127.0.0.3
    source_cidrs: [127.0.0.3]
    probe:
      interval: 2s
      timeout: 3s # <-
`, `endpoints[0].probe.timeout: 3s is longer than the interval 2s`},
		{"probe down_after zero", `
endpoints:
  - name: pbx
    kind: pbx
    host: 127.0.0.3
    source_cidrs: [127.0.0.3]
    probe:
      down_after: 0 # <-
`, `endpoints[0].probe.down_after: 0 must be at least 1`},
		{"hours without timezone", endpointsBlock + `
numbers:
  - number: "+15550100001"
    phone_number_id: "1"
    route: {endpoint: pbx, user: "1001"}
    hours: # <-
      weekly: [{days: [mon-fri], from: "09:00", to: "17:00"}]
`, `numbers[0].hours.timezone: business hours need an IANA time zone`},
		{"hours unknown timezone", endpointsBlock + `
numbers:
  - number: "+15550100001"
    phone_number_id: "1"
    route: {endpoint: pbx, user: "1001"}
    hours:
      timezone: Europe/Atlantis # <-
      weekly: [{days: [mon-fri], from: "09:00", to: "17:00"}]
`, `numbers[0].hours.timezone: "Europe/Atlantis" is not an IANA time zone name`},
		{"hours bad day", endpointsBlock + `
numbers:
  - number: "+15550100001"
    phone_number_id: "1"
    route: {endpoint: pbx, user: "1001"}
    hours:
      timezone: UTC
      weekly:
        - days:
            - monday # <-
          from: "09:00"
          to: "17:00"
`, `numbers[0].hours.weekly[0].days[0]: "monday" is not a day`},
		{"hours reversed", endpointsBlock + `
numbers:
  - number: "+15550100001"
    phone_number_id: "1"
    route: {endpoint: pbx, user: "1001"}
    hours:
      timezone: UTC
      weekly:
        - days: [mon]
          from: "22:00"
          to: "06:00" # <-
`, `numbers[0].hours.weekly[0].to: 06:00 is not after from 22:00; split a range across midnight in two`},
		{"hours bad time", endpointsBlock + `
numbers:
  - number: "+15550100001"
    phone_number_id: "1"
    route: {endpoint: pbx, user: "1001"}
    hours:
      timezone: UTC
      weekly:
        - days: [mon]
          from: "9am" # <-
          to: "17:00"
`, `numbers[0].hours.weekly[0].from: "9am" is not a time of day HH:MM`},
		{"hours bad holiday", endpointsBlock + `
numbers:
  - number: "+15550100001"
    phone_number_id: "1"
    route: {endpoint: pbx, user: "1001"}
    hours:
      timezone: UTC
      weekly: [{days: [mon], from: "09:00", to: "17:00"}]
      holidays:
        - "2025-02-30" # <-
`, `numbers[0].hours.holidays[0]: "2025-02-30" is not a date YYYY-MM-DD`},
		{"after_hours to unknown list", endpointsBlock + `
numbers:
  - number: "+15550100001"
    phone_number_id: "1"
    route: {endpoint: pbx, user: "1001"}
    hours:
      timezone: UTC
      weekly: [{days: [mon], from: "09:00", to: "17:00"}]
      after_hours: {hunt: night} # <-
`, `numbers[0].hours.after_hours.hunt: "night" is not a hunt list under hunt_lists`},
		{"blocklist bad caller", endpointsBlock + `
blocklist:
  callers:
    - "+44 7700 900123" # <-
`, `blocklist.callers[0]: "+44 7700 900123" is neither a +E.164 number nor a business-scoped user id`},
		{"blocklist caller twice", endpointsBlock + `
numbers:
  - number: "+15550100001"
    phone_number_id: "1"
    route: {endpoint: pbx, user: "1001"}
    blocklist:
      callers:
        - "+447700900123"
        - "447700900123" # <-
`, `numbers[0].blocklist.callers[1]: +447700900123 is listed twice`},
		{"blocklist challenge code", endpointsBlock + `
blocklist:
  callers: ["US.1234"]
  code: 407 # <-
`, `blocklist.code: 407 is a challenge, not a refusal`},
		{"blocklist empty", endpointsBlock + `
blocklist:
  callers: [] # <-
`, `blocklist.callers: the list is empty`},
	} {
		t.Run(tt.name, func(t *testing.T) { wantOneProblem(t, tt.yaml, tt.want) })
	}
}

// TestRoutingDefaults: what an operator leaves out of a hunt list, a probe
// and a blocklist, and what business hours are derived into.
func TestRoutingDefaults(t *testing.T) {
	c := mustParse(t, endpointsBlock+`  - name: pbx2
    kind: pbx
    host: 127.0.0.5
    source_cidrs: [127.0.0.5]
    follow_redirects: true
    probe: {interval: 2s}
sip: {ring_timeout: 20s}
hunt_lists:
  - name: support
    targets: [{endpoint: pbx, user: "1001"}, {endpoint: pbx2, user: "1002", ring_timeout: 5s}]
  - name: night
    strategy: parallel
    ring_timeout: 9s
    on_decline: next
    reject_backoff: 0s
    targets: [{endpoint: pbx, user: "9000"}]
blocklist: {callers: ["447700900999", "US.13491208655302741918"]}
numbers:
  - number: "+15550100001"
    phone_number_id: "1"
    route: {hunt: support}
    hours:
      timezone: Europe/London
      weekly:
        - {days: [mon-wed, fri], from: "09:00", to: "17:30"}
        - {days: [sun], from: "22:00", to: "24:00"}
      holidays: ["2025-12-25"]
      after_hours: {hunt: night}
    blocklist: {callers: ["+447700900123"], code: 403}
`)
	h := c.HuntList("support")
	if h == nil || h.Strategy != HuntSequential || h.OnDecline != DeclineStop || h.RingTimeout.D() != 20*time.Second {
		t.Fatalf("support: %+v", h)
	}
	if h.Targets[0].RingTimeout.D() != 20*time.Second || h.Targets[1].RingTimeout.D() != 5*time.Second {
		t.Errorf("target ring timeouts %v, %v; want the list's 20s and the target's own 5s", h.Targets[0].RingTimeout, h.Targets[1].RingTimeout)
	}
	if n := c.HuntList("night"); n == nil || n.Strategy != HuntParallel || n.Targets[0].RingTimeout.D() != 9*time.Second || n.OnDecline != DeclineNext {
		t.Errorf("night: %+v", n)
	}
	if h.RejectBackoff.D() != 10*time.Second || c.HuntList("night").RejectBackoff != 0 {
		t.Errorf("reject_backoff %v and %v; want the default 10s and the night list's own 0s (off)", h.RejectBackoff, c.HuntList("night").RejectBackoff)
	}
	if c.HuntList("nope") != nil {
		t.Error("an unknown hunt list was found")
	}
	p := c.Endpoint("pbx2").Probe
	if p.Interval.D() != 2*time.Second || p.Timeout.D() != 2*time.Second || p.DownAfter != 3 || p.UpAfter != 2 {
		t.Errorf("probe defaults %+v; want timeout capped at the 2s interval, 3 and 2", p)
	}
	if !c.Endpoint("pbx2").FollowRedirects || c.Endpoint("pbx").FollowRedirects {
		t.Error("follow_redirects not as written")
	}
	if c.Blocklist.Code != 603 || !c.Blocklist.Set["+447700900999"] || !c.Blocklist.Set["US.13491208655302741918"] {
		t.Errorf("global blocklist %+v", c.Blocklist)
	}
	n := c.Numbers[0]
	if n.Blocklist.Code != 403 || !n.Blocklist.Set["+447700900123"] {
		t.Errorf("number blocklist %+v", n.Blocklist)
	}
	hrs := n.Hours
	if hrs.Location == nil || hrs.Location.String() != "Europe/London" || !hrs.Closed["2025-12-25"] {
		t.Errorf("hours %+v", hrs)
	}
	want := []MinuteRange{{540, 1050}, {1440 + 540, 1440 + 1050}, {2880 + 540, 2880 + 1050}, {5760 + 540, 5760 + 1050}, {8640 + 1320, 10080}}
	if !slices.Equal(hrs.Open, want) {
		t.Errorf("open ranges %v, want %v", hrs.Open, want)
	}
	if hrs.AfterHours == nil || hrs.AfterHours.Hunt != "night" {
		t.Errorf("after_hours %+v", hrs.AfterHours)
	}
}

// TestRoutingKeysReload: hunt lists and blocklists change with a SIGHUP.
func TestRoutingKeysReload(t *testing.T) {
	for _, k := range []string{"hunt_lists[0].targets", "blocklist.callers", "numbers[0].hours.weekly", "endpoints[0].probe.interval"} {
		if !IsLiveKey(k) {
			t.Errorf("%s needs a restart; want it applied by a reload", k)
		}
	}
}

func TestBlocklistKey(t *testing.T) {
	for in, want := range map[string]string{
		"+447700900123": "+447700900123", "447700900123": "+447700900123", "US.1349120865": "US.1349120865",
		"+44 7700": "", "+US.1": "", "1234": "", "": "", "a/b": "",
	} {
		got, ok := BlocklistKey(in)
		if ok != (want != "") || got != want {
			t.Errorf("BlocklistKey(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
}

// TestHuntWrapUp: wrap_up is off unless set, a reload applies it, and
// it is bounded like reject_backoff.
func TestHuntWrapUp(t *testing.T) {
	c := mustParse(t, huntBlock+`
hunt_lists:
  - name: support
    wrap_up: 30s
    targets: [{endpoint: pbx, user: "1001"}]
  - name: night
    targets: [{endpoint: pbx, user: "9000"}]
`)
	if got := c.HuntList("support").WrapUp.D(); got != 30*time.Second {
		t.Errorf("support wrap_up %v, want 30s", got)
	}
	if got := c.HuntList("night").WrapUp; got != 0 {
		t.Errorf("night wrap_up %v, want 0s (off) when not set", got)
	}
	if !IsLiveKey("hunt_lists[0].wrap_up") {
		t.Error("hunt_lists[0].wrap_up needs a restart; want it applied by a reload")
	}
	for in, want := range map[string]string{
		"11m": `hunt_lists[0].wrap_up: 11m0s must be between 0s (no wrap-up) and 10m0s`,
		"-1s": `hunt_lists[0].wrap_up: -1s must be between 0s (no wrap-up) and 10m0s`,
	} {
		wantOneProblem(t, huntBlock+`
hunt_lists:
  - name: support
    wrap_up: `+in+` # <-
    targets: [{endpoint: pbx, user: "1001"}]
`, want)
	}
}
