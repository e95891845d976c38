package b2bua

import (
	"bytes"
	"encoding/json"
	"github.com/emiago/sipgo/sip"
	"github.com/wagate/wagate/events"
	"testing"
	"time"
)

// TestJournalLineEncoding: the hand-written journal lines are the bytes
// encoding/json writes, so journals written before and after read alike.
func TestJournalLineEncoding(t *testing.T) {
	created := time.Date(2026, 12, 2, 21, 30, 1, 123456789, time.UTC)
	dlg := journalDialog{CallID: "abc@10.0.0.1", LocalURI: "<sip:+15550100001@wagate>", LocalTag: "t1",
		RemoteURI: "<sip:+447700900123@meta>", RemoteTag: "r1", RemoteTarget: "sip:a@1.2.3.4:5060;transport=tls",
		RouteSet: []string{"<sip:p1;lr>", "<sip:p2;lr>"}, CSeq: 4294967295, Transport: "TLS"}
	cases := []journalCall{
		{},
		{ID: "c1", Direction: "inbound", AEndpoint: "meta", BEndpoint: "pbx", Created: created, Answered: created.Add(time.Second), A: dlg},
		{ID: "c2", Direction: "outbound", AEndpoint: "pbx", BEndpoint: "meta", Business: "+15550100001", PNID: "1000",
			WACallID: "wacid.HBgL", User: "1001", Created: created.In(time.FixedZone("x", -5*3600-30*60)), B: dlg},
		{ID: "quote\" back\\ <tag> & \u2028 é \x01 \xff", AEndpoint: "ünï", B: journalDialog{RouteSet: []string{}}},
		{ID: "c3", Created: created, Answered: created.Add(2 * time.Second), Ringing: created.Add(time.Second), BUser: "1001",
			Hunt: "sales", Origin: "click_to_call", Permission: "allowed", AfterHours: true, CampaignID: "spring <2026>",
			CallbackData: "crm:\"4711\"", RecordingID: "2026/12/02/a%2Fb.wav", AUp: true, A: dlg},
		{ID: "c4", Created: created, A: dlg, AInvite: &journalIncoming{Via: []string{"SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK-1;rport=5060;received=10.0.0.1", "SIP/2.0/UDP p;branch=x"},
			From: `"A <b>" <sip:+447700900123@meta>;tag=f`, To: "<sip:+15550100001@wagate>", CSeq: 7, Source: "10.0.0.1:5060", Transport: "UDP"}},
		{ID: "c5", AInvite: &journalIncoming{}},
	}
	for _, c := range cases {
		want, err := json.Marshal(journalLine{Op: "up", Call: &c})
		if err != nil {
			t.Fatal(err)
		}
		got, err := appendUpLine(nil, &c)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("up line (err %v)\n got %s\nwant %s", err, got, want)
		}
		want, _ = json.Marshal(journalLine{Op: "down", ID: c.ID})
		if got := appendDownLine(nil, c.ID, nil); !bytes.Equal(got, want) {
			t.Errorf("down line\n got %s\nwant %s", got, want)
		}
		if c.ID != "" {
			cdr, _ := json.Marshal(events.CDR{CallID: c.ID, Cause: "BYE from \"a\"", Outcome: events.Answered})
			want, _ = json.Marshal(journalLine{Op: "down", ID: c.ID, CDR: cdr})
			if got := appendDownLine(nil, c.ID, cdr); !bytes.Equal(got, want) {
				t.Errorf("down line with its record\n got %s\nwant %s", got, want)
			}
		}
	}
	for _, inv := range []journalInvite{{}, testJournalInvite("c1", "z9hG4bK-1"),
		{Branch: "quote\" <&>", Call: "é", Via: "\x01", Route: []string{}, Dest: "\u2028", Cancelled: true}} {
		want, _ := json.Marshal(journalLine{Op: "inv", Inv: &inv})
		if got := appendInviteLine(nil, &inv); !bytes.Equal(got, want) {
			t.Errorf("inv line\n got %s\nwant %s", got, want)
		}
		want, _ = json.Marshal(journalLine{Op: "inv-end", ID: inv.Branch})
		if got := appendInviteEndLine(nil, inv.Branch); !bytes.Equal(got, want) {
			t.Errorf("inv-end line\n got %s\nwant %s", got, want)
		}
	}
	bad := journalCall{ID: "y", Created: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}
	if _, err := appendUpLine(nil, &bad); err == nil {
		t.Error("a year past 9999 encoded, not refused as encoding/json does")
	}
}

// FuzzJournalLineEncoding holds the hand-written encoding to
// encoding/json's for any strings.
func FuzzJournalLineEncoding(f *testing.F) {
	f.Add("c1", "meta", "<sip:a@b>", "tag", uint32(7), int64(1764710000123456789))
	f.Add("\"<&>\u2028", "\xff\xfe", "", "é", uint32(0), int64(0))
	f.Fuzz(func(t *testing.T, id, ep, uri, tag string, cseq uint32, ns int64) {
		c := journalCall{ID: id, AEndpoint: ep, User: tag, Created: time.Unix(0, ns).UTC(), Ringing: time.Unix(0, ns/2).UTC(),
			CallbackData: uri, RecordingID: tag, AfterHours: cseq%2 == 1, AUp: cseq%3 == 1,
			A: journalDialog{CallID: id, LocalURI: uri, LocalTag: tag, RouteSet: []string{uri, tag}, CSeq: cseq}}
		if cseq%5 == 1 {
			c.AInvite = &journalIncoming{Via: []string{uri, ep}, From: tag, To: uri, CSeq: cseq, Source: ep, Transport: id}
		}
		want, werr := json.Marshal(journalLine{Op: "up", Call: &c})
		got, gerr := appendUpLine(nil, &c)
		if (werr != nil) != (gerr != nil) || (werr == nil && !bytes.Equal(got, want)) {
			t.Fatalf("up line (err %v, json's %v)\n got %s\nwant %s", gerr, werr, got, want)
		}
		want, _ = json.Marshal(journalLine{Op: "down", ID: id})
		if got := appendDownLine(nil, id, nil); !bytes.Equal(got, want) {
			t.Fatalf("down line\n got %s\nwant %s", got, want)
		}
	})
}

// BenchmarkJournalUpDown is what the journal costs an answered call: its
// "up" line when answered, its "down" line when ended.
//
//	go test -run '^$' -bench JournalUpDown -benchmem ./b2bua/
func BenchmarkJournalUpDown(b *testing.B) {
	j, err := OpenJournal(b.TempDir() + "/calls.journal")
	if err != nil {
		b.Fatal(err)
	}
	defer j.Close()
	now := time.Now()
	dlg := func(id string) journalDialog {
		return journalDialog{CallID: id, LocalURI: "<sip:+15550100001@127.0.0.1>", LocalTag: "9f8e7d6c",
			RemoteURI: "<sip:+447700900123@127.0.0.2:5060>", RemoteTag: "1SIPpTag00", RemoteTarget: "sip:+447700900123@127.0.0.2:5060;transport=UDP",
			CSeq: 1, Transport: "UDP"}
	}
	c := journalCall{ID: "0123456789abcdef", Direction: "inbound", AEndpoint: "meta", BEndpoint: "pbx",
		Business: "+15550100001", PNID: "100000000000001", User: "+447700900123", Created: now, Answered: now,
		A: dlg("1-1234@127.0.0.2"), B: dlg("0123456789abcdef-b")}
	b.ReportAllocs()
	for b.Loop() {
		if err := j.up(c, nil); err != nil {
			b.Fatal(err)
		}
		if err := j.down(c.ID, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkJournalDownWithRecord is what keeping an ended call's record in
// the journal adds to its end (SetCDRStore): encoding the record and a
// longer "down" line, kept until the store has it.
//
//	go test -run '^$' -bench JournalDownWithRecord -benchmem ./b2bua/
func BenchmarkJournalDownWithRecord(b *testing.B) {
	j, err := OpenJournal(b.TempDir() + "/calls.journal")
	if err != nil {
		b.Fatal(err)
	}
	defer j.Close()
	now := time.Now()
	c := journalCall{ID: "0123456789abcdef", Direction: "inbound", AEndpoint: "meta", BEndpoint: "pbx", Created: now, Answered: now}
	cdr := events.CDR{CallID: c.ID, Direction: events.UIC, WACallID: "wacid.abc", BusinessNumber: "+15550100001", PhoneNumberID: "100000000000001",
		User: "+447700900123", A: events.Leg{Endpoint: "meta", SIPCallID: "1-1234@127.0.0.2", Codec: "opus", Encryption: "sdes"},
		B:         events.Leg{Endpoint: "pbx", SIPCallID: "0123456789abcdef-b", Codec: "PCMU", Encryption: "none"},
		CreatedAt: now, RingingAt: now, AnsweredAt: now, EndedAt: now, SIPCode: 200, SIPReason: "OK", HangupBy: "a", Cause: "bye",
		Outcome: events.Answered, Attempts: []events.Attempt{{Endpoint: "pbx", User: "1001", SIPCallID: "0123456789abcdef-b", StartedAt: now, EndedAt: now}}}
	b.ReportAllocs()
	for b.Loop() {
		if err := j.up(c, nil); err != nil {
			b.Fatal(err)
		}
		body, err := json.Marshal(&cdr)
		if err != nil {
			b.Fatal(err)
		}
		if err := j.down(c.ID, body); err != nil {
			b.Fatal(err)
		}
		j.Stored([]string{c.ID})
	}
}

// BenchmarkJournalInvite is what the journal costs each INVITE wagate
// sends (every attempt of a hunt, a transfer's target, a BIC's leg): its
// "inv" line as it goes out, its "inv-end" line at its final response.
//
//	go test -run '^$' -bench JournalInvite -benchmem ./b2bua/
func BenchmarkJournalInvite(b *testing.B) {
	j, err := OpenJournal(b.TempDir() + "/calls.journal")
	if err != nil {
		b.Fatal(err)
	}
	defer j.Close()
	// The INVITE as sent: what its Via, From and To are read from.
	req, err := testJournalInvite("0123456789abcdef", "z9hG4bK.4Jd83kL0aQ1xZr7p").request(sip.INVITE, "")
	if err != nil {
		b.Fatal(err)
	}
	// Its call is live (journaled from its start), so its end is
	// written at once.
	if err := j.up(journalCall{ID: "0123456789abcdef", Created: time.Now()}, nil); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		inv, ok := pendingInvite("0123456789abcdef", "b", req)
		if !ok {
			b.Fatal("INVITE not journaled")
		}
		if err := j.invite(inv); err != nil {
			b.Fatal(err)
		}
		if err := j.inviteEnded(inv.Branch); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkJournalCancelledCall is what the journal costs a call whose
// INVITE is cancelled while it rings (the caller gives up): its "up"
// line, the INVITE's "inv", the call's "down", then the INVITE's
// "inv-end" when the callee's 487 comes after it.
//
//	go test -run '^$' -bench JournalCancelledCall -benchmem ./b2bua/
func BenchmarkJournalCancelledCall(b *testing.B) {
	j, err := OpenJournal(b.TempDir() + "/calls.journal")
	if err != nil {
		b.Fatal(err)
	}
	defer j.Close()
	now := time.Now()
	c := journalCall{ID: "0123456789abcdef", Direction: "inbound", AEndpoint: "meta", BEndpoint: "pbx",
		Business: "+15550100001", PNID: "100000000000001", User: "+447700900123", Created: now}
	req, err := testJournalInvite(c.ID, "z9hG4bK.4Jd83kL0aQ1xZr7p").request(sip.INVITE, "")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := j.up(c, nil); err != nil {
			b.Fatal(err)
		}
		inv, _ := pendingInvite(c.ID, "b", req)
		if err := j.invite(inv); err != nil {
			b.Fatal(err)
		}
		if err := j.down(c.ID, nil); err != nil {
			b.Fatal(err)
		}
		if err := j.inviteEnded(inv.Branch); err != nil {
			b.Fatal(err)
		}
	}
}
