package configs

import (
	"testing"

	"go.yaml.in/yaml/v3"
)

func TestTreeFind(t *testing.T) {
	src := `sip:
  host: example.com
endpoints:
  - name: a
    source_cidrs:
      - 10.0.0.0/8
  - name: b
    port:
media:
  <<: {port_min: 20000}
`
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(src), &doc); err != nil {
		t.Fatal(err)
	}
	tr := tree{root: doc.Content[0]}
	tests := []struct {
		path  string
		line  int
		exact bool
		has   bool
	}{
		{"sip", 1, true, true},
		{"sip.host", 2, true, true},
		{"sip.user_agent", 1, false, false}, // absent: the parent's line
		{"endpoints", 3, true, true},        // the key, not the list below it
		{"endpoints[0]", 4, true, true},     // the item's first line
		{"endpoints[0].source_cidrs[0]", 6, true, true},
		{"endpoints[0].source_cidrs[3]", 5, false, false},
		{"endpoints[1].port", 8, true, false}, // written but null
		{"endpoints[1].host", 7, false, false},
		{"endpoints[5].host", 3, false, false},
		{"media.port_min", 10, true, true}, // through a merge key
		{"log.level", 1, false, false},     // absent section: the root
	}
	for _, tt := range tests {
		_, line, exact := tr.find(tt.path)
		if line != tt.line || exact != tt.exact || tr.has(tt.path) != tt.has {
			t.Errorf("%s: line %d exact %v has %v; want %d %v %v", tt.path, line, exact, tr.has(tt.path), tt.line, tt.exact, tt.has)
		}
	}
	if got := (tree{}).line("sip.host"); got != 1 {
		t.Errorf("empty tree line = %d, want 1", got)
	}
}
