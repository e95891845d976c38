package test

import (
	"context"
	"encoding/binary"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/wagate/wagate/test/internal/audio"
	"github.com/wagate/wagate/test/internal/metapeer"
	"github.com/wagate/wagate/test/internal/pcmu"
	"github.com/wagate/wagate/test/internal/rtppeer"
)

// Media latching under attack (docs/media.md, "Sources, NAT"): a peer
// behind NAT signals one address in its SDP and sends its media from
// another, while a stranger sprays every port of wagate's media range
// with RTP of its own, from before the call is answered to after it ends.

const (
	// natPortMin–natPortMax is wagate's media range in these tests: small,
	// so that the stranger can hit every port every 20 ms.
	natPortMin, natPortMax = 30000, 30039
	// sprayTone is the stranger's audio; the peers use 1000 Hz and 700 Hz.
	sprayTone = 1500.0
	// sprayLimit bounds a spray in time whatever the test does.
	sprayLimit = 30 * time.Second
)

// sprayer is a stranger that sends PCMU RTP of a tone to every port of a
// range every 20 ms, and counts what comes back.
type sprayer struct {
	conn       *net.UDPConn
	sent, recv atomic.Int64
	stop       chan struct{}
	wg         sync.WaitGroup
	once       sync.Once
}

// startSpray starts spraying ports min..max of ip from a socket on from.
// It stops on close (also at cleanup) or after sprayLimit.
func startSpray(t *testing.T, from, ip string, min, max int) *sprayer {
	t.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(from)})
	if err != nil {
		t.Fatalf("stranger socket: %v", err)
	}
	s := &sprayer{conn: conn, stop: make(chan struct{})}
	s.wg.Add(2)
	go func() { // everything sent back to the stranger
		defer s.wg.Done()
		buf := make([]byte, 2048)
		for {
			if _, _, err := conn.ReadFromUDP(buf); err != nil {
				return
			}
			s.recv.Add(1)
		}
	}()
	go func() {
		defer s.wg.Done()
		// Round i leaves at 20·i ms: rounds a stalled sprayer owes go at
		// once (a ticker would drop them, and the count below with them).
		began := time.Now()
		wait := time.NewTimer(0)
		defer wait.Stop()
		limit := time.After(sprayLimit)
		ssrc, seq, ts := rand.Uint32(), uint16(rand.Uint32()), rand.Uint32()
		pkt := make([]byte, 12+160)
		for i := 0; ; i++ {
			pkt[0], pkt[1] = 0x80, 0 // RTP v2, PCMU
			binary.BigEndian.PutUint16(pkt[2:], seq)
			binary.BigEndian.PutUint32(pkt[4:], ts)
			binary.BigEndian.PutUint32(pkt[8:], ssrc)
			copy(pkt[12:], pcmu.Tone(sprayTone, toneAmp, i*160, 160))
			for port := min; port <= max; port++ {
				if _, err := conn.WriteToUDP(pkt, &net.UDPAddr{IP: net.ParseIP(ip), Port: port}); err == nil {
					s.sent.Add(1)
				}
			}
			seq++
			ts += 160
			wait.Reset(time.Until(began.Add(time.Duration(i+1) * 20 * time.Millisecond)))
			select {
			case <-s.stop:
				return
			case <-limit:
				return
			case <-wait.C:
			}
		}
	}()
	t.Cleanup(s.close)
	return s
}

func (s *sprayer) close() {
	s.once.Do(func() {
		close(s.stop)
		s.conn.Close()
	})
	s.wg.Wait()
}

// checkNoTone fails the test if any 100 ms of rec (at rate Hz) that is
// loud enough to hear is mostly a tone of freq Hz.
func checkNoTone(t *testing.T, what string, rec []int16, rate int, freq float64) {
	t.Helper()
	win := rate / 10
	for off := 0; off+win <= len(rec); off += win {
		w := rec[off : off+win]
		if audio.DBFS(w) < activeDBFS {
			continue
		}
		if p := audio.Goertzel(w, rate, freq); p > 0.2 {
			t.Errorf("%s: at %v the audio is %.0f%% a %.0f Hz tone (%.1f dBFS): the stranger's audio got through",
				what, time.Duration(off)*time.Second/time.Duration(rate), 100*p, freq, audio.DBFS(w))
			return
		}
	}
}

// TestMediaNATLatchUnderSpray: a UIC to a PBX endpoint with behind_nat,
// whose SDP names another address (its private one, here 127.0.N.5) and
// port than its media leaves from, while a stranger (127.0.N.9) sprays
// every port of wagate's media range with RTP carrying its own tone from
// before the INVITE until after the BYE. The PBX's media may latch only
// because it comes from the PBX's SIP address (the endpoint's host): the
// stranger must receive nothing, the WhatsApp side must hear the PBX's
// tone and never the stranger's, and the PBX the WhatsApp side's tone.
func TestMediaNATLatchUnderSpray(t *testing.T) {
	t.Parallel()
	runNATSpray(t, false)
}

// TestMediaNATLatchUnderSprayBIC is the same with the NATed G.711 peer on
// side A: a dialer with behind_nat places a BIC, and its media may latch
// because it comes from the address its INVITE came from.
func TestMediaNATLatchUnderSprayBIC(t *testing.T) {
	t.Parallel()
	runNATSpray(t, true)
}

func runNATSpray(t *testing.T, bic bool) {
	e := newEnv(t)
	o := wagateOpts{MetaEncryption: "sdes", PortMin: natPortMin, PortMax: natPortMax}
	natPeer, who, private := e.PBX, "the PBX", e.ip(5)
	if bic {
		o.MetaCodecs, o.DialerExtra = bicMetaCodecs, ", behind_nat: true"
		natPeer, who, private = e.Dialer, "the dialer", e.ip(6)
	} else {
		o.PBXExtra = ", behind_nat: true"
	}
	w := e.startWagate(o)
	// The address the G.711 peer signals: nothing of the peer is there; a
	// listener absorbs what wagate sends there before the peer's first
	// packet.
	signalled := listenUDP(t, net.JoinHostPort(private, "0"))
	sdpAddr := signalled.conn.LocalAddr().String()
	sdpPort := signalled.conn.LocalAddr().(*net.UDPAddr).Port

	spray := startSpray(t, e.Stranger.IP, e.WagateIP, natPortMin, natPortMax)
	time.Sleep(200 * time.Millisecond) // well before the INVITE

	g711 := newGoPeer(t, natPeer, metapeer.Config{Profile: metapeer.ProfileG711})
	meta := newGoPeer(t, e.Meta, metapeer.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), peerCallLimit)
	defer cancel()
	var gcall, wcall *metapeer.Call
	if bic {
		answered := answerAsync(ctx, meta, metapeer.AnswerSpec{Ring: 500 * time.Millisecond})
		var err error
		if gcall, err = g711.Call(ctx, metapeer.CallSpec{Target: w.SIPAddr, To: waUser, From: businessNumber, SDPAddr: sdpAddr}); err != nil {
			t.Fatalf("BIC: %v", err)
		}
		wcall = waitAnswer(t, answered, "the Meta peer")
	} else {
		answered := answerAsync(ctx, g711, metapeer.AnswerSpec{Ring: 500 * time.Millisecond, SDPAddr: sdpAddr})
		var err error
		if wcall, err = meta.Call(ctx, metapeer.CallSpec{Target: w.SIPAddr, To: businessNumber, From: waUser}); err != nil {
			t.Fatalf("UIC: %v", err)
		}
		gcall = waitAnswer(t, answered, who)
	}
	if got := string(gcall.Local); !strings.Contains(got, "c=IN IP4 "+private) || !strings.Contains(got, "m=audio "+strconv.Itoa(sdpPort)+" ") {
		t.Fatalf("%s's SDP does not signal %s:\n%s", who, sdpAddr, got)
	}
	if gcall.Media.Port() == sdpPort {
		t.Fatalf("%s's media socket is the signalled port: the test would prove nothing", who)
	}

	wcall.Media.ResetRecording()
	gcall.Media.ResetRecording()
	playFor(t, 2500*time.Millisecond, play{gcall.Media, rtppeer.NewTone(1000, toneAmp, 8000)}, play{wcall.Media, rtppeer.NewTone(700, toneAmp, 48000)})
	if bic {
		hangup(t, gcall, "the dialer")
		waitBye(t, wcall, "the Meta peer")
	} else {
		hangup(t, wcall, "meta")
		waitBye(t, gcall, who)
	}
	time.Sleep(200 * time.Millisecond) // the spray goes on after the BYE
	spray.close()

	sent := spray.sent.Load()
	if min := int64(natPortMax-natPortMin+1) * 100; sent < min {
		t.Errorf("the stranger sent only %d packets, want at least %d (every port for 2 s): the attack did not run", sent, min)
	}
	if got := spray.recv.Load(); got != 0 {
		t.Errorf("the stranger received %d packets from wagate, want none (it sent %d)", got, sent)
	} else {
		t.Logf("the stranger sent %d packets to every port of %d–%d and received none", sent, natPortMin, natPortMax)
	}
	waRec, gRec := wcall.Media.Recording(), gcall.Media.Recording()
	checkTone(t, who+"'s tone at the WhatsApp user", waRec, 48000, 1000, 1500*time.Millisecond)
	checkNoTone(t, "the WhatsApp user", waRec, 48000, sprayTone)
	checkTone(t, "the WhatsApp user's tone at "+who, gRec, 8000, 700, 1500*time.Millisecond)
	checkNoTone(t, who, gRec, 8000, sprayTone)
	if st := gcall.Media.Stats(); st.WrongSource != 0 {
		t.Errorf("%s got %d packets from an address other than wagate's (last %s)", who, st.WrongSource, st.LastWrongSource)
	}
	s := w.waitIdle()
	w.expectCounts(s, 1, 1)
}
