package test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// checkConfig runs wagate -check-config path and returns its exit code and
// output.
func checkConfig(t *testing.T, path string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, wagateBin, "-check-config", path).CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("wagate -check-config did not finish: %v", ctx.Err())
	}
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("wagate -check-config: %v", err)
		}
		code = ee.ExitCode()
	}
	return code, string(out)
}

// TestCheckConfig: the config these tests generate is valid, and a broken
// one is refused with "FILE:LINE: message" naming each bad line.
func TestCheckConfig(t *testing.T) {
	t.Parallel()
	requireWagate(t)
	e := makeEnv(t)
	good := e.writeConfig(wagateOpts{})
	if code, out := checkConfig(t, good); code != 0 {
		t.Fatalf("wagate -check-config on the generated config: exit %d\n%s", code, out)
	}

	// Break it twice: a bad duration and an unknown key, on known lines.
	data, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	var badLines []int
	for i, l := range lines {
		if strings.HasPrefix(l, "  ring_timeout:") {
			lines[i] = "  ring_timeout: soon"
			badLines = append(badLines, i+1)
		}
		if strings.HasPrefix(l, "  host: ") {
			lines[i] = l + "\n  ringing_timeout: 30s"
			badLines = append(badLines, i+2)
		}
	}
	if len(badLines) != 2 {
		t.Fatalf("generated config changed shape; could not break it:\n%s", data)
	}
	bad := filepath.Join(e.dir, "broken.yaml")
	if err := os.WriteFile(bad, []byte(strings.Join(lines, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out := checkConfig(t, bad)
	if code == 0 {
		t.Fatalf("wagate -check-config accepted a broken config:\n%s", out)
	}
	for _, n := range badLines {
		want := fmt.Sprintf("%s:%d: ", bad, n)
		if !strings.Contains(out, want) {
			t.Errorf("output does not name line %d (%q):\n%s", n, want, out)
		}
	}
}

// TestCheckConfigMusicOnHold: a music_on_hold that is no WAV wagate can
// play fails -check-config on its line, as it fails wagate -config at
// start, instead of passing the check and stopping the service.
func TestCheckConfigMusicOnHold(t *testing.T) {
	t.Parallel()
	requireWagate(t)
	e := makeEnv(t)
	notWAV := filepath.Join(e.dir, "hold.wav")
	if err := os.WriteFile(notWAV, []byte("ID3 an mp3, not a wav"), 0o644); err != nil {
		t.Fatal(err)
	}
	path := e.writeConfig(wagateOpts{MediaExtra: fmt.Sprintf(", music_on_hold: %q", notWAV)})
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	line := 0
	for i, l := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(l, "media:") {
			line = i + 1
		}
	}
	code, out := checkConfig(t, path)
	if want := fmt.Sprintf("%s:%d: media.music_on_hold: ", path, line); code == 0 || !strings.Contains(out, want) || !strings.Contains(out, "not a RIFF WAVE file") {
		t.Errorf("wagate -check-config with a music_on_hold that is no WAV: exit %d, want 1 and %q\n%s", code, want, out)
	}
}
