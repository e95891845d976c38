package configs

import (
	"strings"
	"testing"
	"time"
)

const queueTeam = `
hunt_lists:
  - {name: team, targets: [{endpoint: pbx, user: "1001"}, {endpoint: pbx, user: "1002"}]}
`

const queueNumber = endpointsBlock + queueTeam + `
numbers:
  - number: "+15550100001"
    phone_number_id: "100000000000001"
    route:
      queue:
`

func TestQueueRouteDefaultsAndVIP(t *testing.T) {
	c := mustParse(t, queueNumber+`        hunt: team
`)
	q := c.Numbers[0].Route.Queue
	if q == nil {
		t.Fatal("queue not decoded")
	}
	if q.LimitTime.D() != 5*time.Minute || q.AnnounceEvery.D() != 30*time.Second || !*q.AnnouncePosition ||
		q.Priority != 0 || q.VIPPriority != 9 || q.Fallback != nil || q.Music != "" {
		t.Fatalf("defaults: %+v", q)
	}
	if !c.CallFlowUsed() {
		t.Error("a queue route runs on the call-flow engine; CallFlowUsed is false")
	}

	c = mustParse(t, queueNumber+`        hunt: team
        priority: 2
        vip: ["+447700900123", "447700900124", "bsuid.ABC-1"]
        vip_priority: 7
        limit_time: 90s
        music: https://cdn.example.com/hold.mp3
        announce_position: false
        announce_every: 10s
        fallback: {endpoint: pbx, user: "1000"}
`)
	q = c.Numbers[0].Route.Queue
	if q.LimitTime.D() != 90*time.Second || q.AnnounceEvery.D() != 10*time.Second || *q.AnnouncePosition ||
		*q.Fallback != (FallbackRoute{Endpoint: "pbx", User: "1000"}) {
		t.Fatalf("%+v", q)
	}
	for _, tc := range []struct {
		callers []string
		want    int
	}{
		{[]string{"+447700900123", ""}, 7},
		{[]string{"+447700900124", ""}, 7}, // listed without '+'
		{[]string{"", "bsuid.ABC-1"}, 7},
		{[]string{"+447700900999", "bsuid.other"}, 2},
		{[]string{"", ""}, 2},
	} {
		if got := q.PriorityOf(tc.callers...); got != tc.want {
			t.Errorf("PriorityOf(%q) = %d, want %d", tc.callers, got, tc.want)
		}
	}
}

func TestQueueRouteProblems(t *testing.T) {
	marked := func(extra string) string {
		return strings.Replace(queueNumber, "      queue:", "      queue: # <-", 1) + extra
	}
	tests := []struct {
		name string
		yaml string
		want string
	}{
		{"no hunt", marked("        limit_time: 10s\n"), "numbers[0].route.queue.hunt: a queue route needs the hunt list"},
		{"unknown hunt", queueNumber + "        hunt: sales # <-\n", `"sales" is not a hunt list under hunt_lists`},
		{"priority", queueNumber + "        hunt: team\n        priority: 10 # <-\n", "priority: 10 is outside 0–9"},
		{"vip priority", queueNumber + "        hunt: team\n        vip_priority: -1 # <-\n", "vip_priority: -1 is outside 0–9"},
		{"vip caller", queueNumber + "        hunt: team\n        vip:\n          - \"+1 555\" # <-\n", "vip[0]: \"+1 555\" is neither a +E.164 number"},
		{"vip twice", queueNumber + "        hunt: team\n        vip:\n          - \"+447700900123\"\n          - \"447700900123\" # <-\n", "vip[1]: +447700900123 is listed twice"},
		{"limit short", queueNumber + "        hunt: team\n        limit_time: 1s # <-\n", "limit_time: 1s must be between 5s and 1h"},
		{"announce long", queueNumber + "        hunt: team\n        announce_every: 1h # <-\n", "announce_every: 1h0m0s must be between 5s and 10m"},
		{"music scheme", queueNumber + "        hunt: team\n        music: file:///srv/hold.wav # <-\n", "must start with http:// or https://"},
		{"voice", queueNumber + "        hunt: team\n        voice: \"en US\" # <-\n", "not a voice name"},
		{"fallback dialer", queueNumber + "        hunt: team\n        fallback: {endpoint: dialer, user: \"1\"} # <-\n", "queue.fallback.endpoint: endpoint \"dialer\" has kind dialer"},
		{"unknown key", queueNumber + "        hunt: team\n        limit: 5s # <-\n", `unknown key "limit" in numbers[0].route.queue`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { wantOneProblem(t, tc.yaml, tc.want) })
	}
}

func TestRouteIsOneOfIncludingQueue(t *testing.T) {
	wantOneProblem(t, endpointsBlock+queueTeam+`
numbers:
  - number: "+15550100001"
    phone_number_id: "100000000000001"
    route:
      hunt: team # <-
      queue: {hunt: team}
`, "give either endpoint and user (ring an extension), hunt (a hunt list), callflow (run the business's call flows) or queue")
	wantOneProblem(t, endpointsBlock+queueTeam+`
numbers:
  - number: "+15550100001"
    phone_number_id: "100000000000001"
    route:
      callflow: {url: "https://ivr.example.com/", secret: {value: s}, fallback: {endpoint: pbx, user: "1000"}}
      queue: {hunt: team} # <-
`, "give either callflow (run the business's call flows) or queue")
}

func TestAfterHoursCallFlowOrQueue(t *testing.T) {
	const hours = endpointsBlock + queueTeam + `
numbers:
  - number: "+15550100001"
    phone_number_id: "100000000000001"
    route: {endpoint: pbx, user: "1000"}
    hours:
      timezone: UTC
      weekly: [{days: [mon-fri], from: "09:00", to: "17:00"}]
      after_hours:
`
	c := mustParse(t, hours+`        queue: {hunt: team, vip: ["+447700900123"]}
`)
	q := c.Numbers[0].Hours.AfterHours.Queue
	if q == nil || q.LimitTime != DefaultQueueLimitTime || q.PriorityOf("+447700900123") != 9 {
		t.Fatalf("after-hours queue: %+v", q)
	}
	if !c.CallFlowUsed() {
		t.Error("an after-hours queue runs on the call-flow engine; CallFlowUsed is false")
	}
	c = mustParse(t, hours+`        callflow: {url: "https://ivr.example.com/night", secret: {value: s}, fallback: {endpoint: pbx, user: "1000"}}
`)
	if cf := c.Numbers[0].Hours.AfterHours.CallFlow; cf == nil || cf.Method != "POST" || cf.Timeout != DefaultCallFlowTimeout {
		t.Fatalf("after-hours callflow: %+v", cf)
	}
	wantOneProblem(t, hours+`        callflow: {url: "https://ivr.example.com/night", fallback: {endpoint: pbx, user: "1000"}} # <-
`, "numbers[0].hours.after_hours.callflow.secret: a callflow route needs a secret")
	wantOneProblem(t, hours+`        queue: {hunt: nobody} # <-
`, `numbers[0].hours.after_hours.queue.hunt: "nobody" is not a hunt list`)
	wantOneProblem(t, hours+`        endpoint: pbx # <-
        user: "1000"
        queue: {hunt: team}
`, "numbers[0].hours.after_hours: give either endpoint and user")
}
