// Package configs holds wagate's YAML schema as Go types, loads and validates
// it, and embeds the default configuration that starts wagate with no flags.
package configs

import (
	"net/netip"
)

// Endpoint kinds.
const (
	KindWhatsApp = "whatsapp"
	KindPBX      = "pbx"
	KindDialer   = "dialer"
)

// Config is the whole of wagate's configuration.
type Config struct {
	// DataDir holds wagate's state (the permission store, events.db);
	// default "data".
	DataDir string `yaml:"data_dir"`
	// NodeID names this wagate in every call record and event, so that
	// subscribers shared by several nodes can tell them apart; default:
	// the host name.
	NodeID    string     `yaml:"node_id"`
	SIP       SIP        `yaml:"sip"`
	Endpoints []Endpoint `yaml:"endpoints"`
	Numbers   []Number   `yaml:"numbers"`
	// HuntLists are named lists of targets a route (or a transfer, or an
	// app-originated call) can ring instead of one extension.
	HuntLists []HuntList `yaml:"hunt_lists"`
	// Blocklist refuses user-initiated calls from these callers to every
	// number, before any B-leg (numbers[].blocklist adds per number).
	Blocklist   *Blocklist  `yaml:"blocklist"`
	Media       Media       `yaml:"media"`
	API         API         `yaml:"api"`
	Log         Log         `yaml:"log"`
	Permissions Permissions `yaml:"permissions"`
	Recording   Recording   `yaml:"recording"`
	CDR         CDR         `yaml:"cdr"`
	Events      Events      `yaml:"events"`
	// Prompts configures the speech and audio files of call flows.
	Prompts Prompts `yaml:"prompts"`

	// idx holds the lookup tables built by Parse (see lookup.go).
	idx *index
	// source and sum say what the config was parsed from (Source, SHA256).
	source string
	sum    [32]byte
	// tree is the document, for ProblemAt's lines.
	tree tree
	// advice lists what is valid but likely a mistake (Advice).
	advice []Problem
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
	// UnknownSources is what a request from no endpoint's source_cidrs
	// gets: "drop" (silence, the default: nothing is sent toward an
	// address that may be spoofed) or "reject" (one stateless 403, rate
	// limited per source). TCP and TLS connections from such a source are
	// closed at once under drop, and after the 403 under reject.
	UnknownSources string `yaml:"unknown_sources"`
	// Limits bounds the size of a message wagate reads.
	Limits SIPLimits `yaml:"limits"`
	// Flood limits the request rate of sources (Kamailio's pike).
	Flood Flood `yaml:"flood"`
	// TCP bounds connections on tcp and tls listeners.
	TCP TCPLimits `yaml:"tcp"`
	// TransactionLinger is how long a completed transaction over UDP is
	// kept to absorb retransmissions (RFC 3261's Timers J, L and M, 32 s).
	// wagate needs less: it re-ACKs a late 2xx and ignores a late INVITE
	// of a live call by itself, and a late BYE gets 481. Keeping them 32 s
	// cost ~0.7 MiB of memory per call/s.
	TransactionLinger Duration `yaml:"transaction_linger"`
	// MaxCPUPercent refuses new calls with 503 while wagate's CPU use,
	// in percent of all cores over the last second, is at or above it
	// (0: never). Calls already up are not affected.
	MaxCPUPercent int `yaml:"max_cpu_percent"`
	// MaxLateMediaPercent refuses new calls with 503 while more than this
	// percent of the media wagate sends on its clock (silence and playout
	// toward WhatsApp, transcoded audio, prompts, RTCP) left over 5 ms late
	// in the last second (0: never). That is the audio of the calls
	// already up breaking: short of CPU, or a host that wakes the process
	// late; one more call would make every call worse.
	MaxLateMediaPercent int `yaml:"max_late_media_percent"`
	// Trace logs every SIP message and exports it to a HEP collector.
	Trace SIPTrace `yaml:"trace"`
}

// SIPTrace configures the per-message SIP trace. Both parts are off by
// default and are read at start-up only.
type SIPTrace struct {
	// Log writes one line per SIP message read or written (at info; at
	// log.level debug the line carries the message's text, credentials
	// redacted).
	Log bool `yaml:"log"`
	// HEP, when set, sends a copy of every SIP message to a Homer or
	// heplify collector in HEP v3 over UDP.
	HEP *HEP `yaml:"hep"`
}

// HEP is a HEP v3 (Homer Encapsulation Protocol) collector.
type HEP struct {
	// Address is the collector's host:port (UDP).
	Address string `yaml:"address"`
	// AgentID is the capture agent id in every packet (default 1).
	AgentID int `yaml:"agent_id"`
	// Password is the collector's authentication key, if it wants one.
	Password Secret `yaml:"password"`
}

// SIPLimits bounds what one SIP message may hold; larger messages get 513
// Message Too Large (or are dropped when no answer can be built).
type SIPLimits struct {
	MaxMessageSize int `yaml:"max_message_size"` // bytes, whole message
	MaxHeaders     int `yaml:"max_headers"`      // header fields
	MaxBodySize    int `yaml:"max_body_size"`    // bytes of body
}

// Flood is the per-source request rate limit. A source over its rate is
// blocked (its messages dropped unread) for BlockTime.
type Flood struct {
	// StrangerRate is the requests per second a source outside every
	// endpoint may send before it is blocked (0: no limit); with
	// unknown_sources drop it only spares the parsing, with reject it
	// bounds the 403s sent.
	StrangerRate int `yaml:"stranger_rate"`
	// BlockTime is how long a source over its rate stays blocked.
	BlockTime Duration `yaml:"block_time"`
}

// TCPLimits bounds stream connections (tcp and tls listeners).
type TCPLimits struct {
	// MaxConnections caps inbound connections in all (0: no cap).
	MaxConnections int `yaml:"max_connections"`
	// MaxConnectionsPerSource caps inbound connections from one address.
	MaxConnectionsPerSource int `yaml:"max_connections_per_source"`
	// IdleTimeout closes an inbound connection that carried no message
	// for this long and carries no live call.
	IdleTimeout Duration `yaml:"idle_timeout"`
	// TLSHandshakeTimeout bounds an inbound TLS handshake.
	TLSHandshakeTimeout Duration `yaml:"tls_handshake_timeout"`
	// PacedRequestRate is the requests per second one source address
	// may send over all its inbound connections (burst twice that)
	// before wagate reads from them more slowly (0: no pacing). Nothing
	// is dropped or blocked: the peer's requests wait in its socket.
	PacedRequestRate int `yaml:"paced_request_rate"`
}

// Listener is one SIP socket.
type Listener struct {
	Transport string `yaml:"transport"` // udp | tcp | tls
	Address   string `yaml:"address"`   // host:port
	// CertFile and KeyFile are the PEM certificate chain and key of a tls
	// listener (required for tls, refused for udp/tcp).
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
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
	// ProxyCIDRs (whatsapp only) lists the addresses of proxies, such as
	// Kamailio in front of several nodes, that forward this endpoint's
	// requests from their own address. They are the endpoint's sources over
	// any transport; on an endpoint with transport tls, a request over UDP
	// or TCP from its SourceCIDRs is not Meta's (Meta signals over TLS
	// only, and a UDP source can be forged) and is dropped at the edge.
	ProxyCIDRs []string `yaml:"proxy_cidrs"`
	// Codecs this endpoint may use, in order of preference
	// (names: opus, PCMU, PCMA; telephone-event is always kept).
	Codecs []string `yaml:"codecs"`
	// MaxCalls caps concurrent calls on this endpoint (0: no cap).
	MaxCalls int `yaml:"max_calls"`

	// TLSServerName is the name verified in the peer's certificate on
	// outbound TLS (default: host; "wa.meta.vc" for whatsapp endpoints).
	TLSServerName string `yaml:"tls_server_name"`
	// CAFile is a PEM bundle trusted for this peer's certificate instead of
	// the system roots (tests use a local CA).
	CAFile string `yaml:"ca_file"`
	// MediaEncryption is "dtls" (ICE and DTLS-SRTP, Meta's default
	// keying), "sdes" (RTP/SAVP with a=crypto) or "none" (plain RTP/AVP).
	// Default: sdes for whatsapp, none for pbx/dialer. A number's
	// media_encryption overrides it for that number's calls.
	MediaEncryption string `yaml:"media_encryption"`
	// Prefer decides, on a whatsapp endpoint, between Opus and the G.711
	// Meta also offers when the number has additional_codecs:
	// "transcode" (default: Opus toward Meta, transcoded here) or
	// "passthrough" (G.711 relayed end to end when the other side has it).
	Prefer string `yaml:"prefer"`
	// RefuseKeyingMismatch, on a whatsapp endpoint, refuses (488) the
	// business-initiated calls of a number whose media_encryption differs
	// from the srtp_key_exchange_protocol Meta last reported for it
	// (account_settings_update webhook); default false: logged only.
	RefuseKeyingMismatch bool `yaml:"refuse_keying_mismatch"`
	// BehindNAT says the peer's media may come from another port or
	// address than its SDP says: the relay latches onto the first valid
	// (on SRTP: authenticated) packet from the SDP's IP or the IP its SIP
	// comes from, any port, instead of only accepting the SDP address.
	BehindNAT bool `yaml:"behind_nat"`
	// LatchAnyAddress, only with BehindNAT, lets the relay latch onto a
	// source at any address, for peers whose media leaves from an address
	// unrelated to their SDP and SIP. Anyone who can send to wagate's
	// media ports can then race the peer for the latch on a plain RTP leg.
	LatchAnyAddress bool `yaml:"latch_any_address"`
	// Transfer, when set, lets this endpoint (pbx or dialer) transfer the
	// calls it is a leg of with REFER, to the targets it allows; without
	// it every REFER gets 403.
	Transfer *Transfer `yaml:"transfer"`
	// Auth, when set, challenges this endpoint's requests with digest
	// authentication (407) before they are routed.
	Auth *Auth `yaml:"auth"`
	// DigestRealm is the only realm whose challenges from this endpoint
	// wagate answers with credentials (default "wa.meta.vc" for whatsapp).
	DigestRealm string `yaml:"digest_realm"`
	// MaxCPS caps the new calls per second this endpoint may start; more
	// get 503 with Retry-After: 1 at once (0: no cap).
	MaxCPS int `yaml:"max_cps"`
	// MaxRequestRate is the requests per second one source address of
	// this endpoint may send before it is blocked for sip.flood.block_time
	// (0: no limit, the default: a dialer at hundreds of calls/s is normal).
	MaxRequestRate int `yaml:"max_request_rate"`
	// FollowRedirects (pbx only) makes a 3xx from this endpoint ring the
	// Contact it names, when that Contact is a configured pbx endpoint;
	// otherwise A gets 480 as for any redirect.
	FollowRedirects bool `yaml:"follow_redirects"`
	// Probe (pbx only) sends OPTIONS to the endpoint and marks it down
	// after repeated failures: hunts skip it, a route to it alone fails
	// at once.
	Probe *Probe `yaml:"probe"`

	// Prefixes is derived from SourceCIDRs and ProxyCIDRs by Load: bare IPs
	// become /32 or /128, host bits are cleared, IPv4-mapped IPv6 is folded
	// to IPv4. ProxyPrefixes are those of ProxyCIDRs alone.
	Prefixes      []netip.Prefix `yaml:"-"`
	ProxyPrefixes []netip.Prefix `yaml:"-"`
}

// Probe is the OPTIONS health check of an endpoint (as Kamailio's
// dispatcher does it).
type Probe struct {
	// Interval between probes (default 10s).
	Interval Duration `yaml:"interval"`
	// Timeout of one probe (default 5s, at most interval).
	Timeout Duration `yaml:"timeout"`
	// DownAfter consecutive failures mark the endpoint down (default 3).
	DownAfter int `yaml:"down_after"`
	// UpAfter consecutive answers mark a down endpoint up (default 2).
	UpAfter int `yaml:"up_after"`
}

// Auth is the digest authentication wagate demands from an endpoint.
type Auth struct {
	// Realm of the challenge (default: sip.host).
	Realm string `yaml:"realm"`
	// Users who may authenticate; any of them is accepted.
	Users []Credential `yaml:"users"`
	// NonceTTL is how long a nonce is accepted (default 5m).
	NonceTTL Duration `yaml:"nonce_ttl"`
	// MaxFailures per source address within FailureWindow before that
	// source is refused outright (403) until the window passes (default 10 in 1m).
	MaxFailures   int      `yaml:"max_failures"`
	FailureWindow Duration `yaml:"failure_window"`
}

// Credential is a username and a password given inline or through an
// environment variable (PasswordEnv wins when both are set and the
// variable is non-empty).
type Credential struct {
	Username    string `yaml:"username"`
	Password    string `yaml:"password"`
	PasswordEnv string `yaml:"password_env"`
}

// Number is a WhatsApp business number.
type Number struct {
	// Number is the business number in +E.164.
	Number string `yaml:"number"`
	// PhoneNumberID is Meta's id for the number (digits).
	PhoneNumberID string `yaml:"phone_number_id"`
	// Route says where user-initiated calls to this number go.
	Route Route `yaml:"route"`
	// Fallback is where a caller goes when wagate must find them an agent
	// again: a transfer whose target failed after the transferring agent
	// hung up. Without it such a call ends.
	Fallback *Route `yaml:"fallback"`
	// Dialers names the endpoints allowed to originate business-initiated
	// calls from this number.
	Dialers []string `yaml:"dialers"`
	// CallbackPermission grants a temporary permission on each UIC.
	CallbackPermission bool `yaml:"callback_permission"`
	// Digest is the password Meta generated for this number, used to answer
	// Meta's 407 on business-initiated calls (the username is the number's
	// digits without '+').
	Digest Secret `yaml:"digest"`
	// Recording overrides recording.enabled for this number's calls.
	Recording *bool `yaml:"recording"`
	// MediaEncryption overrides the whatsapp endpoint's media_encryption
	// for this number's calls ("dtls", "sdes" or "none"; empty: the
	// endpoint's), for a number whose srtp_key_exchange_protocol at Meta
	// differs from the others'.
	MediaEncryption string `yaml:"media_encryption"`
	// Hours, when set, sends calls outside the number's business hours to
	// Hours.AfterHours instead of Route.
	Hours *Hours `yaml:"hours"`
	// Blocklist refuses user-initiated calls from these callers to this
	// number (the top-level blocklist applies too).
	Blocklist *Blocklist `yaml:"blocklist"`
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
	// MaxBoundPairs caps the port pairs kept bound between calls (two
	// descriptors each); a released pair past it is closed and bound anew
	// at its next use. 0 derives it from the open-files limit.
	MaxBoundPairs int `yaml:"max_bound_pairs"`
	// RTPTimeout ends a call whose media stopped for this long.
	RTPTimeout Duration `yaml:"rtp_timeout"`
	// RTPStartTimeout ends a call that never received media for this long.
	RTPStartTimeout Duration `yaml:"rtp_start_timeout"`
	// RTCPInterval is how often wagate sends its own RTCP SR/RR per leg.
	RTCPInterval Duration `yaml:"rtcp_interval"`
	// JitterBuffer bounds the adaptive playout buffer of paced media
	// (toward WhatsApp, and transcoded either way): its depth follows the
	// measured jitter between Min and Max (defaults 20ms and 120ms).
	JitterBuffer JitterBuffer `yaml:"jitter_buffer"`
	// Silence is what a WhatsApp leg gets while the other side sends
	// nothing: "dtx" (default) one frame of silence every 400 ms after
	// 200 ms of frames (Opus's discontinuous transmission), or
	// "continuous" a frame every 20 ms.
	Silence string `yaml:"silence"`
	// RelatchPackets is how many consecutive valid packets a new source of
	// a latched behind_nat peer must send, with none from the latched
	// source in between, before the relay moves to it (default 10; 0
	// never moves: the first latch holds for the call).
	RelatchPackets int `yaml:"relatch_packets"`
	// Opus encoder settings for the WhatsApp leg.
	Opus Opus `yaml:"opus"`
	// MusicOnHold is a WAV file played to a caller the other side holds
	// (16-bit PCM, μ-law or A-law, 8–48 kHz, at most 10 minutes); empty:
	// comfort noise.
	MusicOnHold string `yaml:"music_on_hold"`
	// DTLS configures DTLS-SRTP keying (media_encryption: dtls).
	DTLS DTLS `yaml:"dtls"`
	// ICE configures the ICE agent of DTLS legs.
	ICE ICE `yaml:"ice"`
}

// DTLS configures the DTLS-SRTP handshake of dtls legs. The certificate
// (ECDSA P-256) is made on first start and kept in <data_dir>/dtls.
type DTLS struct {
	// HandshakeTimeout bounds ICE plus the DTLS handshake, from the
	// answer; a leg that is not keyed by then ends the call (default 10s).
	HandshakeTimeout Duration `yaml:"handshake_timeout"`
}

// ICE configures the ICE agent of dtls legs (wagate is a full agent).
type ICE struct {
	// ConsentTimeout ends a call whose peer stopped answering our ICE
	// consent checks (RFC 7675) for this long (default 30s).
	ConsentTimeout Duration `yaml:"consent_timeout"`
}

// JitterBuffer bounds the playout buffer's depth. The YAML is a mapping
// {min, max}; the single duration the key took before adaptive playout
// (the old reorder depth) is still read, as max, with min the default or
// that duration if smaller.
type JitterBuffer struct {
	Min Duration `yaml:"min"`
	Max Duration `yaml:"max"`
	// single records that the file used the old single-duration form, so
	// that defaults do not overwrite the min it implies.
	single bool
}

// Opus configures the Opus encoder.
type Opus struct {
	// Bitrate in bit/s (default 20000, Meta's maxaveragebitrate).
	Bitrate int `yaml:"bitrate"`
	// Complexity 0–10 (default 5).
	Complexity int `yaml:"complexity"`
	// FEC enables in-band forward error correction (default true).
	FEC *bool `yaml:"fec"`
}

// API configures the HTTP control/status endpoint.
type API struct {
	// Listen is host:port; empty disables the API.
	Listen string `yaml:"listen"`
	// Token is the bearer token for /v1/* (except /v1/status and the
	// webhook). Required when permissions or recording are enabled and
	// Listen is set.
	Token Secret `yaml:"token"`
	// ReadToken is a second bearer token that only reads: GET of every
	// /v1/* route but recordings (a wallboard, a BI tool). Optional.
	ReadToken Secret `yaml:"read_token"`
	// Webhook configures Meta's webhook endpoint (/webhook/meta).
	Webhook Webhook `yaml:"webhook"`
}

// Webhook configures the Meta webhook receiver.
type Webhook struct {
	// AppSecret verifies X-Hub-Signature-256; webhook off when empty.
	AppSecret Secret `yaml:"app_secret"`
	// VerifyToken answers Meta's subscription handshake.
	VerifyToken Secret `yaml:"verify_token"`
}

// Log configures logging.
type Log struct {
	Level  string `yaml:"level"`  // debug | info | warn | error
	Format string `yaml:"format"` // text | json
}

// Permissions configures the call-permission cache.
type Permissions struct {
	// Enabled turns the permission check on for business-initiated calls.
	Enabled bool `yaml:"enabled"`
	// Backend is "bbolt" (default: the embedded store, one node) or
	// "redis" (shared by several nodes).
	Backend string `yaml:"backend"`
	// Store is the file of the embedded store (default <data_dir>/permissions.db).
	Store string `yaml:"store"`
	// Redis configures the shared store (backend redis).
	Redis PermissionRedis `yaml:"redis"`
	// Limits are Meta's rules; Meta changes them, so they are configurable.
	Limits PermissionLimits `yaml:"limits"`
}

// Permission backends.
const (
	PermissionBackendBolt  = "bbolt"
	PermissionBackendRedis = "redis"
)

// PermissionRedis configures the Redis permission store shared by several
// nodes (docs/multinode.md).
type PermissionRedis struct {
	// Address is host:port of the Redis primary (default 127.0.0.1:6379).
	Address  string `yaml:"address"`
	Username string `yaml:"username"`
	Password Secret `yaml:"password"`
	DB       int    `yaml:"db"`
	// Prefix starts every key (default "wagate:").
	Prefix string `yaml:"prefix"`
	// SlotTTL is how long a dead node's calls keep their concurrency
	// slots (default 15s); a live node refreshes them every third of it.
	SlotTTL Duration `yaml:"slot_ttl"`
	// Timeout bounds each Redis operation (default 300ms).
	Timeout Duration `yaml:"timeout"`
	// OnDown is what a business-initiated call gets while Redis cannot be
	// reached: "refuse" (503, default) or "cache" (admitted from what this
	// node last saw).
	OnDown string `yaml:"on_down"`
	// WaitReplicas > 0 makes every change wait for that many replicas
	// (WAIT) within WaitTimeout (default 1s).
	WaitReplicas int      `yaml:"wait_replicas"`
	WaitTimeout  Duration `yaml:"wait_timeout"`
	// AllowNonDurable starts on a Redis that does not fsync every write.
	AllowNonDurable bool `yaml:"allow_non_durable"`
}

// PermissionLimits are WhatsApp's call-permission rules (DESIGN.md §5).
type PermissionLimits struct {
	TemporaryTTL               Duration `yaml:"temporary_ttl"`                // 168h
	ConnectedCallsPerUser24h   int      `yaml:"connected_calls_per_user_24h"` // 100
	ConsecutiveUnansweredMax   int      `yaml:"consecutive_unanswered_max"`   // 4 (revokes)
	ConsecutiveUnansweredNudge int      `yaml:"consecutive_unanswered_nudge"` // 2
	NewCallsPerNumber24h       int      `yaml:"new_calls_per_number_24h"`     // 10000
	ConcurrentCallsPerNumber   int      `yaml:"concurrent_calls_per_number"`  // 1000
	RequestsPer24h             int      `yaml:"requests_per_24h"`             // 1
	RequestsPer7d              int      `yaml:"requests_per_7d"`              // 2
}

// Recording configures call recording.
type Recording struct {
	Enabled   bool   `yaml:"enabled"`
	Directory string `yaml:"directory"`
	// SampleRate is 8000 (default) or 16000.
	SampleRate int `yaml:"sample_rate"`
	// NameBy picks the Call-ID that names the file: "a" (default) or "b".
	NameBy string `yaml:"name_by"`
	// RetentionDays deletes recordings older than this (0: keep forever).
	RetentionDays int `yaml:"retention_days"`
}
