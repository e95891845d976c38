package test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// maxExposure bounds `systemd-analyze security`'s exposure score of the
// shipped unit (0 safest, 10 least safe; 1.6 when this was written), so
// that a hardening line dropped by accident fails here.
const maxExposure = 2.0

// TestSystemdUnit checks deploy/wagate.service with systemd-analyze
// (package systemd; `make test` installs it): `verify` must accept it
// without a single warning, and `security --offline` must rate it at most
// maxExposure.
//
// verify also checks that ExecStart's program exists and is executable,
// and /usr/local/bin/wagate does not on a build machine; the unit is
// therefore copied to a temp dir with ExecStart pointing at the wagate this
// test run built, its one change.
func TestSystemdUnit(t *testing.T) {
	t.Parallel()
	requireWagate(t)
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatalf("systemd-analyze is not installed (%v): run `make test`, which installs it (Debian package systemd)", err)
	}
	unit, err := os.ReadFile(filepath.Join(repoRoot, "deploy", "wagate.service"))
	if err != nil {
		t.Fatal(err)
	}
	const shipped = "ExecStart=/usr/local/bin/wagate "
	if !strings.Contains(string(unit), "\n"+shipped) {
		t.Fatalf("deploy/wagate.service has no %q line", shipped)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "wagate.service")
	local := strings.Replace(string(unit), "\n"+shipped, "\nExecStart="+wagateBin+" ", 1)
	if err := os.WriteFile(path, []byte(local), 0o644); err != nil {
		t.Fatal(err)
	}

	run := func(args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, analyze, args...).CombinedOutput()
		return string(out), err
	}
	// verify exits 0 on values it cannot parse and keys it does not know
	// (it ignores them, as systemd would): any output is a failure.
	if out, err := run("verify", "--man=no", path); err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}

	out, err := run("security", "--offline=yes", "--no-pager", path)
	if err != nil {
		t.Fatalf("systemd-analyze security: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`Overall exposure level for wagate\.service: ([0-9.]+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("systemd-analyze security printed no exposure level:\n%s", out)
	}
	if score, _ := strconv.ParseFloat(m[1], 64); score > maxExposure {
		t.Errorf("exposure level %s, want at most %.1f:\n%s", m[1], maxExposure, out)
	}
}
