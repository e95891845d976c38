package b2bua

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/wagate/wagate/configs"
	sipedge "github.com/wagate/wagate/sip"
)

type fakeKeying struct{ refused int }

func (f *fakeKeying) Mismatch(string, string) (string, bool) { return "dtls", true }
func (f *fakeKeying) Refused(string)                         { f.refused++ }

// A call placed despite Meta's other keying is logged on the line of that
// call (the caller's logger, which names it), not an anonymous one.
func TestKeyingMismatchLoggedWithTheCall(t *testing.T) {
	var s Engine
	k := &fakeKeying{}
	s.SetMetaKeying(k)
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil)).With("sip_call_id", "abc@dialer")
	dec := &sipedge.Decision{BEP: &configs.Endpoint{Name: "meta", Kind: configs.KindWhatsApp, MediaEncryption: "sdes"},
		Number: &configs.Number{Number: "+15550100001", PhoneNumberID: "100000000000001"}}
	if rej := s.checkKeying(dec, log); rej != nil || k.refused != 0 {
		t.Fatalf("refused %v (%d) without refuse_keying_mismatch", rej, k.refused)
	}
	if out := buf.String(); !strings.Contains(out, "placed although Meta reported another keying") || !strings.Contains(out, "sip_call_id=abc@dialer") {
		t.Errorf("log line does not name the call:\n%s", out)
	}
}
