package recording

import (
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/wagate/wagate/configs"
)

func TestSafeName(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"abc123@host.example", "abc123@host.example"},
		{"a/b", "a%2Fb"},
		{"../../etc/passwd", "%2E.%2F..%2Fetc%2Fpasswd"},
		{"x\x00y", "x%00y"},
		{".hidden", "%2Ehidden"},
		{".", "%2E"},
		{"..", "%2E."},
		{"-rf", "%2Drf"},
		{"a-b", "a-b"},
		{"a b:c\\d", "a%20b%3Ac%5Cd"},
		{"100%", "100%25"},
		{"\xff\xfe", "%FF%FE"},
		{"é", "%C3%A9"},
		{"", "%"},
	} {
		if got := SafeName(tc.in); got != tc.want {
			t.Errorf("SafeName(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	long := strings.Repeat("A", 8192)
	n := SafeName(long)
	if len(n) > MaxNameLen || !strings.HasPrefix(n, "AAAA") || !strings.Contains(n, "~") {
		t.Errorf("long name %q (%d bytes)", n, len(n))
	}
	if n2 := SafeName(long[:8191] + "B"); n2 == n {
		t.Error("two long Call-IDs differing at the end share a name")
	}
	// A cut never splits an escape.
	for i := range 8 {
		s := SafeName(strings.Repeat("a", i) + strings.Repeat("/", 100))
		if len(s) > MaxNameLen {
			t.Fatalf("%d bytes", len(s))
		}
		cut := s[:strings.IndexByte(s, '~')]
		for j := 0; j < len(cut); j++ {
			if cut[j] == '%' && (j+3 > len(cut) || cut[j+1:j+3] != "2F") {
				t.Errorf("split escape in %q", s)
			}
		}
	}
}

// checkSafe asserts the invariants of a safe name.
func checkSafe(t *testing.T, in, s string) {
	t.Helper()
	if s == "" || s == "." || s == ".." || len(s) > MaxNameLen || s[0] == '.' || s[0] == '-' {
		t.Fatalf("SafeName(%q) = %q", in, s)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '/' || c == '\\' || c < 0x20 || c >= 0x7f || c == ':' {
			t.Fatalf("SafeName(%q) = %q: byte %#x", in, s, c)
		}
	}
	if !utf8.ValidString(s) || filepath.Base(s) != s || !filepath.IsLocal(s) {
		t.Fatalf("SafeName(%q) = %q not a plain local name", in, s)
	}
}

func FuzzSafeName(f *testing.F) {
	for _, s := range []string{"", ".", "..", "../../etc/passwd", "a/b", "x\x00y", ".hidden",
		"\xff", strings.Repeat("%", 200), strings.Repeat("é", 100), "abc@host"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		s := SafeName(in)
		checkSafe(t, in, s)
		if SafeName(in) != s {
			t.Fatal("not deterministic")
		}
		if back, ok := unescapeName(s); ok && back != in {
			t.Fatalf("unescape(SafeName(%q)) = %q", in, back)
		} else if !ok && !strings.Contains(s, "~") {
			t.Fatalf("SafeName(%q) = %q neither hashed nor reversible", in, s)
		}
	})
}

// hostileIDs are Call-IDs an attacker may send.
var hostileIDs = []string{
	"../../etc/passwd",
	"a/b",
	"x\x00y",
	strings.Repeat("A", 8192),
	strings.Repeat("A", 8191) + "B",
	"\xff\xfe\x80abc",
	".hidden",
	".",
	"..",
	"/abs/path",
	"C:\\windows\\x",
	"call 1",
	"call/1",
	"call\\1",
	"call:1",
	"call%2F1",
	"call\n1",
	strings.Repeat("../", 50),
	"",
}

// TestHostileCallIDs: every hostile Call-ID gives its own file, inside the
// directory, and can be found again by its exact Call-ID.
func TestHostileCallIDs(t *testing.T) {
	clk := newFakeClock(t0)
	parent := t.TempDir()
	m, _ := newTestManager(t, configs.Recording{Directory: filepath.Join(parent, "rec")}, clk)
	paths := map[string]string{}
	for _, id := range hostileIDs {
		r := record(t, m, clk, Meta{CallID: id, ACallID: id}, 3)
		p := r.Path()
		if rel, err := filepath.Rel(m.Dir(), p); err != nil || !filepath.IsLocal(rel) {
			t.Fatalf("%q → %s outside %s", id, p, m.Dir())
		}
		checkSafe(t, id, strings.TrimSuffix(filepath.Base(p), ".wav"))
		if other, dup := paths[p]; dup {
			t.Fatalf("%q and %q share %s", id, other, p)
		}
		paths[p] = id
	}
	// Nothing was created outside the recordings directory, and every file
	// inside is a regular file at <YYYY>/<MM>/<DD>/<name>.{wav,json}.
	top, _ := os.ReadDir(parent)
	if len(top) != 1 || top[0].Name() != "rec" {
		t.Fatalf("parent holds %v", top)
	}
	files := 0
	filepath.WalkDir(m.Dir(), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(m.Dir(), p)
		if d.IsDir() {
			return nil
		}
		files++
		if !d.Type().IsRegular() || strings.Count(rel, string(filepath.Separator)) != 3 || !strings.HasPrefix(rel, filepath.Join("2025", "03", "04")) {
			t.Errorf("unexpected %s", rel)
		}
		return nil
	})
	if files != 2*len(hostileIDs) {
		t.Errorf("%d files, want %d", files, 2*len(hostileIDs))
	}
	for _, id := range hostileIDs {
		f, e, err := m.Open(id)
		if err != nil {
			t.Fatalf("Open(%q): %v", id, err)
		}
		f.Close()
		if e.CallID != id || abs(m, e.File) == "" {
			t.Errorf("Open(%q) found %+v", id, e)
		}
		if want := paths[abs(m, e.File)]; want != id {
			t.Errorf("Open(%q) gave the file of %q", id, want)
		}
		if id == "" {
			continue // List's "" means every Call-ID
		}
		es, err := m.List("", id, 0)
		if err != nil || len(es) != 1 || es[0].CallID != id {
			t.Errorf("List(call_id=%q) = %d entries, %v", id, len(es), err)
		}
	}
	if _, _, err := m.Open("never-recorded"); err != ErrNotFound {
		t.Errorf("Open(unknown) = %v", err)
	}
}

// TestCollisions: a repeated Call-ID, and Call-IDs that a (deliberately
// lossy) mapping sends to the same name, get distinct files, and Open and
// List tell them apart by the Call-ID in the sidecar.
func TestCollisions(t *testing.T) {
	old := nameFor
	nameFor = func(id string) string { // lossy: every unsafe byte → '_'
		b := []byte(SafeName(id))
		out := b[:0]
		for i := 0; i < len(b); i++ {
			if b[i] == '%' {
				out = append(out, '_')
				i += 2
				continue
			}
			out = append(out, b[i])
		}
		return string(out)
	}
	defer func() { nameFor = old }()

	clk := newFakeClock(t0)
	m, _ := newTestManager(t, configs.Recording{}, clk)
	ids := []string{"call/1", "call:1", "call 1", "call/1", "call_1", "call/1"}
	var got []string
	for _, id := range ids {
		r := record(t, m, clk, Meta{CallID: id}, 2)
		got = append(got, filepath.Base(r.Path()))
	}
	want := []string{"call_1.wav", "call_1-2.wav", "call_1-3.wav", "call_1-4.wav", "call_1-5.wav", "call_1-6.wav"}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("files %v, want %v", got, want)
		}
	}
	for id, n := range map[string]int{"call/1": 3, "call:1": 1, "call 1": 1, "call_1": 1, "call?1": 0} {
		es, err := m.List("2025-03-04", id, 0)
		if err != nil || len(es) != n {
			t.Fatalf("List(%q) = %d, %v; want %d", id, len(es), err, n)
		}
		for _, e := range es {
			if e.CallID != id {
				t.Errorf("List(%q) returned %q", id, e.CallID)
			}
		}
	}
	// Open returns the newest recording of the Call-ID.
	f, e, err := m.Open("call/1")
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if filepath.Base(e.File) != "call_1-6.wav" {
		t.Errorf("Open(call/1) = %s", e.File)
	}
	// A sidecar left without its WAV still holds its name.
	if err := os.Remove(filepath.Join(m.Dir(), "2025", "03", "04", "call_1-2.wav")); err != nil {
		t.Fatal(err)
	}
	r := record(t, m, clk, Meta{CallID: "call/2"}, 2)
	if filepath.Base(r.Path()) != "call_2.wav" {
		t.Errorf("got %s", r.Path())
	}
	r = record(t, m, clk, Meta{CallID: "call|1"}, 2)
	if filepath.Base(r.Path()) != "call_1-7.wav" {
		t.Errorf("got %s", r.Path())
	}
	es, _ := m.List("", "call|1", 0)
	if len(es) != 1 {
		t.Errorf("List(call|1) = %d", len(es))
	}
}

// TestSymlinkEscape: a day directory that is a symbolic link leading out
// of the recordings directory is refused; nothing is written outside.
func TestSymlinkEscape(t *testing.T) {
	clk := newFakeClock(t0)
	m, _ := newTestManager(t, configs.Recording{}, clk)
	outside := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(m.Dir(), "2025")); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Start(Meta{CallID: "esc"}); err == nil {
		t.Fatal("Start wrote through a symbolic link leading outside")
	}
	if s := m.Stats(); s.Failed != 1 {
		t.Errorf("stats %+v", s)
	}
	ents, _ := os.ReadDir(outside)
	if len(ents) != 0 {
		t.Fatalf("written outside: %v", ents)
	}
	// A symbolic link inside the tree that points at a file outside is
	// not served either.
	if err := os.Remove(filepath.Join(m.Dir(), "2025")); err != nil {
		t.Fatal(err)
	}
	r := record(t, m, clk, Meta{CallID: "victim"}, 2)
	secret := filepath.Join(outside, "secret")
	os.WriteFile(secret, []byte("secret"), 0o600)
	os.Remove(r.Path())
	if err := os.Symlink(secret, r.Path()); err != nil {
		t.Fatal(err)
	}
	if f, _, err := m.Open("victim"); err == nil {
		b, _ := io.ReadAll(f)
		f.Close()
		t.Fatalf("Open followed a link out of the directory: %q", b)
	}
}
