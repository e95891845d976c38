package test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
