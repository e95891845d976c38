package test

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Several wagate nodes behind Kamailio, sharing their permission state in
// Redis, all on the test's loopback /24:
//
//	127.0.N.1   Kamailio's edge socket: Meta and the dialers send here
//	127.0.N.5   Kamailio's socket toward the nodes for Meta's traffic
//	127.0.N.6   Kamailio's socket toward the nodes for dialers' traffic
//	127.0.N.2/3/4  the Meta, PBX and dialer peers, as in every test
//	127.0.N.1x  node x (SIP, media, API)
//	127.0.N.20  Redis
//
// Kamailio runs deploy/kamailio/kamailio.cfg as shipped, with its settings
// given on the command line.

// Timings of the cluster tests: short, so that the whole file costs
// seconds, not minutes.
const (
	probeInterval = 1 // s, Kamailio's OPTIONS probes
	slotTTL       = "2s"
	// redisTimeout is the nodes' permissions.redis.timeout, above the
	// default 300 ms: redis-server fsyncs every write here, and on a
	// machine as busy as make test's an operation took longer (i/o
	// timeout), so the nodes marked Redis down and refused calls
	// (TestMultiNodeDrain: 19 of 60 refused; a restarted node failed to
	// claim its id and exited). No test asserts the timeout;
	// TestMultiNodeRedisDown kills Redis, whose refused connections fail
	// at once.
	redisTimeout = "2s"
)

// redisProc is a redis-server started by a test.
type redisProc struct {
	t      *testing.T
	addr   string
	dir    string
	args   []string
	cmd    *exec.Cmd
	exited chan struct{}
}

// startRedis starts redis-server on ip with its append-only file fsynced
// on every write, as docs/multinode.md asks. It fails (not skips) when
// redis-server is missing: `make test` installs it.
func startRedis(t *testing.T, ip, dir string) *redisProc {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatalf("redis-server is not installed (%v): run `make test`, which installs it", err)
	}
	port := freeTCPPort(t, ip)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	r := &redisProc{t: t, addr: net.JoinHostPort(ip, strconv.Itoa(port)), dir: dir}
	r.args = []string{"--bind", ip, "--port", strconv.Itoa(port), "--dir", dir, "--appendonly", "yes",
		"--appendfsync", "always", "--save", "", "--daemonize", "no", "--logfile", filepath.Join(dir, "redis.log")}
	r.start()
	t.Cleanup(func() {
		r.kill()
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(dir, "redis.log"))
			t.Logf("redis log:\n%s", tail(log, 30))
		}
	})
	return r
}

func (r *redisProc) start() {
	r.t.Helper()
	r.cmd = exec.Command("redis-server", r.args...)
	if err := r.cmd.Start(); err != nil {
		r.t.Fatalf("start redis-server: %v", err)
	}
	r.exited = make(chan struct{})
	go func(c *exec.Cmd, done chan struct{}) { _ = c.Wait(); close(done) }(r.cmd, r.exited)
	host, ps, _ := net.SplitHostPort(r.addr)
	port, _ := strconv.Atoi(ps)
	waitBound(r.t, "redis", "tcp", host, port, r.exited)
}

// kill ends redis-server with SIGKILL, as a crash would.
func (r *redisProc) kill() {
	if r.cmd == nil || r.cmd.Process == nil {
		return
	}
	_ = r.cmd.Process.Kill()
	<-r.exited
}

// kamailioProc is Kamailio running the shipped config.
type kamailioProc struct {
	t       *testing.T
	edge    string // host:port where callers send
	logPath string
	cmd     *exec.Cmd
	exited  chan struct{}
}

// node is one wagate of a cluster.
type node struct {
	id string
	e  *env // a copy of the test's env with the node's own address, ports and directory
	w  *wagate
}

// cluster is Redis, Kamailio and the nodes of one test.
type cluster struct {
	t     *testing.T
	e     *env
	redis *redisProc
	kam   *kamailioProc
	nodes []*node
	// limits are YAML flow-map entries of permissions.limits.
	limits string
	// frTimer is Kamailio's FR_TIMER in ms (0: 1000, short for the tests).
	frTimer int
	// shmMB is Kamailio's shared memory (0: 48 MiB, enough for the tests;
	// every transaction lives there, so load needs far more).
	shmMB int
	// onDown is permissions.redis.on_down ("" for the default), and
	// onDownFor the same per node id.
	onDown    string
	onDownFor map[string]string
	// mod, when set, changes every node's options (more endpoints,
	// numbers, …).
	mod func(*wagateOpts)
	// metaTLS, when set, puts each node's whatsapp endpoint on transport
	// tls, as docs/multinode.md deploys it (nodes reach Meta themselves),
	// with a TLS listener on the node's address and this PKI's
	// certificate. Meta's requests still come from Kamailio over UDP.
	metaTLS *testPKI
}

// webhookSecret is Meta's app secret in the generated configs.
const webhookSecret = "meta-app-secret-for-tests"

// newCluster starts Redis and n nodes (not Kamailio: startKamailio).
func newCluster(t *testing.T, n int, limits string) *cluster {
	t.Helper()
	e := newEnv(t)
	c := &cluster{t: t, e: e, limits: limits}
	c.redis = startRedis(t, e.ip(20), filepath.Join(e.dir, "redis"))
	for i := 1; i <= n; i++ {
		c.addNode(i)
	}
	return c
}

// addNode starts node i (127.0.N.1i) with its own directory.
func (c *cluster) addNode(i int) *node {
	c.t.Helper()
	ne := *c.e
	ne.WagateIP = c.e.ip(10 + i)
	ne.SIPPort = freeTCPUDPPort(c.t, ne.WagateIP)
	ne.APIPort = freeTCPPort(c.t, ne.WagateIP)
	ne.dir = filepath.Join(c.e.dir, fmt.Sprintf("node%d", i))
	if err := os.MkdirAll(ne.dir, 0o755); err != nil {
		c.t.Fatal(err)
	}
	nd := &node{id: fmt.Sprintf("node%d", i), e: &ne}
	nd.w = ne.startWagate(c.optsFor(nd))
	c.nodes = append(c.nodes, nd)
	return nd
}

// restartNode starts node nd again (after a kill) on the same address and
// directory.
func (c *cluster) restartNode(nd *node) {
	c.t.Helper()
	nd.w = nd.e.startWagate(c.optsFor(nd))
}

// optsFor is node nd's options: nodeOpts, on TLS toward Meta with
// metaTLS.
func (c *cluster) optsFor(nd *node) wagateOpts {
	o := c.nodeOpts(nd.id)
	if c.metaTLS != nil {
		t := tlsOpts(nd.e, c.metaTLS, freeTCPPort(c.t, nd.e.WagateIP))
		o.ListenExtra, o.MetaTransport, o.MetaExtra = t.ListenExtra, t.MetaTransport, t.MetaExtra+o.MetaExtra
	}
	return o
}

func (c *cluster) nodeOpts(id string) wagateOpts {
	e := c.e
	onDown := ""
	if c.onDown != "" {
		onDown = ", on_down: " + c.onDown
	}
	if d := c.onDownFor[id]; d != "" {
		onDown = ", on_down: " + d
	}
	o := wagateOpts{
		APIExtra: fmt.Sprintf(", token: {value: %q}, webhook: {app_secret: {value: %q}, verify_token: {value: verify}}", apiToken, webhookSecret),
		// Kamailio's META_SOCK forwards Meta's requests: a proxy, whose
		// UDP is Meta's also when the endpoint is on TLS.
		MetaProxyCIDRs: e.ip(5) + "/32",
		DialerCIDRs:    ", " + e.ip(6) + "/32, " + e.ip(7) + "/32",
		Extra: fmt.Sprintf("node_id: %s\npermissions: {enabled: true, backend: redis, redis: {address: %q, slot_ttl: %s, timeout: %s%s}, limits: {%s}}",
			id, c.redis.addr, slotTTL, redisTimeout, onDown, c.limits),
	}
	if c.mod != nil {
		c.mod(&o)
	}
	return o
}

// startKamailio starts Kamailio with every node in its dispatcher set.
func (c *cluster) startKamailio() *kamailioProc {
	t := c.t
	t.Helper()
	bin, err := exec.LookPath("kamailio")
	if err != nil {
		bin = "/usr/sbin/kamailio"
		if _, err := os.Stat(bin); err != nil {
			t.Fatalf("kamailio is not installed: run `make test`, which installs it")
		}
	}
	e := c.e
	port := freeTCPUDPPort(t, e.ip(1))
	inner := freeUDPPort(t, e.ip(6))
	var list strings.Builder
	for _, nd := range c.nodes {
		fmt.Fprintf(&list, "1 sip:%s 0 0 duid=%s;socket=udp:%s:%d\n", nd.w.SIPAddr, nd.id, e.ip(6), inner)
	}
	dir := filepath.Join(e.dir, "kamailio")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	dsList := filepath.Join(dir, "dispatcher.list")
	if err := os.WriteFile(dsList, []byte(list.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	k := &kamailioProc{t: t, edge: net.JoinHostPort(e.ip(1), strconv.Itoa(port)), logPath: filepath.Join(dir, "kamailio.log"), exited: make(chan struct{})}
	args := []string{"-DD", "-E", "-m", strconv.Itoa(cmp.Or(c.shmMB, 48)), "-M", "6", "-f", filepath.Join(repoRoot, "deploy", "kamailio", "kamailio.cfg"),
		"-A", fmt.Sprintf("LISTEN=udp:%s:%d", e.ip(1), port),
		"-A", fmt.Sprintf("META_SOCK=udp:%s:%d", e.ip(5), inner),
		"-A", fmt.Sprintf("PBX_SOCK=udp:%s:%d", e.ip(6), inner),
		"-A", fmt.Sprintf("META_NETS=%q", e.Meta.IP+"/32"),
		"-A", fmt.Sprintf("DS_LIST=%q", dsList),
		"-A", "PROBE_INTERVAL=" + strconv.Itoa(probeInterval),
		"-A", "FR_TIMER=" + strconv.Itoa(cmp.Or(c.frTimer, 1000)),
		"-A", "CHILDREN=2",
	}
	logf, err := os.Create(k.logPath)
	if err != nil {
		t.Fatal(err)
	}
	k.cmd = exec.Command(bin, args...)
	k.cmd.Dir = dir
	k.cmd.Stdout, k.cmd.Stderr = logf, logf
	// Its own process group: Kamailio forks workers, and a kill must end
	// them all.
	k.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := k.cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("start kamailio: %v", err)
	}
	go func() { _ = k.cmd.Wait(); logf.Close(); close(k.exited) }()
	t.Cleanup(func() {
		_ = syscall.Kill(-k.cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-k.exited:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-k.cmd.Process.Pid, syscall.SIGKILL)
			<-k.exited
		}
		if t.Failed() {
			log, _ := os.ReadFile(k.logPath)
			t.Logf("kamailio log (%s):\n%s", k.logPath, tail(log, 60))
		}
	})
	waitBound(t, "kamailio", "udp", e.ip(1), port, k.exited)
	// Destinations start active: no probe needs to have run.
	c.kam = k
	return k
}

// usersFile writes a SIPp injection file with one callee per line.
func (c *cluster) usersFile(name string, users []string) string {
	c.t.Helper()
	var b bytes.Buffer
	b.WriteString("SEQUENTIAL\n")
	for _, u := range users {
		b.WriteString(u + ";\n")
	}
	p := filepath.Join(c.e.dir, name)
	if err := os.WriteFile(p, b.Bytes(), 0o644); err != nil {
		c.t.Fatal(err)
	}
	return p
}

// dialSpec is a SIPp dialer through Kamailio with bic_dialer_multi.xml.
func (c *cluster) dialSpec(name, usersFile string, calls int, extra ...string) sippSpec {
	return sippSpec{Name: name, Scenario: "bic_dialer_multi.xml", Peer: c.e.Dialer, Remote: c.kam.edge, Calls: calls,
		// Kamailio's UDP workers may relay a 180 after the 200; a phone
		// ignores it, SIPp would abort the call.
		Args: append([]string{"-inf", usersFile, "-key", "from_user", "agent42", "-key", "pnid", phoneNumberID,
			"-key", "bnum", businessNumber, "-default_behaviors", "all,-abortunexp"}, extra...)}
}

// outcome is one call's result from bic_dialer_multi.xml's log.
type outcome struct{ code, wabaError, user, callID string }

var resultLine = regexp.MustCompile(`result (\d{3}) (\S*) ?(\S*) ?(\S*)`)

// outcomes parses the dialer's result lines.
func outcomes(p *sippProc) []outcome {
	var out []outcome
	for _, l := range p.logLines() {
		m := resultLine.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		o := outcome{code: m[1], wabaError: m[2], user: m[3], callID: m[4]}
		if o.wabaError == "-" {
			o.wabaError = ""
		}
		out = append(out, o)
	}
	return out
}

// countBy counts outcomes by "code" or "code/error".
func countBy(os []outcome) map[string]int {
	m := map[string]int{}
	for _, o := range os {
		k := o.code
		if o.wabaError != "" {
			k += "/" + o.wabaError
		}
		m[k]++
	}
	return m
}

// apiURL is node nd's API base.
func (nd *node) apiURL() string {
	return "http://" + net.JoinHostPort(nd.e.WagateIP, strconv.Itoa(nd.e.APIPort))
}

// grant PUTs a permission through node nd's API.
func (nd *node) grant(t *testing.T, user, status string) {
	t.Helper()
	grantPermission(t, nd.e, user, status)
}

// started is the node's calls_started.
func (nd *node) started(t *testing.T) uint64 {
	t.Helper()
	s, err := nd.w.tryStatus()
	if err != nil {
		return 0
	}
	return s.CallsStarted
}

// redisCLI runs one redis-cli command against the cluster's Redis.
func (c *cluster) redisCLI(args ...string) string {
	c.t.Helper()
	host, port, _ := net.SplitHostPort(c.redis.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "redis-cli", append([]string{"-h", host, "-p", port}, args...)...).CombinedOutput()
	if err != nil {
		c.t.Fatalf("redis-cli %v: %v: %s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}
