package configs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const transferEndpoints = `
endpoints:
  - {name: meta, kind: whatsapp, host: 127.0.0.2, source_cidrs: [127.0.0.2]}
  - {name: pbx-b, kind: pbx, host: 127.0.0.5, source_cidrs: [127.0.0.5]}
  - name: pbx
    kind: pbx
    host: 127.0.0.3
    source_cidrs: [127.0.0.3]
    transfer:
      allow:
        - {endpoint: pbx, users: ["1???", "2000"]}
        - {endpoint: pbx-b}
        - {hunt: team}
  - {name: dialer, kind: dialer, source_cidrs: [127.0.0.4], transfer: {allow: [{endpoint: pbx, users: ["9*"]}]}}
numbers:
  - {number: "+15550100001", phone_number_id: "1", route: {endpoint: pbx, user: "1001"}, fallback: {endpoint: pbx-b, user: "queue"}}
hunt_lists:
  - {name: team, targets: [{endpoint: pbx-b, user: "2001"}]}
media: {music_on_hold: MOH}
`

// TestTransferRules: what each endpoint may transfer to, a number's
// fallback, music on hold.
func TestTransferRules(t *testing.T) {
	dir := t.TempDir()
	moh := filepath.Join(dir, "moh.wav")
	if err := os.WriteFile(moh, []byte("RIFF"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := mustParse(t, strings.ReplaceAll(transferEndpoints, "MOH", moh))
	pbx, dialer, meta := c.Endpoint("pbx"), c.Endpoint("dialer"), c.Endpoint("meta")
	for _, tt := range []struct {
		from *Endpoint
		ep   string
		user string
		want bool
	}{
		{pbx, "pbx", "1002", true},
		{pbx, "pbx", "2000", true},
		{pbx, "pbx", "10022", false},
		{pbx, "pbx", "3000", false},
		{pbx, "pbx-b", "anything", true},
		{pbx, "meta", "+447700900123", false},
		{pbx, "pbx", "", false},
		{dialer, "pbx", "901", true},
		{dialer, "pbx", "1002", false},
		{dialer, "pbx-b", "1", false},
		{meta, "pbx", "1002", false},
	} {
		if got := tt.from.Transfer.Allows(tt.ep, tt.user); got != tt.want {
			t.Errorf("%s → %s/%s: %v, want %v", tt.from.Name, tt.ep, tt.user, got, tt.want)
		}
	}
	if !pbx.Transfer.AllowsHunt("team") || dialer.Transfer.AllowsHunt("team") || pbx.Transfer.AllowsHunt("other") || pbx.Transfer.Allows("", "team") {
		t.Error("hunt list rules: pbx may transfer to team only, the dialer not at all")
	}
	n := c.NumberByE164("+15550100001")
	if n.Fallback == nil || n.Fallback.Endpoint != "pbx-b" || n.Fallback.User != "queue" {
		t.Errorf("fallback %+v", n.Fallback)
	}
	if c.Media.MusicOnHold != moh {
		t.Errorf("music_on_hold %q", c.Media.MusicOnHold)
	}
}

func TestTransferProblems(t *testing.T) {
	for _, tt := range []struct{ name, yaml, want string }{
		{"on whatsapp", `
endpoints:
  - {name: meta, kind: whatsapp, host: 127.0.0.2, source_cidrs: [127.0.0.2], transfer: {allow: [{endpoint: meta}]}} # <-
`, "only pbx and dialer endpoints transfer calls"},
		{"empty allow", `
endpoints:
  - {name: pbx, kind: pbx, host: 127.0.0.3, source_cidrs: [127.0.0.3], transfer: {allow: []}} # <-
`, "list at least one target"},
		{"unknown endpoint", `
endpoints:
  - {name: pbx, kind: pbx, host: 127.0.0.3, source_cidrs: [127.0.0.3], transfer: {allow: [{endpoint: nowhere}]}} # <-
`, `"nowhere" is not a defined endpoint`},
		{"to a dialer", `
endpoints:
  - {name: d, kind: dialer, source_cidrs: [127.0.0.4]}
  - {name: pbx, kind: pbx, host: 127.0.0.3, source_cidrs: [127.0.0.3], transfer: {allow: [{endpoint: d}]}} # <-
`, "calls are transferred only to pbx endpoints"},
		{"bad pattern", `
endpoints:
  - {name: pbx, kind: pbx, host: 127.0.0.3, source_cidrs: [127.0.0.3], transfer: {allow: [{endpoint: pbx, users: ["[1-"]}]}} # <-
`, "is not a pattern"},
		{"pattern with host", `
endpoints:
  - {name: pbx, kind: pbx, host: 127.0.0.3, source_cidrs: [127.0.0.3], transfer: {allow: [{endpoint: pbx, users: ["1*@evil"]}]}} # <-
`, "must be only a user part"},
		{"unknown hunt list", `
endpoints:
  - {name: pbx, kind: pbx, host: 127.0.0.3, source_cidrs: [127.0.0.3], transfer: {allow: [{hunt: nope}]}} # <-
`, `"nope" is not a hunt list`},
		{"hunt and endpoint", `
endpoints:
  - {name: pbx, kind: pbx, host: 127.0.0.3, source_cidrs: [127.0.0.3], transfer: {allow: [{hunt: team, endpoint: pbx}]}} # <-
hunt_lists:
  - {name: team, targets: [{endpoint: pbx, user: "2001"}]}
`, "either hunt or endpoint"},
		{"fallback to a dialer", endpointsBlock + `
numbers:
  - number: "+15550100001"
    phone_number_id: "1"
    route: {endpoint: pbx, user: "1001"}
    fallback: {endpoint: dialer, user: "1"} # <-
`, "a route must name an endpoint of kind pbx"},
		{"music on hold missing", `
media:
  music_on_hold: /nonexistent/moh.wav # <-
`, "moh.wav"},
	} {
		t.Run(tt.name, func(t *testing.T) { wantOneProblem(t, tt.yaml, tt.want) })
	}
}
