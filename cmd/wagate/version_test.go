package main

import (
	"bytes"
	"os/exec"
	"runtime"
	"strings"
	"testing"
)

// TestVersionFromLdflags: what `make build` stamps with -ldflags is what
// -version prints, with the Go toolchain and the linked libopus, whose
// version matches the libopus development package the build used.
func TestVersionFromLdflags(t *testing.T) {
	oldV, oldC := version, commit
	t.Cleanup(func() { version, commit = oldV, oldC })
	version, commit = "v1.2.3-4-gabcdef0", "abcdef0123456789abcdef0123456789abcdef01"

	var b bytes.Buffer
	readBuildInfo().write(&b)
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 4 {
		t.Fatalf("-version printed %d lines:\n%s", len(lines), b.String())
	}
	if lines[0] != "wagate v1.2.3-4-gabcdef0" {
		t.Errorf("line 1 = %q", lines[0])
	}
	if !strings.HasPrefix(lines[1], "commit  abcdef0123456789abcdef0123456789abcdef01") {
		t.Errorf("line 2 = %q", lines[1])
	}
	if want := "go      " + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH; lines[2] != want {
		t.Errorf("line 3 = %q, want %q", lines[2], want)
	}
	out, err := exec.Command("pkg-config", "--modversion", "opus").Output()
	if err != nil {
		t.Fatalf("pkg-config --modversion opus (make test installs libopus-dev and pkg-config): %v", err)
	}
	if want := "libopus libopus " + strings.TrimSpace(string(out)); !strings.HasPrefix(lines[3], want) {
		t.Errorf("line 4 = %q, want %q (the libopus of pkg-config)", lines[3], want)
	}
}

// TestVersionFallback: a plain `go build` sets neither variable; the
// binary still says something, never an empty field.
func TestVersionFallback(t *testing.T) {
	oldV, oldC := version, commit
	t.Cleanup(func() { version, commit = oldV, oldC })
	version, commit = "", ""
	b := readBuildInfo()
	if b.Version == "" || b.Commit == "" || b.Opus == "" {
		t.Errorf("empty field in %+v", b)
	}
}
