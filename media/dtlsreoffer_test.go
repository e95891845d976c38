package media

import (
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestDTLSReofferKeepsAssociation: the dtls peer of a leg wagate offered
// (X's B: actpass, Y answered active) sends a re-INVITE. An offer that
// keeps its ICE credentials and certificate gets an answer naming
// wagate's current DTLS role (passive here), not the actpass of wagate's
// first offer, which an answer must not carry (RFC 5763 §5) and which the
// peer refuses. An offer that restarts ICE, changes the certificate or
// swaps the DTLS roles would need a new ICE run and DTLS association,
// which a keyed leg does not do: it is refused (488) instead of answered
// as if accepted, and the call's audio goes on.
func TestDTLSReofferKeepsAssociation(t *testing.T) {
	m := newDTLSManager(t, 8, 5*time.Second, 30*time.Second)
	s := newB2B(t, m, nil, nil)
	if !flow(t, s.p1, s.xA, s.p2, 5*time.Second) {
		t.Fatal("no audio across the dtls leg")
	}
	// Y's re-offer: its answer, as an offer (actpass, the usual subsequent
	// offer of a stack that keeps the association).
	reoffer := strings.Replace(string(s.answerXB), "a=setup:active", "a=setup:actpass", 1)
	ans, _, err := s.x.AcceptOffer(SideB, []byte(reoffer))
	if err != nil {
		t.Fatalf("re-offer keeping the association refused: %v", err)
	}
	d, err := ParseSDP(ans)
	if err != nil {
		t.Fatal(err)
	}
	p, err := parseSecure(d, &d.Media[0], false)
	if err != nil {
		t.Fatalf("wagate's answer to the re-offer is not a valid dtls answer: %v\n%s", err, ans)
	}
	if p.setup != setupPassive {
		t.Errorf("answer's a=setup:%s, want passive (X is the DTLS server)\n%s", p.setup, ans)
	}
	if p.ufrag != iceUfrag(t, s.x.LocalOfferB()) {
		t.Errorf("answer's ICE ufrag changed: %s", ans)
	}
	// Y's role stated explicitly: active keeps it.
	if _, _, err := s.x.AcceptOffer(SideB, s.answerXB); err != nil {
		t.Errorf("re-offer with a=setup:active (Y's role) refused: %v", err)
	}

	other, err := NewCertificate()
	if err != nil {
		t.Fatal(err)
	}
	for name, change := range map[string]func(string) string{
		"ICE restart (new ufrag and pwd)": func(b string) string {
			b = regexp.MustCompile(`a=ice-ufrag:\S+`).ReplaceAllString(b, "a=ice-ufrag:rst1")
			return regexp.MustCompile(`a=ice-pwd:\S+`).ReplaceAllString(b, "a=ice-pwd:restartrestartrestart12")
		},
		"new certificate": func(b string) string {
			return regexp.MustCompile(`a=fingerprint:sha-256 [0-9A-F:]+`).ReplaceAllString(b, "a=fingerprint:"+other.Fingerprint)
		},
		"roles swapped (peer wants to be server)": func(b string) string {
			return strings.Replace(b, "a=setup:actpass", "a=setup:passive", 1)
		},
	} {
		_, _, err := s.x.AcceptOffer(SideB, []byte(change(reoffer)))
		if !errors.Is(err, ErrBadSDP) {
			t.Errorf("%s: re-offer gave err %v, want ErrBadSDP (488)", name, err)
		}
	}
	if !flow(t, s.p1, s.xA, s.p2, 2*time.Second) || !flow(t, s.p2, s.yB, s.p1, 2*time.Second) {
		t.Fatalf("audio stopped after the re-offers; stats X %+v Y %+v", s.x.Stats(), s.y.Stats())
	}
	select {
	case err := <-s.failX:
		t.Errorf("X ended with %v", err)
	default:
	}
}

func iceUfrag(t *testing.T, body []byte) string {
	t.Helper()
	m := regexp.MustCompile(`a=ice-ufrag:(\S+)`).FindSubmatch(body)
	if m == nil {
		t.Fatalf("no a=ice-ufrag in\n%s", body)
	}
	return string(m[1])
}
