package configs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSecretResolve(t *testing.T) {
	t.Setenv("WAGATE_TEST_SECRET", "from-env")
	t.Setenv("WAGATE_TEST_EMPTY", "")
	tests := []struct {
		s    Secret
		want string
	}{
		{Secret{}, ""},
		{Secret{Value: "inline"}, "inline"},
		{Secret{Env: "WAGATE_TEST_SECRET"}, "from-env"},
		{Secret{Value: "inline", Env: "WAGATE_TEST_SECRET"}, "from-env"},  // env wins
		{Secret{Value: "inline", Env: "WAGATE_TEST_EMPTY"}, "inline"},     // set but empty
		{Secret{Value: "inline", Env: "WAGATE_TEST_UNSET_XYZ"}, "inline"}, // unset
		{Secret{Env: "WAGATE_TEST_UNSET_XYZ"}, ""},                        // nothing at all
	}
	for _, tt := range tests {
		if got := tt.s.Resolve(); got != tt.want {
			t.Errorf("%#v.Resolve() = %q, want %q", tt.s, got, tt.want)
		}
		c := Credential{Username: "u", Password: tt.s.Value, PasswordEnv: tt.s.Env}
		if got := c.Secret(); got != tt.want {
			t.Errorf("%#v.Secret() = %q, want %q", c, got, tt.want)
		}
	}
	if (Secret{}).IsSet() || !(Secret{Value: "x"}).IsSet() || !(Secret{Env: "X"}).IsSet() {
		t.Error("IsSet wrong")
	}
}

// TestSecretsNotPrinted keeps secrets out of logs of a printed config.
func TestSecretsNotPrinted(t *testing.T) {
	n := Number{Number: "+15550100001", Digest: Secret{Value: "hunter2"}}
	a := Auth{Users: []Credential{{Username: "pbx", Password: "hunter2"}}}
	for _, format := range []string{"%v", "%+v", "%#v", "%s"} {
		for _, v := range []any{n, a, n.Digest, a.Users[0]} {
			if out := fmt.Sprintf(format, v); strings.Contains(out, "hunter2") {
				t.Errorf("Sprintf(%q) leaks the secret: %s", format, out)
			}
		}
	}
	if got := (Secret{Env: "WAGATE_X"}).String(); got != "$WAGATE_X" {
		t.Errorf("String() = %q, want $WAGATE_X", got)
	}
	if got := (Credential{Username: "pbx", Password: "p"}).String(); got != "pbx:[redacted]" {
		t.Errorf("String() = %q, want pbx:[redacted]", got)
	}
}

func TestRecords(t *testing.T) {
	on, off := true, false
	c := &Config{Recording: Recording{Enabled: true}}
	if !c.Records(nil) || !c.Records(&Number{}) || c.Records(&Number{Recording: &off}) {
		t.Error("with recording.enabled: want nil and unset to record, false not to")
	}
	c.Recording.Enabled = false
	if c.Records(nil) || c.Records(&Number{}) || !c.Records(&Number{Recording: &on}) {
		t.Error("without recording.enabled: want only true to record")
	}
	if c.RecordingUsed() {
		t.Error("RecordingUsed with recording off and no number overriding it")
	}
	c.Numbers = []Number{{}, {Recording: &on}}
	if !c.RecordingUsed() {
		t.Error("RecordingUsed false although a number turns recording on")
	}
	c.Numbers, c.Recording.Enabled = nil, true
	if !c.RecordingUsed() {
		t.Error("RecordingUsed false with recording.enabled")
	}
}

// TestAPITokenNotNeeded lists configs the token and webhook rules accept.
func TestAPITokenNotNeeded(t *testing.T) {
	t.Setenv("WAGATE_TEST_SET_TOKEN", "t0ken")
	t.Setenv("WAGATE_META_APP_SECRET", "app-secret")
	for name, src := range map[string]string{
		"api off": `
api: {listen: ""}
permissions: {enabled: true}
recording: {enabled: true}
`,
		"token from env": `
api: {token: {env: WAGATE_TEST_SET_TOKEN}}
permissions: {enabled: true}
`,
		"token inline": `
api: {token: {value: t0ken}}
recording: {enabled: true}
`,
		"nothing to protect": `
api: {listen: "127.0.0.1:8080"}
`,
		"number not recorded": endpointsBlock + `
numbers:
  - {number: "+15550100001", phone_number_id: "1", route: {endpoint: pbx, user: "1001"}, recording: false}
`,
		"complete webhook": `
api:
  webhook:
    app_secret: {env: WAGATE_META_APP_SECRET}
    verify_token: {value: v}
`,
		"verify_token alone": `
api:
  webhook:
    verify_token: {value: v}
`,
	} {
		t.Run(name, func(t *testing.T) { mustParse(t, src) })
	}
}

// TestUnsetSecretEnv: every kind of secret that names an unset (or empty)
// variable and has no value is a problem at load naming the key and the
// variable; Check reports the same as warnings and loads the file.
func TestUnsetSecretEnv(t *testing.T) {
	t.Setenv("WAGATE_TEST_EMPTY_SECRET", "")
	t.Setenv("WAGATE_TEST_SET_SECRET", "s3t")
	src := endpointsBlock + `
  - name: dialer2
    kind: dialer
    source_cidrs: [10.9.0.0/16]
    auth: {users: [{username: d, password_env: WAGATE_TEST_UNSET_PW}]}
numbers:
  - number: "+15550100001"
    phone_number_id: "1"
    route: {endpoint: pbx, user: "1001"}
    digest: {env: WAGATE_TEST_UNSET_DIGEST}
api:
  token: {env: WAGATE_TEST_EMPTY_SECRET}
  webhook:
    app_secret: {env: WAGATE_TEST_UNSET_APP_SECRET}
    verify_token: {env: WAGATE_TEST_SET_SECRET}
events:
  subscribers:
    - {name: crm, url: "http://127.0.0.1:9/h", secret: {env: WAGATE_TEST_UNSET_HOOK}}
    - {name: bi, url: "http://127.0.0.1:9/b", secret: {env: WAGATE_TEST_UNSET_HOOK2, value: inline-fallback}}
sip:
  trace: {hep: {address: "127.0.0.1:9060", password: {env: WAGATE_TEST_UNSET_HEP}}}
permissions:
  backend: redis
  redis: {password: {env: WAGATE_TEST_UNSET_REDIS}}
`
	want := map[string]string{
		"endpoints[3].auth.users[0].password_env": "WAGATE_TEST_UNSET_PW",
		"numbers[0].digest.env":                   "WAGATE_TEST_UNSET_DIGEST",
		"api.token.env":                           "WAGATE_TEST_EMPTY_SECRET",
		"api.webhook.app_secret.env":              "WAGATE_TEST_UNSET_APP_SECRET",
		"events.subscribers[0].secret.env":        "WAGATE_TEST_UNSET_HOOK",
		// Secrets the hand-written list of secrets had missed: a HEP
		// collector's key or a Redis password silently empty.
		"sip.trace.hep.password.env":     "WAGATE_TEST_UNSET_HEP",
		"permissions.redis.password.env": "WAGATE_TEST_UNSET_REDIS",
	}
	check := func(what string, ps []Problem) {
		t.Helper()
		got := map[string]bool{}
		for _, p := range ps {
			got[p.Path] = true
			v, ok := want[p.Path]
			if !ok {
				t.Errorf("%s: unexpected problem %v", what, p)
				continue
			}
			if !strings.Contains(p.Msg, "environment variable "+v+" is not set") || p.Line == 0 {
				t.Errorf("%s: %v does not name %s with a line", what, p, v)
			}
		}
		for path := range want {
			if !got[path] {
				t.Errorf("%s: no problem for %s", what, path)
			}
		}
	}

	_, err := Parse([]byte(src), "wagate.yaml")
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("Parse = %v, want the unset variables as problems", err)
	}
	check("Parse", e.Problems)

	path := filepath.Join(t.TempDir(), "wagate.yaml")
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	c, warnings, err := Check(path)
	if err != nil || c == nil {
		t.Fatalf("Check = %v, want the file loaded with warnings", err)
	}
	check("Check", warnings)

	// Set, every one of them loads.
	for _, v := range want {
		t.Setenv(v, "now-set")
	}
	if _, err := Parse([]byte(src), "wagate.yaml"); err != nil {
		t.Errorf("with every variable set: %v", err)
	}
	if _, w, err := Check(path); err != nil || len(w) != 0 {
		t.Errorf("Check with every variable set: %v, warnings %v", err, w)
	}
}

// TestProblemsDoNotEchoSecrets: a secret written where a name or a URL
// belongs (the value in env, a password in a URL) is refused without
// being repeated: problems go to the log of a refused reload and to the
// terminal of -check-config.
func TestProblemsDoNotEchoSecrets(t *testing.T) {
	const secret = "xK9mySecretToken"
	for name, src := range map[string]string{
		"token in env": `
api:
  token: {env: "` + secret + `"}
`,
		"lower-case token in env": `
api:
  token: {env: "` + strings.ToLower(secret) + `"}
`,
		"password in password_env": endpointsBlock + `
  - {name: d2, kind: dialer, source_cidrs: [10.9.0.1], auth: {users: [{username: u, password_env: "` + secret + `"}]}}
`,
		"password in a non-http URL": `
events:
  subscribers:
    - {name: crm, url: "ftp://crm:` + secret + `@crm.example.com/x", secret: {value: s}}
`,
		"password in a Redis URL for an address": `
permissions:
  backend: redis
  redis: {address: "redis://:` + secret + `@10.0.0.5:6379", password: {value: p}}
`,
		"password in a call-flow URL": endpointsBlock + `
numbers:
  - {number: "+15550100001", phone_number_id: "1", route: {callflow: {url: "ftp://u:` + secret + `@ivr.example.com/{number}", secret: {value: s}, fallback: {endpoint: pbx, user: "1"}}}}
`,
		"password in a URL that does not parse": `
events:
  subscribers:
    - {name: crm, url: "https://crm:` + secret + `@crm.example.com:port/x", secret: {value: s}}
`,
	} {
		_, err := Parse([]byte(src), "wagate.yaml")
		if err == nil {
			t.Errorf("%s: accepted", name)
			continue
		}
		if strings.Contains(strings.ToLower(err.Error()), strings.ToLower(secret)) {
			t.Errorf("%s: the problem repeats the secret:\n%v", name, err)
		}
	}
}
