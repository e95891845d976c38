package configs

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// marker flags the line a test expects its problem on; tests compute line
// numbers from it instead of counting by hand.
const marker = "# <-"

func markedLine(t *testing.T, src string) int {
	t.Helper()
	for i, line := range strings.Split(src, "\n") {
		if strings.Contains(line, marker) {
			return i + 1
		}
	}
	t.Fatalf("test YAML has no %q marker:\n%s", marker, src)
	return 0
}

// wantOneProblem parses src and checks that it yields exactly one problem,
// on the marked line, whose text contains want. Exactly one, so that a rule
// that cascades into follow-on noise fails its test.
func wantOneProblem(t *testing.T, src, want string) {
	t.Helper()
	line := markedLine(t, src)
	_, err := Parse([]byte(src), "wagate.yaml")
	if err == nil {
		t.Fatalf("Parse succeeded, want a problem containing %q on line %d", want, line)
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("Parse error is %T (%v), want *configs.Error", err, err)
	}
	if len(e.Problems) != 1 {
		t.Fatalf("got %d problems, want 1:\n%v", len(e.Problems), err)
	}
	p := e.Problems[0]
	prefix := fmt.Sprintf("wagate.yaml:%d: ", line)
	if p.Line != line || !strings.HasPrefix(err.Error(), prefix) {
		t.Errorf("problem on line %d, want line %d:\n%v", p.Line, line, err)
	}
	if !strings.Contains(err.Error(), want) {
		t.Errorf("problem does not contain %q:\n%v", want, err)
	}
}

// endpointsBlock defines one endpoint of each kind for number tests.
const endpointsBlock = `
endpoints:
  - {name: meta, kind: whatsapp, host: 127.0.0.2, source_cidrs: [127.0.0.2]}
  - {name: pbx, kind: pbx, host: 127.0.0.3, source_cidrs: [127.0.0.3]}
  - {name: dialer, kind: dialer, source_cidrs: [127.0.0.4]}
`

func TestValidationProblems(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want string
	}{
		// sip
		{"cpu admission above 100", `
sip:
  max_cpu_percent: 150 # <-
`, `sip.max_cpu_percent: 150 must be between 0 (off) and 100`},
		{"late-media admission negative", `
sip:
  max_late_media_percent: -5 # <-
`, `sip.max_late_media_percent: -5 must be between 0 (off) and 99`},
		{"late-media admission that could never refuse", `
sip:
  max_late_media_percent: 100 # <-
`, `sip.max_late_media_percent: 100 must be between 0 (off) and 99`},
		{"listener transport", `
sip:
  listen:
    - {transport: sctp, address: "127.0.0.1:5072"} # <-
`, `sip.listen[0].transport: "sctp" is not a transport; use udp, tcp or tls`},
		{"listener address without port", `
sip:
  listen:
    - transport: udp
      address: 127.0.0.1 # <-
`, `sip.listen[0].address: "127.0.0.1" is not host:port`},
		{"listener address port out of range", `
sip:
  listen:
    - transport: udp
      address: "127.0.0.1:70000" # <-
`, `has no valid port`},
		{"listener address host name", `
sip:
  listen:
    - transport: tcp
      address: "localhost:5072" # <-
`, `does not start with an IP address`},
		{"no listeners", `
sip:
  listen: [] # <-
`, `sip.listen: at least one listener is needed`},
		{"duplicate listener", `
sip:
  listen:
    - {transport: udp, address: "127.0.0.1:5072"}
    - {transport: UDP, address: "127.0.0.1:5072"} # <-
`, `sip.listen[1]: udp 127.0.0.1:5072 is already listed at sip.listen[0]`},
		{"bad sip host", `
sip:
  host: "sip example com" # <-
`, `sip.host: "sip example com" is not an IP address or host name`},
		{"wildcard sip host", `
sip:
  host: 0.0.0.0 # <-
`, `sip.host: 0.0.0.0 cannot be reached by peers`},
		{"empty user agent", `
sip:
  user_agent: "" # <-
`, `sip.user_agent: must not be empty`},
		{"user agent with line break", `
sip:
  user_agent: "wagate\r\nX-Evil: 1" # <-
`, `must not contain line breaks`},
		{"zero ring timeout", `
sip:
  ring_timeout: 0s # <-
`, `sip.ring_timeout: 0s must be greater than 0`},
		{"negative ring timeout", `
sip:
  ring_timeout: -5s # <-
`, `sip.ring_timeout: -5s must be greater than 0`},
		{"negative sip max_calls", `
sip:
  max_calls: -1 # <-
`, `sip.max_calls: -1 is negative`},
		{"hep without address", `
sip:
  trace:
    hep: # <-
      agent_id: 7
`, `sip.trace.hep.address: is required: the collector's host:port`},
		{"hep address without port", `
sip:
  trace:
    hep:
      address: homer.example.com # <-
`, `sip.trace.hep.address: "homer.example.com" is not host:port`},
		{"hep address port out of range", `
sip:
  trace:
    hep: {address: "192.0.2.10:0"} # <-
`, `sip.trace.hep.address: "192.0.2.10:0" has no valid port`},
		{"hep address without host", `
sip:
  trace:
    hep: {address: ":9060"} # <-
`, `sip.trace.hep.address: ":9060" names no host to send to`},
		{"hep address wildcard", `
sip:
  trace:
    hep: {address: "0.0.0.0:9060"} # <-
`, `names no host to send to`},
		{"hep address bad host", `
sip:
  trace:
    hep: {address: "homer example:9060"} # <-
`, `is not an IP address or host name with a port`},
		{"hep agent_id negative", `
sip:
  trace:
    hep:
      address: "192.0.2.10:9060"
      agent_id: -1 # <-
`, `sip.trace.hep.agent_id: -1 must be between 0 and 4294967295`},
		{"hep agent_id too large", `
sip:
  trace:
    hep:
      address: "192.0.2.10:9060"
      agent_id: 4294967296 # <-
`, `must be between 0 and 4294967295`},
		{"hep password env name", `
sip:
  trace:
    hep:
      address: "192.0.2.10:9060"
      password: {env: "hep-key"} # <-
`, `sip.trace.hep.password.env: is not an environment variable name`},
		{"hep password too long", `
sip:
  trace:
    hep:
      address: "192.0.2.10:9060"
      password: {value: "` + strings.Repeat("k", 257) + `"} # <-
`, `sip.trace.hep.password.value: is longer than 256 characters`},
		{"trace log not a bool", `
sip:
  trace:
    log: yes please # <-
`, `sip.trace.log: "yes please" is not true or false`},
		{"unknown trace key", `
sip:
  trace:
    hep_address: "192.0.2.10:9060" # <-
`, `unknown key "hep_address" in sip.trace`},

		// endpoints
		{"endpoint without name", `
endpoints:
  - kind: pbx # <-
    host: 10.0.0.1
    source_cidrs: [10.0.0.1]
`, `endpoints[0].name: every endpoint needs a name`},
		{"endpoint name characters", `
endpoints:
  - name: pbx one # <-
    kind: pbx
    host: 10.0.0.1
    source_cidrs: [10.0.0.1]
`, `endpoints[0].name: "pbx one" may only contain letters, digits, '_' and '-'`},
		{"duplicate endpoint name", `
endpoints:
  - {name: pbx, kind: pbx, host: 10.0.0.1, source_cidrs: [10.0.0.1]}
  - {name: pbx, kind: pbx, host: 10.0.0.2, source_cidrs: [10.0.0.2]} # <-
`, `endpoints[1].name: endpoint name "pbx" is already used by endpoints[0]`},
		{"endpoint without kind", `
endpoints:
  - name: pbx # <-
    host: 10.0.0.1
    source_cidrs: [10.0.0.1]
`, `endpoints[0].kind: every endpoint needs a kind`},
		{"endpoint bad kind", `
endpoints:
  - name: pbx
    kind: sbc # <-
    host: 10.0.0.1
    source_cidrs: [10.0.0.1]
`, `endpoints[0].kind: "sbc" is not a kind; use whatsapp, pbx or dialer`},
		{"whatsapp without host", `
endpoints:
  - name: meta # <-
    kind: whatsapp
    source_cidrs: [192.0.2.0/24]
`, `endpoints[0].host: an endpoint of kind whatsapp needs a host`},
		{"pbx without host", `
endpoints:
  - name: pbx # <-
    kind: pbx
    source_cidrs: [10.0.0.1]
`, `endpoints[0].host: an endpoint of kind pbx needs a host`},
		{"bad host", `
endpoints:
  - name: pbx
    kind: pbx
    host: 10.0.0.300 # <-
    source_cidrs: [10.0.0.1]
`, `endpoints[0].host: "10.0.0.300" is not an IP address or host name`},
		{"port zero", `
endpoints:
  - name: pbx
    kind: pbx
    host: 10.0.0.1
    port: 0 # <-
    source_cidrs: [10.0.0.1]
`, `endpoints[0].port: 0 is not a port (1–65535)`},
		{"port too big", `
endpoints:
  - name: pbx
    kind: pbx
    host: 10.0.0.1
    port: 65536 # <-
    source_cidrs: [10.0.0.1]
`, `endpoints[0].port: 65536 is not a port`},
		{"endpoint transport", `
endpoints:
  - name: pbx
    kind: pbx
    host: 10.0.0.1
    transport: sctp # <-
    source_cidrs: [10.0.0.1]
`, `endpoints[0].transport: "sctp" is not a transport`},
		{"no source cidrs", `
endpoints:
  - name: dialer # <-
    kind: dialer
`, `endpoints[0].source_cidrs: at least one source CIDR is needed`},
		{"bad cidr", `
endpoints:
  - {name: pbx, kind: pbx, host: 10.0.0.1, source_cidrs: [10.0.0.1]}
  - name: dialer
    kind: dialer
    source_cidrs:
      - 10.0.0.300/8 # <-
`, `endpoints[1].source_cidrs[0]: "10.0.0.300/8" is not a CIDR`},
		{"cidr on two endpoints", `
endpoints:
  - {name: pbx, kind: pbx, host: 10.0.0.1, source_cidrs: [10.0.0.1]}
  - name: dialer
    kind: dialer
    source_cidrs:
      - 10.1.0.0/16
      - 10.0.0.1/32 # <-
`, `endpoints[1].source_cidrs[1]: 10.0.0.1/32 is already a source of endpoint "pbx"`},
		{"bad proxy cidr", `
endpoints:
  - name: meta
    kind: whatsapp
    host: 192.0.2.1
    source_cidrs: [192.0.2.0/24]
    proxy_cidrs:
      - 10.0.5 # <-
`, `endpoints[0].proxy_cidrs[0]: "10.0.5" is not a CIDR or IP address`},
		{"proxy cidr of another endpoint", `
endpoints:
  - {name: pbx, kind: pbx, host: 10.0.0.1, source_cidrs: [10.0.0.1]}
  - name: meta
    kind: whatsapp
    host: 192.0.2.1
    source_cidrs: [192.0.2.0/24]
    proxy_cidrs:
      - 10.0.0.1/32 # <-
`, `endpoints[1].proxy_cidrs[0]: 10.0.0.1/32 is already a source of endpoint "pbx"`},
		{"proxy cidr also a source cidr", `
endpoints:
  - name: meta
    kind: whatsapp
    host: 192.0.2.1
    source_cidrs: [192.0.2.0/24, 10.0.0.5]
    proxy_cidrs:
      - 10.0.0.5 # <-
`, `endpoints[0].proxy_cidrs[0]: 10.0.0.5/32 is also in source_cidrs; a proxy's address belongs in proxy_cidrs only`},
		{"proxy cidrs on a pbx", `
endpoints:
  - name: pbx
    kind: pbx
    host: 10.0.0.1
    source_cidrs: [10.0.0.1]
    proxy_cidrs: [10.0.0.2] # <-
`, `endpoints[0].proxy_cidrs: only applies to whatsapp endpoints`},
		{"unknown codec", `
endpoints:
  - name: pbx
    kind: pbx
    host: 10.0.0.1
    source_cidrs: [10.0.0.1]
    codecs:
      - pcmu
      - G729 # <-
`, `endpoints[0].codecs[1]: "G729" is not a codec; use opus, PCMU or PCMA`},
		{"codec twice", `
endpoints:
  - name: pbx
    kind: pbx
    host: 10.0.0.1
    source_cidrs: [10.0.0.1]
    codecs:
      - PCMA
      - pcma # <-
`, `endpoints[0].codecs[1]: PCMA is listed twice`},
		{"empty codec list", `
endpoints:
  - name: pbx
    kind: pbx
    host: 10.0.0.1
    source_cidrs: [10.0.0.1]
    codecs: [] # <-
`, `endpoints[0].codecs: the list is empty`},
		{"negative endpoint max_calls", `
endpoints:
  - name: pbx
    kind: pbx
    host: 10.0.0.1
    source_cidrs: [10.0.0.1]
    max_calls: -3 # <-
`, `endpoints[0].max_calls: -3 is negative`},

		// numbers
		{"numbers without whatsapp endpoint", `
endpoints:
  - {name: pbx, kind: pbx, host: 10.0.0.1, source_cidrs: [10.0.0.1]}
numbers: # <-
  - {number: "+15550100001", phone_number_id: "1", route: {endpoint: pbx, user: "1001"}}
`, `numbers: business numbers are configured but no endpoint has kind whatsapp`},
		{"number without plus", endpointsBlock + `
numbers:
  - number: "15550100001" # <-
    phone_number_id: "1"
    route: {endpoint: pbx, user: "1001"}
`, `numbers[0].number: "15550100001" is not +E.164`},
		{"number too short", endpointsBlock + `
numbers:
  - number: "+1234567" # <-
    phone_number_id: "1"
    route: {endpoint: pbx, user: "1001"}
`, `"+1234567" is not +E.164 (a '+' followed by 8 to 15 digits)`},
		{"number too long", endpointsBlock + `
numbers:
  - number: "+1234567890123456" # <-
    phone_number_id: "1"
    route: {endpoint: pbx, user: "1001"}
`, `"+1234567890123456" is not +E.164`},
		{"number missing", endpointsBlock + `
numbers:
  - phone_number_id: "1" # <-
    route: {endpoint: pbx, user: "1001"}
`, `numbers[0].number: every business number needs its number`},
		{"duplicate number", endpointsBlock + `
numbers:
  - {number: "+15550100001", phone_number_id: "1", route: {endpoint: pbx, user: "1001"}}
  - {number: "+15550100001", phone_number_id: "2", route: {endpoint: pbx, user: "1002"}} # <-
`, `numbers[1].number: +15550100001 is already configured at numbers[0]`},
		{"phone_number_id missing", endpointsBlock + `
numbers:
  - number: "+15550100001" # <-
    route: {endpoint: pbx, user: "1001"}
`, `numbers[0].phone_number_id: every business number needs Meta's phone_number_id`},
		{"phone_number_id not digits", endpointsBlock + `
numbers:
  - number: "+15550100001"
    phone_number_id: "10-20" # <-
    route: {endpoint: pbx, user: "1001"}
`, `numbers[0].phone_number_id: "10-20" must be digits only`},
		{"duplicate phone_number_id", endpointsBlock + `
numbers:
  - {number: "+15550100001", phone_number_id: "7", route: {endpoint: pbx, user: "1001"}}
  - number: "+15550100002"
    phone_number_id: 7 # <-
    route: {endpoint: pbx, user: "1002"}
`, `numbers[1].phone_number_id: 7 is already used by numbers[0]`},
		{"route missing", endpointsBlock + `
numbers:
  - number: "+15550100001" # <-
    phone_number_id: "1"
`, `numbers[0].route: every business number needs a route`},
		{"route without endpoint", endpointsBlock + `
numbers:
  - number: "+15550100001"
    phone_number_id: "1"
    route: # <-
      user: "1001"
`, `numbers[0].route.endpoint: the route needs the pbx endpoint`},
		{"route to undefined endpoint", endpointsBlock + `
numbers:
  - number: "+15550100001"
    phone_number_id: "1"
    route:
      endpoint: pbx9 # <-
      user: "1001"
`, `numbers[0].route.endpoint: route to an undefined endpoint "pbx9"`},
		{"route to a dialer", endpointsBlock + `
numbers:
  - number: "+15550100001"
    phone_number_id: "1"
    route:
      endpoint: dialer # <-
      user: "1001"
`, `endpoint "dialer" has kind dialer; a route must name an endpoint of kind pbx`},
		{"route without user", endpointsBlock + `
numbers:
  - number: "+15550100001"
    phone_number_id: "1"
    route: # <-
      endpoint: pbx
`, `numbers[0].route.user: the route needs the user`},
		{"route user with space", endpointsBlock + `
numbers:
  - number: "+15550100001"
    phone_number_id: "1"
    route:
      endpoint: pbx
      user: "10 01" # <-
`, `numbers[0].route.user: "10 01" must not contain spaces`},
		{"route user is a URI", endpointsBlock + `
numbers:
  - number: "+15550100001"
    phone_number_id: "1"
    route:
      endpoint: pbx
      user: "1001@pbx.example.com" # <-
`, `must be only the user part of the URI`},
		{"undefined dialer", endpointsBlock + `
numbers:
  - number: "+15550100001"
    phone_number_id: "1"
    route: {endpoint: pbx, user: "1001"}
    dialers:
      - dialer
      - dialer2 # <-
`, `numbers[0].dialers[1]: "dialer2" is not a defined endpoint`},
		{"whatsapp endpoint as dialer", endpointsBlock + `
numbers:
  - number: "+15550100001"
    phone_number_id: "1"
    route: {endpoint: pbx, user: "1001"}
    dialers: [pbx, meta] # <-
`, `numbers[0].dialers[1]: endpoint "meta" has kind whatsapp; only dialer and pbx endpoints may originate calls`},

		// media
		{"reversed port range", `
media:
  port_min: 40000 # <-
  port_max: 30000
`, `media.port_min: 40000 is above port_max 30000; the port range is reversed`},
		{"odd port_min", `
media:
  port_min: 30001 # <-
`, `media.port_min: 30001 is odd`},
		{"privileged port_min", `
media:
  port_min: 80 # <-
`, `media.port_min: 80 is outside 1024–65535`},
		{"port_max too big", `
media:
  port_max: 70000 # <-
`, `media.port_max: 70000 is outside 1024–65535`},
		{"range too small", `
media:
  port_min: 30000
  port_max: 30002 # <-
`, `media.port_max: the range 30000–30002 holds 1 RTP/RTCP port pair(s); at least 2 are needed`},
		{"empty range", `
media:
  port_min: 30000
  port_max: 30000 # <-
`, `holds 0 RTP/RTCP port pair(s)`},
		{"bad bind_ip", `
media:
  bind_ip: 10.0.0 # <-
`, `media.bind_ip: "10.0.0" is not an IP address`},
		{"wildcard bind without advertise_ip", `
media:
  bind_ip: 0.0.0.0 # <-
`, `media.advertise_ip: is required when bind_ip is 0.0.0.0`},
		{"IPv6 wildcard bind without advertise_ip", `
media:
  port_min: 20000
  bind_ip: "::" # <-
`, `media.advertise_ip: is required when bind_ip is ::`},
		{"bad advertise_ip", `
media:
  advertise_ip: media.example.com # <-
`, `media.advertise_ip: "media.example.com" is not an IP address`},
		{"wildcard advertise_ip", `
media:
  bind_ip: 0.0.0.0
  advertise_ip: 0.0.0.0 # <-
`, `media.advertise_ip: 0.0.0.0 cannot be reached by peers`},
		{"empty advertise_ip", `
media:
  advertise_ip: "" # <-
`, `media.advertise_ip: must not be empty`},
		{"zero port_quarantine", `
media:
  port_quarantine: 0s # <-
`, `media.port_quarantine: 0s must be greater than 0`},
		{"negative max_bound_pairs", `
media:
  max_bound_pairs: -1 # <-
`, `media.max_bound_pairs: -1 is negative; use 0 to derive it`},
		{"zero rtp_timeout", `
media:
  rtp_timeout: 0s # <-
`, `media.rtp_timeout: 0s must be greater than 0`},
		{"negative rtp_start_timeout", `
media:
  rtp_start_timeout: -1m # <-
`, `media.rtp_start_timeout: -1m0s must be greater than 0`},

		// api, log, recording
		{"api listen without host:port", `
api:
  listen: "8080" # <-
`, `api.listen: "8080" is not host:port`},
		{"log level", `
log:
  level: verbose # <-
`, `log.level: "verbose" is not a level; use debug, info, warn or error`},
		{"log format", `
log:
  format: xml # <-
`, `log.format: "xml" is not a format; use text or json`},
		{"empty recording directory", `
api:
  listen: ""
recording:
  enabled: true
  directory: "" # <-
`, `recording.directory: must not be empty`},

		// data_dir
		{"empty data_dir", `
data_dir: "" # <-
`, `data_dir: must not be empty; remove the key to use "data"`},

		// sip listeners and TLS (file checks: TestFileProblems)
		{"udp listener with cert_file", `
sip:
  listen:
    - transport: udp
      address: "127.0.0.1:5072"
      cert_file: cert.pem # <-
`, `sip.listen[0].cert_file: only a tls listener takes a certificate; this one is udp`},
		{"tcp listener with key_file", `
sip:
  listen:
    - transport: tcp
      address: "127.0.0.1:5072"
      key_file: key.pem # <-
`, `sip.listen[0].key_file: only a tls listener takes a key; this one is tcp`},

		// endpoints: transport, TLS, media encryption, digest
		{"endpoint transport lists tls", `
endpoints:
  - name: pbx
    kind: pbx
    host: 10.0.0.1
    transport: wss # <-
    source_cidrs: [10.0.0.1]
`, `endpoints[0].transport: "wss" is not a transport; use udp, tcp or tls`},
		{"media_encryption", `
endpoints:
  - name: pbx
    kind: pbx
    host: 10.0.0.1
    source_cidrs: [10.0.0.1]
    media_encryption: zrtp # <-
`, `endpoints[0].media_encryption: "zrtp" is not a media encryption; use dtls (ICE and DTLS-SRTP), sdes (SRTP keyed in SDP) or none (plain RTP)`},
		{"prefer value", `
endpoints:
  - name: meta
    kind: whatsapp
    host: 10.0.0.1
    source_cidrs: [10.0.0.1]
    prefer: opus # <-
`, `endpoints[0].prefer: "opus" is not a preference; use transcode (Opus toward Meta) or passthrough (G.711 relayed end to end)`},
		{"prefer on a pbx", `
endpoints:
  - name: pbx
    kind: pbx
    host: 10.0.0.1
    source_cidrs: [10.0.0.1]
    prefer: passthrough # <-
`, `endpoints[0].prefer: only applies to whatsapp endpoints`},
		{"dtls handshake timeout", `
media:
  dtls: {handshake_timeout: 500ms} # <-
`, `media.dtls.handshake_timeout: 500ms is outside 1s–1m`},
		{"latch_any_address without behind_nat", `
endpoints:
  - name: pbx
    kind: pbx
    host: 10.0.0.1
    source_cidrs: [10.0.0.1]
    latch_any_address: true # <-
`, `endpoints[0].latch_any_address: only applies with behind_nat: true`},
		{"latch_any_address with behind_nat false", `
endpoints:
  - {name: pbx, kind: pbx, host: 10.0.0.1, source_cidrs: [10.0.0.1], behind_nat: false, latch_any_address: true} # <-
`, `endpoints[0].latch_any_address: only applies with behind_nat: true`},
		{"bad tls_server_name", `
endpoints:
  - name: pbx
    kind: pbx
    host: 10.0.0.1
    transport: tls
    tls_server_name: "pbx example" # <-
    source_cidrs: [10.0.0.1]
`, `endpoints[0].tls_server_name: "pbx example" is not a host name or IP address`},
		{"empty tls_server_name with tls", `
endpoints:
  - name: pbx
    kind: pbx
    host: 10.0.0.1
    transport: tls
    tls_server_name: "" # <-
    source_cidrs: [10.0.0.1]
`, `endpoints[0].tls_server_name: must not be empty with transport tls`},
		{"ca_file without tls", `
endpoints:
  - name: pbx
    kind: pbx
    host: 10.0.0.1
    transport: tcp
    ca_file: ca.pem # <-
    source_cidrs: [10.0.0.1]
`, `endpoints[0].ca_file: only an endpoint with transport tls uses ca_file; this one is tcp`},
		{"empty whatsapp digest_realm", `
endpoints:
  - name: meta
    kind: whatsapp
    host: 192.0.2.1
    digest_realm: "" # <-
    source_cidrs: [192.0.2.0/24]
`, `endpoints[0].digest_realm: must not be empty`},
		{"digest_realm with quote", `
endpoints:
  - name: meta
    kind: whatsapp
    host: 192.0.2.1
    digest_realm: 'wa"meta' # <-
    source_cidrs: [192.0.2.0/24]
`, `endpoints[0].digest_realm: "wa\"meta" must not contain quotes`},

		// endpoints: auth
		{"auth without users", `
endpoints:
  - name: pbx
    kind: pbx
    host: 10.0.0.1
    source_cidrs: [10.0.0.1]
    auth: # <-
      realm: cc.example.com
`, `endpoints[0].auth.users: at least one user is needed`},
		{"auth with empty users", `
endpoints:
  - name: pbx
    kind: pbx
    host: 10.0.0.1
    source_cidrs: [10.0.0.1]
    auth:
      users: [] # <-
`, `endpoints[0].auth.users: at least one user is needed`},
		{"auth user without username", `
endpoints:
  - name: pbx
    kind: pbx
    host: 10.0.0.1
    source_cidrs: [10.0.0.1]
    auth:
      users:
        - password: secret # <-
`, `endpoints[0].auth.users[0].username: every user needs a username`},
		{"auth user without password", `
endpoints:
  - name: pbx
    kind: pbx
    host: 10.0.0.1
    source_cidrs: [10.0.0.1]
    auth:
      users:
        - username: pbx # <-
`, `endpoints[0].auth.users[0].password: every user needs a password or password_env`},
		{"auth user with empty password", `
endpoints:
  - name: pbx
    kind: pbx
    host: 10.0.0.1
    source_cidrs: [10.0.0.1]
    auth:
      users:
        - username: pbx
          password: "" # <-
          password_env: ""
`, `endpoints[0].auth.users[0].password: every user needs a password or password_env`},
		{"auth username with quote", `
endpoints:
  - name: pbx
    kind: pbx
    host: 10.0.0.1
    source_cidrs: [10.0.0.1]
    auth:
      users:
        - username: 'p"bx' # <-
          password: secret
`, `endpoints[0].auth.users[0].username: "p\"bx" must not contain quotes`},
		{"auth username twice", `
endpoints:
  - name: pbx
    kind: pbx
    host: 10.0.0.1
    source_cidrs: [10.0.0.1]
    auth:
      users:
        - {username: pbx, password: a}
        - {username: pbx, password: b} # <-
`, `endpoints[0].auth.users[1].username: user "pbx" is already listed at endpoints[0].auth.users[0]`},
		{"auth password_env name", `
endpoints:
  - name: pbx
    kind: pbx
    host: 10.0.0.1
    source_cidrs: [10.0.0.1]
    auth:
      users:
        - username: pbx
          password_env: pbx-password # <-
`, `endpoints[0].auth.users[0].password_env: is not an environment variable name`},
		{"auth empty realm", `
endpoints:
  - name: pbx
    kind: pbx
    host: 10.0.0.1
    source_cidrs: [10.0.0.1]
    auth:
      realm: "" # <-
      users: [{username: pbx, password: a}]
`, `endpoints[0].auth.realm: must not be empty; remove the key to use sip.host (127.0.0.1)`},
		{"auth zero nonce_ttl", `
endpoints:
  - name: pbx
    kind: pbx
    host: 10.0.0.1
    source_cidrs: [10.0.0.1]
    auth:
      users: [{username: pbx, password: a}]
      nonce_ttl: 0s # <-
`, `endpoints[0].auth.nonce_ttl: 0s must be greater than 0`},
		{"auth zero max_failures", `
endpoints:
  - name: pbx
    kind: pbx
    host: 10.0.0.1
    source_cidrs: [10.0.0.1]
    auth:
      users: [{username: pbx, password: a}]
      max_failures: 0 # <-
`, `endpoints[0].auth.max_failures: 0 must be at least 1`},
		{"auth negative failure_window", `
endpoints:
  - name: pbx
    kind: pbx
    host: 10.0.0.1
    source_cidrs: [10.0.0.1]
    auth:
      users: [{username: pbx, password: a}]
      failure_window: -1s # <-
`, `endpoints[0].auth.failure_window: -1s must be greater than 0`},
		{"auth not a mapping", `
endpoints:
  - name: pbx
    kind: pbx
    host: 10.0.0.1
    source_cidrs: [10.0.0.1]
    auth: yes # <-
`, `endpoints[0].auth: must be a mapping of keys, not a single value`},

		// numbers: digest and recording
		{"digest env name", endpointsBlock + `
numbers:
  - number: "+15550100001"
    phone_number_id: "1"
    route: {endpoint: pbx, user: "1001"}
    digest:
      env: 1WAGATE_DIGEST # <-
`, `numbers[0].digest.env: is not an environment variable name`},
		{"digest env lower case", endpointsBlock + `
numbers:
  - number: "+15550100001"
    phone_number_id: "1"
    route: {endpoint: pbx, user: "1001"}
    digest: {env: wagate_digest} # <-
`, `numbers[0].digest.env: is not an environment variable name`},
		{"number recording not a bool", endpointsBlock + `
numbers:
  - number: "+15550100001"
    phone_number_id: "1"
    route: {endpoint: pbx, user: "1001"}
    recording: sometimes # <-
`, `"sometimes" is not true or false`},

		// media
		{"rtcp_interval below 1s", `
media:
  rtcp_interval: 500ms # <-
`, `media.rtcp_interval: 500ms is below 1s`},
		{"negative jitter_buffer", `
media:
  jitter_buffer: -10ms # <-
`, `media.jitter_buffer: -10ms is outside 0s–1s`},
		{"jitter_buffer above 1s", `
media:
  jitter_buffer: 1001ms # <-
`, `media.jitter_buffer: 1.001s is outside 0s–1s`},
		{"jitter_buffer max above 1s", `
media:
  jitter_buffer: {min: 20ms, max: 2s} # <-
`, `media.jitter_buffer.max: 2s is outside 0s–1s`},
		{"jitter_buffer min above max", `
media:
  jitter_buffer:
    min: 200ms # <-
    max: 100ms
`, `media.jitter_buffer.min: 200ms is above max 100ms`},
		{"jitter_buffer min not a duration", `
media:
  jitter_buffer:
    min: 20 # <-
`, `"20" is not a duration`},
		{"jitter_buffer unknown key", `
media:
  jitter_buffer:
    target: 40ms # <-
`, `unknown key "target"`},
		{"jitter_buffer a list", `
media:
  jitter_buffer: [20ms, 120ms] # <-
`, `media.jitter_buffer: must be a mapping`},
		{"negative relatch_packets", `
media:
  relatch_packets: -1 # <-
`, `media.relatch_packets: -1 is outside 0–1000`},
		{"relatch_packets too large", `
media:
  relatch_packets: 1001 # <-
`, `media.relatch_packets: 1001 is outside 0–1000`},
		{"opus bitrate too low", `
media:
  opus:
    bitrate: 5999 # <-
`, `media.opus.bitrate: 5999 is outside Opus's 6000–510000 bit/s`},
		{"opus bitrate too high", `
media:
  opus:
    bitrate: 510001 # <-
`, `media.opus.bitrate: 510001 is outside`},
		{"opus complexity", `
media:
  opus:
    complexity: 11 # <-
`, `media.opus.complexity: 11 is outside 0–10`},
		{"opus negative complexity", `
media:
  opus:
    complexity: -1 # <-
`, `media.opus.complexity: -1 is outside 0–10`},
		{"opus fec not a bool", `
media:
  opus:
    fec: maybe # <-
`, `"maybe" is not true or false`},

		// permissions
		{"empty permissions.store", `
permissions:
  store: "" # <-
`, `permissions.store: must not be empty; remove the key to use data/permissions.db`},
		{"zero temporary_ttl", `
permissions:
  limits:
    temporary_ttl: 0s # <-
`, `permissions.limits.temporary_ttl: 0s must be greater than 0`},
		{"negative connected_calls_per_user_24h", `
permissions:
  limits:
    connected_calls_per_user_24h: -1 # <-
`, `permissions.limits.connected_calls_per_user_24h: -1 is negative; use 0 to turn the rule off`},
		{"negative consecutive_unanswered_max", `
permissions:
  limits:
    consecutive_unanswered_max: -1 # <-
`, `permissions.limits.consecutive_unanswered_max: -1 is negative; use 0 to turn the rule off`},
		{"negative consecutive_unanswered_nudge", `
permissions:
  limits:
    consecutive_unanswered_nudge: -1 # <-
`, `permissions.limits.consecutive_unanswered_nudge: -1 is negative; use 0 to turn the rule off`},
		{"negative new_calls_per_number_24h", `
permissions:
  limits:
    new_calls_per_number_24h: -1 # <-
`, `permissions.limits.new_calls_per_number_24h: -1 is negative; use 0 to turn the rule off`},
		{"negative concurrent_calls_per_number", `
permissions:
  limits:
    concurrent_calls_per_number: -1 # <-
`, `permissions.limits.concurrent_calls_per_number: -1 is negative; use 0 to turn the rule off`},
		{"negative requests_per_24h", `
permissions:
  limits:
    requests_per_24h: -1 # <-
`, `permissions.limits.requests_per_24h: -1 is negative; use 0 to turn the rule off`},
		{"negative requests_per_7d", `
permissions:
  limits:
    requests_per_7d: -1 # <-
`, `permissions.limits.requests_per_7d: -1 is negative; use 0 to turn the rule off`},
		{"unknown permissions.backend", `
permissions:
  backend: etcd # <-
`, `permissions.backend: "etcd" is not a store; use bbolt (one node) or redis (several nodes)`},
		{"redis address not host:port", `
permissions:
  backend: redis
  redis:
    address: localhost # <-
`, `permissions.redis.address: "localhost" is not host:port`},
		{"redis on_down unknown", `
permissions:
  backend: redis
  redis:
    on_down: guess # <-
`, `permissions.redis.on_down: "guess" is not a policy`},
		{"redis slot_ttl below 1s", `
permissions:
  backend: redis
  redis:
    slot_ttl: 500ms # <-
`, `permissions.redis.slot_ttl: 500ms is below 1s`},
		{"nudge not below max", `
permissions:
  limits:
    consecutive_unanswered_max: 3
    consecutive_unanswered_nudge: 3 # <-
`, `permissions.limits.consecutive_unanswered_nudge: 3 must be below consecutive_unanswered_max 3`},
		{"requests_per_24h above requests_per_7d", `
permissions:
  limits:
    requests_per_24h: 3 # <-
`, `permissions.limits.requests_per_24h: 3 is above requests_per_7d 2`},

		// recording
		{"recording sample_rate", `
recording:
  sample_rate: 48000 # <-
`, `recording.sample_rate: 48000 is not a sample rate wagate records at; use 8000 or 16000`},
		{"recording name_by", `
recording:
  name_by: c # <-
`, `recording.name_by: "c" is not a leg; use a`},
		{"recording name_by upper case", `
recording:
  name_by: A # <-
`, `recording.name_by: "A" is not a leg`},
		{"negative retention_days", `
recording:
  retention_days: -1 # <-
`, `recording.retention_days: -1 is negative; use 0 to keep recordings forever`},

		// api token and webhook
		{"token needed for permissions, api section written", `
api: # <-
  listen: "127.0.0.1:8080"
permissions:
  enabled: true
`, `api.token: is required when permissions are enabled and the API listens (on 127.0.0.1:8080)`},
		{"token needed for permissions, api left out", `
permissions:
  enabled: true # <-
`, `api.token: is required when permissions are enabled and the API listens (on 127.0.0.1:8080)`},
		{"token needed for recording", `
recording:
  enabled: true # <-
`, `api.token: is required when recording is enabled`},
		{"token needed for a recorded number", endpointsBlock + `
numbers:
  - number: "+15550100001"
    phone_number_id: "1"
    route: {endpoint: pbx, user: "1001"}
    recording: true # <-
`, `api.token: is required when +15550100001 is recorded`},
		{"token given but empty", `
api:
  token: {value: "", env: ""} # <-
permissions:
  enabled: true
`, `api.token: is required when permissions are enabled`},
		{"read_token the same as token", `
api:
  token: {value: "s3cret-token-one"}
  read_token: {value: "s3cret-token-one"} # <-
`, `api.read_token: is the same secret as api.token`},
		{"token env name", `
api:
  token:
    env: api-token # <-
`, `api.token.env: is not an environment variable name`},
		{"webhook app_secret without verify_token", `
api:
  webhook: # <-
    app_secret: {value: s}
`, `api.webhook.verify_token: is required when app_secret is set`},
		{"webhook verify_token env name", `
api:
  webhook:
    app_secret: {value: s}
    verify_token: {env: "VERIFY-TOKEN"} # <-
`, `api.webhook.verify_token.env: is not an environment variable name`},
		{"webhook app_secret env name", `
api:
  webhook:
    app_secret:
      env: "app secret" # <-
    verify_token: {value: v}
`, `api.webhook.app_secret.env: is not an environment variable name`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			y := tt.yaml
			if strings.Contains(y, "    transport: tls") && !strings.Contains(y, "\nsip:") {
				// A tls endpoint needs a tls listener of ours; appended so
				// the lines the cases point at stay where they are.
				cert, key := writeCert(t, t.TempDir(), "wagate")
				y += fmt.Sprintf("sip:\n  listen:\n    - {transport: tls, address: \"127.0.0.1:5061\", cert_file: %q, key_file: %q}\n", cert, key)
			}
			wantOneProblem(t, y, tt.want)
		})
	}
}

// TestAllProblemsReported checks that validation does not stop at the first
// problem and lists them in file order, one per line.
func TestAllProblemsReported(t *testing.T) {
	src := `log:
  level: loud
media:
  port_min: 40000
  port_max: 30000
endpoints:
  - name: x
    kind: pbx
`
	_, err := Parse([]byte(src), "wagate.yaml")
	if err == nil {
		t.Fatal("Parse succeeded, want problems")
	}
	got := strings.Split(err.Error(), "\n")
	want := []string{
		`wagate.yaml:2: log.level: "loud" is not a level; use debug, info, warn or error`,
		`wagate.yaml:4: media.port_min: 40000 is above port_max 30000; the port range is reversed`,
		`wagate.yaml:7: endpoints[0].host: an endpoint of kind pbx needs a host to send calls to`,
		`wagate.yaml:7: endpoints[0].source_cidrs: at least one source CIDR is needed; requests are accepted only from listed networks`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got:\n%s\nwant:\n%s", err, strings.Join(want, "\n"))
	}
}

// TestAdvicePrivateSourceOnTLSMeta: a private network in the source_cidrs
// of Meta's endpoint on tls is valid but likely Kamailio's META_SOCK
// from before proxy_cidrs, whose forwarded calls are now dropped: Advice
// names it and says where it belongs. Meta's public networks, a proxy in
// proxy_cidrs and an endpoint on udp get none.
func TestAdvicePrivateSourceOnTLSMeta(t *testing.T) {
	cert, key := writeCert(t, t.TempDir(), "wagate")
	listen := fmt.Sprintf("sip:\n  listen:\n    - {transport: tls, address: \"127.0.0.1:5061\", cert_file: %q, key_file: %q}\n", cert, key)
	for _, tc := range []struct {
		name, endpoint, want string
	}{
		{"private source on tls", `{name: meta, kind: whatsapp, host: 192.0.2.1, transport: tls, source_cidrs: [192.0.2.0/24, 10.0.0.5]}`,
			`wagate.yaml:5: endpoints[0].source_cidrs[1]: 10.0.0.5/32 is a private network on a whatsapp endpoint on tls: only TLS is taken from source_cidrs, UDP and TCP are dropped; if it is a proxy forwarding Meta's requests (Kamailio's META_SOCK), move it to proxy_cidrs`},
		{"proxy in proxy_cidrs", `{name: meta, kind: whatsapp, host: 192.0.2.1, transport: tls, source_cidrs: [192.0.2.0/24], proxy_cidrs: [10.0.0.5]}`, ""},
		{"private source on udp", `{name: meta, kind: whatsapp, host: 192.0.2.1, source_cidrs: [10.0.0.5]}`, ""},
	} {
		c, err := Parse([]byte(listen+"endpoints:\n  - "+tc.endpoint+"\n"), "wagate.yaml")
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		var got []string
		for _, a := range c.Advice() {
			got = append(got, a.String())
		}
		if want := tc.want; strings.Join(got, "\n") != want {
			t.Errorf("%s: advice %q, want %q", tc.name, got, want)
		}
	}
}
