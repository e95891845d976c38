package configs

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestDefaultsOfEmptyFile(t *testing.T) {
	c := mustParse(t, "")
	checks := []struct {
		name      string
		got, want any
	}{
		{"sip.listen", c.SIP.Listen, []Listener{{Transport: "udp", Address: "127.0.0.1:5072"}, {Transport: "tcp", Address: "127.0.0.1:5072"}}},
		{"sip.host", c.SIP.Host, "127.0.0.1"},
		{"sip.user_agent", c.SIP.UserAgent, "wagate"},
		{"sip.ring_timeout", c.SIP.RingTimeout.D(), 60 * time.Second},
		{"sip.max_calls", c.SIP.MaxCalls, 0},
		{"media.bind_ip", c.Media.BindIP, "127.0.0.1"},
		{"media.advertise_ip", c.Media.AdvertiseIP, "127.0.0.1"},
		{"media.port_min", c.Media.PortMin, 30000},
		{"media.port_max", c.Media.PortMax, 40000},
		{"media.port_quarantine", c.Media.PortQuarantine.D(), 2 * time.Second},
		{"media.rtp_timeout", c.Media.RTPTimeout.D(), 30 * time.Second},
		{"media.rtp_start_timeout", c.Media.RTPStartTimeout.D(), 60 * time.Second},
		{"api.listen", c.API.Listen, "127.0.0.1:8080"},
		{"log.level", c.Log.Level, "info"},
		{"log.format", c.Log.Format, "text"},
		{"permissions.enabled", c.Permissions.Enabled, false},
		{"recording.enabled", c.Recording.Enabled, false},
		{"recording.directory", c.Recording.Directory, "recordings"},
		{"data_dir", c.DataDir, "data"},
		{"media.rtcp_interval", c.Media.RTCPInterval.D(), 5 * time.Second},
		{"media.jitter_buffer.min", c.Media.JitterBuffer.Min.D(), 20 * time.Millisecond},
		{"media.jitter_buffer.max", c.Media.JitterBuffer.Max.D(), 120 * time.Millisecond},
		{"media.relatch_packets", c.Media.RelatchPackets, 10},
		{"media.opus.bitrate", c.Media.Opus.Bitrate, 20000},
		{"media.opus.complexity", c.Media.Opus.Complexity, 5},
		{"media.opus.fec", c.Media.Opus.FEC != nil && *c.Media.Opus.FEC, true},
		{"api.token", c.API.Token, Secret{}},
		{"api.webhook", c.API.Webhook, Webhook{}},
		{"permissions.store", c.Permissions.Store, filepath.Join("data", "permissions.db")},
		{"permissions.limits.temporary_ttl", c.Permissions.Limits.TemporaryTTL.D(), 168 * time.Hour},
		{"permissions.limits.connected_calls_per_user_24h", c.Permissions.Limits.ConnectedCallsPerUser24h, 100},
		{"permissions.limits.consecutive_unanswered_max", c.Permissions.Limits.ConsecutiveUnansweredMax, 4},
		{"permissions.limits.consecutive_unanswered_nudge", c.Permissions.Limits.ConsecutiveUnansweredNudge, 2},
		{"permissions.limits.new_calls_per_number_24h", c.Permissions.Limits.NewCallsPerNumber24h, 10000},
		{"permissions.limits.concurrent_calls_per_number", c.Permissions.Limits.ConcurrentCallsPerNumber, 1000},
		{"permissions.limits.requests_per_24h", c.Permissions.Limits.RequestsPer24h, 1},
		{"permissions.limits.requests_per_7d", c.Permissions.Limits.RequestsPer7d, 2},
		{"recording.sample_rate", c.Recording.SampleRate, 8000},
		{"recording.name_by", c.Recording.NameBy, "a"},
		{"recording.retention_days", c.Recording.RetentionDays, 0},
		{"sip.tcp.paced_request_rate", c.SIP.TCP.PacedRequestRate, 2000},
	}
	for _, ch := range checks {
		if !equal(ch.got, ch.want) {
			t.Errorf("%s = %v, want %v", ch.name, ch.got, ch.want)
		}
	}
}

func equal(a, b any) bool {
	switch a := a.(type) {
	case []Listener:
		return slices.Equal(a, b.([]Listener))
	case []string:
		return slices.Equal(a, b.([]string))
	}
	return a == b
}

func TestDefaultsDerived(t *testing.T) {
	// Secrets named by env must be set at load.
	t.Setenv("PBX_PASSWORD", "p4ss")
	t.Setenv("WAGATE_DIGEST_15550100001", "d1gest")
	tests := []struct {
		name  string
		yaml  string
		check func(t *testing.T, c *Config)
	}{
		{"sip.host from first listener", `
sip:
  listen:
    - {transport: tcp, address: "10.1.2.3:5072"}
    - {transport: udp, address: "10.9.9.9:5072"}
`, func(t *testing.T, c *Config) {
			if c.SIP.Host != "10.1.2.3" {
				t.Errorf("sip.host = %q, want 10.1.2.3", c.SIP.Host)
			}
		}},
		{"sip.host falls back to loopback for a wildcard listener", `
sip:
  listen:
    - {transport: udp, address: "0.0.0.0:5072"}
`, func(t *testing.T, c *Config) {
			if c.SIP.Host != "127.0.0.1" {
				t.Errorf("sip.host = %q, want 127.0.0.1", c.SIP.Host)
			}
		}},
		{"sip.host falls back to loopback for a listener without host", `
sip:
  listen:
    - {transport: udp, address: ":5072"}
`, func(t *testing.T, c *Config) {
			if c.SIP.Host != "127.0.0.1" {
				t.Errorf("sip.host = %q, want 127.0.0.1", c.SIP.Host)
			}
		}},
		{"sip.trace is off unless written", ``, func(t *testing.T, c *Config) {
			if c.SIP.Trace.Log || c.SIP.Trace.HEP != nil {
				t.Errorf("sip.trace = %+v, want off", c.SIP.Trace)
			}
		}},
		{"sip.trace.hep.agent_id defaults to 1", `
sip:
  trace:
    log: true
    hep: {address: "homer.example.com:9060", password: {env: WAGATE_HEP_KEY, value: inline-fallback}}
`, func(t *testing.T, c *Config) {
			h := c.SIP.Trace.HEP
			if !c.SIP.Trace.Log || h == nil || h.Address != "homer.example.com:9060" || h.AgentID != 1 || h.Password.Env != "WAGATE_HEP_KEY" {
				t.Errorf("sip.trace = %+v, hep = %+v", c.SIP.Trace, h)
			}
		}},
		{"sip.trace.hep.agent_id 0 is kept", `
sip:
  trace:
    hep: {address: "[2001:db8::10]:9060", agent_id: 0}
`, func(t *testing.T, c *Config) {
			if h := c.SIP.Trace.HEP; h == nil || h.AgentID != 0 {
				t.Errorf("sip.trace.hep = %+v, want agent_id 0", h)
			}
		}},
		{"explicit sip.host wins", `
sip:
  listen: [{transport: udp, address: "10.1.2.3:5072"}]
  host: sip.example.com
`, func(t *testing.T, c *Config) {
			if c.SIP.Host != "sip.example.com" {
				t.Errorf("sip.host = %q, want sip.example.com", c.SIP.Host)
			}
		}},
		{"listener fields default", `
sip:
  listen:
    - {}
    - {transport: TCP}
`, func(t *testing.T, c *Config) {
			want := []Listener{{Transport: "udp", Address: "127.0.0.1:5072"}, {Transport: "tcp", Address: "127.0.0.1:5072"}}
			if !slices.Equal(c.SIP.Listen, want) {
				t.Errorf("sip.listen = %+v, want %+v", c.SIP.Listen, want)
			}
		}},
		{"endpoint defaults by kind", `
endpoints:
  - {name: meta, kind: whatsapp, host: wa.example.com, source_cidrs: [192.0.2.0/24]}
  - {name: pbx, kind: pbx, host: 10.0.0.1, source_cidrs: [10.0.0.1]}
  - {name: dialer, kind: dialer, source_cidrs: ["2001:db8::1"]}
`, func(t *testing.T, c *Config) {
			for name, codecs := range map[string][]string{
				"meta":   {"opus", "PCMU", "PCMA"},
				"pbx":    {"PCMU", "PCMA"},
				"dialer": {"PCMU", "PCMA"},
			} {
				e := c.Endpoint(name)
				if e.Port != 5060 || e.Transport != "udp" || !slices.Equal(e.Codecs, codecs) {
					t.Errorf("%s: port %d transport %q codecs %v; want 5060 udp %v", name, e.Port, e.Transport, e.Codecs, codecs)
				}
			}
			prefixes := map[string]string{"meta": "192.0.2.0/24", "pbx": "10.0.0.1/32", "dialer": "2001:db8::1/128"}
			for name, p := range prefixes {
				if got := c.Endpoint(name).Prefixes; len(got) != 1 || got[0] != netip.MustParsePrefix(p) {
					t.Errorf("%s: prefixes %v, want [%s]", name, got, p)
				}
			}
		}},
		{"spellings normalised", `
endpoints:
  - name: pbx
    kind: pbx
    host: 10.0.0.1
    transport: TCP
    source_cidrs: [10.0.0.7/8, "::ffff:10.1.0.0/112"]
    codecs: [pcma, Opus, pcmu]
`, func(t *testing.T, c *Config) {
			e := c.Endpoint("pbx")
			if e.Transport != "tcp" {
				t.Errorf("transport = %q, want tcp", e.Transport)
			}
			if want := []string{"PCMA", "opus", "PCMU"}; !slices.Equal(e.Codecs, want) {
				t.Errorf("codecs = %v, want %v", e.Codecs, want)
			}
			want := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("10.1.0.0/16")}
			if !slices.Equal(e.Prefixes, want) {
				t.Errorf("prefixes = %v, want %v", e.Prefixes, want)
			}
			if want := []string{"10.0.0.7/8", "::ffff:10.1.0.0/112"}; !slices.Equal(e.SourceCIDRs, want) {
				t.Errorf("source_cidrs rewritten to %v; they should stay as written", e.SourceCIDRs)
			}
		}},
		{"advertise_ip follows bind_ip", `
media:
  bind_ip: 192.0.2.10
`, func(t *testing.T, c *Config) {
			if c.Media.AdvertiseIP != "192.0.2.10" {
				t.Errorf("advertise_ip = %q, want 192.0.2.10", c.Media.AdvertiseIP)
			}
		}},
		{"explicit advertise_ip with wildcard bind", `
media:
  bind_ip: 0.0.0.0
  advertise_ip: 203.0.113.10
`, func(t *testing.T, c *Config) {
			if c.Media.AdvertiseIP != "203.0.113.10" {
				t.Errorf("advertise_ip = %q, want 203.0.113.10", c.Media.AdvertiseIP)
			}
		}},
		{"empty api.listen turns the API off", `
api:
  listen: ""
`, func(t *testing.T, c *Config) {
			if c.API.Listen != "" {
				t.Errorf("api.listen = %q, want empty", c.API.Listen)
			}
		}},
		{"null keys take the default", `
api:
  listen:
log: ~
sip:
`, func(t *testing.T, c *Config) {
			if c.API.Listen != DefaultAPIListen || c.Log.Level != "info" || len(c.SIP.Listen) != 2 {
				t.Errorf("api.listen %q log.level %q sip.listen %v; want defaults", c.API.Listen, c.Log.Level, c.SIP.Listen)
			}
		}},
		{"explicit values kept", `
sip:
  ring_timeout: 1m30s
media:
  port_min: 20000
  port_max: 20099
  rtp_timeout: 500ms
`, func(t *testing.T, c *Config) {
			if c.SIP.RingTimeout.D() != 90*time.Second || c.Media.PortMin != 20000 || c.Media.PortMax != 20099 || c.Media.RTPTimeout.D() != 500*time.Millisecond {
				t.Errorf("got ring_timeout %v port %d–%d rtp_timeout %v", c.SIP.RingTimeout, c.Media.PortMin, c.Media.PortMax, c.Media.RTPTimeout)
			}
		}},
		{"endpoint TLS and media defaults by kind and transport", `
sip:
  host: sip.example.com
{{TLS_LISTENER}}
endpoints:
  - {name: meta, kind: whatsapp, host: 192.0.2.1, transport: TLS, source_cidrs: [192.0.2.0/24]}
  - {name: meta-udp, kind: whatsapp, host: 192.0.2.2, source_cidrs: [192.0.2.2]}
  - {name: pbx, kind: pbx, host: pbx.example.com, transport: tls, source_cidrs: [10.0.0.1]}
  - {name: pbx-udp, kind: pbx, host: 10.0.0.2, source_cidrs: [10.0.0.2]}
  - {name: dialer, kind: dialer, source_cidrs: [10.0.0.3]}
`, func(t *testing.T, c *Config) {
			want := map[string]struct {
				port                     int
				transport, sni, enc, dig string
			}{
				"meta":     {5061, "tls", "wa.meta.vc", "sdes", "wa.meta.vc"},
				"meta-udp": {5060, "udp", "192.0.2.2", "sdes", "wa.meta.vc"},
				"pbx":      {5061, "tls", "pbx.example.com", "none", ""},
				"pbx-udp":  {5060, "udp", "10.0.0.2", "none", ""},
				"dialer":   {5060, "udp", "", "none", ""},
			}
			for name, w := range want {
				e := c.Endpoint(name)
				if e.Port != w.port || e.Transport != w.transport || e.TLSServerName != w.sni || e.MediaEncryption != w.enc || e.DigestRealm != w.dig {
					t.Errorf("%s: port %d transport %q tls_server_name %q media_encryption %q digest_realm %q; want %+v",
						name, e.Port, e.Transport, e.TLSServerName, e.MediaEncryption, e.DigestRealm, w)
				}
				if e.Auth != nil || e.BehindNAT || e.LatchAnyAddress || e.CAFile != "" {
					t.Errorf("%s: auth %v behind_nat %v latch_any_address %v ca_file %q; want none of them", name, e.Auth, e.BehindNAT, e.LatchAnyAddress, e.CAFile)
				}
			}
		}},
		{"explicit endpoint TLS and media values kept", `
sip:
{{TLS_LISTENER}}
endpoints:
  - name: meta
    kind: whatsapp
    host: 192.0.2.1
    port: 15061
    transport: tls
    tls_server_name: meta.test
    media_encryption: NONE
    digest_realm: example.org
    behind_nat: true
    latch_any_address: true
    source_cidrs: [192.0.2.0/24]
`, func(t *testing.T, c *Config) {
			e := c.Endpoint("meta")
			if e.Port != 15061 || e.TLSServerName != "meta.test" || e.MediaEncryption != "none" || e.DigestRealm != "example.org" || !e.BehindNAT || !e.LatchAnyAddress {
				t.Errorf("endpoint = %+v", *e)
			}
		}},
		{"auth defaults", `
sip:
  host: sip.example.com
endpoints:
  - name: dialer
    kind: dialer
    source_cidrs: [10.0.0.3]
    auth:
      users: [{username: d, password: p}]
  - name: pbx
    kind: pbx
    host: 10.0.0.1
    source_cidrs: [10.0.0.1]
    auth:
      realm: cc.example.com
      users: [{username: p, password_env: PBX_PASSWORD}]
      nonce_ttl: 30s
      max_failures: 3
      failure_window: 10m
`, func(t *testing.T, c *Config) {
			a := c.Endpoint("dialer").Auth
			if a == nil || a.Realm != "sip.example.com" || a.NonceTTL.D() != 5*time.Minute || a.MaxFailures != 10 || a.FailureWindow.D() != time.Minute {
				t.Errorf("dialer auth = %+v; want realm sip.example.com, 5m, 10 in 1m", a)
			}
			a = c.Endpoint("pbx").Auth
			if a == nil || a.Realm != "cc.example.com" || a.NonceTTL.D() != 30*time.Second || a.MaxFailures != 3 || a.FailureWindow.D() != 10*time.Minute {
				t.Errorf("pbx auth = %+v; want the values written", a)
			}
			if u := a.Users[0]; u.Username != "p" || u.PasswordEnv != "PBX_PASSWORD" {
				t.Errorf("pbx user = %#v", u)
			}
		}},
		{"relatch_packets 0 is kept, not defaulted", `
media:
  relatch_packets: 0
`, func(t *testing.T, c *Config) {
			if n := c.Media.RelatchPackets; n != 0 {
				t.Errorf("media.relatch_packets = %d, want the 0 written (never re-latch)", n)
			}
		}},
		{"limits of 0 are kept: the rule is off", `
permissions:
  limits:
    connected_calls_per_user_24h: 0
    consecutive_unanswered_max: 0
    consecutive_unanswered_nudge: 0
    new_calls_per_number_24h: 0
    concurrent_calls_per_number: 0
    requests_per_24h: 0
    requests_per_7d: 0
`, func(t *testing.T, c *Config) {
			if l := c.Permissions.Limits; l != (PermissionLimits{TemporaryTTL: l.TemporaryTTL}) {
				t.Errorf("limits = %+v, want every count 0 as written", l)
			}
		}},
		{"redis backend defaults", `
permissions:
  backend: redis
`, func(t *testing.T, c *Config) {
			r := c.Permissions.Redis
			if r.Address != "127.0.0.1:6379" || r.Prefix != "wagate:" || r.SlotTTL.D() != 15*time.Second ||
				r.Timeout.D() != 300*time.Millisecond || r.OnDown != "refuse" || r.WaitReplicas != 0 || r.WaitTimeout.D() != time.Second {
				t.Errorf("redis = %+v", r)
			}
		}},
		{"null auth is no auth", `
endpoints:
  - {name: pbx, kind: pbx, host: 10.0.0.1, source_cidrs: [10.0.0.1], auth: ~}
`, func(t *testing.T, c *Config) {
			if c.Endpoint("pbx").Auth != nil {
				t.Error("auth: ~ gave an Auth")
			}
		}},
		{"permissions.store follows data_dir", `
data_dir: /var/lib/wagate
`, func(t *testing.T, c *Config) {
			if want := filepath.Join("/var/lib/wagate", "permissions.db"); c.Permissions.Store != want {
				t.Errorf("permissions.store = %q, want %q", c.Permissions.Store, want)
			}
		}},
		{"explicit permissions.store wins", `
data_dir: /var/lib/wagate
permissions:
  store: /srv/perm.db
`, func(t *testing.T, c *Config) {
			if c.Permissions.Store != "/srv/perm.db" {
				t.Errorf("permissions.store = %q, want /srv/perm.db", c.Permissions.Store)
			}
		}},
		{"explicit media, limits and recording values kept", `
media:
  rtcp_interval: 2s
  jitter_buffer: 0s
  opus: {bitrate: 32000, complexity: 10, fec: false}
permissions:
  limits:
    temporary_ttl: 72h
    requests_per_7d: 5
recording:
  sample_rate: 16000
  name_by: b
  retention_days: 30
`, func(t *testing.T, c *Config) {
			m := c.Media
			if m.RTCPInterval.D() != 2*time.Second || m.JitterBuffer.Min != 0 || m.JitterBuffer.Max != 0 || m.Opus.Bitrate != 32000 || m.Opus.Complexity != 10 || m.Opus.FEC == nil || *m.Opus.FEC {
				t.Errorf("media = %+v (fec %v)", m, m.Opus.FEC)
			}
			l := c.Permissions.Limits
			want := DefaultPermissionLimits()
			want.TemporaryTTL, want.RequestsPer7d = Duration(72*time.Hour), 5
			if l != want {
				t.Errorf("limits = %+v, want %+v", l, want)
			}
			if r := c.Recording; r.SampleRate != 16000 || r.NameBy != "b" || r.RetentionDays != 30 {
				t.Errorf("recording = %+v", r)
			}
		}},
		{"number digest and recording override", endpointsBlock + `
numbers:
  - number: "+15550100001"
    phone_number_id: "1"
    route: {endpoint: pbx, user: "1001"}
    digest: {env: WAGATE_DIGEST_15550100001}
    recording: false
  - number: "+15550100002"
    phone_number_id: "2"
    route: {endpoint: pbx, user: "1002"}
    digest: {value: s3cret}
`, func(t *testing.T, c *Config) {
			n1, n2 := c.NumberByE164("+15550100001"), c.NumberByE164("+15550100002")
			if n1.Digest != (Secret{Env: "WAGATE_DIGEST_15550100001"}) || n2.Digest != (Secret{Value: "s3cret"}) {
				t.Errorf("digests %#v %#v", n1.Digest, n2.Digest)
			}
			if n1.Recording == nil || *n1.Recording || n2.Recording != nil {
				t.Errorf("recording overrides %v %v; want false and unset", n1.Recording, n2.Recording)
			}
		}},
		{"unquoted numbers read as text", `
endpoints:
  - {name: meta, kind: whatsapp, host: 127.0.0.2, source_cidrs: [127.0.0.2]}
  - {name: pbx, kind: pbx, host: 127.0.0.3, source_cidrs: [127.0.0.3]}
numbers:
  - number: +15550100001
    phone_number_id: 100000000000001
    route: {endpoint: pbx, user: 1001}
`, func(t *testing.T, c *Config) {
			n := c.Numbers[0]
			if n.Number != "+15550100001" || n.PhoneNumberID != "100000000000001" || n.Route.User != "1001" {
				t.Errorf("number = %+v", n)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			y := tt.yaml
			if strings.Contains(y, "{{TLS_LISTENER}}") {
				// A tls endpoint needs a tls listener of ours.
				cert, key := writeCert(t, t.TempDir(), "wagate")
				y = strings.ReplaceAll(y, "{{TLS_LISTENER}}", fmt.Sprintf(
					"  listen:\n    - {transport: tls, address: \"127.0.0.1:5061\", cert_file: %q, key_file: %q}", cert, key))
			}
			tt.check(t, mustParse(t, y))
		})
	}
}

// TestPacedRequestRateOff: an explicit 0 turns the pacing of TCP and TLS
// requests off (it is not taken as unset), and a negative rate is refused.
func TestPacedRequestRateOff(t *testing.T) {
	if c := mustParse(t, "sip:\n  tcp:\n    paced_request_rate: 0\n"); c.SIP.TCP.PacedRequestRate != 0 {
		t.Errorf("paced_request_rate: 0 loaded as %d", c.SIP.TCP.PacedRequestRate)
	}
	if _, err := Parse([]byte("sip:\n  tcp:\n    paced_request_rate: -1\n"), "test.yaml"); err == nil || !strings.Contains(err.Error(), "paced_request_rate") {
		t.Errorf("a negative paced_request_rate: %v, want an error naming it", err)
	}
}
