// Command flood measures what attacks from strangers cost wagate, over
// loopback only: a SIP INVITE flood over UDP, idle TCP connections, and a
// TCP connection flood. It starts the real wagate binary with a config
// whose endpoints (meta .2, pbx .3 of -net) do not cover the attackers
// (.9 of -net for UDP, the -stranger-net /24 for TCP), attacks it, and
// reads wagate's cost from /proc and its log, while the pbx endpoint sends
// an OPTIONS every -probe and times the answer (is a legitimate peer still
// served during the attack?).
//
// Modes:
//
//	-mode invite-flood -rate 5000 -d 10s [-tail 35s]
//	    A stranger sends INVITEs (about 900 bytes with SDP, unique Call-ID,
//	    branch and tag each) over UDP at -rate per second, paced, at most
//	    rate*d of them and for at most d, from a socket that reads what
//	    comes back. After the flood it keeps listening for -tail (default
//	    35 s: longer than RFC 3261's 32 s Timer H, so every retransmission
//	    of a final response is counted). Reported: responses in total (and
//	    their bytes against the INVITEs'), by status code, during the flood
//	    and after it, the time from an INVITE to its first response, per
//	    Call-ID (answered
//	    INVITEs, responses beyond the first per Call-ID, and of those the
//	    repeats of a status already received: retransmissions); wagate's
//	    CPU during the flood and during the tail; RSS before, peak during
//	    the flood and tail, VmHWM, RSS at the end of the tail; bytes and
//	    lines wagate wrote to its log (by message); datagrams the kernel
//	    dropped on wagate's SIP socket; and the pbx's OPTIONS latency
//	    before, during and after the flood.
//	-mode idle-tcp -conns 2000 -d 30s [-endpoint-conns 100] [-crlf]
//	    Opens -conns TCP connections to wagate's SIP port from strangers
//	    (spread over -stranger-ips addresses of -stranger-net) and
//	    -endpoint-conns from the pbx endpoint, sends nothing (or one CRLF
//	    keep-alive with -crlf), and holds them for d. Every connection is
//	    read for the whole hold: EOF or a reset means wagate closed it
//	    (when is reported), a read timeout at the end means it is still
//	    open. Reported: connections still open per kind, wagate's CPU,
//	    RSS, threads and open descriptors before, after opening, at the
//	    end, and after this tool closes them.
//	-mode tcp-flood -count 20000 -d 10s [-payload none|crlf|invite|invite-via]
//	    Strangers connect as fast as -workers goroutines can (at most
//	    -count connections, for at most d), optionally write a payload,
//	    and close. invite-via is the INVITE with a Via naming a bystander
//	    (a TCP listener of this tool on .250 of -stranger-net) instead of
//	    the sender. Reported: connections made per second, failures,
//	    connect latency, full accept queues, wagate's CPU, peak RSS and
//	    descriptors, the descriptors left after -tail (default 5 s), and
//	    the connections wagate opened to the bystander.
//
// Every mode ends with one line starting "SUMMARY" (key=value pairs) so a
// run before and after a change can be compared line by line.
//
// Usage (from the repository root):
//
//	go build -o /tmp/wagate-bin ./cmd/wagate
//	go run ./test/load/flood -wagate /tmp/wagate-bin -mode invite-flood -rate 5000 -d 10s
//	go run ./test/load/flood -wagate /tmp/wagate-bin -mode idle-tcp -conns 2000 -d 30s
//	go run ./test/load/flood -wagate /tmp/wagate-bin -mode tcp-flood -count 20000
//	go run ./test/load/flood -wagate /tmp/wagate-bin -mode invite-flood -sip-extra 'unknown_sources: reject'
//
// The machine's CPU used by other processes during the attack is reported
// ("others"): when it is more than a few % of a core, the run shared the
// machine; -wait-idle waits for a quiet machine first.
//
// Everything is bounded (rate ≤ 50,000/s, -d and -tail ≤ 5 m, ≤ 20,000
// held connections, ≤ 200,000 flood connections); every socket is on
// 127.0.0.0/8; wagate is stopped (SIGTERM, then SIGKILL) on exit and on
// Ctrl-C, and is killed by the kernel should this tool die first.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"
)

const (
	maxRate      = 50000
	maxDuration  = 5 * time.Minute
	maxConns     = 20000
	maxFloodConn = 200000
	// maxRunTime bounds every loop of a run: start-up, settle, attack,
	// tail and clean-up together stay well under it.
	maxRunTime = 15 * time.Minute
)

type options struct {
	mode        string
	wagate      string
	out         string
	netPrefix   string
	strangerNet string
	sipPort     int
	apiPort     int
	portMin     int
	portMax     int
	sipExtra    string
	logLevel    string

	dur        time.Duration
	tail       time.Duration
	settle     time.Duration
	probeEvery time.Duration
	waitIdle   time.Duration

	rate int

	conns         int
	endpointConns int
	strangerIPs   int
	crlf          bool

	count   int
	workers int
	payload string
}

// ip is host h of the -net /24.
func (o options) ip(h int) string { return fmt.Sprintf("%s.%d", o.netPrefix, h) }

// strangerIP is the i-th stranger address for TCP (of -stranger-ips).
func (o options) strangerIP(i int) string {
	return fmt.Sprintf("%s.%d", o.strangerNet, 1+i%o.strangerIPs)
}

func main() {
	var o options
	flag.StringVar(&o.mode, "mode", "invite-flood", "invite-flood, idle-tcp or tcp-flood")
	flag.StringVar(&o.wagate, "wagate", "", "wagate binary (default: go build ./cmd/wagate into the output dir)")
	flag.StringVar(&o.out, "out", "", "directory for the config and wagate's log (default: a new temp dir, kept)")
	flag.StringVar(&o.netPrefix, "net", "127.0.77", "loopback /24: wagate .1, endpoints meta .2 and pbx .3 (the probe), the UDP attacker .9")
	flag.StringVar(&o.strangerNet, "stranger-net", "127.0.78", "loopback /24 the TCP strangers connect from (.1 up to -stranger-ips)")
	flag.IntVar(&o.sipPort, "sip-port", 15090, "wagate's SIP port (UDP and TCP)")
	flag.IntVar(&o.apiPort, "api-port", 18090, "wagate's status API port")
	flag.IntVar(&o.portMin, "port-min", 30000, "wagate's RTP port range start (no call gets media here)")
	flag.IntVar(&o.portMax, "port-max", 30999, "wagate's RTP port range end")
	flag.StringVar(&o.sipExtra, "sip-extra", "", "extra YAML lines for the config's sip: section, separated by ';' (e.g. 'unknown_sources: reject')")
	flag.StringVar(&o.logLevel, "log-level", "info", "wagate's log level (its log's size is one of the measurements)")
	flag.DurationVar(&o.dur, "d", 0, "attack duration (default: 10s for invite-flood and tcp-flood, 30s hold for idle-tcp)")
	flag.DurationVar(&o.tail, "tail", -1, "how long to keep measuring after the attack (default: 35s for invite-flood, 5s for tcp-flood; idle-tcp has none)")
	flag.DurationVar(&o.settle, "settle", 2*time.Second, "baseline before the attack: the probe's latency and wagate's idle state")
	flag.DurationVar(&o.probeEvery, "probe", 500*time.Millisecond, "interval of the pbx endpoint's OPTIONS")
	flag.DurationVar(&o.waitIdle, "wait-idle", 0, "before starting, wait up to this long for the machine to be idle (under 10% of one core busy over 2 s)")
	flag.IntVar(&o.rate, "rate", 5000, "invite-flood: INVITEs per second")
	flag.IntVar(&o.conns, "conns", 2000, "idle-tcp: connections from strangers")
	flag.IntVar(&o.endpointConns, "endpoint-conns", 100, "idle-tcp: connections from the pbx endpoint's address")
	flag.IntVar(&o.strangerIPs, "stranger-ips", 8, "idle-tcp, tcp-flood: stranger source addresses to spread the connections over")
	flag.BoolVar(&o.crlf, "crlf", false, "idle-tcp: send one CRLF keep-alive on each connection after connecting")
	flag.IntVar(&o.count, "count", 20000, "tcp-flood: connections to make at most")
	flag.IntVar(&o.workers, "workers", 32, "tcp-flood: connections being made at once")
	flag.StringVar(&o.payload, "payload", "none", "tcp-flood: what each connection writes before closing: none, crlf, invite, or invite-via (an INVITE whose Via names a bystander listener)")
	flag.Parse()
	if err := o.validate(); err != nil {
		fmt.Fprintf(os.Stderr, "flood: %v\n", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, &o); err != nil {
		fmt.Fprintf(os.Stderr, "flood: %v\n", err)
		stop()
		os.Exit(1)
	}
}

func (o *options) validate() error {
	switch o.mode {
	case "invite-flood", "tcp-flood":
		if o.dur == 0 {
			o.dur = 10 * time.Second
		}
		if o.tail < 0 {
			o.tail = 35 * time.Second
			if o.mode == "tcp-flood" {
				o.tail = 5 * time.Second
			}
		}
	case "idle-tcp":
		if o.dur == 0 {
			o.dur = 30 * time.Second
		}
		if o.tail < 0 {
			o.tail = 0
		}
	default:
		return fmt.Errorf("-mode %q: must be invite-flood, idle-tcp or tcp-flood", o.mode)
	}
	if o.dur <= 0 || o.dur > maxDuration || o.tail > maxDuration || o.settle < 0 || o.settle > time.Minute {
		return fmt.Errorf("-d must be in (0, %v], -tail in [0, %v], -settle in [0, 1m]", maxDuration, maxDuration)
	}
	if o.probeEvery < 10*time.Millisecond {
		return errors.New("-probe must be at least 10ms")
	}
	if o.rate < 1 || o.rate > maxRate {
		return fmt.Errorf("-rate must be in 1..%d", maxRate)
	}
	if o.conns < 0 || o.conns > maxConns || o.endpointConns < 0 || o.endpointConns > maxConns || o.conns+o.endpointConns == 0 {
		return fmt.Errorf("-conns and -endpoint-conns must be in 0..%d, not both 0", maxConns)
	}
	if o.strangerIPs < 1 || o.strangerIPs > 250 {
		return errors.New("-stranger-ips must be in 1..250")
	}
	if o.count < 1 || o.count > maxFloodConn || o.workers < 1 || o.workers > 256 {
		return fmt.Errorf("-count must be in 1..%d and -workers in 1..256", maxFloodConn)
	}
	if o.payload != "none" && o.payload != "crlf" && o.payload != "invite" && o.payload != "invite-via" {
		return errors.New("-payload must be none, crlf, invite or invite-via")
	}
	for _, p := range []string{o.ip(1), o.strangerNet + ".1"} {
		if ip := net.ParseIP(p); ip == nil || !ip.IsLoopback() || ip.To4() == nil {
			return fmt.Errorf("-net %q and -stranger-net %q must be IPv4 loopback /24s such as 127.0.77", o.netPrefix, o.strangerNet)
		}
	}
	if o.strangerNet == o.netPrefix {
		return errors.New("-stranger-net must differ from -net")
	}
	return nil
}

func run(ctx context.Context, o *options) error {
	if o.out == "" {
		d, err := os.MkdirTemp("", "wagate-flood.")
		if err != nil {
			return err
		}
		o.out = d
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
	}
	if o.mode == "idle-tcp" {
		// Each held connection is a descriptor here and one in wagate.
		if err := checkFDLimit(o.conns + o.endpointConns + 256); err != nil {
			return err
		}
	}
	if o.wagate == "" {
		bin, err := buildWagate(ctx, o.out)
		if err != nil {
			return fmt.Errorf("build wagate: %w", err)
		}
		o.wagate = bin
	}
	fmt.Printf("# flood mode=%s wagate=%s output=%s, %d CPU(s), started %s\n",
		o.mode, o.wagate, o.out, runtime.NumCPU(), time.Now().Format(time.RFC3339))
	if o.waitIdle > 0 {
		waitIdle(ctx, o.waitIdle)
	}
	w, err := startWagate(ctx, *o)
	if err != nil {
		return err
	}
	defer func() {
		if err := w.stop(); err != nil {
			fmt.Printf("# stopping wagate: %v\n", err)
		}
	}()
	fmt.Printf("# wagate pid %d, SIP udp+tcp %s:%d, log %s\n", w.pid, o.ip(1), o.sipPort, w.log)
	switch o.mode {
	case "invite-flood":
		return inviteFlood(ctx, *o, w)
	case "idle-tcp":
		return idleTCP(ctx, *o, w)
	default:
		return tcpFlood(ctx, *o, w)
	}
}

// wait sleeps d or until ctx ends; false when ctx ended.
func wait(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

// runID tells this run's Call-IDs from any earlier run's.
func runID() string { return fmt.Sprintf("%x", time.Now().UnixNano()&0xffffffff) }
