package callflow

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"
)

// Template values, written {name} in a configured URL or body.
const (
	VarCaller         = "caller"         // the caller's +E.164 (or business-scoped id)
	VarKeypress       = "keypress"       // the digits of the last capture, "" before one
	VarCallID         = "callId"         // wagate's call id
	VarBusinessNumber = "businessNumber" // the business number, +E.164
)

var placeholder = regexp.MustCompile(`\{([A-Za-z]+)\}`)

// Template is a URL or body with {name} placeholders. Only the four names
// above are placeholders; other braces (a JSON body's) are literal text.
type Template struct {
	raw string
}

// ParseTemplate checks that every {name} in s is a known value.
func ParseTemplate(s string) (Template, error) {
	for _, m := range placeholder.FindAllStringSubmatch(s, -1) {
		switch m[1] {
		case VarCaller, VarKeypress, VarCallID, VarBusinessNumber:
		default:
			return Template{}, fmt.Errorf("callflow: unknown template value {%s}; use {caller}, {keypress}, {callId} or {businessNumber}", m[1])
		}
	}
	return Template{raw: s}, nil
}

// ParseURLTemplate checks a URL template: http or https, and no value in
// the scheme, host or port, where an encoded value could still change where
// the request goes.
func ParseURLTemplate(s string) (Template, error) {
	t, err := ParseTemplate(s)
	if err != nil {
		return Template{}, err
	}
	u, err := url.Parse(placeholder.ReplaceAllString(s, "x"))
	switch {
	case err != nil:
		return Template{}, fmt.Errorf("callflow: %q is not a URL", s)
	case u.Scheme != "http" && u.Scheme != "https":
		return Template{}, fmt.Errorf("callflow: %q must start with http:// or https://", s)
	case u.Host == "":
		return Template{}, fmt.Errorf("callflow: %q has no host", s)
	}
	rest := s[strings.Index(s, "//")+2:]
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		rest = rest[:i]
	}
	if placeholder.MatchString(rest) {
		return Template{}, fmt.Errorf("callflow: %q puts a template value in the host; values may only go in the path, query or body", s)
	}
	return t, nil
}

// Expand replaces each placeholder by its value, URL-encoded (query
// encoding: '&', '=', '/', '?', '#', quotes and spaces are escaped), so that
// no value can add a parameter, a path segment or a JSON field.
func (t Template) Expand(vars map[string]string) string {
	return placeholder.ReplaceAllStringFunc(t.raw, func(m string) string {
		return url.QueryEscape(vars[m[1:len(m)-1]])
	})
}

// String is the template as written.
func (t Template) String() string { return t.raw }

// IsZero reports an empty template.
func (t Template) IsZero() bool { return t.raw == "" }
