package configs

import (
	"strings"
	"testing"
	"time"
)

const callFlowNumber = endpointsBlock + `
numbers:
  - number: "+15550100001"
    phone_number_id: "100000000000001"
    route:
      callflow:
`

func TestCallFlowRouteDefaults(t *testing.T) {
	c := mustParse(t, callFlowNumber+`        url: https://ivr.example.com/wagate?caller={caller}&call={callId}
        secret: {value: s3cret}
        fallback: {endpoint: pbx, user: "1000"}
`)
	cf := c.Numbers[0].Route.CallFlow
	if cf == nil {
		t.Fatal("callflow not decoded")
	}
	if cf.Method != "POST" || cf.Timeout.D() != 3*time.Second || cf.Message != DefaultCallFlowMessage {
		t.Fatalf("defaults: method %q, timeout %v, message %q", cf.Method, cf.Timeout, cf.Message)
	}
	if cf.Fallback != (FallbackRoute{Endpoint: "pbx", User: "1000"}) || cf.Secret.Resolve() != "s3cret" {
		t.Fatalf("fallback %+v", cf.Fallback)
	}
	if c.Numbers[0].Route.Endpoint != "" {
		t.Fatal("a callflow route got an endpoint")
	}

	// An explicit empty message says nothing; GET is accepted in any case.
	c = mustParse(t, callFlowNumber+`        url: http://127.0.0.1:8000/flow
        method: get
        message: ""
        timeout: 1500ms
        voice: en-GB
        secret: {value: s}
        fallback: {endpoint: pbx, user: "1000"}
`)
	cf = c.Numbers[0].Route.CallFlow
	if cf.Method != "GET" || cf.Message != "" || cf.Timeout.D() != 1500*time.Millisecond || cf.Voice != "en-GB" {
		t.Fatalf("%+v", cf)
	}
}

func TestCallFlowRouteProblems(t *testing.T) {
	ok := map[string]string{
		"url":      "        url: https://ivr.example.com/wagate\n",
		"secret":   "        secret: {value: s}\n",
		"fallback": "        fallback: {endpoint: pbx, user: \"1000\"}\n",
	}
	// with returns the callflow keys with the named ones replaced (a ""
	// replacement drops the key); the replacement carries the marker.
	with := func(repl map[string]string) string {
		var b strings.Builder
		b.WriteString(callFlowNumber)
		for _, k := range []string{"url", "secret", "fallback"} {
			if r, ok2 := repl[k]; ok2 {
				b.WriteString(r)
			} else {
				b.WriteString(ok[k])
			}
		}
		for k, r := range repl {
			if _, known := ok[k]; !known {
				b.WriteString(r)
			}
		}
		return b.String()
	}
	tests := []struct {
		name string
		yaml string
		want string
	}{
		{"no url", strings.Replace(with(map[string]string{"url": ""}), "      callflow:", "      callflow: # <-", 1), "numbers[0].route.callflow.url: a callflow route needs the URL"},
		{"ftp url", with(map[string]string{"url": "        url: ftp://ivr.example.com/x # <-\n"}), "must start with http:// or https://"},
		{"unknown value", with(map[string]string{"url": "        url: https://ivr.example.com/?x={user} # <-\n"}), "{user} is not a template value"},
		{"value in host", with(map[string]string{"url": "        url: https://{caller}.example.com/ # <-\n"}), "puts a template value in the host"},
		{"user in url", with(map[string]string{"url": "        url: https://a:b@ivr.example.com/ # <-\n"}), "must not carry a user or password"},
		{"no secret", strings.Replace(with(map[string]string{"secret": ""}), "      callflow:", "      callflow: # <-", 1), "needs a secret"},
		{"no fallback", strings.Replace(with(map[string]string{"fallback": ""}), "      callflow:", "      callflow: # <-", 1), "needs a fallback"},
		{"fallback to dialer", with(map[string]string{"fallback": "        fallback: {endpoint: dialer, user: \"1\"} # <-\n"}), "callflow.fallback.endpoint: endpoint \"dialer\" has kind dialer"},
		{"fallback user with host", with(map[string]string{"fallback": "        fallback: {endpoint: pbx, user: 1000@pbx} # <-\n"}), "callflow.fallback.user"},
		{"method", with(map[string]string{"m": "        method: PUT # <-\n"}), `"PUT" is not POST or GET`},
		{"body with GET", with(map[string]string{"m": "        method: GET\n        body: a={caller} # <-\n"}), "a GET request has no body"},
		{"body unknown value", with(map[string]string{"m": "        body: a={digits} # <-\n"}), "{digits} is not a template value"},
		{"timeout too long", with(map[string]string{"m": "        timeout: 30s # <-\n"}), "between 500ms and 10s"},
		{"timeout number", with(map[string]string{"m": "        timeout: 3 # <-\n"}), "is not a duration"},
		{"message newline", with(map[string]string{"m": "        message: \"a\\nb\" # <-\n"}), "line breaks"},
		{"voice", with(map[string]string{"m": "        voice: \"en US\" # <-\n"}), "not a voice name"},
		{"unknown key", with(map[string]string{"m": "        urls: x # <-\n"}), `unknown key "urls" in numbers[0].route.callflow; did you mean "url"?`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { wantOneProblem(t, tc.yaml, tc.want) })
	}
}

func TestRouteIsEndpointOrCallFlow(t *testing.T) {
	wantOneProblem(t, endpointsBlock+`
numbers:
  - number: "+15550100001"
    phone_number_id: "100000000000001"
    route:
      endpoint: pbx # <-
      user: "1000"
      callflow:
        url: https://ivr.example.com/
        secret: {value: s}
        fallback: {endpoint: pbx, user: "1000"}
`, "give either endpoint and user (ring an extension), hunt (a hunt list), callflow")
}

func TestCallFlowSecretEnvMustBeSet(t *testing.T) {
	t.Setenv("WAGATE_TEST_IVR_SECRET", "")
	wantOneProblem(t, callFlowNumber+`        url: https://ivr.example.com/
        secret: {env: WAGATE_TEST_IVR_SECRET} # <-
        fallback: {endpoint: pbx, user: "1000"}
`, "WAGATE_TEST_IVR_SECRET is not set")
}

func TestPromptsDefaultsAndProblems(t *testing.T) {
	c := mustParse(t, endpointsBlock)
	if p := c.Prompts; p.TTS != TTSEspeak || p.Voice != "en" || p.MemoryMB != 64 || p.DiskMB != 256 || p.TTSURL != "" {
		t.Fatalf("defaults: %+v", p)
	}
	c = mustParse(t, endpointsBlock+"prompts: {tts: http, tts_url: \"https://tts.example.com/r\", disk_mb: 0, voice: pt-BR}\n")
	if p := c.Prompts; p.TTS != TTSHTTP || p.DiskMB != 0 || p.Voice != "pt-BR" {
		t.Fatalf("%+v", p)
	}
	for _, tt := range []struct{ yaml, want string }{
		{"prompts:\n  tts: festival # <-\n", `"festival" is not espeak-ng or http`},
		{"prompts: # <-\n  tts: http\n", "tts: http needs the URL"},
		{"prompts:\n  tts_url: https://tts.example.com/ # <-\n", "only used with tts: http"},
		{"prompts:\n  tts: http\n  tts_url: ftp://tts.example.com/ # <-\n", "must start with http:// or https://"},
		{"prompts:\n  voice: \"en US\" # <-\n", "is not a voice name"},
		{"prompts:\n  memory_mb: 0 # <-\n", "between 1 and 4096"},
		{"prompts:\n  disk_mb: -1 # <-\n", "between 0 (no disk cache)"},
		{"prompts:\n  fetch_allow: [10.0.0.0/33] # <-\n", `"10.0.0.0/33" is not a CIDR`},
		{"prompts:\n  fetch_allow: [\"http://media.example.com/\"] # <-\n", "is a URL; give only its host name"},
		{"prompts:\n  fetch_allow: [\"media.example.com:8080\"] # <-\n", "leave out the port"},
		{"prompts:\n  fetch_allow: [\"bad_name.example\"] # <-\n", "is not a CIDR, an address or a host name"},
		{"prompts:\n  fetch_allow: [\"a.*.example\"] # <-\n", "is not a CIDR, an address or a host name"},
		{"prompts:\n  fetch_allow: [\"\"] # <-\n", "is empty"},
		{"prompts:\n  fetch_allow: [\"fe80::1%eth0\"] # <-\n", "interface zone"},
	} {
		wantOneProblem(t, endpointsBlock+tt.yaml, tt.want)
	}
}

func TestPromptsFetchAllow(t *testing.T) {
	c := mustParse(t, endpointsBlock+`prompts:
  fetch_allow: ["10.20.0.0/16", "192.168.7.9", "::ffff:172.16.0.5", "FD00::/8", "Media.Corp.Example.", "*.cdn.internal"]
`)
	prefixes, hosts := c.Prompts.FetchAllowList()
	want := []string{"10.20.0.0/16", "192.168.7.9/32", "172.16.0.5/32", "fd00::/8"}
	if len(prefixes) != len(want) {
		t.Fatalf("prefixes %v, want %v", prefixes, want)
	}
	for i, p := range prefixes {
		if p.String() != want[i] {
			t.Errorf("prefix %d is %s, want %s", i, p, want[i])
		}
	}
	if len(hosts) != 2 || hosts[0] != "media.corp.example" || hosts[1] != "*.cdn.internal" {
		t.Errorf("hosts %q", hosts)
	}
	if p, h := mustParse(t, endpointsBlock).Prompts.FetchAllowList(); len(p)+len(h) != 0 {
		t.Errorf("default allows %v %v; want nothing", p, h)
	}
}

// FuzzParseFetchAllow: any entry is a valid network, a lower-case host
// name (wildcard or not) that validates again the same, or a message;
// never a panic.
func FuzzParseFetchAllow(f *testing.F) {
	for _, s := range []string{"10.0.0.0/8", "fd00::1", "::ffff:1.2.3.4/120", "media.example.com", "*.x.example", "a:b", "http://x/", "", "*.", "1.2.3.4%eth0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, host, msg := parseFetchAllow(s)
		switch {
		case msg != "":
			if host != "" || p.IsValid() {
				t.Fatalf("%q: message %q with a result %v %q", s, msg, p, host)
			}
		case host != "":
			if host != strings.ToLower(host) || p.IsValid() {
				t.Fatalf("%q: host %q, prefix %v", s, host, p)
			}
			if p2, h2, m2 := parseFetchAllow(host); m2 != "" || h2 != host || p2.IsValid() {
				t.Fatalf("%q: host %q does not read back (%v %q %q)", s, host, p2, h2, m2)
			}
		default:
			if !p.IsValid() || p != p.Masked() || p.Addr().Is4In6() {
				t.Fatalf("%q: prefix %v", s, p)
			}
		}
	})
}
