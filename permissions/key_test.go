package permissions

import (
	"errors"
	"strings"
	"testing"
)

func TestNormalizeUser(t *testing.T) {
	tests := []struct {
		in, want string
		bad      bool
	}{
		{in: "+16505551234", want: "+16505551234"},
		{in: "16505551234", want: "+16505551234"},
		{in: " +1 (650) 555-1234 ", want: "+16505551234"},
		{in: "+44.20.7946.0958", want: "+442079460958"},
		{in: "+12345678", want: "+12345678"},
		{in: "+123456789012345", want: "+123456789012345"},
		{in: "US.13491208655302741918", want: "US.13491208655302741918"},
		{in: "us.13491208655302741918", want: "US.13491208655302741918"},
		{in: "br.AbC_9-x", want: "BR.AbC_9-x"},
		{in: "", bad: true},
		{in: "   ", bad: true},
		{in: "+1234567", bad: true},          // 7 digits
		{in: "+1234567890123456", bad: true}, // 16 digits
		{in: "+0123456789", bad: true},       // E.164 never starts with 0
		{in: "++16505551234", bad: true},
		{in: "+1650555123x", bad: true},
		{in: "+1650\r\n5551234", bad: true},
		{in: "1650555\x001234", bad: true},
		{in: "US13491208655302741918", bad: true},
		{in: "U.1349", bad: true},
		{in: "US.", bad: true},
		{in: "US.12/34", bad: true},
		{in: "US.12 34", bad: true},
		{in: "ÜS.1234", bad: true},
		{in: "US." + strings.Repeat("1", MaxBSUIDLen-3), want: "US." + strings.Repeat("1", MaxBSUIDLen-3)},
		{in: "US." + strings.Repeat("1", MaxBSUIDLen-2), bad: true},
	}
	for _, tt := range tests {
		got, err := NormalizeUser(tt.in)
		if tt.bad {
			if err == nil || !errors.Is(err, ErrInvalidKey) {
				t.Errorf("NormalizeUser(%q) = %q, %v; want an ErrInvalidKey", tt.in, got, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("NormalizeUser(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestNormalizePhoneNumberID(t *testing.T) {
	tests := []struct {
		in, want string
		bad      bool
	}{
		{in: "106540352242922", want: "106540352242922"},
		{in: " 1 ", want: "1"},
		{in: "", bad: true},
		{in: "12a", bad: true},
		{in: "+1234", bad: true},
		{in: "12/34", bad: true},
		{in: strings.Repeat("9", maxNumberIDLen+1), bad: true},
	}
	for _, tt := range tests {
		got, err := NormalizePhoneNumberID(tt.in)
		if (err != nil) != tt.bad || got != tt.want {
			t.Errorf("NormalizePhoneNumberID(%q) = %q, %v; want %q (bad %v)", tt.in, got, err, tt.want, tt.bad)
		}
	}
}

// TestNormalizeCanonicalNoAlloc guards the hot path: Admit normalises its
// key, and a canonical key must cost nothing.
func TestNormalizeCanonicalNoAlloc(t *testing.T) {
	k := Key{PhoneNumberID: "106540352242922", User: "+16505551234"}
	b := Key{PhoneNumberID: "106540352242922", User: "US.13491208655302741918"}
	if n := testing.AllocsPerRun(100, func() {
		if _, err := k.Normalize(); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Normalize(); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("Normalize of canonical keys allocates %v times", n)
	}
}

// FuzzNormalizeKey: normalisation never panics, is idempotent, yields keys
// that are safe as store keys and header values, and round-trips through
// the store's key encoding.
func FuzzNormalizeKey(f *testing.F) {
	for _, s := range []string{"+16505551234", "16505551234", " +1 (650) 555-1234", "us.1349120865", "US.a_b-c", "+0", "", "\r\n", "ÜS.1", "12.34.5678.90"} {
		f.Add("106540352242922", s)
	}
	f.Add(" 42 ", "+4930901820")
	f.Fuzz(func(t *testing.T, id, user string) {
		k, err := NormalizeKey(id, user)
		if err != nil {
			if !errors.Is(err, ErrInvalidKey) {
				t.Fatalf("error %v does not wrap ErrInvalidKey", err)
			}
			return
		}
		again, err := k.Normalize()
		if err != nil || again != k {
			t.Fatalf("not idempotent: %+v -> %+v, %v", k, again, err)
		}
		for _, s := range []string{k.PhoneNumberID, k.User} {
			if s == "" || strings.ContainsAny(s, "/ \t\r\n\x00") {
				t.Fatalf("unsafe key part %q", s)
			}
			for i := 0; i < len(s); i++ {
				if s[i] >= 0x80 {
					t.Fatalf("non-ASCII key part %q", s)
				}
			}
		}
		if len(k.User) > MaxBSUIDLen || len(k.PhoneNumberID) > maxNumberIDLen {
			t.Fatalf("key too long: %+v", k)
		}
		if strings.HasPrefix(k.User, "+") && !canonicalPhone(k.User) {
			t.Fatalf("phone %q not canonical", k.User)
		}
		back, err := parseStoreKey(k.String())
		if err != nil || back != k {
			t.Fatalf("store key round trip: %q -> %+v, %v", k.String(), back, err)
		}
	})
}
