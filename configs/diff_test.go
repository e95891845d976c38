package configs

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// reloadBase is a config with every section a reload may touch.
const reloadBase = `
sip:
  listen:
    - {transport: udp, address: "127.0.0.1:5072"}
    - {transport: tcp, address: "127.0.0.1:5072"}
  ring_timeout: 60s
endpoints:
  - {name: meta, kind: whatsapp, host: 127.0.0.2, source_cidrs: [127.0.0.2]}
  - {name: pbx, kind: pbx, host: 127.0.0.3, source_cidrs: [127.0.0.3]}
  - {name: dialer, kind: dialer, source_cidrs: [127.0.0.4]}
numbers:
  - {number: "+15550100001", phone_number_id: "100000000000001", route: {endpoint: pbx, user: "1001"}, dialers: [dialer]}
media: {port_min: 30000, port_max: 40000}
api: {listen: "127.0.0.1:8080", token: {value: t}}
log: {level: info, format: text}
permissions: {enabled: true}
`

// edit returns reloadBase with each old string replaced by its new one,
// failing the test when one is not found (the base changed shape).
func edit(t *testing.T, pairs ...string) string {
	t.Helper()
	s := reloadBase
	for i := 0; i+1 < len(pairs); i += 2 {
		if !strings.Contains(s, pairs[i]) {
			t.Fatalf("reloadBase has no %q", pairs[i])
		}
		s = strings.Replace(s, pairs[i], pairs[i+1], 1)
	}
	return s
}

func TestDiffAndRestartKeys(t *testing.T) {
	old := mustParse(t, reloadBase)
	tests := []struct {
		name        string
		src         string
		diff, restr []string
	}{
		{"unchanged", reloadBase, nil, nil},
		{"same values written differently", edit(t, "ring_timeout: 60s", "ring_timeout: 1m",
			"media: {port_min: 30000, port_max: 40000}", "media: {}"), nil, nil},
		{"route user", edit(t, `user: "1001"`, `user: "2002"`), []string{"numbers[0].route.user"}, nil},
		{"number added", edit(t, "dialers: [dialer]}", `dialers: [dialer]}
  - {number: "+15550100002", phone_number_id: "100000000000002", route: {endpoint: pbx, user: "1002"}}`),
			[]string{"numbers"}, nil},
		{"endpoint source and auth", edit(t, "source_cidrs: [127.0.0.3]}", "source_cidrs: [127.0.0.3, 10.0.0.0/8], auth: {users: [{username: u, password: p}]}}"),
			[]string{"endpoints[1].source_cidrs", "endpoints[1].auth"}, nil},
		{"a proxy in front of Meta, live", edit(t, "source_cidrs: [127.0.0.2]}", "source_cidrs: [127.0.0.2], proxy_cidrs: [10.0.0.5]}"),
			[]string{"endpoints[0].proxy_cidrs"}, nil},
		{"log level and limits", edit(t, "level: info", "level: debug",
			"permissions: {enabled: true}", "permissions: {enabled: true, limits: {requests_per_7d: 3}}"),
			[]string{"log.level", "permissions.limits.requests_per_7d"}, nil},
		{"edge limits", edit(t, "ring_timeout: 60s", "ring_timeout: 60s\n  unknown_sources: reject\n  flood: {stranger_rate: 50}\n  tcp: {idle_timeout: 30s}"),
			[]string{"sip.unknown_sources", "sip.flood.stranger_rate", "sip.tcp.idle_timeout"}, nil},
		{"media ports and api address", edit(t, "port_min: 30000", "port_min: 32000", `listen: "127.0.0.1:8080"`, `listen: "127.0.0.1:8081"`),
			[]string{"media.port_min", "api.listen"}, []string{"media.port_min", "api.listen"}},
		{"listener address", edit(t, `- {transport: tcp, address: "127.0.0.1:5072"}`, `- {transport: tcp, address: "127.0.0.1:5073"}`),
			[]string{"sip.listen[1].address"}, []string{"sip.listen[1].address"}},
		{"listener added", edit(t, `- {transport: tcp, address: "127.0.0.1:5072"}`, `- {transport: tcp, address: "127.0.0.1:5072"}
    - {transport: udp, address: "127.0.0.1:5080"}`),
			[]string{"sip.listen"}, []string{"sip.listen"}},
		{"mixed: one restart key refuses the lot", edit(t, `user: "1001"`, `user: "2002"`, "format: text", "format: json"),
			[]string{"numbers[0].route.user", "log.format"}, []string{"log.format"}},
		{"permissions off", edit(t, "permissions: {enabled: true}", "permissions: {enabled: false}"),
			[]string{"permissions.enabled"}, []string{"permissions.enabled"}},
		{"token and webhook", edit(t, "token: {value: t}", "token: {value: t2}, webhook: {app_secret: {value: a}, verify_token: {value: v}}"),
			[]string{"api.token.value", "api.webhook.app_secret.value", "api.webhook.verify_token.value"},
			[]string{"api.token.value", "api.webhook.app_secret.value", "api.webhook.verify_token.value"}},
		{"sip host and user agent", edit(t, "ring_timeout: 60s", "ring_timeout: 60s\n  host: sip.example.com\n  user_agent: x"),
			[]string{"sip.host", "sip.user_agent"}, []string{"sip.host", "sip.user_agent"}},
		{"recording turned on", edit(t, "permissions: {enabled: true}", "permissions: {enabled: true}\nrecording: {enabled: true}"),
			[]string{"recording.enabled"}, []string{"recording.enabled"}},
		{"recording turned on for one number", edit(t, "dialers: [dialer]}", "dialers: [dialer], recording: true}"),
			[]string{"numbers[0].recording"}, []string{"numbers[0].recording"}},
		{"data dir, node id, cdr, events", edit(t, "permissions: {enabled: true}", `permissions: {enabled: true}
data_dir: /var/lib/wagate
node_id: n2
cdr: {retention_days: 10}
events: {queue_size: 5}`),
			[]string{"data_dir", "node_id", "permissions.store", "cdr.retention_days", "events.queue_size"},
			[]string{"data_dir", "node_id", "permissions.store", "cdr.retention_days", "events.queue_size"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nc := mustParse(t, tt.src)
			if got := Diff(old, nc); !slices.Equal(got, tt.diff) {
				t.Errorf("Diff = %q, want %q", got, tt.diff)
			}
			if got := RestartKeys(old, nc); !slices.Equal(got, tt.restr) {
				t.Errorf("RestartKeys = %q, want %q", got, tt.restr)
			}
		})
	}
}

// TestRecordingSwitchWhenRecorderRuns: once recording runs for some
// number, turning it on or off elsewhere is a per-call decision a reload
// applies.
func TestRecordingSwitchWhenRecorderRuns(t *testing.T) {
	on := edit(t, "dialers: [dialer]}", "dialers: [dialer], recording: true}")
	old := mustParse(t, on)
	nc := mustParse(t, strings.Replace(on, "permissions: {enabled: true}", "permissions: {enabled: true}\nrecording: {enabled: true}", 1))
	if got := RestartKeys(old, nc); len(got) != 0 {
		t.Errorf("recording.enabled with a recorder running: RestartKeys = %q, want none", got)
	}
	if got := RestartKeys(nc, old); len(got) != 0 {
		t.Errorf("recording turned off: RestartKeys = %q, want none", got)
	}
	// Its directory is fixed when the recorder starts.
	moved := mustParse(t, strings.Replace(on, "permissions: {enabled: true}", "permissions: {enabled: true}\nrecording: {directory: /srv/rec}", 1))
	if got := RestartKeys(old, moved); !slices.Equal(got, []string{"recording.directory"}) {
		t.Errorf("recording.directory: RestartKeys = %q", got)
	}
}

// TestLiveKeysExist keeps liveKeys in step with the schema: a renamed key
// would otherwise silently become restart-only.
func TestLiveKeysExist(t *testing.T) {
	all := map[string]bool{}
	var walk func(reflect.Type, string)
	walk = func(tp reflect.Type, path string) {
		all[path] = true
		for tp.Kind() == reflect.Pointer {
			tp = tp.Elem()
		}
		switch {
		case tp == durationType:
		case tp.Kind() == reflect.Struct:
			for name, ft := range yamlFields(tp) {
				walk(ft, join(path, name))
			}
		case tp.Kind() == reflect.Slice && tp.Elem().Kind() == reflect.Struct:
			walk(tp.Elem(), path+"[]")
		}
	}
	walk(reflect.TypeFor[Config](), "")
	for _, k := range liveKeys {
		if !all[k] {
			t.Errorf("liveKeys names %q, which is not a key of the schema", k)
		}
	}
}

// TestSourceAndSHA256: a loaded config names its file and the hash of its
// bytes as sha256sum prints it.
func TestSourceAndSHA256(t *testing.T) {
	path := filepath.Join(t.TempDir(), "wagate.yaml")
	if err := os.WriteFile(path, []byte(reloadBase), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(reloadBase))
	if c.Source() != path || c.SHA256() != hex.EncodeToString(sum[:]) {
		t.Errorf("Source %q SHA256 %q; want %q %x", c.Source(), c.SHA256(), path, sum)
	}
	if other := mustParse(t, reloadBase+"\n"); other.SHA256() == c.SHA256() {
		t.Error("two different files have the same SHA256")
	}
	d, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	if d.Source() != defaultName {
		t.Errorf("default Source = %q, want %q", d.Source(), defaultName)
	}
}

// TestCallFlowNeedsRecorder: a call-flow or queue route records its
// voicemail into the recordings store, which start-up creates only when
// some route may use it. The first such route, where nothing ran the
// store, takes a restart and the refusal names it; once the store runs
// (for recording or an earlier call flow), routes and recording come and
// go with a reload.
func TestCallFlowNeedsRecorder(t *testing.T) {
	const flow = `route: {callflow: {url: "https://ivr.example.com/flow", secret: {value: s}, fallback: {endpoint: pbx, user: "1000"}}}`
	base := mustParse(t, reloadBase)
	withFlow := edit(t, `route: {endpoint: pbx, user: "1001"}`, flow)
	flowCfg := mustParse(t, withFlow)
	added := mustParse(t, edit(t, "dialers: [dialer]}", `dialers: [dialer]}
  - {number: "+15550100002", phone_number_id: "100000000000002", `+flow+`}`))
	afterHours := mustParse(t, edit(t, "dialers: [dialer]}",
		`dialers: [dialer], hours: {timezone: UTC, weekly: [{days: [mon-fri], from: "09:00", to: "17:00"}], after_hours: `+strings.TrimPrefix(flow, "route: ")+`}}`))
	for _, tc := range []struct {
		name string
		nc   *Config
		want []string
	}{
		{"route becomes a call flow", flowCfg, []string{"numbers[0].route.callflow"}},
		{"number added with a call flow", added, []string{"numbers"}},
		{"after-hours call flow", afterHours, []string{"numbers[0].hours"}},
	} {
		if got := RestartKeys(base, tc.nc); !slices.Equal(got, tc.want) {
			t.Errorf("%s, nothing recording: RestartKeys = %q, want %q", tc.name, got, tc.want)
		}
	}

	// With the store running for a call flow, recording turns on live, a
	// second call flow comes and the first goes.
	rec := mustParse(t, strings.Replace(withFlow, "permissions: {enabled: true}", "permissions: {enabled: true}\nrecording: {enabled: true}", 1))
	if got := RestartKeys(flowCfg, rec); len(got) != 0 {
		t.Errorf("recording turned on beside a call flow: RestartKeys = %q, want none", got)
	}
	if got := RestartKeys(flowCfg, base); len(got) != 0 {
		t.Errorf("call flow removed: RestartKeys = %q, want none", got)
	}
	// With recording on, a call flow comes live.
	recBase := mustParse(t, strings.Replace(reloadBase, "permissions: {enabled: true}", "permissions: {enabled: true}\nrecording: {enabled: true}", 1))
	if got := RestartKeys(recBase, rec); len(got) != 0 {
		t.Errorf("call flow added while recording: RestartKeys = %q, want none", got)
	}
}
