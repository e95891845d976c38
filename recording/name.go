package recording

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
)

// MaxNameLen bounds the length in bytes of a safe name (without the
// collision suffix and the extension). With "-NNNN", ".json" and the
// temporary-file decoration a file name stays far below NAME_MAX (255).
const MaxNameLen = 128

// hashSep separates the truncated prefix of a long name from the hash of
// the whole Call-ID. It is never produced by the escaping, so a hashed name
// cannot equal the name of another, shorter Call-ID.
const hashSep = '~'

// hashHexLen is the length of the hash suffix of a truncated name (64 bits).
const hashHexLen = 16

// emptyName is the name of the empty Call-ID: a lone escape character is
// never produced for any other input.
const emptyName = "%"

// safeByte reports whether c may appear as itself in a file name: ASCII
// letters, digits and "-_.@+=" — nothing that is a path separator on any
// system, nothing a shell or URL needs quoted, no control character.
func safeByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case '-', '_', '.', '@', '+', '=':
		return true
	}
	return false
}

// SafeName maps an untrusted Call-ID to a file name (without extension)
// that is safe to create inside the recordings directory:
//
//   - every byte outside [A-Za-z0-9-_.@+=] is written %XX (uppercase hex):
//     path separators, NUL and control characters, spaces, '%' itself,
//     non-ASCII and invalid UTF-8 alike, so the result is plain ASCII;
//   - a leading '.' or '-' is escaped too (no hidden files, no names that
//     look like command-line options), so the result is never "." or "..";
//   - the empty Call-ID maps to "%";
//   - a result longer than MaxNameLen bytes is cut to a prefix (never in
//     the middle of an escape) followed by '~' and 16 hex digits of the
//     SHA-256 of the whole Call-ID.
//
// Below the length bound the mapping is injective (Call-IDs that differ
// only in unsafe characters get different names) and reversible; above it
// distinct Call-IDs collide only if their 64-bit hashes do. Collisions of
// any kind, and repeated Call-IDs, are resolved when the file is created
// (a "-2", "-3", … suffix) and checked against the sidecar when it is read.
func SafeName(callID string) string {
	if callID == "" {
		return emptyName
	}
	var b strings.Builder
	b.Grow(min(len(callID), MaxNameLen+3))
	const hexdig = "0123456789ABCDEF"
	for i := 0; i < len(callID); i++ {
		c := callID[i]
		if safeByte(c) && !(i == 0 && (c == '.' || c == '-')) {
			b.WriteByte(c)
		} else {
			b.WriteByte('%')
			b.WriteByte(hexdig[c>>4])
			b.WriteByte(hexdig[c&0xf])
		}
		if b.Len() > MaxNameLen {
			break // it will be hashed; the rest does not matter
		}
	}
	s := b.String()
	if len(s) <= MaxNameLen {
		return s
	}
	sum := sha256.Sum256([]byte(callID))
	cut := MaxNameLen - 1 - hashHexLen
	// Do not split an escape: a '%' in the last two kept bytes starts one.
	if i := strings.LastIndexByte(s[max(0, cut-2):cut], '%'); i >= 0 {
		cut = max(0, cut-2) + i
	}
	return s[:cut] + string(hashSep) + hex.EncodeToString(sum[:hashHexLen/2])
}

// unescapeName reverses SafeName for names that were not hashed; ok is false
// for hashed or malformed names. Used by tests and recovery diagnostics.
func unescapeName(name string) (string, bool) {
	if name == emptyName {
		return "", true
	}
	if strings.IndexByte(name, hashSep) >= 0 {
		return "", false
	}
	var b strings.Builder
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c != '%' {
			b.WriteByte(c)
			continue
		}
		if i+3 > len(name) {
			return "", false
		}
		v, err := strconv.ParseUint(name[i+1:i+3], 16, 8)
		if err != nil {
			return "", false
		}
		b.WriteByte(byte(v))
		i += 2
	}
	return b.String(), true
}

// nameFor is the mapping in use; tests swap in a lossy one to exercise
// collision handling.
var nameFor = SafeName

// candidateName is the k-th (1-based) file name tried for a safe name:
// the name itself, then name-2, name-3, …
func candidateName(safe string, k int) string {
	if k <= 1 {
		return safe
	}
	return safe + "-" + strconv.Itoa(k)
}
