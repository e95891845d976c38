package recording

import (
	"io/fs"
	"path"
	"path/filepath"
	"slices"
	"time"
)

// day is one day directory, "YYYY/MM/DD" relative to the root.
type day struct {
	rel  string
	date time.Time
}

// maxDirEntries bounds what one directory listing reads.
const maxDirEntries = 1 << 20

// readDir lists a directory under the root (bounded; sorted by name).
func (m *Manager) readDir(rel string) ([]fs.DirEntry, error) {
	f, err := m.root.Open(filepath.FromSlash(rel))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	ents, err := f.ReadDir(maxDirEntries)
	if err != nil && len(ents) == 0 {
		return nil, err
	}
	slices.SortFunc(ents, func(a, b fs.DirEntry) int {
		switch {
		case a.Name() < b.Name():
			return -1
		case a.Name() > b.Name():
			return 1
		}
		return 0
	})
	return ents, nil
}

// digits reports whether s is n ASCII digits.
func digits(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := range len(s) {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// subdirs returns the names of rel's real subdirectories (not symbolic
// links) whose names are n digits.
func (m *Manager) subdirs(rel string, n int) []string {
	ents, err := m.readDir(rel)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range ents {
		if e.IsDir() && digits(e.Name(), n) {
			out = append(out, e.Name())
		}
	}
	return out
}

// days returns the day directories, oldest first. Only well-formed
// YYYY/MM/DD directories count; anything else in the tree is ignored.
func (m *Manager) days() []day {
	var out []day
	for _, y := range m.subdirs(".", 4) {
		for _, mo := range m.subdirs(y, 2) {
			for _, d := range m.subdirs(path.Join(y, mo), 2) {
				rel := path.Join(y, mo, d)
				t, err := time.Parse("2006/01/02", rel)
				if err != nil || t.Format("2006/01/02") != rel {
					continue
				}
				out = append(out, day{rel: rel, date: t})
			}
		}
	}
	return out
}
