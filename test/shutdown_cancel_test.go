package test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wagate/wagate/test/internal/metapeer"
	"github.com/wagate/wagate/test/internal/sipua"
)

// TestShutdownCancelsUnansweredLegs: wagate is stopped (SIGTERM, a short
// -drain-timeout) while an INVITE it sent has had no final response —
// an agent's phone for a WhatsApp user's call (UIC), the WhatsApp user's
// for a dialer's (BIC) — and started again: the callee gets a CANCEL for
// that INVITE (its branch, Call-ID, CSeq). A callee that had sent no 1xx
// could not be cancelled before the stop (RFC 3261 §9.1), and one whose
// CANCEL went unanswered may never have had it. Before, the call's end
// at the drain dropped the INVITE from the journal: the phone rang on
// until its own ring time, and whoever answered got a dead call.
func TestShutdownCancelsUnansweredLegs(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		bic   bool
		quiet bool
	}{{"UIC, agent sends no 1xx", false, true}, {"UIC, CANCEL lost", false, false}, {"BIC, Meta sends no 1xx", true, true}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			o := wagateOpts{Args: []string{"-drain-timeout", "1s"}}
			w := e.startWagate(o)
			callerPeer, calleePeer, ruser, fromUser := e.Meta, e.PBX, businessNumber, waUser
			if tc.bic {
				callerPeer, calleePeer, ruser, fromUser = e.Dialer, e.Meta, waUser, businessNumber
			}
			callee := startRingingUAS(t, calleePeer, calleeMode{quiet: tc.quiet, losesCancels: !tc.quiet})
			caller := newRawPeer(t, callerPeer.IP, w)
			sdp := fmt.Sprintf("v=0\r\no=- 1 1 IN IP4 %s\r\ns=-\r\nc=IN IP4 %s\r\nt=0 0\r\nm=audio %d RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n",
				callerPeer.IP, callerPeer.IP, callerPeer.MediaPort)
			if err := caller.send([]byte(fmt.Sprintf("INVITE sip:%s@%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK-shut-caller;rport\r\nFrom: <sip:%s@%s>;tag=caller\r\nTo: <sip:%s@%s>\r\n"+
				"Call-ID: shut-caller@%s\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContact: <sip:caller@%s>\r\nContent-Type: application/sdp\r\nContent-Length: %d\r\n\r\n%s",
				ruser, w.SIPAddr, caller.local(), fromUser, callerPeer.IP, ruser, w.SIPAddr, callerPeer.IP, caller.local(), len(sdp), sdp))); err != nil {
				t.Fatal(err)
			}
			inv := callee.wait(t, "INVITE", 1, replyLimit)[0]
			if !tc.quiet {
				// wagate has the 180 once it tells the caller.
				caller.collect(replyLimit, func(m sipMsg) bool { return strings.HasPrefix(m.StartLine(), "SIP/2.0 18") })
			}
			w.terminate()
			before := len(callee.wait(t, "CANCEL", 0, 0))
			if !tc.quiet && before == 0 {
				t.Fatal("the drain sent the ringing callee no CANCEL")
			}
			callee.losesCancels.Store(false)

			e.startWagate(o)
			cancel := callee.wait(t, "CANCEL", before+1, replyLimit)[before]
			checkCancelMatches(t, tc.name, inv, cancel)
			// The 487 to the restart's CANCEL is ACKed in the INVITE's
			// transaction.
			ack := callee.wait(t, "ACK", 1, replyLimit)[0]
			if agentHeader(ack, "Via") != agentHeader(inv, "Via") {
				t.Errorf("ACK of the 487 not in the INVITE's transaction (Via %q, INVITE's %q)", agentHeader(ack, "Via"), agentHeader(inv, "Via"))
			}
		})
	}
}

// TestShutdownLeavesNoEndedInvite: a call whose caller gives up while
// the agent rings (wagate cancels the agent, which answers 487), then a
// clean stop: the journal holds no INVITE for the next start to cancel.
// Keeping the INVITEs a stop catches unanswered must not keep those that
// ended: a CANCEL at the next start would reach a callee whose phone had
// stopped, or one that had answered. (A guard: it passed before too. The
// end of an INVITE that comes after its call's "down" is
// TestJournalInvitesKeptAtStop's.)
func TestShutdownLeavesNoEndedInvite(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := e.startWagate(wagateOpts{Args: []string{"-drain-timeout", "1s"}})
	callee := startRingingUAS(t, e.PBX, calleeMode{})
	caller := newRawPeer(t, e.Meta.IP, w)
	sdp := fmt.Sprintf("v=0\r\no=- 1 1 IN IP4 %s\r\ns=-\r\nc=IN IP4 %s\r\nt=0 0\r\nm=audio %d RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n",
		e.Meta.IP, e.Meta.IP, e.Meta.MediaPort)
	head := fmt.Sprintf("sip:%s@%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK-ended-caller;rport\r\nFrom: <sip:%s@%s>;tag=caller\r\nTo: <sip:%s@%s>\r\n"+
		"Call-ID: ended-caller@%s\r\nMax-Forwards: 70\r\n", businessNumber, w.SIPAddr, caller.local(), waUser, e.Meta.IP, businessNumber, w.SIPAddr, e.Meta.IP)
	if err := caller.send([]byte(fmt.Sprintf("INVITE %sCSeq: 1 INVITE\r\nContact: <sip:caller@%s>\r\nContent-Type: application/sdp\r\nContent-Length: %d\r\n\r\n%s",
		head, caller.local(), len(sdp), sdp))); err != nil {
		t.Fatal(err)
	}
	callee.wait(t, "INVITE", 1, replyLimit)
	caller.collect(replyLimit, func(m sipMsg) bool { return strings.HasPrefix(m.StartLine(), "SIP/2.0 18") })
	if err := caller.send([]byte("CANCEL " + head + "CSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	callee.wait(t, "CANCEL", 1, replyLimit)
	callee.wait(t, "ACK", 1, replyLimit) // of its 487: the INVITE ended
	w.waitIdle()
	w.terminate()
	b, err := os.ReadFile(filepath.Join(e.dir, "data", "live-calls.journal"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), `"op":"inv"`) {
		t.Errorf("the journal keeps an INVITE that ended for the next start to cancel:\n%s", b)
	}
}

// TestShutdownAnsweredCancelNotRepeated: the drain of a clean stop
// cancels an agent's ringing phone, the agent answers the CANCEL 200 but
// its 487 has not come when wagate exits. The next start sends it no
// second CANCEL (the first was taken: RFC 3261 §9.2 has the callee end
// the INVITE with 487), and ACKs the 487 when it comes, in the INVITE's
// transaction, so the agent does not resend it for 32 s. Before, the
// journal kept the INVITE as not cancelled and the restart CANCELled it
// again.
func TestShutdownAnsweredCancelNotRepeated(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	o := wagateOpts{Args: []string{"-drain-timeout", "1s"}}
	w := e.startWagate(o)
	callee := startRingingUAS(t, e.PBX, calleeMode{holds487: true})
	caller := newRawPeer(t, e.Meta.IP, w)
	sdp := fmt.Sprintf("v=0\r\no=- 1 1 IN IP4 %s\r\ns=-\r\nc=IN IP4 %s\r\nt=0 0\r\nm=audio %d RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n",
		e.Meta.IP, e.Meta.IP, e.Meta.MediaPort)
	if err := caller.send([]byte(fmt.Sprintf("INVITE sip:%s@%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK-held-caller;rport\r\nFrom: <sip:%s@%s>;tag=caller\r\nTo: <sip:%s@%s>\r\n"+
		"Call-ID: held-caller@%s\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContact: <sip:caller@%s>\r\nContent-Type: application/sdp\r\nContent-Length: %d\r\n\r\n%s",
		businessNumber, w.SIPAddr, caller.local(), waUser, e.Meta.IP, businessNumber, w.SIPAddr, e.Meta.IP, caller.local(), len(sdp), sdp))); err != nil {
		t.Fatal(err)
	}
	inv := callee.wait(t, "INVITE", 1, replyLimit)[0]
	caller.collect(replyLimit, func(m sipMsg) bool { return strings.HasPrefix(m.StartLine(), "SIP/2.0 18") })
	w.terminate()
	if n := len(callee.wait(t, "CANCEL", 0, 0)); n != 1 {
		t.Fatalf("the drain sent the ringing agent %d CANCELs, want 1", n)
	}

	w2 := e.startWagate(o)
	const kept = "INVITE cancelled before the previous run stopped: no second CANCEL; its 487 is ACKed"
	for deadline := time.Now().Add(replyLimit); ; time.Sleep(20 * time.Millisecond) {
		if n := len(callee.wait(t, "CANCEL", 0, 0)); n > 1 {
			t.Fatalf("the restart sent the agent a second CANCEL (%d in all); its first was answered 200 before the stop", n)
		}
		if b, _ := os.ReadFile(w2.logPath); strings.Contains(string(b), kept) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the restart did not take the cancelled INVITE from the journal (no %q line)", kept)
		}
	}
	callee.send487(t)
	ack := callee.wait(t, "ACK", 1, replyLimit)[0]
	if agentHeader(ack, "Via") != agentHeader(inv, "Via") || !strings.Contains(agentHeader(ack, "To"), "tag=ringing") {
		t.Errorf("ACK of the late 487 not in the INVITE's transaction (Via %q, INVITE's %q):\n%s", agentHeader(ack, "Via"), agentHeader(inv, "Via"), ack)
	}
	if n := len(callee.wait(t, "CANCEL", 0, 0)); n != 1 {
		t.Errorf("the agent got %d CANCELs in all, want 1", n)
	}
}

// TestClickToCallGracefulStopWhileUserRings: wagate is stopped (SIGTERM,
// -drain-timeout 1s) while a click-to-call's agent is up and the INVITE
// to the WhatsApp user has no final response. As docs/security.md has it,
// the drain hangs up the agent (BYE); the user's INVITE is cancelled by
// the drain once Meta has sent a provisional response, and otherwise
// (RFC 3261 §9.1: no CANCEL before a 1xx) kept in the journal and
// cancelled by the next start. Either way it gets exactly one CANCEL, of
// its own INVITE (matched by branch), so the user's phone does not ring
// on for a call nobody is on.
func TestClickToCallGracefulStopWhileUserRings(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		rings bool // Meta sends 180 (else nothing at all, not even 100)
	}{{"Meta sends no 1xx", false}, {"Meta rings", true}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var o wagateOpts
			e, w, rx, meta, agent := c2cEnvMeta(t, "", metapeer.Config{NoTrying: !tc.rings}, func(_ *env, opts *wagateOpts) {
				opts.Args = append(opts.Args, "-drain-timeout", "1s")
				o = *opts
			})
			grantPermission(t, e, waUser, "temporary")
			ctx, cancel := context.WithTimeout(context.Background(), peerCallLimit)
			defer cancel()
			var (
				acall *metapeer.Call
				in    *sipua.Incoming
			)
			if tc.rings {
				_, acall, in = c2cUserRinging(ctx, t, e, rx, meta, agent)
			} else {
				agentAns := answerAsync(ctx, agent, metapeer.AnswerSpec{})
				startC2C(t, e, c2cBody(""), "")
				acall = waitAnswer(t, agentAns, "the agent")
				var err error
				if in, err = meta.UA.Accept(ctx); err != nil {
					t.Fatal(err)
				}
			}
			cancels := func() int {
				n := 0
				for _, ev := range meta.UA.Trace() {
					if !ev.Sent && ev.Msg.Request && ev.Msg.Method == "CANCEL" {
						n++
					}
				}
				return n
			}
			w.terminate()
			waitBye(t, acall, "the agent")
			switch n := cancels(); {
			case tc.rings && n != 1:
				t.Fatalf("the drain sent the ringing user %d CANCELs, want 1", n)
			case !tc.rings && n != 0:
				t.Fatalf("the drain sent %d CANCELs to an INVITE Meta had sent no provisional response to (RFC 3261 §9.1)", n)
			}
			// The drain's CANCEL was answered; the 487 may have come after
			// the attempt returned: the journal keeps the INVITE marked
			// cancelled, not to be cancelled again.
			b, err := os.ReadFile(filepath.Join(e.dir, "data", "live-calls.journal"))
			if err != nil {
				t.Fatal(err)
			}
			kept, cancelled := strings.Count(string(b), `"op":"inv"`), strings.Count(string(b), `"cancelled":true`)
			if kept != 1 && !tc.rings || tc.rings && kept != cancelled {
				t.Fatalf("journal after the stop keeps %d INVITEs (%d marked cancelled), want the user's (%v), not marked cancelled (%v):\n%s", kept, cancelled, !tc.rings, tc.rings, b)
			}

			w2 := e.startWagate(o)
			if !tc.rings {
				select {
				case <-in.Cancelled(): // matched by the INVITE's branch
				case <-time.After(replyLimit):
					t.Fatalf("the user's INVITE, with no provisional response at the stop, was not cancelled within %v of the restart", replyLimit)
				}
			}
			if cancelled > 0 {
				w2.waitLogCount("INVITE cancelled before the previous run stopped: no second CANCEL; its 487 is ACKed", 1, replyLimit)
			}
			select {
			case <-in.Cancelled():
			default:
				t.Fatal("the user's INVITE was never cancelled")
			}
			if n := cancels(); n != 1 {
				t.Errorf("the user's INVITE got %d CANCELs in all, want 1", n)
			}
		})
	}
}
