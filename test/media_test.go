package test

import (
	"encoding/binary"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/wagate/wagate/test/internal/pcmu"
)

// Media tests: RTP really flows through wagate, both ways.

// TestRTPRelayBothWays: Meta's side of a UIC is a Go RTP peer (the caller's
// SDP names its socket); the PBX is SIPp with -rtp_echo. The Go peer sends
// PCMU packets to wagate's A-leg address; wagate relays them to the PBX,
// which echoes them back to wagate's B-leg, and wagate relays the echoes to
// the Go peer. Each packet carries its index in the payload, so the echoes
// are counted exactly: at least 90% must come back, re-originated by wagate
// (its own SSRC), from the address wagate's SDP answer named. Packets a
// rogue sends to the same wagate port from another address are dropped.
func TestRTPRelayBothWays(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := e.startWagate(wagateOpts{})

	rtpConn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(e.Meta.IP)})
	if err != nil {
		t.Fatal(err)
	}
	defer rtpConn.Close()
	rtpPort := rtpConn.LocalAddr().(*net.UDPAddr).Port
	answerFile := filepath.Join(e.dir, "answer.txt")

	pbx := e.startSipp(sippSpec{Name: "pbx", Scenario: "uas.xml", Peer: e.PBX, Calls: 1, Args: []string{"-rtp_echo"}})
	meta := e.startSipp(sippSpec{Name: "meta", Scenario: "uac_media.xml", Peer: e.Meta, Remote: w.SIPAddr, Calls: 1,
		Args: callArgs(businessNumber, waUser,
			"-key", "rtp_ip", e.Meta.IP, "-key", "rtp_port", strconv.Itoa(rtpPort),
			"-key", "answer_file", answerFile, "-d", "4500")})

	// wagate's A-leg media address, from the 200's SDP (written by sipp).
	remote := waitAnswerFile(t, answerFile, meta)
	if remote.IP.String() != e.WagateIP || remote.Port < 30000 || remote.Port > 40000 {
		t.Errorf("wagate's SDP answer names %v, want %s and a port in 30000-40000", remote, e.WagateIP)
	}

	// A rogue sender on another address aims at the same wagate port: its
	// packets must not be relayed (RTP is accepted only from the address
	// the caller's SDP signalled).
	rogue, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(e.Stranger.IP)})
	if err != nil {
		t.Fatal(err)
	}
	defer rogue.Close()

	const (
		packets     = 100
		rogueFirst  = 1000 // indices of the rogue's packets
		roguePkts   = 25
		ssrc        = 0x1234abcd
		rogueSSRC   = 0x0bad0bad
		recvLimit   = 15 * time.Second
		quietPeriod = 1500 * time.Millisecond
	)
	type echo struct {
		from *net.UDPAddr
		ssrc uint32
		pt   uint8
	}
	echoes := make(map[uint32]echo)
	rogueEchoes := 0
	recvDone := make(chan struct{})
	// sendDone is closed when the last packet is out: the echoes are over
	// once none came for quietPeriod after that (a loaded machine may hold
	// the stream up for longer while it is still being sent).
	sendDone := make(chan struct{})
	var lastEchoDue time.Time // when the last packet left (set before sendDone closes)
	go func() {
		defer close(recvDone)
		buf := make([]byte, 1500)
		stop := time.Now().Add(recvLimit)
		// wagate sends silence toward the WhatsApp leg whenever the other
		// side is quiet, so "quiet" means no echo for quietPeriod.
		lastEcho := time.Now()
		quiet := func() bool {
			select {
			case <-sendDone:
				return time.Since(lastEcho) >= quietPeriod && time.Since(lastEchoDue) >= quietPeriod
			default:
				return false
			}
		}
		for time.Now().Before(stop) && !quiet() {
			_ = rtpConn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			n, from, err := rtpConn.ReadFromUDP(buf)
			if err != nil {
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					continue
				}
				return
			}
			if n < 12+4 || buf[0]>>6 != 2 {
				continue
			}
			idx := binary.BigEndian.Uint32(buf[12:16])
			if idx == 0xFFFFFFFF {
				continue // μ-law silence from wagate, not an echo
			}
			lastEcho = time.Now()
			switch {
			case idx >= rogueFirst:
				rogueEchoes++
			case idx < packets:
				if _, dup := echoes[idx]; !dup {
					echoes[idx] = echo{from: from, ssrc: binary.BigEndian.Uint32(buf[8:12]), pt: buf[1] & 0x7f}
				}
			}
		}
	}()

	// Packet i leaves at 20·i ms; a sender the machine held up sends what
	// it owes back to back (a ticker would drop the missed ticks and
	// stretch the stream past the caller's hold time).
	began := time.Now()
	for i := 0; i < packets; i++ {
		time.Sleep(time.Until(began.Add(time.Duration(i) * 20 * time.Millisecond)))
		payload := pcmu.Tone(1000, 0.25, i*160, 160)
		binary.BigEndian.PutUint32(payload[0:4], uint32(i)) // the index rides in the audio
		pkt := pcmu.Packet(0, uint16(5000+i), uint32(i*160), ssrc, i == 0, payload)
		if _, err := rtpConn.WriteToUDP(pkt, remote); err != nil {
			t.Fatalf("send RTP: %v", err)
		}
		if i%4 == 2 && i/4 < roguePkts {
			binary.BigEndian.PutUint32(payload[0:4], uint32(rogueFirst+i/4))
			pkt := pcmu.Packet(0, uint16(9000+i), uint32(i*160), rogueSSRC, false, payload)
			if _, err := rogue.WriteToUDP(pkt, remote); err != nil {
				t.Fatalf("send rogue RTP: %v", err)
			}
		}
	}
	lastEchoDue = time.Now()
	close(sendDone)
	<-recvDone // quiet for quietPeriod after the last packet (or recvLimit reached)
	waited := time.Since(lastEchoDue)

	_ = rogue.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if n, _, err := rogue.ReadFromUDP(make([]byte, 1500)); err == nil {
		t.Errorf("the rogue sender got a %d-byte packet back", n)
	}
	if rogueEchoes > 0 {
		t.Errorf("%d packets from an address the SDP did not signal (%s) were relayed; want them dropped", rogueEchoes, e.Stranger.IP)
	}

	meta.requireOK()
	pbx.requireOK()

	if len(echoes) < packets*9/10 {
		t.Errorf("%d of %d RTP packets came back through wagate, want at least %d (sent over %v; waited %v after the last)",
			len(echoes), packets, packets*9/10, lastEchoDue.Sub(began).Round(time.Millisecond), waited.Round(time.Millisecond))
	}
	var sameSSRC, wrongPT, wrongSource int
	for _, ec := range echoes {
		if ec.ssrc == ssrc {
			sameSSRC++
		}
		if ec.pt != 0 {
			wrongPT++
		}
		if !ec.from.IP.Equal(remote.IP) || ec.from.Port != remote.Port {
			wrongSource++
		}
	}
	if sameSSRC > 0 {
		t.Errorf("%d packets came back with the sender's SSRC %#x: wagate must re-originate each leg's stream", sameSSRC, ssrc)
	}
	if wrongPT > 0 {
		t.Errorf("%d packets came back with a payload type other than 0 (PCMU)", wrongPT)
	}
	if wrongSource > 0 {
		t.Errorf("%d packets came back from an address other than wagate's SDP answer %v (symmetric RTP)", wrongSource, remote)
	}
	t.Logf("%d/%d RTP packets relayed both ways", len(echoes), packets)

	s := w.waitIdle()
	w.expectCounts(s, 1, 1)
}

// waitAnswerFile waits (bounded) for uac_media.xml to write "IP PORT".
func waitAnswerFile(t *testing.T, path string, caller *sippProc) *net.UDPAddr {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		data, err := os.ReadFile(path)
		if err == nil {
			f := strings.Fields(string(data))
			if len(f) == 2 {
				port, err := strconv.Atoi(f[1])
				ip := net.ParseIP(f[0])
				if err != nil || ip == nil {
					t.Fatalf("answer file %s: %q", path, data)
				}
				return &net.UDPAddr{IP: ip, Port: port}
			}
		}
		select {
		case <-caller.exited:
			caller.requireOK()
			t.Fatalf("the caller ended before wagate answered")
		case <-time.After(20 * time.Millisecond):
		}
	}
	caller.dump()
	t.Fatalf("no SDP answer from wagate within 10s")
	return nil
}

// TestPcapMediaScenario runs the load script's relayed-media scenario
// (uac_pcap.xml playing a PCMU pcap, callee with -rtp_echo) through wagate
// for a few calls, so that the load script's media mode is known to work.
func TestPcapMediaScenario(t *testing.T) {
	t.Parallel()
	requireRawSocket(t)
	e := newEnv(t)
	w := e.startWagate(wagateOpts{})

	// uac_pcap.xml plays ./pcmu.pcap; sipp looks next to the scenario first.
	scen := filepath.Join(e.dir, "uac_pcap.xml")
	copyFile(t, filepath.Join(sippDir, "uac_pcap.xml"), scen)
	f, err := os.Create(filepath.Join(e.dir, "pcmu.pcap"))
	if err != nil {
		t.Fatal(err)
	}
	if err := pcmu.WritePcap(f, 3, 1000); err != nil {
		t.Fatal(err)
	}
	f.Close()

	const calls = 3
	pbx := e.startSipp(sippSpec{Name: "pbx", Scenario: "uas.xml", Peer: e.PBX, Calls: calls, Args: []string{"-rtp_echo"}})
	e.runSipp(sippSpec{Name: "meta", Scenario: scen, Peer: e.Meta, Remote: w.SIPAddr, Calls: calls,
		Args: callArgs(businessNumber, waUser, "-d", "2000", "-r", "10")})
	pbx.requireOK()

	s := w.waitIdle()
	w.expectCounts(s, calls, calls)
}

// requireRawSocket skips when SIPp could not play a pcap: it sends the
// packets through a raw socket (root or CAP_NET_RAW).
func requireRawSocket(t *testing.T) {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_RAW, syscall.IPPROTO_UDP)
	if err != nil {
		if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES) {
			t.Skipf("SIPp's pcap playback needs a raw socket (root or CAP_NET_RAW): %v", err)
		}
		t.Fatalf("raw socket: %v", err)
	}
	syscall.Close(fd)
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, 0o644); err != nil {
		t.Fatal(err)
	}
}
