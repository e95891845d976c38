package configs

import (
	"fmt"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// tree is the file decoded as yaml.Nodes. The Go structs forget where a value
// came from; the tree remembers, so that semantic checks can name a line and
// defaults can tell an absent key from one written as zero or "".
type tree struct {
	root *yaml.Node // top-level mapping; nil for an empty file
}

// step is one element of a path: a mapping key or a sequence index.
type step struct {
	key   string
	index int // valid when key == ""
}

// parsePath splits "endpoints[1].source_cidrs[0]" into steps. Paths are
// written by this package, never by users, so malformed input is a bug.
func parsePath(p string) []step {
	var steps []step
	for _, part := range strings.Split(p, ".") {
		key, rest, _ := strings.Cut(part, "[")
		steps = append(steps, step{key: key})
		for rest != "" {
			num, after, ok := strings.Cut(rest, "]")
			i, err := strconv.Atoi(num)
			if !ok || err != nil {
				panic(fmt.Sprintf("configs: bad path %q", p))
			}
			steps = append(steps, step{index: i})
			rest = strings.TrimPrefix(after, "[")
		}
	}
	return steps
}

// find walks path from the root. It returns the node reached and its line;
// when the path is absent it returns the deepest node that exists, so that a
// missing key is reported at its parent (a missing host at its endpoint).
// exact says whether the whole path was found.
func (t tree) find(path string) (n *yaml.Node, line int, exact bool) {
	if t.root == nil {
		return nil, 1, false
	}
	n, line = t.root, t.root.Line
	for _, s := range parsePath(path) {
		var next *yaml.Node
		var nextLine int
		if s.key != "" {
			k, v := mapLookup(n, s.key)
			if v == nil {
				return n, line, false
			}
			// The key's line, not the value's: for a block list or mapping
			// the value starts on the line below the key.
			next, nextLine = v, k.Line
		} else {
			if n.Kind != yaml.SequenceNode || s.index >= len(n.Content) {
				return n, line, false
			}
			next = n.Content[s.index]
			nextLine = next.Line
		}
		n, line = resolve(next), nextLine
	}
	return n, line, true
}

// line is the line to report a problem at path on.
func (t tree) line(path string) int {
	_, line, _ := t.find(path)
	return line
}

// has reports whether path is written in the file with a non-null value.
// "key:" and "key: ~" count as absent so that they take the default.
func (t tree) has(path string) bool {
	n, _, exact := t.find(path)
	return exact && !isNull(n)
}

// mapLookup returns the key and value nodes for key in mapping m, looking
// through "<<" merge keys the way yaml.v3 decodes them (own keys first).
func mapLookup(m *yaml.Node, key string) (k, v *yaml.Node) {
	m = resolve(m)
	if m == nil || m.Kind != yaml.MappingNode {
		return nil, nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Kind == yaml.ScalarNode && m.Content[i].Value == key {
			return m.Content[i], m.Content[i+1]
		}
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if !isMergeKey(m.Content[i]) {
			continue
		}
		merged := resolve(m.Content[i+1])
		if merged != nil && merged.Kind == yaml.SequenceNode {
			for _, mm := range merged.Content {
				if k, v := mapLookup(mm, key); v != nil {
					return k, v
				}
			}
		} else if k, v := mapLookup(merged, key); v != nil {
			return k, v
		}
	}
	return nil, nil
}

func isMergeKey(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!merge"
}

// resolve follows aliases to the anchored node.
func resolve(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	n = resolve(n)
	return n == nil || (n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null")
}

// kindName names a node's kind the way an operator would.
func kindName(n *yaml.Node) string {
	switch resolve(n).Kind {
	case yaml.MappingNode:
		return "a mapping of keys"
	case yaml.SequenceNode:
		return "a list"
	default:
		return "a single value"
	}
}
