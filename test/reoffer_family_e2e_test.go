package test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/wagate/wagate/test/internal/metapeer"
)

// TestReofferOtherAddressFamily: wagate's media is bound to an IPv4
// address (media.bind_ip), and the agent's PBX re-INVITEs moving its
// media to an IPv6 address, which those sockets cannot send to. wagate
// answers 488 with a Warning naming the address, and the call goes on
// with its media as it was, audio both ways; so does one that moves only
// its RTCP (a=rtcp) to IPv6. Before, the re-INVITE got 200: every packet
// toward the agent then failed to send (logged once), the agent heard
// nothing, and the RTP timeout ended the call.
func TestReofferOtherAddressFamily(t *testing.T) {
	t.Parallel()
	c := startCtl(t, wagateOpts{})
	rc := c.call(t)
	mustHear(t, "before: the agent hears the caller", rc.pbx.Media, 8000, 1000, time.Second)
	sdp := fmt.Sprintf("v=0\r\no=- 1 2 IN IP6 ::1\r\ns=-\r\nc=IN IP6 ::1\r\nt=0 0\r\n"+
		"m=audio %d RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n", rc.pbx.Media.Port())
	ctx, cancel := context.WithTimeout(context.Background(), peerCallLimit)
	res, err := rc.pbx.Dialog.Reinvite(ctx, []byte(sdp))
	cancel()
	if err != nil {
		t.Fatalf("re-INVITE: %v", err)
	}
	if res.Status != 488 || !strings.Contains(res.Get("Warning"), "::1") {
		t.Errorf("re-INVITE to an IPv6 address answered %d %s (Warning %q), want 488 with a Warning naming ::1", res.Status, res.Reason, res.Get("Warning"))
	}
	// The same with only its RTCP moved to IPv6 (a=rtcp, RFC 3605): the
	// audio would flow, but no report could reach the agent's PBX.
	sdp = fmt.Sprintf("v=0\r\no=- 1 3 IN IP4 %s\r\ns=-\r\nc=IN IP4 %s\r\nt=0 0\r\n"+
		"m=audio %d RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=rtcp:%d IN IP6 ::1\r\na=sendrecv\r\n",
		c.e.PBX.IP, c.e.PBX.IP, rc.pbx.Media.Port(), rc.pbx.Media.Port()+1)
	ctx, cancel = context.WithTimeout(context.Background(), peerCallLimit)
	res, err = rc.pbx.Dialog.Reinvite(ctx, []byte(sdp))
	cancel()
	if err != nil {
		t.Fatalf("re-INVITE: %v", err)
	}
	if res.Status != 488 || !strings.Contains(res.Get("Warning"), "RTCP address ::1") {
		t.Errorf("re-INVITE with a=rtcp at an IPv6 address answered %d %s (Warning %q), want 488 with a Warning naming it", res.Status, res.Reason, res.Get("Warning"))
	}
	mustHear(t, "after: the agent hears the caller", rc.pbx.Media, 8000, 1000, 1500*time.Millisecond)
	mustHear(t, "after: the caller hears the agent", rc.meta.Media, 48000, 440, 1500*time.Millisecond)
	checkNoSIPToMeta(t, c.meta, time.Now())
	hangup(t, rc.pbx, "the agent")
	waitBye(t, rc.meta, "the caller")
	c.w.waitIdle()
}

// TestNATOtherFamilyAnswer: the agent's PBX is behind_nat and answers
// the UIC with c=IN IP6 ::1 while wagate's media is bound to IPv4. Its
// media comes from its SIP address (the endpoint's host), so wagate
// latches onto it as for any peer behind NAT, and the call has audio
// both ways; then the PBX re-INVITEs moving its SDP to another IPv6
// address (a phone that changed networks), gets 200, and the audio goes
// on both ways, latched afresh. Before, the answer was refused as
// unreachable (488 to the call's 200, the call failed), and so was the
// re-INVITE.
func TestNATOtherFamilyAnswer(t *testing.T) {
	t.Parallel()
	c := startCtl(t, wagateOpts{PBXExtra: ", behind_nat: true"})
	ctx, cancel := context.WithTimeout(context.Background(), peerCallLimit)
	defer cancel()
	answered := answerAsync(ctx, c.pbx, metapeer.AnswerSpec{SDPAddr: "[::1]:40000"})
	mc, err := c.meta.Call(ctx, metapeer.CallSpec{Target: c.w.SIPAddr, To: businessNumber, From: waUser})
	if err != nil {
		t.Fatalf("UIC answered by a PBX behind NAT with an IPv6 c=: %v", err)
	}
	pc := waitAnswer(t, answered, "the PBX")
	if !strings.Contains(string(pc.Local), "c=IN IP6 ::1\r\n") {
		t.Fatalf("the PBX's answer does not signal ::1:\n%s", pc.Local)
	}
	mc.Media.SetSource(metaTone())
	pc.Media.SetSource(pbxTone())
	mustHear(t, "the agent hears the caller", pc.Media, 8000, 1000, time.Second)
	mustHear(t, "the caller hears the agent", mc.Media, 48000, 440, time.Second)

	sdp := "v=0\r\no=- 1 2 IN IP6 2001:db8::5\r\ns=-\r\nc=IN IP6 2001:db8::5\r\nt=0 0\r\n" +
		"m=audio 40002 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
	rctx, rcancel := context.WithTimeout(context.Background(), peerCallLimit)
	res, err := pc.Dialog.Reinvite(rctx, []byte(sdp))
	rcancel()
	if err != nil {
		t.Fatalf("re-INVITE: %v", err)
	}
	if res.Status != 200 {
		t.Fatalf("re-INVITE of the PBX behind NAT to another IPv6 address answered %d %s (Warning %q), want 200", res.Status, res.Reason, res.Get("Warning"))
	}
	mustHear(t, "after the re-INVITE: the agent hears the caller", pc.Media, 8000, 1000, 1500*time.Millisecond)
	mustHear(t, "after the re-INVITE: the caller hears the agent", mc.Media, 48000, 440, 1500*time.Millisecond)
	if st := pc.Media.Stats(); st.WrongSource != 0 {
		t.Errorf("the PBX got %d packets from an address other than wagate's (last %s)", st.WrongSource, st.LastWrongSource)
	}
	checkNoSIPToMeta(t, c.meta, time.Now())
	hangup(t, pc, "the agent")
	waitBye(t, mc, "the caller")
	c.w.waitIdle()
}
