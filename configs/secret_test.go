package configs

import (
	"fmt"
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
	for name, src := range map[string]string{
		"api off": `
api: {listen: ""}
permissions: {enabled: true}
recording: {enabled: true}
`,
		"token from env, not set at check time": `
api: {token: {env: WAGATE_TEST_UNSET_TOKEN}}
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
