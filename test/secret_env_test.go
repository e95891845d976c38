package test

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestUnsetSecretEnv: a secret that names an unset environment variable
// and has no value stops `wagate -config` at start, naming the key and the
// variable (before this, the Meta webhook silently stayed off), while
// `wagate -check-config` passes with a warning, since it may run in
// another environment than the service.
func TestUnsetSecretEnv(t *testing.T) {
	t.Parallel()
	requireWagate(t)
	e := makeEnv(t)
	const variable = "WAGATE_TEST_UNSET_APP_SECRET_E2E"
	cfg := e.writeConfig(wagateOpts{APIExtra: `, webhook: {app_secret: {env: ` + variable + `}, verify_token: {value: v}}`})

	run := func(env []string, args ...string) (int, string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, wagateBin, args...)
		cmd.Dir = e.dir
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if ctx.Err() != nil {
			t.Fatalf("wagate %v did not finish: %s", args, out)
		}
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), string(out)
		} else if err != nil {
			t.Fatalf("wagate %v: %v", args, err)
		}
		return 0, string(out)
	}
	unset := []string{"PATH=/usr/bin:/bin"}

	code, out := run(unset, "-config", cfg)
	if code == 0 || !strings.Contains(out, "api.webhook.app_secret.env: the environment variable "+variable+" is not set") {
		t.Fatalf("wagate -config with %s unset: exit %d, want a refusal naming the key and the variable:\n%s", variable, code, out)
	}
	if !strings.Contains(out, cfg+":") {
		t.Errorf("the refusal does not name the file and line:\n%s", out)
	}

	code, out = run(unset, "-check-config", cfg)
	if code != 0 || !strings.Contains(out, "warning: "+cfg) || !strings.Contains(out, variable) ||
		!strings.Contains(out, "ok, with 1 warning") {
		t.Fatalf("wagate -check-config with %s unset: exit %d, want 0 with a warning:\n%s", variable, code, out)
	}

	code, out = run(append(unset, variable+"=s3cret"), "-check-config", cfg)
	if code != 0 || strings.Contains(out, "warning") {
		t.Fatalf("wagate -check-config with %s set: exit %d:\n%s", variable, code, out)
	}
}
