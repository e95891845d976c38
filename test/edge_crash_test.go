package test

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestEdgeCrashRegressions sends, through the real binary, each datagram
// that used to kill wagate (issue: "one datagram from anyone kills the
// process"): an INVITE without To (any source, UDP and TCP), one whose To
// line is folded into the Via by a leading space or joined to it by a
// bare LF, and — from an endpoint — INVITEs without From or Call-ID (UIC
// and BIC). The endpoint's get a 400 naming the problem, the stranger's
// nothing, and wagate serves a normal OPTIONS after each.
func TestEdgeCrashRegressions(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := e.startWagate(wagateOpts{})
	listenSilent(t, e.Meta, e.PBX, e.Dialer)

	type tc struct {
		name    string
		from    string // "meta", "dialer" or "stranger"
		ruser   string
		edit    func(string) string
		warning string
		want    string // status of an endpoint's answer; default 400
	}
	drop := func(prefix string) func(string) string {
		return func(m string) string { return without(m, prefix) }
	}
	cases := []tc{
		{"no To (RFC 4475 insuf)", "meta", businessNumber, drop("To:"), "missing To", ""},
		{"no To, from a stranger", "stranger", businessNumber, drop("To:"), "", ""},
		{"To folded into Via by a leading space", "meta", businessNumber, func(m string) string { return strings.Replace(m, "\r\nTo:", "\r\n To:", 1) }, "missing To", ""},
		{"To folded into Via, from a stranger", "stranger", businessNumber, func(m string) string { return strings.Replace(m, "\r\nTo:", "\r\n To:", 1) }, "", ""},
		// A bare LF ends a line as CRLF would (sipgo used to read the To
		// as part of the Via): the To is there, the call is routed and
		// its SDP refused.
		{"To after a bare LF", "meta", businessNumber, func(m string) string { return strings.Replace(m, "\r\nTo:", "\nTo:", 1) }, "", "SIP/2.0 488"},
		{"no From on a UIC", "meta", businessNumber, drop("From:"), "missing From", ""},
		{"no From on a BIC", "dialer", waUser, drop("From:"), "missing From", ""},
		{"no Call-ID on a UIC", "meta", businessNumber, drop("Call-ID:"), "missing Call-ID", ""},
		{"no Call-ID on a BIC", "dialer", waUser, drop("Call-ID:"), "missing Call-ID", ""},
	}
	for _, tr := range []string{"udp", "tcp"} {
		for i, c := range cases {
			if c.want == "" {
				c.want = "SIP/2.0 400"
			}
			ip := map[string]string{"meta": e.Meta.IP, "dialer": e.Dialer.IP, "stranger": e.Stranger.IP}[c.from]
			var p torturePeer
			udp := newRawPeer(t, ip, w)
			if tr == "udp" {
				p = udp
			} else {
				p = newTCPRawPeer(t, ip, w)
			}
			callID := fmt.Sprintf("crash-%s-%d", tr, i)
			msg := c.edit(rawInvite(udp, callID, c.ruser, "application/sdp", "v=0\r\n"))
			if tr == "tcp" {
				msg = strings.Replace(msg, "SIP/2.0/UDP", "SIP/2.0/TCP", 1)
			}
			if err := p.send([]byte(msg)); err != nil && c.from != "stranger" {
				t.Fatalf("%s over %s: send: %v", c.name, tr, err)
			}
			got := p.collect(1500*time.Millisecond, func(m sipMsg) bool { return !strings.HasPrefix(m.StartLine(), "SIP/2.0 1") })
			var final *sipMsg
			for i := range got {
				if !strings.HasPrefix(got[i].StartLine(), "SIP/2.0 1") {
					final = &got[i]
				}
			}
			switch {
			case c.from == "stranger" && len(got) > 0:
				t.Errorf("%s over %s: the stranger got %q", c.name, tr, got[0].StartLine())
			case c.from != "stranger" && (final == nil || !strings.HasPrefix(final.StartLine(), c.want)):
				t.Errorf("%s over %s: got %v, want %s", c.name, tr, got, c.want)
			case c.warning != "" && final != nil && !strings.Contains(final.Header("Warning"), c.warning):
				t.Errorf("%s over %s: Warning %q does not say %q", c.name, tr, final.Header("Warning"), c.warning)
			}
			p.reset()
			select {
			case <-w.exited:
				t.Fatalf("%s over %s killed wagate: %v", c.name, tr, w.waitErr)
			default:
			}
			opt := newRawPeer(t, e.Meta.IP, w)
			if got := opt.exchange(fmt.Sprintf("OPTIONS sip:%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK-cr%s%d\r\nFrom: <sip:meta@%s>;tag=o\r\nTo: <sip:%s>\r\nCall-ID: cr-opt-%s-%d\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
				opt.to, opt.local(), tr, i, opt.local(), opt.to, tr, i), replyLimit); !strings.HasPrefix(got, "SIP/2.0 200") {
				t.Fatalf("after %s over %s: OPTIONS got %q", c.name, tr, got)
			}
		}
	}
	s := w.waitIdle()
	w.expectCounts(s, 2, 2) // the two bare-LF INVITEs, refused for their SDP
}

// without drops the header lines of msg that start with prefix.
func without(msg, prefix string) string {
	head, body, _ := strings.Cut(msg, "\r\n\r\n")
	var out []string
	for _, l := range strings.Split(head, "\r\n") {
		if !strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\r\n") + "\r\n\r\n" + body
}
