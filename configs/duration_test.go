package configs

import (
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func TestDurationYAML(t *testing.T) {
	good := []struct {
		in   string
		want time.Duration
	}{
		{"30s", 30 * time.Second},
		{"1m30s", 90 * time.Second},
		{"500ms", 500 * time.Millisecond},
		{`"2h"`, 2 * time.Hour},
		{"-5s", -5 * time.Second}, // decodes; validation refuses it
	}
	for _, tt := range good {
		var v struct {
			D Duration `yaml:"d"`
		}
		if err := yaml.Unmarshal([]byte("d: "+tt.in), &v); err != nil {
			t.Errorf("%s: %v", tt.in, err)
			continue
		}
		if v.D.D() != tt.want {
			t.Errorf("%s decoded to %v, want %v", tt.in, v.D, tt.want)
		}
	}

	bad := []struct{ in, want string }{
		{"30", `line 2: "30" is not a duration`},
		{"soon", `line 2: "soon" is not a duration`},
		{"[1s]", `line 2: a duration must be a single value`},
	}
	for _, tt := range bad {
		// The x line puts d on line 2, so the test sees the line is real.
		err := yaml.Unmarshal([]byte("x: 1\nd: "+tt.in), &struct {
			X int      `yaml:"x"`
			D Duration `yaml:"d"`
		}{})
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %v, want it to contain %q", tt.in, err, tt.want)
		}
	}
}

func TestDurationRoundTrip(t *testing.T) {
	in := struct {
		D Duration `yaml:"d"`
	}{Duration(90 * time.Second)}
	b, err := yaml.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != "d: 1m30s\n" {
		t.Errorf("marshalled %q, want %q", b, "d: 1m30s\n")
	}
	var out struct {
		D Duration `yaml:"d"`
	}
	if err := yaml.Unmarshal(b, &out); err != nil || out.D != in.D {
		t.Errorf("round trip gave %v, %v", out.D, err)
	}
}
