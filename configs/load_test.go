package configs

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDecodeProblems(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want string
	}{
		{"unknown top-level key", `
sip:
  host: 127.0.0.1
sipp: {} # <-
`, `wagate.yaml:4: unknown top-level key "sipp"; did you mean "sip"?`},
		{"unknown key in a section", `
sip:
  user_agent: wagate
  foo: 1 # <-
`, `unknown key "foo" in sip`},
		{"unknown key in a list item", `
endpoints:
  - name: pbx
    kind: pbx
    hots: 10.0.0.1 # <-
    source_cidrs: [10.0.0.1]
`, `unknown key "hots" in endpoints[0]; did you mean "host"?`},
		{"unknown key deep down", `
numbers:
  - number: "+15550100001"
    route:
      endpoint: pbx
      extension: "1001" # <-
`, `unknown key "extension" in numbers[0].route`},
		{"bad duration", `
media:
  rtp_timeout: 30 # <-
`, `wagate.yaml:3: media.rtp_timeout: "30" is not a duration; write it like "30s"`},
		{"duration given as a list", `
sip:
  ring_timeout: # <-
    - 30s
`, `sip.ring_timeout: must be a duration like "30s", not a list`},
		{"not a number", `
endpoints:
  - name: pbx
    port: five # <-
`, `endpoints[0].port: "five" is not a whole number`},
		{"not a bool", `
recording:
  enabled: sometimes # <-
`, `recording.enabled: "sometimes" is not true or false`},
		{"scalar where a list belongs", `
endpoints:
  - name: pbx
    source_cidrs: 10.0.0.0/8 # <-
`, `endpoints[0].source_cidrs: must be a list`},
		{"list where a mapping belongs", `
media: # <-
  - port_min: 30000
`, `media: must be a mapping of keys, not a list`},
		{"mapping where a value belongs", `
log:
  level: # <-
    name: info
`, `log.level: must be a single value, not a mapping of keys`},
		{"key given twice", `
log:
  level: info
  level: debug # <-
`, `key "level" is given twice in log (first at line 3)`},
		{"syntax error", `
sip:
  host: [127.0.0.1 # <-
`, `wagate.yaml:3: `},
		{"unknown anchor", `
log:
  level: *lvl # <-
`, `unknown anchor 'lvl' referenced`},
		{"top level is a list", `
- sip # <-
`, `the file must be a mapping of sections`},
		{"second document", `
log: {level: info}
--- # <-
log: {level: debug}
`, `the file holds a second YAML document`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { wantOneProblem(t, tt.yaml, tt.want) })
	}
}

// TestMergeKeys checks that YAML anchors and "<<" merges, which operators
// use to share endpoint settings, pass the shape check and decode.
func TestMergeKeys(t *testing.T) {
	src := `
endpoints:
  - &pbx
    name: pbx-a
    kind: pbx
    host: 10.0.0.1
    transport: tcp
    source_cidrs: [10.0.0.1]
  - <<: *pbx
    name: pbx-b
    host: 10.0.0.2
    source_cidrs: [10.0.0.2]
`
	c, err := Parse([]byte(src), "merge.yaml")
	if err != nil {
		t.Fatal(err)
	}
	b := c.Endpoint("pbx-b")
	if b == nil || b.Kind != KindPBX || b.Transport != "tcp" || b.Host != "10.0.0.2" {
		t.Fatalf("pbx-b = %+v, want kind pbx, transport tcp, host 10.0.0.2", b)
	}

	bad := `
base: &b {nmae: x} # <-
`
	wantOneProblem(t, bad, `unknown top-level key "base"`)
}

func TestEmptyFileIsValid(t *testing.T) {
	for _, src := range []string{"", "\n", "# nothing but a comment\n", "---\n", "~\n"} {
		if _, err := Parse([]byte(src), "empty.yaml"); err != nil {
			t.Errorf("Parse(%q): %v", src, err)
		}
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()

	good := filepath.Join(dir, "good.yaml")
	if err := os.WriteFile(good, []byte("log: {level: debug}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(good)
	if err != nil {
		t.Fatal(err)
	}
	if c.Log.Level != "debug" {
		t.Errorf("log.level = %q, want debug", c.Log.Level)
	}

	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("log:\n  level: loud\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Load(bad)
	if err == nil || !strings.HasPrefix(err.Error(), bad+":2: log.level: ") {
		t.Errorf("Load(bad) = %v, want an error starting %q", err, bad+":2: log.level: ")
	}

	_, err = Load(filepath.Join(dir, "missing.yaml"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load(missing) = %v, want fs.ErrNotExist", err)
	}
}

func TestDefault(t *testing.T) {
	c, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	if len(c.SIP.Listen) != 2 || c.SIP.Listen[0] != (Listener{Transport: "udp", Address: "127.0.0.1:5072"}) || c.SIP.Listen[1] != (Listener{Transport: "tcp", Address: "127.0.0.1:5072"}) {
		t.Errorf("sip.listen = %+v", c.SIP.Listen)
	}
	want := map[string]struct {
		kind, host string
		src        string
	}{
		"meta":   {KindWhatsApp, "127.0.0.2", "127.0.0.2/32"},
		"pbx":    {KindPBX, "127.0.0.3", "127.0.0.3/32"},
		"dialer": {KindDialer, "127.0.0.4", "127.0.0.4/32"},
	}
	for name, w := range want {
		e := c.Endpoint(name)
		if e == nil {
			t.Errorf("endpoint %q missing", name)
			continue
		}
		if e.Kind != w.kind || e.Host != w.host || e.Port != 5060 || e.Transport != "udp" ||
			len(e.Prefixes) != 1 || e.Prefixes[0].String() != w.src {
			t.Errorf("endpoint %q = %+v", name, *e)
		}
	}
	n := c.NumberByE164("+15550100001")
	if n == nil {
		t.Fatal("number +15550100001 missing")
	}
	if n.PhoneNumberID != "100000000000001" || n.Route != (Route{Endpoint: "pbx", User: "1001"}) ||
		len(n.Dialers) != 1 || n.Dialers[0] != "dialer" || !n.CallbackPermission {
		t.Errorf("number = %+v", *n)
	}

	// Each call gets its own copy.
	c.Endpoints[0].Name = "changed"
	c2, _ := Default()
	if c2.Endpoints[0].Name != "meta" {
		t.Error("Default returned shared state")
	}
	DefaultYAML()[0] = '!'
	if _, err := Default(); err != nil {
		t.Error("DefaultYAML returned the embedded bytes themselves")
	}
}

// TestLoopbackExampleIsDefault keeps examples/loopback.yaml what it claims to
// be: the default config with every key spelled out.
func TestLoopbackExampleIsDefault(t *testing.T) {
	def, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	ex, err := Load(filepath.Join("examples", "loopback.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	def.idx, ex.idx = nil, nil
	if got, want := dump(t, ex), dump(t, def); got != want {
		t.Errorf("examples/loopback.yaml differs from the default:\nloopback:\n%s\ndefault:\n%s", got, want)
	}
}
