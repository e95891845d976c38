package configs

import (
	"fmt"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Duration is a time.Duration written in YAML as "30s", "2m", …
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String returns d in Go's duration syntax ("1m30s"), the same syntax the
// YAML accepts, so a printed config can be loaded again.
func (d Duration) String() string { return time.Duration(d).String() }

// UnmarshalYAML reads a Go duration string such as "30s" or "1m30s".
// A bare number is refused rather than guessed at: "30" could mean seconds
// or milliseconds, and a wrong guess is a silent outage.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		// A *yaml.TypeError keeps yaml.v3 decoding the rest of the file and
		// reports this entry with its line, like its own type errors.
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: a duration must be a single value like \"30s\", not %s", n.Line, kindName(n))}}
	}
	v, err := parseDuration(n.Value)
	if err != nil {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %v", n.Line, err)}}
	}
	*d = v
	return nil
}

// MarshalYAML writes d as a duration string.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }

// parseDuration is shared by UnmarshalYAML and the shape check so that both
// say the same sentence about a bad value.
func parseDuration(s string) (Duration, error) {
	v, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration; write it like \"30s\", \"500ms\" or \"1m30s\"", s)
	}
	return Duration(v), nil
}

// UnmarshalYAML reads either {min: …, max: …} or one duration, the form
// before adaptive playout: "jitter_buffer: 60ms" means at most 60ms (and
// at least DefaultJitterMin, or 60ms if that is less).
func (j *JitterBuffer) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		v, err := parseDuration(n.Value)
		if err != nil {
			return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %v", n.Line, err)}}
		}
		*j = JitterBuffer{Min: min(DefaultJitterMin, v), Max: v, single: true}
		return nil
	}
	type plain JitterBuffer // without this method
	return n.Decode((*plain)(j))
}

// MarshalYAML writes the mapping form.
func (j JitterBuffer) MarshalYAML() (any, error) {
	return map[string]string{"min": j.Min.String(), "max": j.Max.String()}, nil
}
