package test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/wagate/wagate/test/internal/metapeer"
	"github.com/wagate/wagate/test/internal/rtppeer"
)

// DTMF end to end: RFC 4733 telephone-events sent on one leg arrive on the
// other, both ways, each digit once (one event per digit however many
// packets and end retransmissions carry it), ended, and with the payload
// type the receiving leg negotiated — not the sender's.

const (
	dtmfLength = 100 * time.Millisecond
	dtmfGap    = 80 * time.Millisecond
)

// sendDigits queues digits on a call's media and waits (bounded) until the
// peer has sent them.
func sendDigits(t *testing.T, c *metapeer.Call, digits string) {
	t.Helper()
	if err := c.Media.SendDTMF(digits, dtmfLength, dtmfGap); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(peerCallLimit)
	for c.Media.DTMFPending() {
		if time.Now().After(deadline) {
			t.Errorf("the peer had not sent all of %q %v after queueing them (a stalled machine; the receiver's check follows)", digits, peerCallLimit)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkDigits asserts that c received exactly digits, one event each, all
// ended and on the payload type c's own SDP negotiated.
func checkDigits(t *testing.T, who string, c *metapeer.Call, digits string) {
	t.Helper()
	// A wait for the digits, not a timing: the sender has sent them all.
	deadline := time.Now().Add(10 * time.Second)
	for len(c.Media.Events()) < len(digits) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // late duplicates would show now
	evs := c.Media.Events()
	if got := c.Media.Digits(); got != digits {
		var desc []string
		for _, e := range evs {
			desc = append(desc, fmt.Sprintf("%c(pt %d ts %d, %d pkts)", e.Digit, e.PT, e.Timestamp, e.Packets))
		}
		t.Errorf("%s received digits %q, want %q each once [%s]", who, got, digits, strings.Join(desc, " "))
	}
	want := c.Media.Config().EventPT
	for _, e := range evs {
		if e.PT != want {
			t.Errorf("%s: digit %c came with payload type %d, want %d (its leg's telephone-event)", who, e.Digit, e.PT, want)
		}
		if !e.Ended {
			t.Errorf("%s: digit %c never got an end packet", who, e.Digit)
		}
		if e.Duration == 0 {
			t.Errorf("%s: digit %c has duration 0", who, e.Digit)
		}
	}
}

// TestDTMFUICBothWays: Meta (SRTP, telephone-event 126) ↔ wagate ↔ a Go
// PBX (PCMU) that answers telephone-event as 101 whatever wagate offered,
// and sends and expects 101 (RFC 3264 §6.1 lets an answer renumber a
// dynamic payload type; PBXs that always use 101 do): wagate must remap
// 126 ↔ 101.
func TestDTMFUICBothWays(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := e.startWagate(wagateOpts{MetaEncryption: "sdes"})
	meta := newGoPeer(t, e.Meta, metapeer.Config{})
	pbx := newGoPeer(t, e.PBX, metapeer.Config{Profile: metapeer.ProfileG711})

	ctx, cancel := context.WithTimeout(context.Background(), peerCallLimit)
	defer cancel()
	answered := answerAsync(ctx, pbx, metapeer.AnswerSpec{OwnEventPT: true})
	mcall, err := meta.Call(ctx, metapeer.CallSpec{Target: w.SIPAddr, To: businessNumber, From: waUser})
	if err != nil {
		t.Fatalf("UIC: %v", err)
	}
	pcall := waitAnswer(t, answered, "the PBX")
	if pcall.Media.Config().EventPT != 101 {
		t.Fatalf("wagate's offer to the PBX has no telephone-event:\n%s", pcall.Remote)
	}
	t.Logf("telephone-event: %d on the WhatsApp leg, %d on the PBX leg", mcall.Media.Config().EventPT, pcall.Media.Config().EventPT)
	// Audio on both sides too, as in a real call (events interrupt it).
	mcall.Media.SetSource(rtppeer.NewTone(440, 0.1, 48000))
	pcall.Media.SetSource(rtppeer.NewTone(440, 0.1, 8000))
	time.Sleep(300 * time.Millisecond)

	sendDigits(t, mcall, "159#")
	sendDigits(t, pcall, "*07")
	checkDigits(t, "the PBX", pcall, "159#")
	checkDigits(t, "the WhatsApp user", mcall, "*07")

	hangup(t, mcall, "meta")
	waitBye(t, pcall, "the PBX")
	s := w.waitIdle()
	w.expectCounts(s, 1, 1)
}

// TestDTMFBICBothWays: a Go dialer whose telephone-event is payload type
// 96 ↔ wagate ↔ Meta (SRTP, the payload type wagate offered).
func TestDTMFBICBothWays(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := e.startWagate(wagateOpts{MetaEncryption: "sdes", MetaCodecs: bicMetaCodecs})
	meta := newGoPeer(t, e.Meta, metapeer.Config{})
	dialer := newGoPeer(t, e.Dialer, metapeer.Config{Profile: metapeer.ProfileG711, EventPT: 96})

	ctx, cancel := context.WithTimeout(context.Background(), peerCallLimit)
	defer cancel()
	answered := answerAsync(ctx, meta, metapeer.AnswerSpec{})
	dcall, err := dialer.Call(ctx, metapeer.CallSpec{Target: w.SIPAddr, To: waUser, From: businessNumber})
	if err != nil {
		t.Fatalf("BIC: %v", err)
	}
	mcall := waitAnswer(t, answered, "the Meta peer")
	if mcall.Media.Config().EventPT == 0 {
		t.Fatalf("wagate's offer to Meta has no telephone-event:\n%s", mcall.Remote)
	}
	t.Logf("telephone-event: %d on the dialer leg, %d on the WhatsApp leg", dcall.Media.Config().EventPT, mcall.Media.Config().EventPT)
	dcall.Media.SetSource(rtppeer.NewTone(440, 0.1, 8000))
	mcall.Media.SetSource(rtppeer.NewTone(440, 0.1, 48000))
	time.Sleep(300 * time.Millisecond)

	sendDigits(t, dcall, "2580")
	sendDigits(t, mcall, "#9")
	checkDigits(t, "the WhatsApp user", mcall, "2580")
	checkDigits(t, "the dialer", dcall, "#9")

	hangup(t, dcall, "dialer")
	waitBye(t, mcall, "the Meta peer")
	s := w.waitIdle()
	w.expectCounts(s, 1, 1)
}
