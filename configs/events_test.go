package configs

import (
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestEventsDefaults(t *testing.T) {
	c := mustParse(t, `
data_dir: /var/lib/wagate
events:
  subscribers:
    - {name: crm, url: "https://crm.example.com/hook", secret: {value: s}}
`)
	if c.NodeID == "" || c.NodeID != DefaultNodeID() {
		t.Errorf("node_id = %q, want the host name %q", c.NodeID, DefaultNodeID())
	}
	if !c.CDR.Enabled || c.CDR.RetentionDays != 90 {
		t.Errorf("cdr = %+v, want enabled with 90 days", c.CDR)
	}
	e := c.Events
	if e.MaxAttempts != 30 || e.BackoffBase.D() != time.Second || e.BackoffMax.D() != 10*time.Minute ||
		e.QueueSize != 10000 || e.RetentionDays != 7 || e.MaxPending != 1000000 {
		t.Errorf("events = %+v", e)
	}
	s := e.Subscribers[0]
	if s.Timeout.D() != 10*time.Second || s.Concurrency != 4 || len(s.Types) != 0 {
		t.Errorf("subscriber = %+v", s)
	}
	if got, want := c.EventsDB(), filepath.Join("/var/lib/wagate", "events.db"); got != want {
		t.Errorf("EventsDB = %q, want %q", got, want)
	}
	if !c.EventsUsed() {
		t.Error("EventsUsed false with CDRs on")
	}
	off := mustParse(t, "cdr: {enabled: false}\nnode_id: edge-1.example\n")
	if off.CDR.Enabled || off.EventsUsed() || off.NodeID != "edge-1.example" {
		t.Errorf("cdr off: enabled %v, used %v, node %q", off.CDR.Enabled, off.EventsUsed(), off.NodeID)
	}
}

func TestEventsValidation(t *testing.T) {
	t.Setenv("WAGATE_TEST_HOOK_SECRET", "")
	tests := []struct {
		name, yaml, want string
	}{
		{"node id with a space", `
node_id: "node 1" # <-
`, `node_id: "node 1" may hold only letters`},
		{"node id empty", `
node_id: "" # <-
`, `node_id: must not be empty`},
		{"negative cdr retention", `
cdr:
  retention_days: -1 # <-
`, `cdr.retention_days: -1 is negative`},
		{"url scheme", `
events:
  subscribers:
    - name: crm
      url: "ftp://crm.example.com/" # <-
      secret: {value: s}
`, `events.subscribers[0].url: "ftp://crm.example.com/" must start with http:// or https://`},
		{"url missing", `
events:
  subscribers:
    - name: crm # <-
      secret: {value: s}
`, `events.subscribers[0].url: every subscriber needs the URL`},
		{"url with password", `
events:
  subscribers:
    - name: crm
      url: "https://u:pw@crm.example.com/" # <-
      secret: {value: s}
`, `must not carry a user or password`},
		{"secret missing", `
events:
  subscribers:
    - name: crm # <-
      url: "https://crm.example.com/"
`, `events.subscribers[0].secret: every subscriber needs a secret`},
		{"env secret unset", `
events:
  subscribers:
    - name: crm
      url: "https://crm.example.com/"
      secret: {env: WAGATE_TEST_HOOK_SECRET} # <-
`, `events.subscribers[0].secret.env: the environment variable WAGATE_TEST_HOOK_SECRET is not set`},
		{"unknown type", `
events:
  subscribers:
    - name: crm
      url: "https://crm.example.com/"
      secret: {value: s}
      types: [call.ended, call.exploded] # <-
`, `events.subscribers[0].types[1]: "call.exploded" is not an event type`},
		{"duplicate name", `
events:
  subscribers:
    - {name: crm, url: "https://a.example.com/", secret: {value: s}}
    - {name: crm, url: "https://b.example.com/", secret: {value: s}} # <-
`, `subscriber "crm" is already listed at events.subscribers[0]`},
		{"bad name", `
events:
  subscribers:
    - {name: "c r m", url: "https://a.example.com/", secret: {value: s}} # <-
`, `"c r m" may hold only letters`},
		{"zero timeout", `
events:
  subscribers:
    - name: crm
      url: "https://crm.example.com/"
      secret: {value: s}
      timeout: 0s # <-
`, `events.subscribers[0].timeout: 0s must be greater than 0`},
		{"zero concurrency", `
events:
  subscribers:
    - name: crm
      url: "https://crm.example.com/"
      secret: {value: s}
      concurrency: 0 # <-
`, `events.subscribers[0].concurrency: 0 must be at least 1`},
		{"backoff max below base", `
events:
  backoff_base: 10s
  backoff_max: 1s # <-
`, `events.backoff_max: 1s is below backoff_base 10s`},
		{"zero attempts", `
events:
  max_attempts: 0 # <-
`, `events.max_attempts: 0 must be at least 1`},
		{"zero queue", `
events:
  queue_size: 0 # <-
`, `events.queue_size: 0 must be at least 1`},
		{"negative backlog bound", `
events:
  max_pending: -1 # <-
`, `events.max_pending: -1 is negative; use 0 for no bound`},
		{"unknown key", `
events:
  subscribers:
    - name: crm
      url: "https://crm.example.com/"
      secret: {value: s}
      tiemout: 5s # <-
`, `unknown key "tiemout" in events.subscribers[0]; did you mean "timeout"?`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { wantOneProblem(t, tt.yaml, tt.want) })
	}
}

func TestEventsSecretFromEnv(t *testing.T) {
	src := `
events:
  subscribers:
    - name: crm
      url: "http://127.0.0.1:9000/hook"
      secret: {env: WAGATE_TEST_HOOK_SECRET}
      types: [call.ended, call.refused]
`
	t.Setenv("WAGATE_TEST_HOOK_SECRET", "from-env")
	c := mustParse(t, src)
	s := c.Events.Subscribers[0]
	if s.Secret.Resolve() != "from-env" || !slices.Equal(s.Types, []string{"call.ended", "call.refused"}) {
		t.Errorf("subscriber = %+v (secret %q)", s, s.Secret.Resolve())
	}
	// An inline value is the fallback, so an unset variable is no problem.
	t.Setenv("WAGATE_TEST_HOOK_SECRET", "")
	mustParse(t, `
events:
  subscribers:
    - name: crm
      url: "http://127.0.0.1:9000/hook"
      secret: {env: WAGATE_TEST_HOOK_SECRET, value: inline}
`)
}
