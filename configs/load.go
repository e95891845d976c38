package configs

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

//go:embed default.yaml
var defaultYAML []byte

// defaultName is the file name problems in the embedded config would carry.
const defaultName = "default.yaml (embedded)"

// DefaultYAML returns the embedded default configuration, the file wagate
// runs with when no config is given; print it to start a new config from.
func DefaultYAML() []byte { return bytes.Clone(defaultYAML) }

// Default parses the embedded default configuration. Each call returns a
// fresh Config the caller may change.
func Default() (*Config, error) { return Parse(defaultYAML, defaultName) }

// Load reads, decodes, defaults and validates the configuration file at path.
// A malformed or invalid file yields an *Error listing every problem. A
// secret naming an environment variable that is unset or empty, with no
// value beside it, is one of them: wagate must not start with a secret
// silently empty.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(data, path)
}

// Check loads the file at path as Load does, except that secrets whose
// environment variable is unset are returned as warnings instead of
// making the file invalid: `wagate -check-config` may run in another
// environment (a CI job, an operator's shell) than the service.
func Check(path string) (*Config, []Problem, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("read config: %w", err)
	}
	return parseAll(data, path, parseOptions{envWarn: true})
}

// Parse decodes, defaults and validates a configuration held in data; name
// is the file name used in messages. An empty document is valid and yields
// the defaults. A malformed or invalid document yields an *Error listing
// every problem, each with its line.
func Parse(data []byte, name string) (*Config, error) {
	return parse(data, name, parseOptions{})
}

// parseOptions changes what Parse checks; only tests use them.
type parseOptions struct {
	// skipFiles skips the checks that the files a config names (TLS
	// certificates and keys, CA bundles) exist and are readable, for
	// example configs whose paths name files on an operator's machine.
	skipFiles bool
	// skipEnv skips the check that environment variables named by
	// secrets without a value are set.
	skipEnv bool
	// envWarn makes that check yield warnings instead of problems (Check).
	envWarn bool
}

func parse(data []byte, name string, opts parseOptions) (*Config, error) {
	c, _, err := parseAll(data, name, opts)
	return c, err
}

// parseAll is parse that also returns the warnings.
func parseAll(data []byte, name string, opts parseOptions) (*Config, []Problem, error) {
	ps := &problems{file: name}
	root := parseTree(data, ps)
	if root != nil {
		checkShape(root, ps)
	}
	if err := ps.err(); err != nil {
		return nil, nil, err
	}

	var c Config
	if root != nil {
		// checkShape has already refused unknown keys with better messages;
		// KnownFields stays on so that nothing it might miss gets through.
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true)
		if err := dec.Decode(&c); err != nil {
			addYAMLError(ps, data, err)
			return nil, nil, ps.err()
		}
	}

	t := tree{root: root}
	applyDefaults(&c, t)
	validate(&c, t, ps, opts)
	if err := ps.err(); err != nil {
		return nil, nil, err
	}
	c.idx = buildIndex(&c)
	c.tree = t
	c.source = name
	c.sum = sha256.Sum256(data)
	c.advice = ps.advice
	return &c, ps.warnings, nil
}

// Advice lists what the file sets validly but likely by mistake (a
// private network in the source_cidrs of Meta's endpoint on TLS, say),
// for wagate to log at start and reload and -check-config to print.
func (c *Config) Advice() []Problem { return c.advice }

// ProblemAt is a problem with the value at path ("media.music_on_hold",
// as validation names values), located at its line in the file, for the
// checks that need more than this package can do (whether a file is a
// WAV wagate can play).
func (c *Config) ProblemAt(path, msg string) Problem {
	return Problem{File: c.source, Line: c.tree.line(path), Path: path, Msg: msg}
}

// Source names where the configuration was read from: the file name it
// was loaded under, or "default.yaml (embedded)" for the embedded default.
func (c *Config) Source() string { return c.source }

// SHA256 is the hex SHA-256 of the bytes the configuration was parsed
// from, so that a log line tells which version of a file was running.
func (c *Config) SHA256() string { return hex.EncodeToString(c.sum[:]) }

// parseTree decodes data into a node tree and returns its top-level mapping,
// or nil for a document with no content.
func parseTree(data []byte, ps *problems) *yaml.Node {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if !errors.Is(err, io.EOF) {
			addYAMLError(ps, data, err)
		}
		return nil
	}
	// A second document would be silently ignored by the struct decode;
	// an operator who concatenated two files wants to hear about it.
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case err == nil:
		ps.add(max(extra.Line, 1), "", "the file holds a second YAML document (after \"---\"); a config is one document")
	case !errors.Is(err, io.EOF):
		addYAMLError(ps, data, err)
	}
	if len(doc.Content) == 0 {
		return nil
	}
	root := resolve(doc.Content[0])
	if isNull(root) {
		return nil
	}
	if root.Kind != yaml.MappingNode {
		ps.add(root.Line, "", "the file must be a mapping of sections (sip:, endpoints:, numbers:, …), not %s", kindName(root))
		return nil
	}
	return root
}

// yamlLine matches yaml.v3's "line N: message" error entries.
var yamlLine = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

var unknownAnchor = regexp.MustCompile(`^unknown anchor '(.*)' referenced$`)

// parserProblems are the messages of yaml.v3's parser, as opposed to its
// scanner. yaml.v3 adds 1 to the 0-based line of scanner errors only, so a
// parser error names the line above the one it means, and none at all for
// the first line; syntaxError corrects for that.
var parserProblems = map[string]bool{
	"did not find expected <stream-start>":   true,
	"did not find expected <document start>": true,
	"found undefined tag handle":             true,
	"did not find expected node content":     true,
	"did not find expected '-' indicator":    true,
	"did not find expected key":              true,
	"did not find expected ',' or ']'":       true,
	"did not find expected ',' or '}'":       true,
	"found duplicate %YAML directive":        true,
	"found incompatible YAML document":       true,
	"found duplicate %TAG directive":         true,
}

// addYAMLError turns a yaml.v3 error into problems, keeping its line.
// data is the document, used to keep corrected lines inside the file.
func addYAMLError(ps *problems, data []byte, err error) {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		// Type errors come from nodes, whose lines are right.
		for _, e := range te.Errors {
			if m := yamlLine.FindStringSubmatch(e); m != nil {
				line, _ := strconv.Atoi(m[1])
				ps.add(line, "", "%s", m[2])
			} else {
				ps.add(0, "", "%s", e)
			}
		}
		return
	}
	line, msg := 0, strings.TrimPrefix(err.Error(), "yaml: ")
	if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	}
	if parserProblems[msg] {
		line = min(line+1, bytes.Count(data, []byte("\n"))+1)
	}
	if m := unknownAnchor.FindStringSubmatch(msg); m != nil && line == 0 {
		// yaml.v3 gives no line here; the first use of the alias is it.
		if i := bytes.Index(data, []byte("*"+m[1])); i >= 0 {
			line = bytes.Count(data[:i], []byte("\n")) + 1
		}
	}
	ps.add(line, "", "%s", msg)
}
