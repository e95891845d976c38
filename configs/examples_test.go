package configs

import (
	"os"
	"path/filepath"
	"testing"
)

// TestExamplesLoad keeps the shipped configs loadable: a schema change that
// breaks one of them fails here instead of on an operator's machine.
func TestExamplesLoad(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("examples", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 2 {
		t.Fatalf("found %d example configs, want at least loopback.yaml and production.yaml", len(files))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			if _, err := Load(f); err != nil {
				t.Fatalf("Load(%s):\n%v", f, err)
			}
		})
	}
	t.Run("default", func(t *testing.T) {
		if _, err := Default(); err != nil {
			t.Fatalf("Default():\n%v", err)
		}
	})
	t.Run("default.yaml from disk", func(t *testing.T) {
		disk, err := os.ReadFile("default.yaml")
		if err != nil {
			t.Fatal(err)
		}
		if string(disk) != string(DefaultYAML()) {
			t.Fatal("DefaultYAML differs from configs/default.yaml")
		}
	})
}
