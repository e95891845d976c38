package configs

import (
	"fmt"
	"reflect"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// checkShape compares the YAML tree with the Go types before anything is
// decoded. yaml.v3 rejects unknown keys and wrong kinds too, but it names Go
// types ("field foo not found in type configs.SIP") and not the place in the
// file; this walk names the section and says what was expected.
func checkShape(root *yaml.Node, ps *problems) {
	s := shapeChecker{ps: ps}
	s.check(root, reflect.TypeFor[Config](), "", root.Line)
}

type shapeChecker struct {
	ps *problems
}

var (
	durationType     = reflect.TypeFor[Duration]()
	jitterBufferType = reflect.TypeFor[JitterBuffer]()
)

// check reports problems in n, which should hold a value of type t. line is
// where n's key is written, so that a wrong kind is reported on the key.
func (s shapeChecker) check(n *yaml.Node, t reflect.Type, path string, line int) {
	n = resolve(n)
	if isNull(n) {
		return // absent: the default applies
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem() // optional section (auth) or tri-state value (fec)
	}
	switch {
	case t == durationType:
		if n.Kind != yaml.ScalarNode {
			s.ps.add(line, path, "must be a duration like \"30s\", not %s", kindName(n))
			return
		}
		if _, err := parseDuration(n.Value); err != nil {
			s.ps.add(n.Line, path, "%v", err)
		}
	case t == jitterBufferType && n.Kind == yaml.ScalarNode:
		// The single-duration form from before adaptive playout.
		if _, err := parseDuration(n.Value); err != nil {
			s.ps.add(n.Line, path, "%v", err)
		}
	case t.Kind() == reflect.Struct:
		if n.Kind != yaml.MappingNode {
			s.ps.add(line, path, "must be a mapping of keys, not %s", kindName(n))
			return
		}
		s.mapping(n, t, path, map[string]int{})
	case t.Kind() == reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			s.ps.add(line, path, "must be a list (one \"- \" item per line, or [a, b]), not %s", kindName(n))
			return
		}
		for i, item := range n.Content {
			s.check(item, t.Elem(), fmt.Sprintf("%s[%d]", path, i), item.Line)
		}
	default:
		s.scalar(n, t, path, line)
	}
}

// mapping checks the keys of a struct-typed mapping. seen maps keys already
// given to their line, shared across merged mappings so a duplicate is caught
// whichever way it arrived.
func (s shapeChecker) mapping(n *yaml.Node, t reflect.Type, path string, seen map[string]int) {
	fields := yamlFields(t)
	var merges []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if isMergeKey(k) {
			merges = append(merges, v)
			continue
		}
		if k.Kind != yaml.ScalarNode {
			s.ps.add(k.Line, path, "keys must be plain names, not %s", kindName(k))
			continue
		}
		if first, dup := seen[k.Value]; dup {
			s.ps.add(k.Line, "", "key %q is given twice%s (first at line %d)", k.Value, in(path), first)
			continue
		}
		seen[k.Value] = k.Line
		ft, ok := fields[k.Value]
		if !ok {
			msg := fmt.Sprintf("unknown key %q%s", k.Value, in(path))
			if path == "" {
				msg = fmt.Sprintf("unknown top-level key %q", k.Value)
			}
			if near := nearest(k.Value, fields); near != "" {
				msg += fmt.Sprintf("; did you mean %q?", near)
			}
			s.ps.add(k.Line, "", "%s", msg)
			continue
		}
		s.check(v, ft, join(path, k.Value), k.Line)
	}
	// Merged mappings come last so that their keys lose to the mapping's
	// own, as in yaml.v3; their own keys are not duplicates of ours.
	for _, m := range merges {
		m = resolve(m)
		list := []*yaml.Node{m}
		if m.Kind == yaml.SequenceNode {
			list = m.Content
		}
		for _, mm := range list {
			mm = resolve(mm)
			if mm.Kind != yaml.MappingNode {
				s.ps.add(mm.Line, path, "a \"<<\" merge must name a mapping, not %s", kindName(mm))
				continue
			}
			// A merged mapping may repeat a key the including mapping
			// sets (that is what merging is for), so it gets its own set.
			s.mapping(mm, t, path, map[string]int{})
		}
	}
}

// scalar checks a leaf value by asking yaml.v3 to decode just this node, so
// that what is accepted here is exactly what the real decode accepts.
func (s shapeChecker) scalar(n *yaml.Node, t reflect.Type, path string, line int) {
	if n.Kind != yaml.ScalarNode {
		s.ps.add(line, path, "must be a single value, not %s", kindName(n))
		return
	}
	v := reflect.New(t)
	if err := n.Decode(v.Interface()); err == nil {
		return
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int64, reflect.Int32:
		s.ps.add(n.Line, path, "%q is not a whole number", n.Value)
	case reflect.Bool:
		s.ps.add(n.Line, path, "%q is not true or false", n.Value)
	default:
		s.ps.add(n.Line, path, "%q is not a valid %s", n.Value, t.Kind())
	}
}

// yamlFields maps the yaml keys of struct t to their field types.
func yamlFields(t reflect.Type) map[string]reflect.Type {
	fields := map[string]reflect.Type{}
	for f := range t.Fields() {
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		fields[name] = f.Type
	}
	return fields
}

// nearest suggests the known key closest to a misspelt one, if any is close
// enough to be a plausible typo.
func nearest(key string, fields map[string]reflect.Type) string {
	names := make([]string, 0, len(fields))
	for name := range fields {
		names = append(names, name)
	}
	sort.Strings(names) // deterministic choice between equally close names
	// Allow about one edit per three letters: "lsiten" finds "listen", but
	// "foo" does not drag in "log".
	best, bestDist := "", max(1, len(key)/3)+1
	for _, name := range names {
		if d := editDistance(strings.ToLower(key), name); d < bestDist {
			best, bestDist = name, d
		}
	}
	return best
}

// editDistance is the optimal-string-alignment distance: insertions,
// deletions, substitutions and swaps of neighbours each cost 1, so the
// commonest typo, two letters swapped ("hots"), is one edit away.
func editDistance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func in(path string) string {
	if path == "" {
		return ""
	}
	return " in " + path
}
