package events

import (
	"strconv"
	"testing"
	"time"
)

// FuzzParseRetryAfter: a receiver's Retry-After, whatever it holds, gives
// a delay in [0, maxRetryAfter] without panicking; delay-seconds within
// the bound are read exactly.
func FuzzParseRetryAfter(f *testing.F) {
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	for _, s := range []string{"", "0", "1", " 120 ", "-5", "1.5", "99999999999999999999", "18446744073709551615",
		"Mon, 01 Jun 2026 12:00:30 GMT", "Monday, 01-Jun-26 12:00:30 GMT", "Mon Jun  1 12:00:30 2026", "Mon, 01 Jun 2026 11:00:00 GMT", "soon"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		d := parseRetryAfter(v, now)
		if d < 0 || d > maxRetryAfter {
			t.Fatalf("%q: %v outside [0, %v]", v, d, maxRetryAfter)
		}
		if n, err := strconv.ParseUint(v, 10, 64); err == nil && n <= uint64(maxRetryAfter/time.Second) && d != time.Duration(n)*time.Second {
			t.Fatalf("%q: %v, want %ds", v, d, n)
		}
	})
}

// FuzzVerifySignature: any header and body are judged without panicking,
// and a header Sign made for the body always verifies.
func FuzzVerifySignature(f *testing.F) {
	now := time.Unix(1780000000, 0)
	secret := []byte(testSecret)
	f.Add(Sign(secret, now, []byte(`{"id":"x"}`)), []byte(`{"id":"x"}`))
	f.Add("t=1780000000,v1=00,v1=zz", []byte("{}"))
	f.Add("t=99999999999999999999,v1="+string(make([]byte, 64)), []byte(""))
	f.Add(",,=,t=", []byte("a"))
	f.Fuzz(func(t *testing.T, header string, body []byte) {
		_ = VerifySignature(secret, header, body, now, 5*time.Minute)
		if err := VerifySignature(secret, Sign(secret, now, body), body, now, 5*time.Minute); err != nil {
			t.Fatalf("own signature rejected: %v", err)
		}
	})
}

// FuzzParseCursor: a listing's cursor comes back in a query string
// (GET /v1/cdrs and the dead-letter listing), so anything may arrive.
// Nothing panics; what parses is a cursor of that listing only, past the
// start, and it is the one its listing hands out (no two spellings of one
// position).
func FuzzParseCursor(f *testing.F) {
	for _, s := range []string{"", Cursor{after: 1}.encode(cdrCursor), Cursor{after: 1<<63 - 1}.encode(deadCursor),
		"Y2RyOjA", "Y2RyOi0x", "Y2RyOjAx", "Y2RyOjE=", "!!", "ZGVhZDox"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		cdr, errC := ParseCDRCursor(s)
		dead, errD := ParseDeadLetterCursor(s)
		if s == "" {
			if errC != nil || errD != nil || !cdr.IsZero() || !dead.IsZero() {
				t.Fatal("the empty cursor is not the start of both listings")
			}
			return
		}
		if errC == nil && errD == nil {
			t.Fatalf("%q is a cursor of both listings", s)
		}
		for _, c := range []struct {
			cur  Cursor
			err  error
			kind string
		}{{cdr, errC, cdrCursor}, {dead, errD, deadCursor}} {
			if c.err != nil {
				continue
			}
			if c.cur.after <= 0 || c.cur.encode(c.kind) != s {
				t.Fatalf("%q read as %s cursor %d, which encodes as %q", s, c.kind, c.cur.after, c.cur.encode(c.kind))
			}
		}
	})
}
