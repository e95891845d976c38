package permissions

import (
	"errors"
	"fmt"
	"strings"
)

// Key names one call permission: a business number (Meta's phone-number-id)
// and a WhatsApp user. User is normalised: a phone number is "+" and its
// E.164 digits; a business-scoped user id (BSUID) keeps Meta's spelling with
// the country prefix upper-cased ("US.13491208655302741918").
type Key struct{ PhoneNumberID, User string }

// ErrInvalidKey is wrapped by every key validation error.
var ErrInvalidKey = errors.New("invalid permission key")

// Bounds of the identifiers. E.164 numbers have at most 15 digits; DESIGN §4
// accepts 8 or more. Meta's phone-number-ids are 15–16 digits today; 32
// leaves room without letting a key grow without bound. BSUIDs are a
// two-letter country code, a dot and an alphanumeric id, at most 256
// characters in all (Meta, 2026).
const (
	minPhoneDigits = 8
	maxPhoneDigits = 15
	maxNumberIDLen = 32
	// MaxBSUIDLen is the longest business-scoped user id accepted.
	MaxBSUIDLen = 256
)

// NormalizeKey validates and normalises both halves of a key.
func NormalizeKey(phoneNumberID, user string) (Key, error) {
	id, err := NormalizePhoneNumberID(phoneNumberID)
	if err != nil {
		return Key{}, err
	}
	u, err := NormalizeUser(user)
	if err != nil {
		return Key{}, err
	}
	return Key{PhoneNumberID: id, User: u}, nil
}

// Normalize is NormalizeKey(k.PhoneNumberID, k.User).
func (k Key) Normalize() (Key, error) { return NormalizeKey(k.PhoneNumberID, k.User) }

// String is "phone_number_id/user", the form used in logs and in the store.
func (k Key) String() string { return k.PhoneNumberID + "/" + k.User }

// NormalizePhoneNumberID checks a Meta phone-number-id: ASCII digits only.
func NormalizePhoneNumberID(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", fmt.Errorf("%w: phone_number_id is empty", ErrInvalidKey)
	}
	if len(s) > maxNumberIDLen {
		return "", fmt.Errorf("%w: phone_number_id longer than %d digits", ErrInvalidKey, maxNumberIDLen)
	}
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return "", fmt.Errorf("%w: phone_number_id %q is not all digits", ErrInvalidKey, s)
		}
	}
	return s, nil
}

// NormalizeUser turns a WhatsApp user given as a phone number ("+1 650-555
// 1234", "16505551234") or a BSUID ("us.1349…") into its canonical form.
// Canonical input is returned as is, without allocating, because Admit
// normalises on the hot path.
func NormalizeUser(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", fmt.Errorf("%w: user is empty", ErrInvalidKey)
	}
	if len(s) > MaxBSUIDLen {
		return "", fmt.Errorf("%w: user longer than %d characters", ErrInvalidKey, MaxBSUIDLen)
	}
	if s[0] == '+' || isDigit(s[0]) {
		return normalizePhone(s)
	}
	return normalizeBSUID(s)
}

func normalizePhone(s string) (string, error) {
	if canonicalPhone(s) {
		return s, nil
	}
	var b strings.Builder
	b.Grow(1 + maxPhoneDigits)
	b.WriteByte('+')
	digits := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case isDigit(c):
			if digits == 0 && c == '0' {
				return "", fmt.Errorf("%w: phone number %q: E.164 does not start with 0", ErrInvalidKey, s)
			}
			digits++
			if digits > maxPhoneDigits {
				return "", fmt.Errorf("%w: phone number %q has more than %d digits", ErrInvalidKey, s, maxPhoneDigits)
			}
			b.WriteByte(c)
		case c == '+' && i == 0:
		case c == ' ' || c == '-' || c == '.' || c == '(' || c == ')':
			// Readable separators that people and CRMs put in numbers.
		default:
			return "", fmt.Errorf("%w: phone number %q has a character that is neither a digit nor a separator", ErrInvalidKey, s)
		}
	}
	if digits < minPhoneDigits {
		return "", fmt.Errorf("%w: phone number %q has fewer than %d digits", ErrInvalidKey, s, minPhoneDigits)
	}
	return b.String(), nil
}

// canonicalPhone reports whether s is already "+" and 8–15 digits, the
// first not 0.
func canonicalPhone(s string) bool {
	if len(s) < 1+minPhoneDigits || len(s) > 1+maxPhoneDigits || s[0] != '+' || s[1] == '0' {
		return false
	}
	for i := 1; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return true
}

func normalizeBSUID(s string) (string, error) {
	if len(s) < 4 || !isLetter(s[0]) || !isLetter(s[1]) || s[2] != '.' {
		return "", fmt.Errorf("%w: user %q is neither a phone number nor a BSUID (CC.id)", ErrInvalidKey, s)
	}
	for i := 3; i < len(s); i++ {
		c := s[i]
		if !isDigit(c) && !isLetter(c) && c != '_' && c != '-' {
			return "", fmt.Errorf("%w: BSUID %q has a character outside [A-Za-z0-9_-]", ErrInvalidKey, s)
		}
	}
	if isUpper(s[0]) && isUpper(s[1]) {
		return s, nil
	}
	// Meta's id after the dot is opaque and kept exactly; only the country
	// code has one right case.
	return strings.ToUpper(s[:2]) + s[2:], nil
}

func isDigit(c byte) bool  { return c >= '0' && c <= '9' }
func isUpper(c byte) bool  { return c >= 'A' && c <= 'Z' }
func isLetter(c byte) bool { return isUpper(c) || (c >= 'a' && c <= 'z') }
