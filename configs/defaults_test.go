package configs

import (
	"net/netip"
	"slices"
	"testing"
	"time"
)

func TestDefaultsOfEmptyFile(t *testing.T) {
	c := mustParse(t, "")
	checks := []struct {
		name      string
		got, want any
	}{
		{"sip.listen", c.SIP.Listen, []Listener{{"udp", "127.0.0.1:5072"}, {"tcp", "127.0.0.1:5072"}}},
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
			want := []Listener{{"udp", "127.0.0.1:5072"}, {"tcp", "127.0.0.1:5072"}}
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
		t.Run(tt.name, func(t *testing.T) { tt.check(t, mustParse(t, tt.yaml)) })
	}
}
