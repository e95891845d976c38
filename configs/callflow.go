package configs

import (
	"fmt"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// CallFlow is a number's route when wagate answers the call itself and runs
// the call flows of the business's web service (an IVR); see
// docs/callflow.md.
type CallFlow struct {
	// URL is the business's service, http or https. It may hold the
	// template values {caller}, {keypress}, {callId} and {businessNumber}
	// in its path and query (URL-encoded when filled in).
	URL string `yaml:"url"`
	// Method is POST (default: the JSON request is the body) or GET (no
	// body; the template values carry the call).
	Method string `yaml:"method"`
	// Body, when set, is sent instead of the JSON request: a template,
	// form-encoded (or JSON when it starts with '{'). Only with POST.
	Body string `yaml:"body"`
	// Secret keys the X-Wagate-Signature of every request (required).
	Secret Secret `yaml:"secret"`
	// Timeout bounds each exchange with the service and the wait for each
	// prompt: the longest dead air before the fallback (default 3s).
	Timeout Duration `yaml:"timeout"`
	// Message is said before the fallback route is taken; "" says nothing.
	Message string `yaml:"message"`
	// Voice speaks Message (a language tag such as en-US; default: the
	// text-to-speech engine's).
	Voice string `yaml:"voice"`
	// Fallback is where calls go when the service fails: a pbx endpoint
	// and user, like a plain route (required).
	Fallback FallbackRoute `yaml:"fallback"`
}

// FallbackRoute is the extension a call-flow route falls back to.
type FallbackRoute struct {
	Endpoint string `yaml:"endpoint"`
	User     string `yaml:"user"`
}

// Defaults of a callflow route.
const (
	DefaultCallFlowTimeout = Duration(3 * time.Second)
	DefaultCallFlowMethod  = "POST"
	DefaultCallFlowMessage = "Sorry, we cannot take your call in the usual way right now. Please hold while we connect you."
	maxCallFlowMessage     = 1000
)

// callFlowDefaults fills the keys a callflow route leaves out; p is its
// path.
func callFlowDefaults(cf *CallFlow, p string, set func(string) bool) {
	if !set(p + ".method") {
		cf.Method = DefaultCallFlowMethod
	}
	if !set(p + ".timeout") {
		cf.Timeout = DefaultCallFlowTimeout
	}
	if !set(p + ".message") {
		cf.Message = DefaultCallFlowMessage
	}
}

// callFlowVar matches the template values; any other {name} is a mistake.
var (
	callFlowVar  = regexp.MustCompile(`\{([A-Za-z]+)\}`)
	voiceTag     = regexp.MustCompile(`^[A-Za-z0-9_+-]{1,64}$`)
	callFlowVars = "{caller}, {keypress}, {callId} or {businessNumber}"
)

func unknownVar(s string) string {
	for _, m := range callFlowVar.FindAllStringSubmatch(s, -1) {
		switch m[1] {
		case "caller", "keypress", "callId", "businessNumber":
		default:
			return m[0]
		}
	}
	return ""
}

// callFlow checks a number's callflow route at path p.
func (v validator) callFlow(p string, cf *CallFlow) {
	v.callFlowURL(p+".url", cf.URL)
	switch m := strings.ToUpper(cf.Method); m {
	case "POST", "GET":
		cf.Method = m
	default:
		v.add(p+".method", "%q is not POST or GET", cf.Method)
	}
	if cf.Body != "" {
		if bad := unknownVar(cf.Body); bad != "" {
			v.add(p+".body", "%s is not a template value; use %s", bad, callFlowVars)
		}
		if cf.Method == "GET" {
			v.add(p+".body", "a GET request has no body; use method POST or put the values in the URL")
		}
	}
	if !cf.Secret.IsSet() {
		v.add(p+".secret", "a callflow route needs a secret (value or env): it keys the signature the service checks")
	} else {
		v.secret(p+".secret", cf.Secret)
	}
	if d := cf.Timeout.D(); d < 500*time.Millisecond || d > 10*time.Second {
		v.add(p+".timeout", "%s must be between 500ms and 10s: it is the silence a caller hears before the fallback", d)
	}
	switch {
	case len(cf.Message) > maxCallFlowMessage:
		v.add(p+".message", "is %d bytes; at most %d", len(cf.Message), maxCallFlowMessage)
	case hasControl(cf.Message):
		v.add(p+".message", "must not contain line breaks or control characters")
	}
	if cf.Voice != "" && !voiceTag.MatchString(cf.Voice) {
		v.add(p+".voice", "%q is not a voice name like en-US (letters, digits, '-', '_' and '+')", cf.Voice)
	}
	if v.t.has(p + ".fallback") {
		v.routeTo(p+".fallback", Route{Endpoint: cf.Fallback.Endpoint, User: cf.Fallback.User}, "a callflow's fallback")
	} else {
		v.add(p+".fallback", "a callflow route needs a fallback: the pbx endpoint and user that take calls when the service fails")
	}
}

// callFlowURL checks the service URL, template values included.
func (v validator) callFlowURL(path, raw string) {
	if raw == "" {
		v.add(path, "a callflow route needs the URL of the business's service, e.g. \"https://ivr.example.com/wagate\"")
		return
	}
	if bad := unknownVar(raw); bad != "" {
		v.add(path, "%s is not a template value; use %s", bad, callFlowVars)
		return
	}
	filled := callFlowVar.ReplaceAllString(raw, "x")
	if msg := checkWebhookURL(filled); msg != "" {
		v.add(path, "%s", strings.ReplaceAll(msg, fmt.Sprintf("%q", redactUserinfo(filled)), fmt.Sprintf("%q", redactUserinfo(raw))))
		return
	}
	u, _ := url.Parse(raw)
	if u == nil || callFlowVar.MatchString(u.Host) || strings.Contains(u.Host, "{") {
		v.add(path, "%q puts a template value in the host; values may only go in the path and query", redactUserinfo(raw))
	}
}

// Prompts configures what call flows say and play: the text-to-speech
// engine and the cache of rendered speech and fetched files. Every key
// takes a restart.
type Prompts struct {
	// TTS is the text-to-speech engine: "espeak-ng" (default; the Debian
	// package espeak-ng) or "http" (the business's own service at
	// TTSURL, which gets JSON and answers a WAV file).
	TTS string `yaml:"tts"`
	// TTSURL is the HTTP text-to-speech service (tts: http).
	TTSURL string `yaml:"tts_url"`
	// Voice speaks texts that name no voice, or one the engine lacks
	// (default "en").
	Voice string `yaml:"voice"`
	// MemoryMB bounds the in-memory cache of rendered audio (default 64:
	// about 70 minutes of 8 kHz audio).
	MemoryMB int `yaml:"memory_mb"`
	// DiskMB bounds the rendered speech kept in <data_dir>/prompts so that
	// a restart renders nothing again (default 256; 0: no disk cache).
	DiskMB int `yaml:"disk_mb"`
	// FetchAllow lists where a call flow's audio files (fileUrl,
	// musicUrl; a queue route's own music is not checked) may come from
	// although their address is not public: CIDRs or single addresses ("10.20.0.0/16", "fd00::5"),
	// and host names fetched from whatever they resolve to
	// ("media.corp.example", or "*.corp.example" for the names under it).
	// Default empty: loopback, private, link-local, CGNAT and other
	// non-public addresses are refused (docs/security.md).
	FetchAllow []string `yaml:"fetch_allow"`
}

// FetchAllowList is FetchAllow read: the networks, and the host names in
// lower case. Entries that do not validate are left out.
func (p Prompts) FetchAllowList() (prefixes []netip.Prefix, hosts []string) {
	for _, e := range p.FetchAllow {
		pfx, host, msg := parseFetchAllow(e)
		switch {
		case msg != "":
		case host != "":
			hosts = append(hosts, host)
		default:
			prefixes = append(prefixes, pfx)
		}
	}
	return prefixes, hosts
}

// parseFetchAllow reads one prompts.fetch_allow entry: a network (or one
// address), or a host name, possibly "*." and a domain; msg says what is
// wrong with it.
func parseFetchAllow(raw string) (p netip.Prefix, host, msg string) {
	s := strings.TrimSpace(raw)
	switch {
	case s == "":
		return p, "", "is empty; give a CIDR like 10.20.0.0/16 or a host name"
	case strings.Contains(s, "://"):
		return p, "", fmt.Sprintf("%q is a URL; give only its host name or address", raw)
	case strings.Contains(s, "/"):
		if p, ok := parsePrefix(s); ok {
			return p, "", ""
		}
		return p, "", fmt.Sprintf("%q is not a CIDR like 10.20.0.0/16 or fd00::/8", raw)
	}
	if ip, err := netip.ParseAddr(s); err == nil {
		if ip.Zone() != "" {
			return p, "", fmt.Sprintf("%q names an interface zone; give the address alone", raw)
		}
		ip = ip.Unmap()
		return netip.PrefixFrom(ip, ip.BitLen()), "", ""
	}
	name := strings.TrimSuffix(strings.ToLower(s), ".")
	if strings.ContainsAny(s, ":[]") {
		return p, "", fmt.Sprintf("%q is neither an address nor a host name; leave out the port", raw)
	}
	domain, wild := strings.CutPrefix(name, "*.")
	if !validHostName(domain) || strings.Contains(domain, "*") {
		return p, "", fmt.Sprintf("%q is not a CIDR, an address or a host name (\"*.example.com\" for the names under a domain)", raw)
	}
	if wild {
		return p, "*." + domain, ""
	}
	return p, domain, ""
}

// Text-to-speech engines of Prompts.TTS.
const (
	TTSEspeak = "espeak-ng"
	TTSHTTP   = "http"
)

// Defaults of Prompts.
const (
	DefaultPromptVoice    = "en"
	DefaultPromptMemoryMB = 64
	DefaultPromptDiskMB   = 256
)

func promptDefaults(p *Prompts, set func(string) bool) {
	if !set("prompts.tts") {
		p.TTS = TTSEspeak
	}
	if !set("prompts.voice") {
		p.Voice = DefaultPromptVoice
	}
	if !set("prompts.memory_mb") {
		p.MemoryMB = DefaultPromptMemoryMB
	}
	if !set("prompts.disk_mb") {
		p.DiskMB = DefaultPromptDiskMB
	}
}

func (v validator) prompts() {
	p := &v.c.Prompts
	switch p.TTS {
	case TTSEspeak:
		if p.TTSURL != "" {
			v.add("prompts.tts_url", "is only used with tts: http")
		}
	case TTSHTTP:
		if p.TTSURL == "" {
			v.add("prompts.tts_url", "tts: http needs the URL of the text-to-speech service, e.g. \"https://tts.example.com/render\"")
		} else if msg := checkWebhookURL(p.TTSURL); msg != "" {
			v.add("prompts.tts_url", "%s", msg)
		}
	default:
		v.add("prompts.tts", "%q is not espeak-ng or http", p.TTS)
	}
	if !voiceTag.MatchString(p.Voice) {
		v.add("prompts.voice", "%q is not a voice name like en or en-US", p.Voice)
	}
	if p.MemoryMB < 1 || p.MemoryMB > 4096 {
		v.add("prompts.memory_mb", "%d must be between 1 and 4096", p.MemoryMB)
	}
	if p.DiskMB < 0 || p.DiskMB > 65536 {
		v.add("prompts.disk_mb", "%d must be between 0 (no disk cache) and 65536", p.DiskMB)
	}
	for i, e := range p.FetchAllow {
		if _, _, msg := parseFetchAllow(e); msg != "" {
			v.add(fmt.Sprintf("prompts.fetch_allow[%d]", i), "%s", msg)
		}
	}
}

// CallFlowUsed reports whether some number's route or after-hours route
// is a call flow or a queue (which runs on the call-flow engine).
func (c *Config) CallFlowUsed() bool {
	for _, n := range c.Numbers {
		if n.Route.CallFlow != nil || n.Route.Queue != nil {
			return true
		}
		if h := n.Hours; h != nil && h.AfterHours != nil && (h.AfterHours.CallFlow != nil || h.AfterHours.Queue != nil) {
			return true
		}
	}
	return false
}
