// Package test drives the real wagate binary over loopback with SIPp peers.
//
// TestMain builds ./cmd/wagate once (with -race when the tests run with
// -race). Each test gets its own loopback /24 (127.0.N.0/24): wagate on
// 127.0.N.1 (SIP and media), the WhatsApp (Meta) peer on 127.0.N.2, the PBX on
// 127.0.N.3, the dialer on 127.0.N.4 and an unconfigured stranger on
// 127.0.N.9, every port picked free at run time. So tests run in parallel and
// do not collide with a wagate or SIPp a developer has running.
//
// Set WAGATE_TEST_ARTIFACTS=DIR to keep each test's files (config, wagate's
// log, SIPp's message/error/screen logs) under DIR/<test name>; by default
// they go to t.TempDir() and are shown in the test log when a test fails.
package test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"text/template"
	"time"
)

// Limits every wait in this package is bounded by.
const (
	sippGlobalTimeout = 30 * time.Second // sipp -timeout
	sippWaitLimit     = 40 * time.Second // sipp must have exited by then
	// readyLimit and idleLimit are waits for a condition, not timings
	// asserted: a -race wagate starting on two cores that `make test`
	// keeps busy took more than 15 s to answer its status API.
	readyLimit = 45 * time.Second // wagate/sipp sockets up
	idleLimit  = 30 * time.Second // calls and ports released
	stopLimit  = 15 * time.Second // wagate exits after SIGTERM
	// buildLimit bounds TestMain's build of ./cmd/wagate, which runs
	// before the test's own -timeout alarm starts (go test still kills
	// the binary at -timeout + 1 min). A cold -race build on two busy
	// cores, while `go test ./...` compiles the other packages, took
	// more than 5 minutes (the old limit) and failed every test in this
	// package with "signal: killed".
	buildLimit = 10 * time.Minute
)

var (
	repoRoot  string
	sippBin   string
	sippErr   error
	wagateBin string
	buildErr  error
	// wagateRace: the binary was built with -race (slower: tests that
	// measure concurrency go easier on it).
	wagateRace bool
	sippDir    string // test/sipp, absolute
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	wd, err := os.Getwd()
	if err != nil {
		fmt.Fprintln(os.Stderr, "test: getwd:", err)
		return 1
	}
	repoRoot = filepath.Dir(wd)
	sippDir = filepath.Join(wd, "sipp")
	sippBin, sippErr = exec.LookPath("sipp")

	tmp, err := os.MkdirTemp("", "wagate-test-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "test: temp dir:", err)
		return 1
	}
	defer os.RemoveAll(tmp)
	wagateBin, buildErr = buildWagate(tmp)
	return m.Run()
}

// buildWagate compiles ./cmd/wagate into dir, with the race detector when
// this test binary has it (WAGATE_TEST_RACE=0|1 overrides).
func buildWagate(dir string) (string, error) {
	bin := filepath.Join(dir, "wagate")
	args := []string{"build", "-o", bin}
	race := raceEnabled
	if v := os.Getenv("WAGATE_TEST_RACE"); v != "" {
		race = v == "1" || v == "true"
	}
	if race {
		args = append(args, "-race")
		wagateRace = true
	}
	args = append(args, "./cmd/wagate")
	ctx, cancel := context.WithTimeout(context.Background(), buildLimit)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = repoRoot
	began := time.Now()
	out, err := cmd.CombinedOutput()
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w: still building after %v (the limit)", err, time.Since(began).Round(time.Second))
		}
		return "", fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return bin, nil
}

// requireSipp fails (never skips) the test when SIPp is not installed.
func requireSipp(t testing.TB) {
	t.Helper()
	if sippErr != nil {
		t.Fatalf("sipp is not installed (%v): run `make test`, which installs SIPp 3.6 (package sip-tester) before running these tests", sippErr)
	}
}

// requireWagate fails the test when ./cmd/wagate did not build.
func requireWagate(t testing.TB) {
	t.Helper()
	if buildErr != nil {
		t.Fatalf("building wagate failed:\n%v", buildErr)
	}
}

// ---------------------------------------------------------------------------
// Per-test loopback network

var subnetSeq atomic.Uint32

func init() {
	// Start at a pid-dependent /24 so that two test processes running at
	// once (race and non-race passes, say) rarely share one.
	subnetSeq.Store(uint32(os.Getpid()*7) % 200)
}

// peer is one SIPp endpoint: SIP on IP:Port, media on IP:MediaPort (sipp
// binds MediaPort and MediaPort+2), remote control on IP:CtrlPort.
type peer struct {
	Name      string
	IP        string
	Port      int
	MediaPort int
	CtrlPort  int
}

func (p peer) Addr() string { return net.JoinHostPort(p.IP, strconv.Itoa(p.Port)) }

// env is one test's world: its addresses, its files, its processes.
type env struct {
	t   *testing.T
	dir string
	net int // the N of 127.0.N.0/24

	WagateIP string
	SIPPort  int
	APIPort  int

	Meta, PBX, Dialer, Stranger peer
}

// newEnv prepares a test's addresses. It fails the test when SIPp or the
// wagate binary is missing.
func newEnv(t *testing.T) *env {
	t.Helper()
	requireSipp(t)
	requireWagate(t)
	return makeEnv(t)
}

// makeEnv prepares a test's addresses without checking for tools.
func makeEnv(t *testing.T) *env {
	t.Helper()
	n := 10 + int(subnetSeq.Add(1)%240)
	e := &env{t: t, net: n}
	e.dir = artifactDir(t)
	e.WagateIP = e.ip(1)
	e.SIPPort = freeTCPUDPPort(t, e.WagateIP)
	e.APIPort = freeTCPPort(t, e.WagateIP)
	e.Meta = e.newPeer("meta", 2)
	e.PBX = e.newPeer("pbx", 3)
	e.Dialer = e.newPeer("dialer", 4)
	e.Stranger = e.newPeer("stranger", 9)
	return e
}

func (e *env) ip(host int) string { return fmt.Sprintf("127.0.%d.%d", e.net, host) }

func (e *env) newPeer(name string, host int) peer {
	ip := e.ip(host)
	return peer{
		Name:      name,
		IP:        ip,
		Port:      freeTCPUDPPort(e.t, ip),
		MediaPort: freeMediaPort(e.t, ip),
		CtrlPort:  freeUDPPort(e.t, ip),
	}
}

func artifactDir(t *testing.T) string {
	base := os.Getenv("WAGATE_TEST_ARTIFACTS")
	if base == "" {
		return t.TempDir()
	}
	dir := filepath.Join(base, strings.NewReplacer("/", "_", " ", "_").Replace(t.Name()))
	_ = os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("artifacts: %v", err)
	}
	return dir
}

// handedOut remembers every ip:port the free*Port helpers gave out in this
// test binary. The kernel hands the same ephemeral port out again as soon as
// the probing socket closes, so two ports asked for in a row (a SIP port and
// an API port) could be one port, and the second listener would fail to bind
// (CI saw "bind: address already in use" for exactly that).
var handedOut sync.Map

// claim reports whether ip:port had not been handed out before, and marks it.
func claim(ip string, port int) bool {
	_, taken := handedOut.LoadOrStore(net.JoinHostPort(ip, strconv.Itoa(port)), true)
	return !taken
}

// freeUDPPort returns a port that is free for UDP on ip.
func freeUDPPort(t testing.TB, ip string) int {
	t.Helper()
	for range 50 {
		c, err := net.ListenPacket("udp4", net.JoinHostPort(ip, "0"))
		if err != nil {
			t.Fatalf("no free UDP port on %s: %v", ip, err)
		}
		p := c.LocalAddr().(*net.UDPAddr).Port
		c.Close()
		if claim(ip, p) {
			return p
		}
	}
	t.Fatalf("no free UDP port on %s that was not handed out already", ip)
	return 0
}

// freeTCPPort returns a port that is free for TCP on ip.
func freeTCPPort(t testing.TB, ip string) int {
	t.Helper()
	for range 50 {
		l, err := net.Listen("tcp4", net.JoinHostPort(ip, "0"))
		if err != nil {
			t.Fatalf("no free TCP port on %s: %v", ip, err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if claim(ip, p) {
			return p
		}
	}
	t.Fatalf("no free TCP port on %s that was not handed out already", ip)
	return 0
}

// freeTCPUDPPort returns a port free for both TCP and UDP on ip.
func freeTCPUDPPort(t testing.TB, ip string) int {
	t.Helper()
	for range 50 {
		p := freeTCPPort(t, ip)
		if c, err := net.ListenPacket("udp4", net.JoinHostPort(ip, strconv.Itoa(p))); err == nil {
			c.Close()
			return p
		}
	}
	t.Fatalf("no port free for both TCP and UDP on %s", ip)
	return 0
}

// freeMediaPort returns an even port P with P and P+2 free for UDP on ip
// (sipp binds both for audio and video).
func freeMediaPort(t testing.TB, ip string) int {
	t.Helper()
	for range 100 {
		p := 20000 + 2*rand.IntN(4999) // 20000..29996
		if udpFree(ip, p) && udpFree(ip, p+2) && claim(ip, p) && claim(ip, p+2) {
			return p
		}
	}
	t.Fatalf("no free media port pair on %s", ip)
	return 0
}

func udpFree(ip string, port int) bool {
	c, err := net.ListenPacket("udp4", net.JoinHostPort(ip, strconv.Itoa(port)))
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// ---------------------------------------------------------------------------
// Sockets seen in /proc (readiness without touching the port)

// boundIPv4 reports whether ip:port is bound for UDP (proto "udp") or
// listening for TCP (proto "tcp"), reading /proc/net/{udp,tcp}.
func boundIPv4(proto, ip string, port int) bool {
	data, err := os.ReadFile("/proc/net/" + proto)
	if err != nil {
		return false
	}
	want4 := net.ParseIP(ip).To4()
	if want4 == nil {
		return false
	}
	// /proc prints the address as the in-memory uint32 in hex: byte order
	// depends on the host, so accept both.
	le := strings.ToUpper(hex.EncodeToString([]byte{want4[3], want4[2], want4[1], want4[0]}))
	be := strings.ToUpper(hex.EncodeToString(want4))
	anyAddr := "00000000"
	p := fmt.Sprintf("%04X", port)
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Scan() // header
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 {
			continue
		}
		host, hp, ok := strings.Cut(f[1], ":")
		if !ok || hp != p || (host != le && host != be && host != anyAddr) {
			continue
		}
		if proto == "tcp" && f[3] != "0A" { // LISTEN
			continue
		}
		return true
	}
	return false
}

// waitBound waits until ip:port is bound (or the process is gone).
func waitBound(t testing.TB, what, proto, ip string, port int, exited <-chan struct{}) {
	t.Helper()
	deadline := time.Now().Add(readyLimit)
	for time.Now().Before(deadline) {
		if boundIPv4(proto, ip, port) {
			return
		}
		select {
		case <-exited:
			t.Fatalf("%s exited before binding %s %s:%d", what, proto, ip, port)
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("%s did not bind %s %s:%d within %v", what, proto, ip, port, readyLimit)
}

// ---------------------------------------------------------------------------
// wagate

// wagateOpts are the knobs tests turn in the generated config.
type wagateOpts struct {
	RingTimeout   string // default 60s
	PortMin       int    // default 30000
	PortMax       int    // default 40000
	LogLevel      string // default info
	MetaTransport string // udp (default) or tcp
	// MetaEncryption is the meta endpoint's media_encryption: none (default,
	// SIPp has no SRTP) or sdes.
	MetaEncryption string
	// MetaCodecs is the meta endpoint's codec list (default opus, PCMU, PCMA).
	MetaCodecs string
	// Extra flow-map entries appended inside an endpoint, number or api
	// item, e.g. `, auth: {users: [{username: u, password: p}]}`.
	MetaExtra, PBXExtra, DialerExtra, NumberExtra, APIExtra string
	// MediaBind is media.bind_ip (default the env's address) and
	// MediaAdvertise media.advertise_ip (default: none, bind_ip).
	MediaBind, MediaAdvertise string
	// MediaExtra is more flow-map entries of the media section, e.g.
	// `, dtls: {handshake_timeout: 2s}`.
	MediaExtra string
	// MoreNumbers are more items of the numbers list, each starting with
	// "\n  - {".
	MoreNumbers string
	// MetaCIDRs and DialerCIDRs are more source_cidrs items of the meta
	// and dialer endpoints, e.g. ", 127.0.5.6/32" (a proxy in front of
	// the dialers).
	MetaCIDRs, DialerCIDRs string
	// MetaProxyCIDRs is the meta endpoint's proxy_cidrs list, e.g.
	// "127.0.5.5/32" (Kamailio forwarding Meta's requests).
	MetaProxyCIDRs string
	// Extra is raw YAML appended at the top level (data_dir:, permissions:,
	// recording: …).
	Extra string
	// SIPExtra is raw YAML appended inside the sip section, e.g.
	// "\n  unknown_sources: reject".
	SIPExtra string
	// ListenExtra is raw YAML list items appended to sip.listen, e.g.
	// "\n    - {transport: tls, address: …, cert_file: …, key_file: …}".
	ListenExtra string
	// RTPTimeout and RTPStartTimeout are media.rtp_timeout (default 30s)
	// and media.rtp_start_timeout (default 60s).
	RTPTimeout, RTPStartTimeout string
	// Args are more command-line flags for wagate (-drain-timeout 1s, …).
	Args []string
	// Env are more NAME=value environment variables for wagate
	// (WAGATE_FAKE_NOW, …).
	Env []string
	// Route is the number's route (default {endpoint: pbx, user: "1001"});
	// EndpointsExtra are raw YAML items appended to endpoints.
	Route, EndpointsExtra string
}

type configData struct {
	Name string
	E    *env
	O    wagateOpts
	// FilesIP is the flow service's address (newFlowService), which
	// serves the tests' audio files: loopback, so wagate fetches from it
	// only because prompts.fetch_allow lists it.
	FilesIP string
}

var configTmpl = template.Must(template.New("config").Parse(`# generated by wagate/test for {{.Name}}
sip:
  listen:
    - {transport: udp, address: "{{.E.WagateIP}}:{{.E.SIPPort}}"}
    - {transport: tcp, address: "{{.E.WagateIP}}:{{.E.SIPPort}}"}{{.O.ListenExtra}}
  host: {{.E.WagateIP}}
  ring_timeout: {{.O.RingTimeout}}{{.O.SIPExtra}}
endpoints:
  - {name: meta, kind: whatsapp, host: {{.E.Meta.IP}}, port: {{.E.Meta.Port}}, transport: {{.O.MetaTransport}}, source_cidrs: [{{.E.Meta.IP}}/32{{.O.MetaCIDRs}}]{{with .O.MetaProxyCIDRs}}, proxy_cidrs: [{{.}}]{{end}}, codecs: [{{.O.MetaCodecs}}], media_encryption: {{.O.MetaEncryption}}{{.O.MetaExtra}}}
  - {name: pbx, kind: pbx, host: {{.E.PBX.IP}}, port: {{.E.PBX.Port}}, transport: udp, source_cidrs: [{{.E.PBX.IP}}/32], codecs: [PCMU, PCMA]{{.O.PBXExtra}}}
  - {name: dialer, kind: dialer, host: {{.E.Dialer.IP}}, port: {{.E.Dialer.Port}}, transport: udp, source_cidrs: [{{.E.Dialer.IP}}/32{{.O.DialerCIDRs}}]{{.O.DialerExtra}}}{{.O.EndpointsExtra}}
numbers:
  - {number: "+15550100001", phone_number_id: "100000000000001", route: {{.O.Route}}, dialers: [dialer], callback_permission: true{{.O.NumberExtra}}}{{.O.MoreNumbers}}
media: {bind_ip: "{{or .O.MediaBind .E.WagateIP}}"{{with .O.MediaAdvertise}}, advertise_ip: "{{.}}"{{end}}, port_min: {{.O.PortMin}}, port_max: {{.O.PortMax}}, rtp_timeout: {{.O.RTPTimeout}}, rtp_start_timeout: {{.O.RTPStartTimeout}}, port_quarantine: 2s{{.O.MediaExtra}}}
api: {listen: "{{.E.WagateIP}}:{{.E.APIPort}}"{{.O.APIExtra}}}
log: {level: {{.O.LogLevel}}, format: json}
prompts: {fetch_allow: ["{{.FilesIP}}/32"]}
{{.O.Extra}}
`))

// Numbers in the generated config.
const (
	businessNumber = "+15550100001"
	routeUser      = "1001"
	waUser         = "+447700900123"
)

// writeConfig writes the test's wagate config and returns its path.
func (e *env) writeConfig(o wagateOpts) string {
	e.t.Helper()
	if o.RingTimeout == "" {
		o.RingTimeout = "60s"
	}
	if o.Route == "" {
		o.Route = `{endpoint: pbx, user: "1001"}`
	}
	if o.PortMin == 0 {
		o.PortMin = 30000
	}
	if o.PortMax == 0 {
		o.PortMax = 40000
	}
	if o.LogLevel == "" {
		o.LogLevel = "info"
	}
	if o.MetaTransport == "" {
		o.MetaTransport = "udp"
	}
	if o.MetaEncryption == "" {
		o.MetaEncryption = "none"
	}
	if o.MetaCodecs == "" {
		o.MetaCodecs = "opus, PCMU, PCMA"
	}
	if o.RTPTimeout == "" {
		o.RTPTimeout = "30s"
	}
	if o.RTPStartTimeout == "" {
		o.RTPStartTimeout = "60s"
	}
	var b bytes.Buffer
	if err := configTmpl.Execute(&b, configData{Name: e.t.Name(), E: e, O: o, FilesIP: e.ip(flowServiceHost)}); err != nil {
		e.t.Fatalf("config template: %v", err)
	}
	path := filepath.Join(e.dir, "wagate.yaml")
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		e.t.Fatalf("write config: %v", err)
	}
	return path
}

// wagate is a running wagate process.
type wagate struct {
	t       *testing.T
	e       *env
	cmd     *exec.Cmd
	logPath string
	apiURL  string
	SIPAddr string // host:port of its SIP listeners

	exited  chan struct{}
	waitErr error
	// exitExpected: the test ended it on purpose (kill, drain), so its
	// exit is no failure.
	exitExpected bool
}

// drain sends SIGTERM and returns at once: wagate drains (new calls 503,
// OPTIONS 503, /readyz 503) and exits when its calls have ended.
func (w *wagate) drain() {
	w.t.Helper()
	w.exitExpected = true
	_ = w.cmd.Process.Signal(syscall.SIGTERM)
}

// kill ends wagate with SIGKILL, as a crash would, and waits for it.
func (w *wagate) kill() {
	w.t.Helper()
	w.exitExpected = true
	_ = w.cmd.Process.Kill()
	select {
	case <-w.exited:
	case <-time.After(stopLimit):
		w.t.Fatalf("wagate still running %v after SIGKILL", stopLimit)
	}
}

// terminate stops wagate as an operator would (SIGTERM: drain, then exit)
// and waits for it; an exit other than 0 within stopLimit fails the test.
func (w *wagate) terminate() {
	w.t.Helper()
	w.exitExpected = true // stopped on purpose: the cleanup's stop has nothing to do
	_ = w.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-w.exited:
		if w.waitErr != nil {
			w.t.Errorf("wagate exited with %v after SIGTERM", w.waitErr)
		}
	case <-time.After(stopLimit):
		_ = w.cmd.Process.Kill()
		<-w.exited
		w.t.Errorf("wagate did not exit within %v of SIGTERM; killed", stopLimit)
	}
}

// freeLogPath is wagate.log in dir, or wagate.N.log for a test's Nth
// wagate (a restart keeps the first one's log).
func freeLogPath(dir string) string {
	p := filepath.Join(dir, "wagate.log")
	for i := 2; ; i++ {
		if _, err := os.Stat(p); err != nil {
			return p
		}
		p = filepath.Join(dir, fmt.Sprintf("wagate.%d.log", i))
	}
}

// startWagate writes the config, starts wagate and waits until its API
// answers and its SIP sockets are bound. Cleanup stops it with SIGTERM
// (SIGKILL after stopLimit), and shows its log when the test failed.
func (e *env) startWagate(o wagateOpts) *wagate {
	t := e.t
	t.Helper()
	cfg := e.writeConfig(o)
	w := &wagate{
		t:       t,
		e:       e,
		logPath: freeLogPath(e.dir),
		apiURL:  fmt.Sprintf("http://%s/v1/status", net.JoinHostPort(e.WagateIP, strconv.Itoa(e.APIPort))),
		SIPAddr: net.JoinHostPort(e.WagateIP, strconv.Itoa(e.SIPPort)),
		exited:  make(chan struct{}),
	}
	logf, err := os.Create(w.logPath)
	if err != nil {
		t.Fatalf("wagate log: %v", err)
	}
	w.cmd = exec.Command(wagateBin, append([]string{"-config", cfg}, o.Args...)...)
	w.cmd.Stdout = logf
	w.cmd.Stderr = logf
	w.cmd.Dir = e.dir
	if len(o.Env) > 0 {
		w.cmd.Env = append(os.Environ(), o.Env...)
	}
	if err := w.cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("start wagate: %v", err)
	}
	go func() {
		w.waitErr = w.cmd.Wait()
		logf.Close()
		close(w.exited)
	}()
	t.Cleanup(w.stop)

	w.waitReady()
	return w
}

func (w *wagate) waitReady() {
	t := w.t
	t.Helper()
	deadline := time.Now().Add(readyLimit)
	var lastErr error
	for {
		if _, err := w.tryStatus(); err == nil {
			break
		} else {
			lastErr = err
		}
		if time.Now().After(deadline) {
			t.Fatalf("wagate status API not answering within %v: %v", readyLimit, lastErr)
		}
		select {
		case <-w.exited:
			t.Fatalf("wagate exited at start-up: %v", w.waitErr)
		case <-time.After(50 * time.Millisecond):
		}
	}
	waitBound(t, "wagate", "udp", w.e.WagateIP, w.e.SIPPort, w.exited)
	waitBound(t, "wagate", "tcp", w.e.WagateIP, w.e.SIPPort, w.exited)
}

// stop ends wagate: SIGTERM, then SIGKILL after stopLimit. It fails the test
// when wagate needed the kill, exited non-zero or its log shows a data race
// or a panic; it prints the log when the test failed.
func (w *wagate) stop() {
	t := w.t
	select {
	case <-w.exited:
		if !w.exitExpected {
			t.Errorf("wagate exited during the test: %v", w.waitErr)
		}
	default:
		_ = w.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-w.exited:
			if w.waitErr != nil {
				t.Errorf("wagate exited with %v after SIGTERM", w.waitErr)
			}
		case <-time.After(stopLimit):
			_ = w.cmd.Process.Kill()
			<-w.exited
			t.Errorf("wagate did not exit within %v of SIGTERM; killed", stopLimit)
		}
	}
	log, _ := os.ReadFile(w.logPath)
	if what := crashEvidence(log); what != "" {
		t.Errorf("wagate %s", what)
	}
	if t.Failed() {
		t.Logf("wagate log (%s):\n%s", w.logPath, tail(log, 200))
	}
}

// crashEvidence says what in wagate's log shows a bug that must fail the
// test: a data race, a crash, or a handler panic that wagate recovered from
// (recovery keeps a server up in production; in a test it must never hide
// the panic).
func crashEvidence(log []byte) string {
	switch {
	case bytes.Contains(log, []byte("WARNING: DATA RACE")):
		return "reported a data race"
	case bytes.HasPrefix(log, []byte("panic: ")) || bytes.Contains(log, []byte("\npanic: ")) || bytes.Contains(log, []byte("fatal error: ")):
		return "panicked or crashed"
	case bytes.Contains(log, []byte(`"msg":"panic recovered"`)):
		return "recovered a panic in a handler (a bug; see the stack in its log)"
	}
	return ""
}

// status is the document served at /v1/status.
type status struct {
	Calls        int    `json:"calls"`
	PortsInUse   int    `json:"ports_in_use"`
	PortsBound   int    `json:"ports_bound"`
	CallsStarted uint64 `json:"calls_started"`
	CallsEnded   uint64 `json:"calls_ended"`
	Edge         struct {
		Passed          uint64            `json:"passed"`
		Answered        uint64            `json:"answered"`
		Refused         map[string]uint64 `json:"refused"`
		Connections     int               `json:"connections"`
		PanicsRecovered uint64            `json:"panics_recovered"`
	} `json:"sip_edge"`
	Overload map[string]uint64 `json:"overload_refusals"`
	// Endpoints is the health of probed endpoints.
	Endpoints []struct {
		Endpoint string `json:"endpoint"`
		Up       bool   `json:"up"`
		Probes   uint64 `json:"probes"`
	} `json:"endpoints"`
	Trace struct {
		Messages  uint64 `json:"messages"`
		Dropped   uint64 `json:"dropped"`
		Unframed  uint64 `json:"unframed"`
		HEPSent   uint64 `json:"hep_sent"`
		HEPErrors uint64 `json:"hep_errors"`
	} `json:"sip_trace"`
	// Permissions are the permission store's counters (permissions.Stats).
	Permissions *struct {
		Backend             string `json:"backend"`
		Up                  bool   `json:"up"`
		Errors              uint64 `json:"errors"`
		RefusedUnavailable  uint64 `json:"refused_unavailable"`
		AdmittedFromCache   uint64 `json:"admitted_from_cache"`
		LearnedNoPermission uint64 `json:"learned_no_permission"`
		LearnedDailyCap     uint64 `json:"learned_daily_cap"`
		StaleReplies        uint64 `json:"stale_replies"`
		ReplayedMessages    uint64 `json:"replayed_messages"`
		RestrictedRefusals  uint64 `json:"restricted_refusals"`
		PendingOutcomes     int    `json:"pending_outcomes"`
	} `json:"permissions"`
	// API is the HTTP API's counters (api.Stats).
	API *struct {
		WebhookTooOld map[string]uint64 `json:"webhook_too_old"`
	} `json:"api"`
}

var httpClient = &http.Client{Timeout: 2 * time.Second}

func (w *wagate) tryStatus() (status, error) {
	var s status
	resp, err := httpClient.Get(w.apiURL)
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return s, err
	}
	if resp.StatusCode != http.StatusOK {
		return s, fmt.Errorf("GET %s: %s: %s", w.apiURL, resp.Status, body)
	}
	if err := json.Unmarshal(body, &s); err != nil {
		return s, fmt.Errorf("GET %s: %v: %s", w.apiURL, err, body)
	}
	return s, nil
}

// status returns wagate's status; a request that fails (its 2 s client
// timeout on a loaded machine) is tried again for up to statusLimit.
func (w *wagate) status() status {
	w.t.Helper()
	deadline := time.Now().Add(statusLimit)
	for {
		s, err := w.tryStatus()
		if err == nil {
			return s
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("status: no answer for %v: %v", statusLimit, err)
		}
		select {
		case <-w.exited:
			w.t.Fatalf("status: %v (wagate exited: %v)", err, w.waitErr)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

const statusLimit = 10 * time.Second

// waitIdle waits until wagate holds no call and no RTP port, and returns
// the last status; it fails the test with the last values otherwise.
func (w *wagate) waitIdle() status {
	t := w.t
	t.Helper()
	deadline := time.Now().Add(idleLimit)
	var s status
	var err error
	for {
		s, err = w.tryStatus()
		if err == nil && s.Calls == 0 && s.PortsInUse == 0 {
			return s
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("wagate not idle after %v: %v", idleLimit, err)
	}
	t.Fatalf("wagate not idle after %v: calls=%d ports_in_use=%d (calls_started=%d calls_ended=%d)",
		idleLimit, s.Calls, s.PortsInUse, s.CallsStarted, s.CallsEnded)
	return s
}

// expectCounts checks calls_started and calls_ended.
func (w *wagate) expectCounts(s status, started, ended uint64) {
	w.t.Helper()
	if s.CallsStarted != started || s.CallsEnded != ended {
		w.t.Errorf("status: calls_started=%d calls_ended=%d, want %d and %d", s.CallsStarted, s.CallsEnded, started, ended)
	}
}

// ---------------------------------------------------------------------------
// SIPp

// sippSpec describes one sipp run.
type sippSpec struct {
	Name     string   // label for its files ("meta", "pbx", …)
	Scenario string   // file in test/sipp, or an absolute path
	Peer     peer     // where it sits
	Remote   string   // host:port it sends to ("" for a UAS)
	Calls    int      // -m
	Args     []string // more arguments (-s, -key, -d, -r, -l, -rtp_echo, -t …)
	NoTrace  bool     // no -trace_msg (big runs)
}

// sippProc is a running sipp.
type sippProc struct {
	t    *testing.T
	spec sippSpec
	cmd  *exec.Cmd
	dir  string

	cmdline string

	errLog, msgLog, logLog, screenLog, outLog string

	exited  chan struct{}
	waitErr error
	checked bool
}

// startSipp starts sipp bounded in calls (-m) and time (-timeout,
// -timeout_error); a UAS (no Remote) is waited for until its SIP socket is
// bound. Cleanup kills it if still running.
func (e *env) startSipp(spec sippSpec) *sippProc {
	t := e.t
	t.Helper()
	if spec.Calls <= 0 {
		t.Fatalf("sipp %s: Calls (-m) must be set", spec.Name)
	}
	p := &sippProc{t: t, spec: spec, dir: e.dir, exited: make(chan struct{})}
	base := filepath.Join(e.dir, "sipp_"+spec.Name)
	p.errLog = base + "_errors.log"
	p.msgLog = base + "_messages.log"
	p.logLog = base + "_logs.log"
	p.screenLog = base + "_screen.log"
	p.outLog = base + "_stdout.log"
	scenario := spec.Scenario
	if !filepath.IsAbs(scenario) {
		scenario = filepath.Join(sippDir, scenario)
	}
	args := []string{
		"-sf", scenario,
		"-i", spec.Peer.IP, "-p", strconv.Itoa(spec.Peer.Port), "-bind_local",
		"-mi", spec.Peer.IP, "-mp", strconv.Itoa(spec.Peer.MediaPort),
		"-ci", spec.Peer.IP, "-cp", strconv.Itoa(spec.Peer.CtrlPort),
		"-m", strconv.Itoa(spec.Calls),
		"-timeout", fmt.Sprintf("%ds", int(sippGlobalTimeout/time.Second)), "-timeout_error",
		"-nostdin",
		"-trace_err", "-error_file", p.errLog,
		"-trace_logs", "-log_file", p.logLog,
		"-trace_screen", "-screen_file", p.screenLog,
	}
	if !spec.NoTrace {
		args = append(args, "-trace_msg", "-message_file", p.msgLog)
	}
	args = append(args, spec.Args...)
	if spec.Remote != "" {
		args = append(args, spec.Remote)
	}
	out, err := os.Create(p.outLog)
	if err != nil {
		t.Fatalf("sipp %s: %v", spec.Name, err)
	}
	p.cmd = exec.Command(sippBin, args...)
	p.cmd.Dir = e.dir
	p.cmd.Stdout = out
	p.cmd.Stderr = out
	if err := p.cmd.Start(); err != nil {
		out.Close()
		t.Fatalf("start sipp %s: %v", spec.Name, err)
	}
	p.cmdline = "sipp " + strings.Join(args, " ")
	go func() {
		p.waitErr = p.cmd.Wait()
		out.Close()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() && !p.checked {
			p.dump()
		}
	})
	if spec.Remote == "" {
		proto := "udp"
		if hasArg(spec.Args, "-t", "t1") || hasArg(spec.Args, "-t", "tn") {
			proto = "tcp"
		}
		waitBound(t, "sipp "+spec.Name, proto, spec.Peer.IP, spec.Peer.Port, p.exited)
	}
	return p
}

func hasArg(args []string, name, value string) bool {
	for i := 0; i+1 < len(args); i++ {
		if args[i] == name && args[i+1] == value {
			return true
		}
	}
	return false
}

// wait waits (bounded) for sipp to exit and returns its exit error. Once
// the test has failed (another peer's run went wrong, say) it waits only a
// few seconds, so that a broken call flow does not cost sipp's whole
// -timeout.
func (p *sippProc) wait() error {
	limit := sippWaitLimit
	if p.t.Failed() {
		limit = 3 * time.Second
	}
	select {
	case <-p.exited:
	case <-time.After(limit):
		_ = p.cmd.Process.Kill()
		<-p.exited
		return fmt.Errorf("sipp %s still running after %v; killed", p.spec.Name, limit)
	}
	return p.waitErr
}

// requireOK waits for sipp and fails the test, showing sipp's logs, unless
// it exited 0 (every call successful).
func (p *sippProc) requireOK() {
	p.t.Helper()
	err := p.wait()
	p.checked = true
	if err != nil {
		p.t.Errorf("sipp %s (%s) failed: %v", p.spec.Name, p.spec.Scenario, err)
		p.dump()
	}
}

// dump shows sipp's error log, <log> output, final screen and the tail of
// its message trace.
func (p *sippProc) dump() {
	p.t.Helper()
	p.t.Logf("sipp %s ran: %s", p.spec.Name, p.cmdline)
	for _, f := range []struct{ what, path string }{
		{"errors", p.errLog},
		{"logs", p.logLog},
		{"screen", p.screenLog},
		{"stdout", p.outLog},
		{"messages", p.msgLog},
	} {
		data, err := os.ReadFile(f.path)
		if err != nil || len(bytes.TrimSpace(data)) == 0 {
			continue
		}
		lines := 60
		if f.what == "messages" {
			lines = 150
		}
		p.t.Logf("sipp %s %s (%s):\n%s", p.spec.Name, f.what, f.path, tail(data, lines))
	}
}

// messages parses sipp's -trace_msg log.
func (p *sippProc) messages() []sipMsg {
	p.t.Helper()
	data, err := os.ReadFile(p.msgLog)
	if err != nil {
		p.t.Fatalf("sipp %s: message log: %v", p.spec.Name, err)
	}
	return parseSippTrace(data)
}

// logLines returns the lines sipp's <log> actions wrote.
func (p *sippProc) logLines() []string {
	data, _ := os.ReadFile(p.logLog)
	var out []string
	for _, l := range strings.Split(string(data), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// run starts sipp and requires success.
func (e *env) runSipp(spec sippSpec) *sippProc {
	e.t.Helper()
	p := e.startSipp(spec)
	p.requireOK()
	return p
}

// ---------------------------------------------------------------------------
// SIP messages from sipp's trace

// sipMsg is one message sipp sent or received.
type sipMsg struct {
	Sent bool
	Text string
}

// StartLine is the request or status line.
func (m sipMsg) StartLine() string {
	l, _, _ := strings.Cut(m.Text, "\n")
	return strings.TrimRight(l, "\r")
}

// Header returns the first value of header name (case-insensitive; compact
// forms are not expanded).
func (m sipMsg) Header(name string) string {
	for _, v := range m.Headers(name) {
		return v
	}
	return ""
}

// Headers returns every value of header name.
func (m sipMsg) Headers(name string) []string {
	var out []string
	head, _, _ := strings.Cut(strings.ReplaceAll(m.Text, "\r\n", "\n"), "\n\n")
	for _, l := range strings.Split(head, "\n")[1:] {
		k, v, ok := strings.Cut(l, ":")
		if ok && strings.EqualFold(strings.TrimSpace(k), name) {
			out = append(out, strings.TrimSpace(v))
		}
	}
	return out
}

// Body is the message body.
func (m sipMsg) Body() string {
	_, body, _ := strings.Cut(strings.ReplaceAll(m.Text, "\r\n", "\n"), "\n\n")
	return body
}

var traceSep = regexp.MustCompile(`(?m)^-{20,} .*\n(?:UDP|TCP|TLS|SCTP) message (sent|received)[^\n]*\n`)

func parseSippTrace(data []byte) []sipMsg {
	s := string(data)
	idx := traceSep.FindAllStringSubmatchIndex(s, -1)
	var out []sipMsg
	for i, m := range idx {
		end := len(s)
		if i+1 < len(idx) {
			end = idx[i+1][0]
		}
		text := strings.TrimLeft(s[m[1]:end], "\r\n")
		text = strings.TrimRight(text, "\r\n") + "\n"
		out = append(out, sipMsg{Sent: s[m[2]:m[3]] == "sent", Text: text})
	}
	return out
}

// findMsg returns the first message in the given direction whose start line
// begins with prefix.
func findMsg(msgs []sipMsg, sent bool, prefix string) (sipMsg, bool) {
	for _, m := range msgs {
		if m.Sent == sent && strings.HasPrefix(m.StartLine(), prefix) {
			return m, true
		}
	}
	return sipMsg{}, false
}

// ---------------------------------------------------------------------------
// SDP

// sdpAudio returns the connection address and port of the first audio
// stream of an SDP body, and its payload types.
func sdpAudio(body string) (ip string, port int, pts []string, err error) {
	var sessionC, mediaC string
	inAudio := false
	for _, l := range strings.Split(strings.ReplaceAll(body, "\r\n", "\n"), "\n") {
		switch {
		case strings.HasPrefix(l, "m="):
			if port != 0 {
				inAudio = false
				continue
			}
			f := strings.Fields(l[2:])
			if len(f) >= 3 && f[0] == "audio" {
				inAudio = true
				port, err = strconv.Atoi(f[1])
				if err != nil {
					return "", 0, nil, fmt.Errorf("bad m= line %q", l)
				}
				pts = f[3:]
			}
		case strings.HasPrefix(l, "c="):
			f := strings.Fields(l[2:])
			if len(f) != 3 {
				return "", 0, nil, fmt.Errorf("bad c= line %q", l)
			}
			if inAudio {
				mediaC = f[2]
			} else if port == 0 {
				sessionC = f[2]
			}
		}
	}
	if port == 0 {
		return "", 0, nil, errors.New("no m=audio line")
	}
	ip = mediaC
	if ip == "" {
		ip = sessionC
	}
	if ip == "" {
		return "", 0, nil, errors.New("no c= line for audio")
	}
	return ip, port, pts, nil
}

// ---------------------------------------------------------------------------
// Silent peers

// udpListener listens where a peer would be and records what arrives, to
// prove that nothing was sent there.
type udpListener struct {
	conn *net.UDPConn
	mu   sync.Mutex
	got  [][]byte
	done chan struct{}
}

func listenUDP(t *testing.T, addr string) *udpListener {
	t.Helper()
	ua, err := net.ResolveUDPAddr("udp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.ListenUDP("udp4", ua)
	if err != nil {
		t.Fatalf("listen %s: %v", addr, err)
	}
	l := &udpListener{conn: c, done: make(chan struct{})}
	go func() {
		defer close(l.done)
		buf := make([]byte, 65536)
		for {
			n, _, err := c.ReadFromUDP(buf)
			if err != nil {
				return
			}
			l.mu.Lock()
			l.got = append(l.got, append([]byte(nil), buf[:n]...))
			l.mu.Unlock()
		}
	}()
	t.Cleanup(l.close)
	return l
}

func (l *udpListener) close() {
	l.conn.Close()
	<-l.done
}

// expectSilence waits d and fails the test if anything arrived.
func (l *udpListener) expectSilence(t *testing.T, what string, d time.Duration) {
	t.Helper()
	time.Sleep(d)
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.got) > 0 {
		t.Errorf("%s received %d datagram(s), want none; first:\n%s", what, len(l.got), l.got[0])
	}
}

// tcpListener listens for TCP where a peer would be and records every
// connection made to it and what arrived on it, to prove that nothing
// connected there.
type tcpListener struct {
	ln   net.Listener
	mu   sync.Mutex
	got  []string // per connection: its remote address and the first bytes read
	done chan struct{}
}

func listenTCP(t *testing.T, addr string) *tcpListener {
	t.Helper()
	ln, err := net.Listen("tcp4", addr)
	if err != nil {
		t.Fatalf("listen tcp %s: %v", addr, err)
	}
	l := &tcpListener{ln: ln, done: make(chan struct{})}
	go func() {
		defer close(l.done)
		var wg sync.WaitGroup
		defer wg.Wait()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
				buf := make([]byte, 2048)
				n, _ := io.ReadAtLeast(c, buf, 1)
				l.mu.Lock()
				l.got = append(l.got, c.RemoteAddr().String()+": "+string(buf[:n]))
				l.mu.Unlock()
			}()
		}
	}()
	t.Cleanup(l.close)
	return l
}

func (l *tcpListener) close() {
	l.ln.Close()
	<-l.done
}

// expectSilence waits d and fails the test if any connection was made.
func (l *tcpListener) expectSilence(t *testing.T, what string, d time.Duration) {
	t.Helper()
	time.Sleep(d)
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.got) > 0 {
		t.Errorf("%s got %d TCP connection(s), want none; first:\n%s", what, len(l.got), l.got[0])
	}
}

// ---------------------------------------------------------------------------

// tail returns the last n lines of data.
func tail(data []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("… (%d lines cut)", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}
