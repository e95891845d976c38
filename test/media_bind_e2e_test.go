package test

import (
	"bytes"
	"net"
	"os"
	"testing"
	"time"

	"github.com/wagate/wagate/test/internal/metapeer"
	"github.com/wagate/wagate/test/internal/rtppeer"
)

// TestMediaWildcardBind: operators bind RTP to a wildcard (0.0.0.0, or
// :: for both families) and advertise the address peers reach. Here, as
// on a host with several addresses, the advertised address (the env's
// 127.0.N.1) is not the one the routing table picks as the source toward
// the peers (127.0.0.1), and the Go Meta peer, like a peer doing
// symmetric RTP, drops packets from any address but the one SDP named.
// Through the real binary the Meta peer's 1 kHz tone must go Opus →
// wagate → PCMU → the PBX's echo → wagate → Opus and come back: RTP must
// leave from the advertised address. The answer must name that address,
// never the wildcard, and the log must say why the wildcard was not used.
func TestMediaWildcardBind(t *testing.T) {
	t.Parallel()
	for i, bind := range []string{"0.0.0.0", "::"} {
		t.Run(bind, func(t *testing.T) {
			e := newEnv(t)
			// A range of its own: a wildcard bind takes the port on every
			// address, which other tests' ranges must not share, nor
			// baresip's RTP ports (40100-40999, bound to 0.0.0.0).
			lo := 41000 + 100*i
			w := e.startWagate(wagateOpts{MetaEncryption: "sdes", MediaBind: bind, MediaAdvertise: e.WagateIP, PortMin: lo, PortMax: lo + 99})
			call, pbx := placeUICThroughEcho(t, e, w, metapeer.Config{})
			checkMediaAddr(t, e, call)
			if p := call.RemoteSDP.Port; p < lo || p > lo+99 {
				t.Errorf("wagate's answer names media port %d, outside its range %d-%d", p, lo, lo+99)
			}

			call.Media.ResetRecording()
			playFor(t, 2*time.Second, play{call.Media, rtppeer.NewTone(1000, toneAmp, 48000)})
			hangup(t, call, "meta")
			pbx.requireOK()

			checkTone(t, "tone back through wagate and the PBX's echo", call.Media.Recording(), 48000, 1000, 1200*time.Millisecond)
			s := w.waitIdle()
			w.expectCounts(s, 1, 1)
			if log, _ := os.ReadFile(w.logPath); !bytes.Contains(log, []byte("media: RTP binds the advertised address")) {
				t.Errorf("wagate's log does not say RTP binds the advertised address instead of %s", bind)
			}
		})
	}
}

// TestMediaIPv6: RTP over IPv6 end to end. wagate binds ::1; the Go
// dialer (PCMU) and the Go Meta peer (Opus, SDES) offer and answer
// c=IN IP6 ::1 (SIP stays on IPv4, so that each endpoint keeps an address
// of its own). The dialer's 1 kHz tone must reach the WhatsApp user and
// the user's 700 Hz tone the dialer, through wagate's IPv6 sockets, and
// wagate's SDP must name its IPv6 address as IP6.
func TestMediaIPv6(t *testing.T) {
	t.Parallel()
	if c, err := net.ListenPacket("udp6", "[::1]:0"); err != nil {
		t.Skipf("no IPv6 loopback on this machine: %v", err)
	} else {
		c.Close()
	}
	e := newEnv(t)
	// Its own range: ::1 is one address, shared by every IPv6 test (and
	// outside baresip's 40100-40999).
	w := e.startWagate(wagateOpts{MetaEncryption: "sdes", MetaCodecs: bicMetaCodecs, MediaBind: "::1", PortMin: 41200, PortMax: 41299,
		// The first report comes at a quarter to three quarters of the
		// interval: with the default 5 s, after a 2 s call or not.
		MediaExtra: ", rtcp_interval: 1s"})
	dcall, mcall := placeBIC(t, e, w, metapeer.Config{MediaIP: "::1"}, metapeer.Config{Profile: metapeer.ProfileG711, MediaIP: "::1"})
	for _, c := range []struct {
		who string
		sdp []byte
	}{{"the dialer", dcall.Remote}, {"the Meta peer", mcall.Remote}} {
		if !bytes.Contains(c.sdp, []byte("c=IN IP6 ::1\r\n")) {
			t.Errorf("wagate's SDP to %s has no c=IN IP6 ::1:\n%s", c.who, c.sdp)
		}
	}

	crossTones(t, "BIC over IPv6", dcall, mcall, 2*time.Second, 1200*time.Millisecond)
	s := w.waitIdle()
	w.expectCounts(s, 1, 1)
}
