package sip

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/wagate/wagate/configs"
)

// probedPBX is a UDP peer that answers OPTIONS as told: a code, or
// nothing (0).
type probedPBX struct {
	conn    *net.UDPConn
	answer  atomic.Int32
	options atomic.Int32
}

func startProbedPBX(t *testing.T, ip string) *probedPBX {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(ip)})
	if err != nil {
		t.Fatal(err)
	}
	p := &probedPBX{conn: c}
	p.answer.Store(200)
	done := make(chan struct{})
	t.Cleanup(func() { c.Close(); <-done })
	go func() {
		defer close(done)
		buf := make([]byte, 65535)
		for {
			n, from, err := c.ReadFromUDP(buf)
			if err != nil {
				return
			}
			msg, err := sip.ParseMessage(append([]byte(nil), buf[:n]...))
			req, ok := msg.(*sip.Request)
			if err != nil || !ok || req.Method != sip.OPTIONS {
				continue
			}
			p.options.Add(1)
			code := int(p.answer.Load())
			if code == 0 {
				continue
			}
			res := sip.NewResponseFromRequest(req, code, "X", nil)
			_, _ = c.WriteToUDP([]byte(res.String()), from)
		}
	}()
	return p
}

func (p *probedPBX) port() int { return p.conn.LocalAddr().(*net.UDPAddr).Port }

// TestProbe: an endpoint goes down after down_after failed probes (no
// answer, then 503), is skipped while down, and comes back after up_after
// answers, even a 404; /v1/status shows it.
func TestProbe(t *testing.T) {
	pbx := startProbedPBX(t, "127.0.0.3")
	other := startProbedPBX(t, "127.0.0.5")
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	pc.Close()
	cfg, err := configs.Parse([]byte(fmt.Sprintf(`
sip: {listen: [{transport: udp, address: "%s"}], host: 127.0.0.1}
endpoints:
  - {name: pbx, kind: pbx, host: 127.0.0.3, port: %d, source_cidrs: [127.0.0.3], probe: {interval: 100ms, timeout: 80ms, down_after: 2, up_after: 2}}
  - {name: pbx2, kind: pbx, host: 127.0.0.5, port: %d, source_cidrs: [127.0.0.5]}
`, addr, pbx.port(), other.port())), "probe.yaml")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 5s; health %+v", what, srv.Health())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	if !srv.Up("pbx") || !srv.Up("pbx2") || !srv.Up("nosuch") {
		t.Fatal("endpoints must start up")
	}
	waitFor("probes answered", func() bool { h := srv.Health(); return len(h) == 1 && h[0].Probes >= 2 && h[0].LastCode == 200 })
	if !srv.Up("pbx") {
		t.Fatal("an answering endpoint is down")
	}

	pbx.answer.Store(0) // silence
	waitFor("down after silence", func() bool { return !srv.Up("pbx") })
	h := srv.Health()[0]
	if h.Up || !strings.Contains(h.LastError, "no answer") || h.Failures < 2 {
		t.Errorf("health after silence %+v", h)
	}
	pbx.answer.Store(404) // there again, even if it serves no OPTIONS
	waitFor("up after answers", func() bool { return srv.Up("pbx") })

	pbx.answer.Store(503)
	waitFor("down after 503s", func() bool { return !srv.Up("pbx") })
	if st := srv.Status(); len(st.Endpoints) != 1 || st.Endpoints[0].Endpoint != "pbx" || st.Endpoints[0].Up || st.Endpoints[0].LastCode != 503 {
		t.Errorf("status endpoints %+v", st.Endpoints)
	}
	if n := other.options.Load(); n != 0 {
		t.Errorf("the endpoint without probe got %d OPTIONS", n)
	}
	// Probing stops with the server: no OPTIONS after Run returns.
	cancel()
	<-done
	n := pbx.options.Load()
	time.Sleep(300 * time.Millisecond)
	if m := pbx.options.Load(); m != n {
		t.Errorf("%d OPTIONS after shutdown", m-n)
	}
}
