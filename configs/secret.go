package configs

import (
	"fmt"
	"os"
	"reflect"
	"strings"
)

// Secret is a value given inline or through an environment variable.
type Secret struct {
	Value string `yaml:"value"`
	Env   string `yaml:"env"`
}

// Resolve returns the secret: the value of the environment variable Env
// when Env is named and the variable is set and non-empty, else Value.
// It reads the environment on every call, so a value rotated in the
// environment of a running process is not seen (the environment of a
// process does not change from outside); reload the config instead.
func (s Secret) Resolve() string {
	return fromEnv(s.Env, s.Value)
}

// IsSet reports whether the secret is given at all, inline or through an
// environment variable. The variable itself may still be unset at run time;
// Resolve then returns Value, possibly "".
func (s Secret) IsSet() bool { return s.Value != "" || s.Env != "" }

// String hides the secret so that a Config printed with %v or logged does
// not leak it; it names the variable the secret comes from, if any.
func (s Secret) String() string { return redacted(s.Env, s.Value) }

// GoString hides the secret from %#v as well.
func (s Secret) GoString() string { return "configs.Secret{" + s.String() + "}" }

// Secret returns the password: the environment variable PasswordEnv when it
// is named, set and non-empty, else Password.
func (c Credential) Secret() string {
	return fromEnv(c.PasswordEnv, c.Password)
}

// String shows the username and hides the password.
func (c Credential) String() string {
	return c.Username + ":" + redacted(c.PasswordEnv, c.Password)
}

// GoString hides the password from %#v as well.
func (c Credential) GoString() string { return "configs.Credential{" + c.String() + "}" }

// secretRef is one secret of a config: the key path of its variable name
// (".env" of a Secret, ".password_env" of a Credential), the variable and
// the inline value. secretRefs is the one list every check of secrets
// walks, so that a new secret cannot be forgotten by one of them.
type secretRef struct {
	envPath    string
	env, value string
}

// secretRefs lists every secret and password in c, in schema order. It
// walks the schema itself, as Diff does, so that a Secret or Credential
// field added anywhere (the HEP collector's key, the Redis password) is
// checked without anyone having to list it here.
func (c *Config) secretRefs() []secretRef {
	var refs []secretRef
	walkSecrets(reflect.ValueOf(c).Elem(), "", &refs)
	return refs
}

var (
	secretType     = reflect.TypeFor[Secret]()
	credentialType = reflect.TypeFor[Credential]()
)

func walkSecrets(v reflect.Value, path string, refs *[]secretRef) {
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			walkSecrets(v.Elem(), path, refs)
		}
	case reflect.Struct:
		switch v.Type() {
		case secretType:
			s := v.Interface().(Secret)
			*refs = append(*refs, secretRef{envPath: path + ".env", env: s.Env, value: s.Value})
			return
		case credentialType:
			u := v.Interface().(Credential)
			*refs = append(*refs, secretRef{envPath: path + ".password_env", env: u.PasswordEnv, value: u.Password})
			return
		}
		t := v.Type()
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if !f.IsExported() || name == "-" {
				continue
			}
			if name == "" {
				name = strings.ToLower(f.Name)
			}
			walkSecrets(v.Field(i), join(path, name), refs)
		}
	case reflect.Slice:
		for i := range v.Len() {
			walkSecrets(v.Index(i), fmt.Sprintf("%s[%d]", path, i), refs)
		}
	}
}

func fromEnv(env, value string) string {
	if env != "" {
		if v := os.Getenv(env); v != "" {
			return v
		}
	}
	return value
}

func redacted(env, value string) string {
	switch {
	case env != "" && value != "":
		return "$" + env + " or [redacted]"
	case env != "":
		return "$" + env
	case value != "":
		return "[redacted]"
	}
	return `""`
}

// Records reports whether calls of business number n are recorded: n's own
// recording setting when it has one, else recording.enabled. A nil n (a
// call matched to no number) follows recording.enabled.
func (c *Config) Records(n *Number) bool {
	if n != nil && n.Recording != nil {
		return *n.Recording
	}
	return c.Recording.Enabled
}

// RecordingUsed reports whether any call may be recorded: recording is on,
// or some number turns it on for itself.
func (c *Config) RecordingUsed() bool {
	if c.Recording.Enabled {
		return true
	}
	for _, n := range c.Numbers {
		if n.Recording != nil && *n.Recording {
			return true
		}
	}
	return false
}

// TLSListeners returns the listeners whose transport is tls.
func (c *Config) TLSListeners() []Listener {
	var ls []Listener
	for _, l := range c.SIP.Listen {
		if l.Transport == "tls" {
			ls = append(ls, l)
		}
	}
	return ls
}
