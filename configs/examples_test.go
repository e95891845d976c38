package configs

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// loadExample loads an example config without checking that the files it
// names exist or the environment variables it names are set: examples name
// certificates on an operator's machine (/etc/wagate/tls/…) and secrets of
// its environment, which a developer's machine does not have.
// TestProductionExampleFiles checks that those checks do run.
func loadExample(t *testing.T, path string) *Config {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	c, err := parse(data, path, parseOptions{skipFiles: true, skipEnv: true})
	if err != nil {
		t.Fatalf("Load(%s):\n%v", path, err)
	}
	return c
}

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
		t.Run(filepath.Base(f), func(t *testing.T) { loadExample(t, f) })
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

// TestProductionExampleFiles checks that production.yaml fails only for the
// certificate files it names when they are missing, so that the example
// stays valid apart from the files an operator provides.
func TestProductionExampleFiles(t *testing.T) {
	path := filepath.Join("examples", "production.yaml")
	c := loadExample(t, path)
	var files []string
	for _, l := range c.TLSListeners() {
		files = append(files, l.CertFile, l.KeyFile)
	}
	if len(files) == 0 {
		t.Fatal("production.yaml has no tls listener")
	}
	for _, f := range files {
		if _, err := os.Stat(f); err == nil {
			t.Skipf("%s exists on this machine", f)
		}
	}
	// The environment variables the example's secrets name must be set
	// at load; set them so that only the files are missing.
	for _, r := range c.secretRefs() {
		if r.env != "" {
			t.Setenv(r.env, "set-for-the-test")
		}
	}
	_, err := Load(path)
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("Load(%s) = %v, want problems about %v", path, err, files)
	}
	if len(e.Problems) != len(files) {
		t.Errorf("got %d problems, want %d (one per file):\n%v", len(e.Problems), len(files), err)
	}
	for i, p := range e.Problems {
		if i < len(files) && (!strings.Contains(p.Msg, files[i]+" does not exist") ||
			!strings.HasSuffix(p.Path, "_file")) {
			t.Errorf("problem %d = %v, want %s does not exist", i, p, files[i])
		}
	}
}
