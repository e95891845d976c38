package test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/wagate/wagate/test/internal/metapeer"
	"github.com/wagate/wagate/test/internal/sipua"
)

// TestCrashAfterSemiAttendedHandover: wagate dies while a semi-attended
// transfer's consulted user rings, after the agent's consultation INVITE
// was ended with 487. The restart cancels the user's phone and hangs up
// the first call, and must not answer the consultation INVITE a second
// time: before, its journal line still held that INVITE as unanswered,
// so the dialer got a 503 after its 487 and the record said 503.
func TestCrashAfterSemiAttendedHandover(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// The dialer may transfer (to a pbx endpoint; a Replaces needs no
	// target of its own).
	p2 := e.newPeer("pbx2", 5)
	o := wagateOpts{MetaCodecs: bicMetaCodecs, MetaEncryption: "sdes", APIExtra: tokenAPI,
		DialerExtra: `, transfer: {allow: [{endpoint: pbx2, users: ["2*"]}]}`}
	o.EndpointsExtra += fmt.Sprintf("\n  - {name: pbx2, kind: pbx, host: %s, port: %d, transport: udp, source_cidrs: [%s/32], codecs: [PCMU, PCMA]}",
		p2.IP, p2.Port, p2.IP)
	w := e.startWagate(o)
	meta := newGoPeer(t, e.Meta, metapeer.Config{})
	dialer := newGoPeer(t, e.Dialer, metapeer.Config{Profile: metapeer.ProfileG711})
	ctx, cancel := context.WithTimeout(context.Background(), peerCallLimit)
	defer cancel()
	answered := answerAsync(ctx, meta, metapeer.AnswerSpec{})
	dc, err := dialer.Call(ctx, metapeer.CallSpec{Target: w.SIPAddr, To: waUser, From: businessNumber})
	if err != nil {
		t.Fatalf("the first BIC: %v", err)
	}
	waitAnswer(t, answered, "the first user")
	release := make(chan struct{})
	defer close(release)
	ringing := answerAsync(ctx, meta, metapeer.AnswerSpec{RingUntil: release})
	go func() {
		_, _ = dialer.Call(ctx, metapeer.CallSpec{Target: w.SIPAddr, To: "+447700900124", From: businessNumber})
	}()
	var early *sipua.Msg
	for deadline := time.Now().Add(replyLimit); early == nil; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the consultation got no 180")
		}
		_, early = firstRecv(dialer.UA, func(m *sipua.Msg) bool { return !m.Request && m.Status == 180 })
	}
	cid := early.Get("Call-ID")
	if code, warn := refer(t, dc.Dialog, replacesURI(e.WagateIP, cid, early.ToTag(), early.FromTag())); code != 202 {
		t.Fatalf("REFER with Replaces of the ringing consultation: %d %s, want 202", code, warn)
	}
	finals := func() []int {
		var out []int
		for _, ev := range dialer.UA.Trace() {
			if !ev.Sent && !ev.Msg.Request && ev.Msg.Status >= 300 && ev.Msg.Get("Call-ID") == cid {
				out = append(out, ev.Msg.Status)
			}
		}
		return out
	}
	for deadline := time.Now().Add(replyLimit); len(finals()) == 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the consultation INVITE got no 487")
		}
	}
	w.kill()
	w2 := e.startWagate(o)
	select {
	case r := <-ringing:
		if r.err == nil {
			t.Fatal("the consulted user answered; want its INVITE cancelled by the restart")
		}
	case <-time.After(replyLimit):
		t.Fatal("the consulted user's phone was not cancelled after the restart")
	}
	// Both calls' records are written after their CANCELs, BYEs and
	// 503s went out.
	w2.waitLogCount("call ended", 2, replyLimit)
	time.Sleep(300 * time.Millisecond) // loopback delivery of what was sent
	if f := finals(); len(f) != 1 || f[0] != 487 {
		t.Errorf("the consultation INVITE got final responses %v, want only its 487", f)
	}
}
