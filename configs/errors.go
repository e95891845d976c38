package configs

import (
	"fmt"
	"sort"
	"strings"
)

// Problem is one thing wrong with a configuration file, located at the line
// of the node that caused it so that an operator can go straight to it.
type Problem struct {
	// File is the name the configuration was loaded under.
	File string
	// Line is the 1-based line of the offending node; 0 when the YAML
	// library could not say where (rare: an unreadable stream).
	Line int
	// Path names the offending value, e.g. "endpoints[1].source_cidrs[0]";
	// empty when the message names its own place (unknown keys, syntax).
	Path string
	// Msg is one plain sentence saying what is wrong.
	Msg string
}

// String formats p as "file:line: path: message", the form editors and
// terminals recognise as a jump target.
func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Line > 0 {
		fmt.Fprintf(&b, ":%d", p.Line)
	}
	b.WriteString(": ")
	if p.Path != "" {
		b.WriteString(p.Path)
		b.WriteString(": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// Error is returned by Load and Parse when a file is malformed or invalid.
// It carries every problem found, not only the first, so that an operator can
// fix a file in one pass.
type Error struct {
	Problems []Problem
}

// Error lists the problems one per line, in file order.
func (e *Error) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// problems collects Problems for one file and turns them into an *Error.
type problems struct {
	file string
	list []Problem
	// warnings are problems that do not make the file invalid (see Check).
	warnings []Problem
	// advice is what is valid but likely a mistake (Config.Advice).
	advice []Problem
}

// advise records a valid setting that is likely a mistake.
func (ps *problems) advise(line int, path, format string, args ...any) {
	ps.advice = append(ps.advice, Problem{File: ps.file, Line: line, Path: path, Msg: fmt.Sprintf(format, args...)})
}

// warn records a problem that is only a warning.
func (ps *problems) warn(line int, path, format string, args ...any) {
	ps.warnings = append(ps.warnings, Problem{File: ps.file, Line: line, Path: path, Msg: fmt.Sprintf(format, args...)})
}

func (ps *problems) add(line int, path, format string, args ...any) {
	ps.list = append(ps.list, Problem{File: ps.file, Line: line, Path: path, Msg: fmt.Sprintf(format, args...)})
}

// err returns nil when nothing was found, else an *Error sorted by line; the
// sort is stable so problems on one line keep the order the checks ran in.
func (ps *problems) err() error {
	if len(ps.list) == 0 {
		return nil
	}
	list := append([]Problem(nil), ps.list...)
	sort.SliceStable(list, func(i, j int) bool { return list[i].Line < list[j].Line })
	return &Error{Problems: list}
}
