package events

import (
	"errors"
	"os/exec"
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

// TestSignatureWithOpenSSL checks the shell recipe of docs/events.md: the
// hex HMAC openssl computes over "<t>.<body>" is the v1 of the header.
func TestSignatureWithOpenSSL(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not installed")
	}
	secret := "whsec-shell"
	body := `{"id":"0197a3c4-0000-7000-8000-000000000000","type":"call.started","data":{"user":"+16505551234"}}`
	now := time.Unix(1750000000, 0)
	h := Sign([]byte(secret), now, []byte(body))
	cmd := exec.Command("sh", "-c", `printf '%s.%s' "$T" "$BODY" | openssl dgst -sha256 -hmac "$SECRET" -r | cut -d' ' -f1`)
	cmd.Env = []string{"T=1750000000", "BODY=" + body, "SECRET=" + secret, "PATH=/usr/bin:/bin"}
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(out)); "t=1750000000,v1="+got != h {
		t.Errorf("openssl says %s, header is %s", got, h)
	}
}
