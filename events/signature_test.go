package events

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSignature(t *testing.T) {
	secret := []byte("whsec-1")
	body := []byte(`{"id":"e1","type":"call.ended"}`)
	now := time.Unix(1750000000, 0)
	h := Sign(secret, now, body)
	if !strings.HasPrefix(h, "t=1750000000,v1=") || len(h) != len("t=1750000000,v1=")+64 {
		t.Fatalf("header %q", h)
	}
	if !checkSignature(string(secret), Sign(secret, time.Now(), body), body) {
		t.Error("the independent check refuses Sign's signature")
	}
	if err := VerifySignature(secret, h, body, now.Add(4*time.Minute), 5*time.Minute); err != nil {
		t.Errorf("valid: %v", err)
	}
	// A rotated secret: the receiver accepts either of two v1 values.
	if err := VerifySignature(secret, "t=1750000000,v1="+strings.Repeat("0", 64)+","+h[len("t=1750000000,"):], body, now, time.Minute); err != nil {
		t.Errorf("two signatures: %v", err)
	}
	tests := []struct {
		name   string
		header string
		body   []byte
		secret []byte
		at     time.Time
		want   error
	}{
		{"other body", h, []byte(`{"id":"e2"}`), secret, now, ErrSignatureMismatch},
		{"other secret", h, body, []byte("whsec-2"), now, ErrSignatureMismatch},
		{"too old", h, body, secret, now.Add(6 * time.Minute), ErrSignatureExpired},
		{"from the future", h, body, secret, now.Add(-6 * time.Minute), ErrSignatureExpired},
		{"replayed with a new t", strings.Replace(h, "t=1750000000", "t=1750000100", 1), body, secret, now, ErrSignatureMismatch},
		{"no t", h[len("t=1750000000,"):], body, secret, now, ErrSignatureMalformed},
		{"no v1", "t=1750000000", body, secret, now, ErrSignatureMalformed},
		{"v1 not hex", "t=1750000000,v1=zz", body, secret, now, ErrSignatureMalformed},
		{"empty", "", body, secret, now, ErrSignatureMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := VerifySignature(tt.secret, tt.header, tt.body, tt.at, 5*time.Minute); !errors.Is(err, tt.want) {
				t.Errorf("got %v, want %v", err, tt.want)
			}
		})
	}
}

// TestSignatureShellRecipe runs the openssl recipe of docs/events.md, as
// written there, against signatures made by Sign.
func TestSignatureShellRecipe(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not installed")
	}
	doc, err := os.ReadFile(filepath.Join("..", "docs", "events.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(doc), "<!-- verify.sh")
	_, after, ok2 := strings.Cut(after, "```sh\n")
	script, _, ok3 := strings.Cut(after, "```")
	if !ok || !ok2 || !ok3 {
		t.Fatal("docs/events.md has no verify.sh block")
	}
	secret := "whsec-shell"
	body := `{"id":"0197a3c4-0000-7000-8000-000000000000","type":"call.started","data":{"user":"+16505551234","note":"50% of 'it'"}}` + "\n"
	run := func(sig, secret, body string) (string, error) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "body.json"), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("sh", "-c", script)
		cmd.Dir = dir
		cmd.Env = []string{"SIG=" + sig, "SECRET=" + secret, "PATH=" + os.Getenv("PATH")}
		out, err := cmd.CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	now := time.Now()
	if out, err := run(Sign([]byte(secret), now, []byte(body)), secret, body); err != nil || out != "valid" {
		t.Errorf("a good signature: %q %v", out, err)
	}
	if out, err := run(Sign([]byte(secret), now, []byte(body)), secret, strings.Replace(body, "50%", "51%", 1)); err == nil || out != "INVALID" {
		t.Errorf("a changed body: %q %v", out, err)
	}
	if out, err := run(Sign([]byte("other"), now, []byte(body)), secret, body); err == nil || out != "INVALID" {
		t.Errorf("another secret: %q %v", out, err)
	}
	if out, err := run(Sign([]byte(secret), now.Add(-10*time.Minute), []byte(body)), secret, body); err == nil || out != "stale" {
		t.Errorf("an old signature: %q %v", out, err)
	}
}
