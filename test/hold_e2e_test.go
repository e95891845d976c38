package test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wagate/wagate/test/internal/audio"
	"github.com/wagate/wagate/test/internal/metapeer"
	"github.com/wagate/wagate/test/internal/rtppeer"
)

// Hold and media that moves on the PBX side, through the real binary: the
// Go PBX sends re-INVITEs; the Go Meta peer (Opus over SDES-SRTP) must keep
// getting RTP, hear music on hold while held, hear the agent again after
// the resume, and see no SIP message at all.

// streamGapLimit is the longest the WhatsApp side may go without a
// packet in these tests: far below Meta's 30 s no-media rule, above the
// stalls a loaded 2-core machine gives the test's own peers (0.66 s seen
// once in a 10-minute hold at load average 15; the packets are counted
// too).
const streamGapLimit = time.Second

// checkStream checks that s received a 20 ms stream between from and to:
// no gap over streamGapLimit, and at least three quarters of the packets
// the window holds beyond those one stall of the machine (the longest
// silence, edges of the window included, up to the gap limit) accounts
// for. The longest gap is logged.
func checkStream(t *testing.T, what string, s *rtppeer.Session, from, to time.Time) {
	t.Helper()
	n := 0
	var first, last time.Time
	for _, f := range s.Frames() {
		if !f.At.Before(from) && !f.At.After(to) {
			n++
			if first.IsZero() {
				first = f.At
			}
			last = f.At
		}
	}
	want := int(to.Sub(from) / (20 * time.Millisecond))
	gap, at := arrivalGap(s, from, to)
	t.Logf("%s: %d packets toward WhatsApp in %v (%d expected), longest gap %v at +%v", what, n, to.Sub(from).Round(time.Millisecond), want, gap.Round(time.Millisecond), at.Round(time.Millisecond))
	// Three quarters: a stream at half rate fails (its gaps are 40 ms),
	// while a stall of the machine of up to the gap limit, whose turns the
	// pacer skips rather than sends late, is allowed for. Its packets are
	// left out of what is wanted, else a stall the limit allows fails a
	// short window on the count alone (a 250 ms stall costs a 400 ms
	// window 12 of its 20 packets; a 965 ms stall at load average ~200
	// once left 157 of 252).
	stall := gap
	if !first.IsZero() {
		stall = max(stall, first.Sub(from), to.Sub(last))
	}
	stall = min(stall, streamGapLimit)
	excused := max(0, int(stall/(20*time.Millisecond))-1)
	if gap > streamGapLimit || n < (want-excused)*3/4 {
		t.Errorf("%s: the WhatsApp side got %d packets of %d (%d excused for its longest stall, %v), longest gap %v (limit %v)", what, n, want, excused, stall.Round(time.Millisecond), gap.Round(time.Millisecond), streamGapLimit)
	}
}

// mohHz is the tone of the music-on-hold WAV the hold test writes;
// pbxMusicHz the tone of the PBX's own music on hold.
const (
	mohHz      = 600
	pbxMusicHz = 800
)

// reinvite sends a re-INVITE offering sdp on c's dialog and returns the
// 200's SDP; any other answer fails the test.
func reinvite(t *testing.T, c *metapeer.Call, sdp []byte) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), peerCallLimit)
	defer cancel()
	res, err := c.Dialog.Reinvite(ctx, sdp)
	if err != nil {
		t.Fatalf("re-INVITE: %v", err)
	}
	if res.Status != 200 {
		t.Fatalf("re-INVITE answered %d %s (Warning %q), want 200", res.Status, res.Reason, res.Get("Warning"))
	}
	return string(res.Body)
}

// withDirection is sdp with its a=sendrecv replaced by dir, and its c=
// address by conn when conn is not empty.
func withDirection(t *testing.T, sdp []byte, dir, conn string) []byte {
	t.Helper()
	s := string(sdp)
	if !strings.Contains(s, "a=sendrecv\r\n") {
		t.Fatalf("SDP without a=sendrecv:\n%s", s)
	}
	s = strings.Replace(s, "a=sendrecv\r\n", "a="+dir+"\r\n", 1)
	if conn != "" {
		lines := strings.Split(s, "\r\n")
		for i, l := range lines {
			if strings.HasPrefix(l, "c=IN IP4 ") {
				lines[i] = "c=IN IP4 " + conn
			}
		}
		s = strings.Join(lines, "\r\n")
	}
	// A new version of the session description (RFC 3264 §8).
	return []byte(s)
}

// direction is the a= direction attribute of an SDP body (sendrecv when
// none).
func direction(sdp string) string {
	for _, l := range strings.Split(sdp, "\r\n") {
		switch l {
		case "a=sendrecv", "a=sendonly", "a=recvonly", "a=inactive":
			return l[2:]
		}
	}
	return "sendrecv"
}

// TestHoldUIC: the agent holds the WhatsApp caller three ways — a=sendonly,
// a=inactive, and RFC 2543's c=0.0.0.0 — each time sending nothing for
// longer than media.rtp_timeout (2 s). wagate answers recvonly, inactive
// (RFC 3264 §6.1) and takes the 0.0.0.0 hold; the call survives; the
// caller gets RTP without a gap over 100 ms and hears the music-on-hold
// WAV; wagate sends the held agent nothing. Held a=sendonly, a PBX that
// plays its own music is heard instead of wagate's until it goes quiet. After each resume (a=sendrecv)
// the two hear each other again. Meta gets no SIP message.
func TestHoldUIC(t *testing.T) {
	t.Parallel()
	moh := filepath.Join(t.TempDir(), "moh.wav")
	if err := audio.WriteWAV(moh, 8000, audio.Tone(mohHz, toneAmp, 8000, 0, 16000)); err != nil {
		t.Fatal(err)
	}
	c := startCtl(t, wagateOpts{RTPTimeout: "2s", RTPStartTimeout: "2s", MediaExtra: ", music_on_hold: " + moh})
	rc := c.call(t)
	mustHear(t, "the caller hears the agent", rc.meta.Media, 48000, 440, time.Second)
	orig := rc.pbx.Local

	for _, h := range []struct {
		name, dir, conn, answer string
		// pbxMusic: the PBX plays its own music on hold for a second
		// before it goes quiet.
		pbxMusic bool
	}{
		{"sendonly", "sendonly", "", "recvonly", false},
		{"inactive", "inactive", "", "inactive", false},
		{"c=0.0.0.0", "sendrecv", "0.0.0.0", "", false},
		{"sendonly with the PBX's music", "sendonly", "", "recvonly", true},
	} {
		ans := reinvite(t, rc.pbx, withDirection(t, orig, h.dir, h.conn))
		if h.answer != "" && direction(ans) != h.answer {
			t.Errorf("%s hold answered a=%s, want a=%s (RFC 3264 §6.1):\n%s", h.name, direction(ans), h.answer, ans)
		}
		from := time.Now()
		before := rc.pbx.Media.Stats().Received
		if h.pbxMusic {
			// The PBX's own music is what the caller hears, not
			// wagate's (before, wagate's replaced it: with no
			// music_on_hold file, near silence).
			rc.pbx.Media.SetSource(rtppeer.NewTone(pbxMusicHz, toneAmp, 8000))
			mustHear(t, h.name+" hold: the caller hears the PBX's music", rc.meta.Media, 48000, pbxMusicHz, time.Second)
			rc.pbx.Media.SetSource(nil)
			mustHear(t, h.name+" hold, the PBX quiet: the caller hears music on hold", rc.meta.Media, 48000, mohHz, time.Second)
		} else {
			rc.pbx.Media.SetSource(nil)
			// Longer than rtp_timeout with nothing from the PBX.
			mustHear(t, h.name+" hold: the caller hears music on hold", rc.meta.Media, 48000, mohHz, 3*time.Second)
		}
		checkStream(t, h.name+" hold", rc.meta.Media, from, time.Now())
		if got := rc.pbx.Media.Stats().Received - before; got > 3 {
			t.Errorf("%s hold: wagate sent the holding agent %d packets", h.name, got)
		}

		ans = reinvite(t, rc.pbx, orig)
		if direction(ans) != "sendrecv" {
			t.Errorf("resume after %s answered a=%s, want sendrecv", h.name, direction(ans))
		}
		rc.pbx.Media.SetSource(pbxTone())
		mustHear(t, "after "+h.name+": the caller hears the agent", rc.meta.Media, 48000, 440, time.Second)
		mustHear(t, "after "+h.name+": the agent hears the caller", rc.pbx.Media, 8000, 1000, time.Second)
	}
	checkNoSIPToMeta(t, c.meta, time.Now())
	hangup(t, rc.meta, "the caller")
	waitBye(t, rc.pbx, "the agent")
	c.w.waitIdle()
	cdr := cdrOfA(t, waitCDRs(t, c.e, 1), rc.meta.Dialog.CallID)
	if cdr.HangupBy != "a" || cdr.Cause != "bye" {
		t.Errorf("CDR hangup_by %q cause %q, want a / bye (not a media timeout)", cdr.HangupBy, cdr.Cause)
	}
}

// TestPBXMovesMedia: mid-call the PBX moves its media to a new port (a
// re-INVITE with a new m= port, as a PBX does when a media server takes
// over) and stops the old one. wagate answers from the same address, sends
// to the new port, takes RTP from it, and the two sides hear each other
// through the new stream; the old port gets nothing after the move.
func TestPBXMovesMedia(t *testing.T) {
	t.Parallel()
	c := startCtl(t, wagateOpts{RTPTimeout: "2s"})
	rc := c.call(t)
	mustHear(t, "before the move: the caller hears the agent", rc.meta.Media, 48000, 440, time.Second)
	moved, _ := pbxNewStream(t, c, rc, rtppeer.PCMU, "the move")
	old := rc.pbx.Media.Stats().Received
	time.Sleep(100 * time.Millisecond)
	mustHear(t, "after the move: the caller hears the agent's new stream", rc.meta.Media, 48000, 440, 1500*time.Millisecond)
	mustHear(t, "after the move: the new stream hears the caller", moved, 8000, 1000, 1500*time.Millisecond)
	// Past rtp_timeout since the old stream went quiet: the call is up.
	time.Sleep(time.Second)
	if got := rc.pbx.Media.Stats().Received - old; got > 5 {
		t.Errorf("the old port got %d packets after the move", got)
	}
	checkNoSIPToMeta(t, c.meta, time.Now())
	hangup(t, rc.pbx, "the agent")
	waitBye(t, rc.meta, "the caller")
	c.w.waitIdle()
}

// pbxNewStream re-INVITEs from the agent's PBX with a new stream (a new
// port, codec only) and moves the agent's tone to it: wagate must answer
// from its same address. It returns the new stream (closed with the
// test) and wagate's answer.
func pbxNewStream(t *testing.T, c *ctl, rc recCall, codec rtppeer.Codec, what string) (*rtppeer.Session, *rtppeer.SDP) {
	t.Helper()
	first := sdpAddr(t, rc.pbx.Remote)
	s, err := rtppeer.Listen(rtppeer.Config{IP: c.e.PBX.IP, Codec: codec, EventPT: 101})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	offer := rtppeer.Desc{IP: c.e.PBX.IP, Port: s.Port(), Codecs: []rtppeer.Codec{codec}, EventPT: 101, Ptime: 20}.Marshal()
	ans := reinvite(t, rc.pbx, offer)
	sdp, err := rtppeer.ParseSDP([]byte(ans))
	if err != nil {
		t.Fatalf("answer to %s: %v\n%s", what, err, ans)
	}
	if got := fmt.Sprintf("%s:%d", sdp.IP, sdp.Port); got != first {
		t.Errorf("wagate answered %s from %s, want its same address %s", what, got, first)
	}
	rc.pbx.Media.SetSource(nil)
	if err := s.Start(sdp.Addr(), nil); err != nil {
		t.Fatal(err)
	}
	s.SetSource(pbxTone())
	return s, sdp
}

// TestPBXChangesCodec: the PBX re-INVITEs with PCMA only, as a PBX does
// after its own transfer moved the call to a phone without PCMU: wagate
// answers PCMA from its same address (a 488 failed the PBX's transfer),
// and the caller and the new stream hear each other, WhatsApp's leg
// untouched.
func TestPBXChangesCodec(t *testing.T) {
	t.Parallel()
	c := startCtl(t, wagateOpts{RTPTimeout: "2s"})
	rc := c.call(t)
	mustHear(t, "before the change: the caller hears the agent", rc.meta.Media, 48000, 440, time.Second)
	phone, sdp := pbxNewStream(t, c, rc, rtppeer.PCMA, "the change to PCMA")
	if len(sdp.PTs) == 0 || sdp.PTs[0] != 8 {
		t.Fatalf("wagate answered payload types %v, want PCMA (8) first\n%s", sdp.PTs, sdp.Raw)
	}
	mustHear(t, "after the change: the caller hears the PCMA phone", rc.meta.Media, 48000, 440, 1500*time.Millisecond)
	mustHear(t, "after the change: the PCMA phone hears the caller", phone, 8000, 1000, 1500*time.Millisecond)
	checkNoSIPToMeta(t, c.meta, time.Now())
	hangup(t, rc.pbx, "the agent")
	waitBye(t, rc.meta, "the caller")
	c.w.waitIdle()
}

// TestPBXDelayedOffer: the agent holds with an SDP offer (a=sendonly),
// then resumes and moves its media to a new port with a re-INVITE without
// SDP, answering wagate's offer in the ACK, as Cisco CUCM does for resume
// and transfer (RFC 3261 §14.1, §13.2.1). wagate's offer in the 200 must
// be a=sendrecv from its same address (an offer of a=recvonly, its last
// answer to the hold, could only be answered with a hold), and the answer
// in the ACK must move the media: the two hear each other through the new
// stream, and the old port gets nothing.
func TestPBXDelayedOffer(t *testing.T) {
	t.Parallel()
	c := startCtl(t, wagateOpts{RTPTimeout: "2s"})
	rc := c.call(t)
	mustHear(t, "before the hold: the caller hears the agent", rc.meta.Media, 48000, 440, time.Second)
	first := sdpAddr(t, rc.pbx.Remote)
	if ans := reinvite(t, rc.pbx, withDirection(t, rc.pbx.Local, "sendonly", "")); direction(ans) != "recvonly" {
		t.Errorf("hold answered a=%s, want recvonly", direction(ans))
	}
	rc.pbx.Media.SetSource(nil)

	moved, err := rtppeer.Listen(rtppeer.Config{IP: c.e.PBX.IP, Codec: rtppeer.PCMU, EventPT: 101})
	if err != nil {
		t.Fatal(err)
	}
	defer moved.Close()
	var offer []byte
	ctx, cancel := context.WithTimeout(context.Background(), peerCallLimit)
	defer cancel()
	res, err := rc.pbx.Dialog.ReinviteLate(ctx, func(o []byte) []byte {
		offer = o
		return rtppeer.Desc{IP: c.e.PBX.IP, Port: moved.Port(), Codecs: []rtppeer.Codec{rtppeer.PCMU}, EventPT: 101, Ptime: 20}.Marshal()
	})
	if err != nil {
		t.Fatalf("re-INVITE without SDP: %v", err)
	}
	if res.Status != 200 {
		t.Fatalf("re-INVITE without SDP answered %d %s, want 200", res.Status, res.Reason)
	}
	if direction(string(offer)) != "sendrecv" {
		t.Errorf("wagate's offer in the 200 says a=%s, want sendrecv (the agent could never resume):\n%s", direction(string(offer)), offer)
	}
	if got := sdpAddr(t, offer); got != first {
		t.Errorf("wagate offered from %s, want its same address %s", got, first)
	}
	sdp, err := rtppeer.ParseSDP(offer)
	if err != nil {
		t.Fatalf("offer in the 200: %v\n%s", err, offer)
	}
	if err := moved.Start(sdp.Addr(), nil); err != nil {
		t.Fatal(err)
	}
	moved.SetSource(pbxTone())
	old := rc.pbx.Media.Stats().Received
	mustHear(t, "after the resume: the caller hears the agent's new stream", rc.meta.Media, 48000, 440, 1500*time.Millisecond)
	mustHear(t, "after the resume: the new stream hears the caller", moved, 8000, 1000, 1500*time.Millisecond)
	if got := rc.pbx.Media.Stats().Received - old; got > 5 {
		t.Errorf("the old port got %d packets after the move", got)
	}
	checkNoSIPToMeta(t, c.meta, time.Now())
	hangup(t, rc.pbx, "the agent")
	waitBye(t, rc.meta, "the caller")
	c.w.waitIdle()
}

// TestReinviteBeforeAck: the agent holds with a re-INVITE whose ACK is
// lost, and resumes with its next re-INVITE at once (RFC 3261 §14.1: its
// INVITE transaction ended with the 200, so it may). The resume must be
// answered 200, not 491 for the whole 32 s wagate waits for the lost ACK,
// and the two must hear each other again.
func TestReinviteBeforeAck(t *testing.T) {
	t.Parallel()
	c := startCtl(t, wagateOpts{})
	rc := c.call(t)
	mustHear(t, "before the hold: the caller hears the agent", rc.meta.Media, 48000, 440, time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), peerCallLimit)
	defer cancel()
	// Request runs the transaction without an ACK: the 200's ACK is lost.
	res, err := rc.pbx.Dialog.Request(ctx, "INVITE", nil, "application/sdp", withDirection(t, rc.pbx.Local, "sendonly", ""))
	if err != nil || res.Status != 200 {
		t.Fatalf("hold re-INVITE: %v %v", err, res)
	}
	rc.pbx.Media.SetSource(nil)
	if ans := reinvite(t, rc.pbx, rc.pbx.Local); direction(ans) != "sendrecv" {
		t.Errorf("resume answered a=%s, want sendrecv", direction(ans))
	}
	rc.pbx.Media.SetSource(pbxTone())
	mustHear(t, "after the resume: the caller hears the agent", rc.meta.Media, 48000, 440, time.Second)
	mustHear(t, "after the resume: the agent hears the caller", rc.pbx.Media, 8000, 1000, time.Second)
	hangup(t, rc.meta, "the caller")
	waitBye(t, rc.pbx, "the agent")
	c.w.waitIdle()
}

// TestHoldLong: a hold of WAGATE_HOLD_LONG (e.g. 10m) with the default
// media timeouts and comfort noise: the call survives, the caller gets its
// 20 ms stream all along, and after the resume the two hear each other. A
// measurement of the "hold for 10 minutes", too long for make
// test: it runs only with the variable set (docs: test/README.md).
func TestHoldLong(t *testing.T) {
	v := os.Getenv("WAGATE_HOLD_LONG")
	if v == "" {
		t.Skip("set WAGATE_HOLD_LONG=10m to hold a call that long")
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 || d > time.Hour {
		t.Fatalf("WAGATE_HOLD_LONG=%q: want a duration up to 1h", v)
	}
	c := startCtl(t, wagateOpts{})
	rc := c.call(t)
	mustHear(t, "the caller hears the agent", rc.meta.Media, 48000, 440, time.Second)
	if ans := reinvite(t, rc.pbx, withDirection(t, rc.pbx.Local, "inactive", "")); direction(ans) != "inactive" {
		t.Errorf("hold answered a=%s, want inactive", direction(ans))
	}
	rc.pbx.Media.SetSource(nil)
	from := time.Now()
	time.Sleep(d)
	to := time.Now()
	checkStream(t, "held for "+d.String(), rc.meta.Media, from, to)
	reinvite(t, rc.pbx, rc.pbx.Local)
	rc.pbx.Media.SetSource(pbxTone())
	mustHear(t, "after the hold: the caller hears the agent", rc.meta.Media, 48000, 440, time.Second)
	mustHear(t, "after the hold: the agent hears the caller", rc.pbx.Media, 8000, 1000, time.Second)
	checkNoSIPToMeta(t, c.meta, time.Now())
	hangup(t, rc.meta, "the caller")
	waitBye(t, rc.pbx, "the agent")
	c.w.waitIdle()
}
