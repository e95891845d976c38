package configs

import (
	"fmt"
	"os"
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

// secretRefs lists every secret and password in c, in file order.
func (c *Config) secretRefs() []secretRef {
	var refs []secretRef
	sec := func(path string, s Secret) {
		refs = append(refs, secretRef{envPath: path + ".env", env: s.Env, value: s.Value})
	}
	for i, e := range c.Endpoints {
		if e.Auth == nil {
			continue
		}
		for j, u := range e.Auth.Users {
			refs = append(refs, secretRef{
				envPath: fmt.Sprintf("endpoints[%d].auth.users[%d].password_env", i, j),
				env:     u.PasswordEnv, value: u.Password,
			})
		}
	}
	for i, n := range c.Numbers {
		sec(fmt.Sprintf("numbers[%d].digest", i), n.Digest)
		if cf := n.Route.CallFlow; cf != nil {
			sec(fmt.Sprintf("numbers[%d].route.callflow.secret", i), cf.Secret)
		}
		if h := n.Hours; h != nil && h.AfterHours != nil && h.AfterHours.CallFlow != nil {
			sec(fmt.Sprintf("numbers[%d].hours.after_hours.callflow.secret", i), h.AfterHours.CallFlow.Secret)
		}
	}
	sec("api.token", c.API.Token)
	sec("api.webhook.app_secret", c.API.Webhook.AppSecret)
	sec("api.webhook.verify_token", c.API.Webhook.VerifyToken)
	for i, s := range c.Events.Subscribers {
		sec(fmt.Sprintf("events.subscribers[%d].secret", i), s.Secret)
	}
	return refs
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
