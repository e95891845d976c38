// Package configs holds wagate's YAML schema as Go types, loads and validates
// it, and embeds the default configuration that starts wagate with no flags.
package configs

import (
	"net/netip"
	"time"
)

// Endpoint kinds.
const (
	KindWhatsApp = "whatsapp"
	KindPBX      = "pbx"
	KindDialer   = "dialer"
)

// Config is the whole of wagate's configuration.
type Config struct {
	SIP         SIP         `yaml:"sip"`
	Endpoints   []Endpoint  `yaml:"endpoints"`
	Numbers     []Number    `yaml:"numbers"`
	Media       Media       `yaml:"media"`
	API         API         `yaml:"api"`
	Log         Log         `yaml:"log"`
	Permissions Permissions `yaml:"permissions"`
	Recording   Recording   `yaml:"recording"`

	// idx holds the lookup tables built by Parse (see lookup.go).
	idx *index
}

// SIP configures the signalling listeners and how wagate names itself.
type SIP struct {
	// Listen lists the sockets wagate receives SIP on.
	Listen []Listener `yaml:"listen"`
	// Host is the host wagate puts in Via, Contact and Record-Route and in
	// the From of calls toward Meta. Defaults to the first listener's IP.
	Host string `yaml:"host"`
	// UserAgent is the User-Agent / Server header value.
	UserAgent string `yaml:"user_agent"`
	// RingTimeout cancels a B-leg that has not answered in this time.
	RingTimeout Duration `yaml:"ring_timeout"`
	// MaxCalls caps concurrent calls across all endpoints (0: no cap).
	MaxCalls int `yaml:"max_calls"`
}

// Listener is one SIP socket.
type Listener struct {
	Transport string `yaml:"transport"` // udp | tcp
	Address   string `yaml:"address"`   // host:port
}

// Endpoint is a named SIP peer.
type Endpoint struct {
	Name string `yaml:"name"`
	Kind string `yaml:"kind"` // whatsapp | pbx | dialer
	// Host and Port are where wagate sends requests for this endpoint.
	// A dialer that only originates may leave them empty.
	Host      string `yaml:"host"`
	Port      int    `yaml:"port"`
	Transport string `yaml:"transport"` // udp | tcp
	// SourceCIDRs lists the networks requests from this endpoint come from.
	SourceCIDRs []string `yaml:"source_cidrs"`
	// Codecs this endpoint may use, in order of preference
	// (names: opus, PCMU, PCMA; telephone-event is always kept).
	Codecs []string `yaml:"codecs"`
	// MaxCalls caps concurrent calls on this endpoint (0: no cap).
	MaxCalls int `yaml:"max_calls"`

	// Prefixes is derived from SourceCIDRs by Load: bare IPs become /32 or
	// /128, host bits are cleared, IPv4-mapped IPv6 is folded to IPv4.
	Prefixes []netip.Prefix `yaml:"-"`
}

// Number is a WhatsApp business number.
type Number struct {
	// Number is the business number in +E.164.
	Number string `yaml:"number"`
	// PhoneNumberID is Meta's id for the number (digits).
	PhoneNumberID string `yaml:"phone_number_id"`
	// Route says where user-initiated calls to this number go.
	Route Route `yaml:"route"`
	// Dialers names the endpoints allowed to originate business-initiated
	// calls from this number.
	Dialers []string `yaml:"dialers"`
	// CallbackPermission grants a temporary permission on each UIC.
	CallbackPermission bool `yaml:"callback_permission"`
}

// Route is the PBX target of a business number's user-initiated calls.
type Route struct {
	// Endpoint names a pbx endpoint.
	Endpoint string `yaml:"endpoint"`
	// User is the Request-URI user at that endpoint (an extension).
	User string `yaml:"user"`
}

// Media configures RTP.
type Media struct {
	// BindIP is the address RTP sockets bind to.
	BindIP string `yaml:"bind_ip"`
	// AdvertiseIP is the address written in SDP (defaults to BindIP).
	AdvertiseIP string `yaml:"advertise_ip"`
	PortMin     int    `yaml:"port_min"`
	PortMax     int    `yaml:"port_max"`
	// PortQuarantine keeps a released port out of use so that late packets
	// of an old call cannot land in a new one.
	PortQuarantine Duration `yaml:"port_quarantine"`
	// RTPTimeout ends a call whose media stopped for this long.
	RTPTimeout Duration `yaml:"rtp_timeout"`
	// RTPStartTimeout ends a call that never received media for this long.
	RTPStartTimeout Duration `yaml:"rtp_start_timeout"`
}

// API configures the HTTP control/status endpoint.
type API struct {
	// Listen is host:port; empty disables the API.
	Listen string `yaml:"listen"`
}

// Log configures logging.
type Log struct {
	Level  string `yaml:"level"`  // debug | info | warn | error
	Format string `yaml:"format"` // text | json
}

// Permissions configures the call-permission cache (later issue).
type Permissions struct {
	// Enabled turns the permission check on for business-initiated calls.
	Enabled bool `yaml:"enabled"`
}

// Recording configures call recording (later issue).
type Recording struct {
	Enabled   bool   `yaml:"enabled"`
	Directory string `yaml:"directory"`
}

// Duration is a time.Duration written in YAML as "30s", "2m", …
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }
