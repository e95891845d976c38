package b2bua

import (
	"bytes"
	"testing"

	"github.com/emiago/sipgo/sip"
)

// FuzzJournalRead: whatever the journal file holds at start-up (its
// lines carry header values and URIs that peers sent: Via, From, To,
// Record-Route, Contact), reading it and building what the restart sends
// from it — the BYEs of calls left up, the CANCELs and ACKs of INVITEs
// left ringing, the 503 to a caller left unanswered, the records left
// unstored — never panics, and every CANCEL, ACK and 503 it builds is a
// message sipgo parses back: a line it cannot build one from fails at
// the restart, logged, rather than going out as a message no peer reads
// (byeRestored checks its BYE so too). Run:
// go test -run '^$' -fuzz FuzzJournalRead -parallel 1 ./b2bua/
func FuzzJournalRead(f *testing.F) {
	c := testJournalCall("c1")
	c.AInvite = &journalIncoming{Via: []string{"SIP/2.0/UDP 127.0.0.2:5060;branch=z9hG4bK-a;received=127.0.0.2;rport=5060"},
		From: "<sip:+447700900123@wa.meta.vc>;tag=m1", To: "<sip:+15550100001@127.0.0.1>", CSeq: 1, Source: "127.0.0.2:5060", Transport: "UDP"}
	up, err := appendUpLine(nil, &c)
	if err != nil {
		f.Fatal(err)
	}
	inv := testJournalInvite("c1", "z9hG4bK-1")
	var seed []byte
	for _, l := range [][]byte{up, appendInviteLine(nil, &inv), appendInviteEndLine(nil, "z9hG4bK-0"),
		appendDownLine(nil, "c0", []byte(`{"call_id":"c0","direction":"inbound","outcome":"answered"}`))} {
		f.Add(l)
		seed = append(append(seed, l...), '\n')
	}
	f.Add(seed)
	f.Add(append(seed, `{"op":"down","id":"c1`...))
	f.Add([]byte(`{"op":"up","call":{"id":"x","answered":"2026-01-01T00:00:00Z","a":{"call_id":"a","local_uri":"sip:a@b","remote_uri":"sip:c@d","remote_target":"sip:c@d","route_set":["sip:r"]}}}`))
	f.Add([]byte(`{"op":"inv","inv":{"branch":"b","uri":"sip:x@y","via":"SIP/2.0/UDP h\r\nX: y","from":"<sip:a@b>;tag=1","to":"<sip:c@d>","call_id":"i","cseq":4294967295}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		j := &Journal{live: make(map[string]journalCall), ended: make(map[string][]byte),
			invites: make(map[string]journalInvite), invitesOf: make(map[string][]string)}
		j.read(bytes.NewReader(data))
		for _, c := range j.live {
			for _, d := range []journalDialog{c.A, c.B} {
				l, ok := d.restore("a")
				if !ok || d.CallID == "" {
					continue // hangUpLeftCalls sends no BYE then
				}
				// byeRestored sends it only if it parses back.
				_ = reparses(l.newRequest(sip.BYE, nil))
			}
			if c.AInvite != nil {
				if res, err := c.AInvite.response(c.A.CallID, c.A.LocalTag, "wagate"); err == nil {
					if _, err := sip.ParseMessage([]byte(res.String())); err != nil {
						t.Fatalf("the restart's 503 does not parse: %v\n%q", err, res.String())
					}
				}
			}
		}
		for _, inv := range j.invites {
			for _, m := range []sip.RequestMethod{sip.CANCEL, sip.ACK} {
				req, err := inv.request(m, "")
				if err != nil {
					continue
				}
				if _, err := sip.ParseMessage([]byte(req.String())); err != nil {
					t.Fatalf("the restart's %s does not parse: %v\n%q", m, err, req.String())
				}
			}
		}
		j.prevEnded = append([]string(nil), j.endedFIFO...)
		_ = j.leftEnded()
	})
}
