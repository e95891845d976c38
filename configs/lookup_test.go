package configs

import (
	"net/netip"
	"testing"
)

const lookupYAML = `
endpoints:
  - {name: meta, kind: whatsapp, host: 192.0.2.1, source_cidrs: [192.0.2.0/24, "2001:db8:1::/48"]}
  - {name: pbx, kind: pbx, host: 10.0.0.1, source_cidrs: [10.0.0.0/8]}
  - {name: dialer, kind: dialer, source_cidrs: [10.1.0.0/16]}
  - {name: special, kind: dialer, source_cidrs: [10.1.2.3, "2001:db8:1::5"]}
numbers:
  - {number: "+15550100001", phone_number_id: "100000000000001", route: {endpoint: pbx, user: "1001"}}
  - {number: "+442071838750", phone_number_id: "100000000000002", route: {endpoint: pbx, user: "1002"}}
`

func TestEndpointLookup(t *testing.T) {
	c := mustParse(t, lookupYAML)
	for _, name := range []string{"meta", "pbx", "dialer", "special"} {
		if e := c.Endpoint(name); e == nil || e.Name != name {
			t.Errorf("Endpoint(%q) = %v", name, e)
		}
	}
	if e := c.Endpoint("nope"); e != nil {
		t.Errorf("Endpoint(nope) = %v, want nil", e.Name)
	}
	// The pointer is into the Config, not a copy.
	if c.Endpoint("pbx") != &c.Endpoints[1] {
		t.Error("Endpoint returned a copy")
	}
}

func TestEndpointForSource(t *testing.T) {
	c := mustParse(t, lookupYAML)
	tests := []struct {
		ip   string
		want string // "" for no endpoint
	}{
		{"192.0.2.77", "meta"},
		{"10.200.0.1", "pbx"},          // only the /8
		{"10.1.9.9", "dialer"},         // /16 beats /8
		{"10.1.2.3", "special"},        // /32 beats /16 and /8
		{"::ffff:10.1.2.3", "special"}, // IPv4-mapped from a dual-stack socket
		{"2001:db8:1::9", "meta"},
		{"2001:db8:1::5", "special"}, // /128 beats /48
		{"2001:db8:2::1", ""},
		{"172.16.0.1", ""},
		{"127.0.0.1", ""},
	}
	for _, tt := range tests {
		e := c.EndpointForSource(netip.MustParseAddr(tt.ip))
		got := ""
		if e != nil {
			got = e.Name
		}
		if got != tt.want {
			t.Errorf("EndpointForSource(%s) = %q, want %q", tt.ip, got, tt.want)
		}
	}
	if e := c.EndpointForSource(netip.Addr{}); e != nil {
		t.Errorf("EndpointForSource(zero Addr) = %q, want nil", e.Name)
	}
}

func TestNumberLookups(t *testing.T) {
	c := mustParse(t, lookupYAML)
	for _, s := range []string{"+15550100001", "15550100001"} {
		if n := c.NumberByE164(s); n == nil || n.PhoneNumberID != "100000000000001" {
			t.Errorf("NumberByE164(%q) = %v", s, n)
		}
	}
	for _, s := range []string{"+15550100009", "", "+", "++15550100001", " +15550100001"} {
		if n := c.NumberByE164(s); n != nil {
			t.Errorf("NumberByE164(%q) = %v, want nil", s, n.Number)
		}
	}
	if n := c.NumberByPhoneNumberID("100000000000002"); n == nil || n.Number != "+442071838750" {
		t.Errorf("NumberByPhoneNumberID = %v", n)
	}
	if n := c.NumberByPhoneNumberID("+442071838750"); n != nil {
		t.Errorf("NumberByPhoneNumberID(number) = %v, want nil", n.Number)
	}
}

// TestLookupsOnHandBuiltConfig checks that a Config assembled in code, never
// passed through Parse, still answers lookups, and that Reindex picks up
// changes.
func TestLookupsOnHandBuiltConfig(t *testing.T) {
	c := &Config{
		Endpoints: []Endpoint{
			{Name: "pbx", Kind: KindPBX, SourceCIDRs: []string{"10.0.0.0/8"}},
			{Name: "dialer", Kind: KindDialer, SourceCIDRs: []string{"10.1.0.0/16"}},
		},
		Numbers: []Number{{Number: "+15550100001", PhoneNumberID: "1"}},
	}
	if e := c.EndpointForSource(netip.MustParseAddr("10.1.0.1")); e == nil || e.Name != "dialer" {
		t.Errorf("EndpointForSource = %v, want dialer", e)
	}
	if c.Endpoint("pbx") == nil || c.NumberByE164("15550100001") == nil || c.NumberByPhoneNumberID("1") == nil {
		t.Error("lookup on a hand-built Config failed")
	}

	c.Reindex()
	c.Endpoints = append(c.Endpoints, Endpoint{Name: "new", Kind: KindDialer})
	if c.Endpoint("new") != nil {
		t.Error("index saw an endpoint added after Reindex; it should be a snapshot")
	}
	c.Reindex()
	if c.Endpoint("new") == nil {
		t.Error("Reindex did not pick up the new endpoint")
	}
}

func BenchmarkEndpointForSource(b *testing.B) {
	c, err := Parse([]byte(lookupYAML), "bench.yaml")
	if err != nil {
		b.Fatal(err)
	}
	ip := netip.MustParseAddr("10.200.0.1")
	b.ReportAllocs()
	for b.Loop() {
		c.EndpointForSource(ip)
	}
}

// TestProxySources: a whatsapp endpoint's proxy_cidrs are its sources
// (a more specific proxy inside its source_cidrs wins), and HasProxy
// tells them from Meta's own addresses.
func TestProxySources(t *testing.T) {
	c := mustParse(t, `
endpoints:
  - {name: meta, kind: whatsapp, host: 192.0.2.1, source_cidrs: [192.0.2.0/24], proxy_cidrs: [10.9.0.5, 192.0.2.7]}
  - {name: pbx, kind: pbx, host: 10.0.0.1, source_cidrs: [10.0.0.0/8]}
`)
	for _, tt := range []struct {
		ip, endpoint string
		proxy        bool
	}{
		{"192.0.2.77", "meta", false},
		{"192.0.2.7", "meta", true},
		{"10.9.0.5", "meta", true}, // /32 beats the pbx's /8
		{"::ffff:10.9.0.5", "meta", true},
		{"10.9.0.6", "pbx", false},
	} {
		ip := netip.MustParseAddr(tt.ip)
		e := c.EndpointForSource(ip)
		if e == nil || e.Name != tt.endpoint {
			t.Errorf("EndpointForSource(%s) = %v, want %s", tt.ip, e, tt.endpoint)
			continue
		}
		if got := e.HasProxy(ip); got != tt.proxy {
			t.Errorf("%s: HasProxy %v, want %v", tt.ip, got, tt.proxy)
		}
		if !e.HasSource(ip) {
			t.Errorf("%s: HasSource false for the endpoint it belongs to", tt.ip)
		}
	}
}
