package b2bua

import (
	"encoding/json"
	"github.com/wagate/wagate/events"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wagate/wagate/configs"
	sipedge "github.com/wagate/wagate/sip"
)

func testJournalCall(id string) journalCall {
	return journalCall{ID: id, Direction: sipedge.UIC,
		A: journalDialog{CallID: id + "-a", LocalURI: "sip:+15550100001@127.0.0.1", RemoteURI: "sip:+447700900123@wa.meta.vc",
			RemoteTarget: "sip:meta@127.0.0.2:5060", RouteSet: []string{"sip:127.0.0.2:5061;transport=tls;lr"}, CSeq: 1, Transport: "TLS"},
		B: journalDialog{CallID: id + "-b", LocalURI: "sip:+447700900123@127.0.0.1", RemoteURI: "sip:1001@127.0.0.3",
			RemoteTarget: "sip:1001@127.0.0.3:5060", CSeq: 1, Transport: "UDP"}}
}

// TestJournalReplay: what is up when the process dies is what the next
// start hangs up — however the file ends (a line cut short by the crash) —
// and once handed over it is not handed over again.
func TestJournalReplay(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data", "live-calls.journal")
	j, err := OpenJournal(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"c1", "c2", "c3"} {
		if err := j.up(testJournalCall(id), nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.down("c2", nil); err != nil {
		t.Fatal(err)
	}
	// The crash: no Close, and half a line at the end.
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"op":"down","id":"c1`)
	f.Close()

	j2, err := OpenJournal(path)
	if err != nil {
		t.Fatal(err)
	}
	left := j2.left()
	ids := map[string]bool{}
	for _, c := range left {
		ids[c.ID] = true
		for _, d := range []journalDialog{c.A, c.B} {
			l, ok := d.restore("x")
			if !ok {
				t.Fatalf("call %s: leg does not restore", c.ID)
			}
			bye := l.newRequest("BYE", nil)
			if bye.CSeq().SeqNo != d.CSeq+1 || bye.CallID().Value() != d.CallID {
				t.Errorf("call %s: BYE %v / %v, want CSeq %d on Call-ID %s", c.ID, bye.CSeq(), bye.CallID(), d.CSeq+1, d.CallID)
			}
		}
	}
	if len(left) != 2 || !ids["c1"] || !ids["c3"] {
		t.Fatalf("left = %v, want c1 and c3", ids)
	}
	j2.Close()
	j3, err := OpenJournal(path)
	if err != nil {
		t.Fatal(err)
	}
	if left := j3.left(); len(left) != 0 {
		t.Errorf("calls handed over twice: %d", len(left))
	}
}

// TestJournalCompacts: the file does not grow without bound while calls
// come and go.
func TestJournalCompacts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j")
	j, err := OpenJournal(path)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	c := testJournalCall("x")
	for i := range 20000 {
		c.ID = "call-" + itoa(i)
		j.up(c, nil)
		j.down(c.ID, nil)
	}
	st, _ := os.Stat(path)
	if st.Size() > journalCompactAt+4096 {
		t.Errorf("journal is %d bytes after 20000 short calls, want it compacted", st.Size())
	}
}

// TestJournalCompactsRarelyWithManyLiveCalls: with more live calls than
// journalCompactAt holds (a busy node journals every call from its
// start), calls ending must not rewrite and fsync the whole file each
// time: at 2,250 calls/s that took wagate from 0.7 to 1.8 ms of CPU a
// call and failed most calls. The file is still compacted, and still
// holds exactly the live calls.
func TestJournalCompactsRarelyWithManyLiveCalls(t *testing.T) {
	path := filepath.Join(t.TempDir(), "live-calls.journal")
	j, err := OpenJournal(path)
	if err != nil {
		t.Fatal(err)
	}
	c := testJournalCall("x")
	const live = 8000 // about 5 MB of "up" lines
	for i := range live {
		c.ID = "call-" + itoa(i)
		if err := j.up(c, nil); err != nil {
			t.Fatal(err)
		}
	}
	start := j.rewrites
	// 3,000 calls end and as many start: the live set stays over 4 MB.
	for i := range 3000 {
		if err := j.down("call-"+itoa(i), nil); err != nil {
			t.Fatal(err)
		}
		c.ID = "call-" + itoa(live+i)
		if err := j.up(c, nil); err != nil {
			t.Fatal(err)
		}
	}
	if n := j.rewrites - start; n > 2 {
		t.Errorf("%d rewrites of the whole journal for 3,000 calls ending, want at most 2", n)
	}
	st, _ := os.Stat(path)
	j.Close()
	j2, err := OpenJournal(path)
	if err != nil {
		t.Fatal(err)
	}
	defer j2.Close()
	if got := len(j2.left()); got != live {
		t.Errorf("reopened: %d calls left up, want %d", got, live)
	}
	if st.Size() > 3*int64(journalCompactAt) {
		t.Errorf("journal is %d bytes, want it compacted", st.Size())
	}
}

// TestJournalUpAfterEndNotWritten: an "up" that comes after the call's
// end (a transfer or a join completing as the call is hung up: join
// journals both calls after ending one when the other ended meanwhile)
// must not bring the call back into the journal, where the next start
// would hang it up again and write it a second record.
func TestJournalUpAfterEndNotWritten(t *testing.T) {
	path := filepath.Join(t.TempDir(), "live-calls.journal")
	j, err := OpenJournal(path)
	if err != nil {
		t.Fatal(err)
	}
	s := &Engine{journal: j}
	c := &call{srv: s, id: "c1", dir: sipedge.BIC, log: slog.New(slog.DiscardHandler),
		route: &sipedge.Decision{Number: &configs.Number{Number: "+15550100001"},
			BIC: &sipedge.BICInfo{CampaignID: "spring", CallbackData: "crm:1"}},
		a: &leg{name: "a", callID: "c1-a"}, b: &leg{name: "b", callID: "c1-b"}}
	c.answeredAt = time.Now()
	s.journalUp(c)
	c.mu.Lock()
	c.state = stateEnded
	c.mu.Unlock()
	s.journalDown(c, nil)
	s.journalUp(c) // the late "up"
	j.Close()

	j2, err := OpenJournal(path)
	if err != nil {
		t.Fatal(err)
	}
	defer j2.Close()
	if left := j2.left(); len(left) != 0 {
		t.Errorf("an ended call is left up in the journal: %+v", left)
	}
}

// TestJournalKeepsRecordFields: what the record after a crash needs
// beyond the dialogs goes into the journal and comes back.
func TestJournalKeepsRecordFields(t *testing.T) {
	path := filepath.Join(t.TempDir(), "live-calls.journal")
	j, err := OpenJournal(path)
	if err != nil {
		t.Fatal(err)
	}
	s := &Engine{journal: j}
	c := &call{srv: s, id: "c1", dir: sipedge.BIC, log: slog.New(slog.DiscardHandler), bUser: "+447700900123",
		permission: "allowed", recordingID: "2026/12/03/x.wav", origin: "click_to_call",
		route: &sipedge.Decision{Number: &configs.Number{Number: "+15550100001"}, AfterHours: true,
			Hunt: &configs.HuntList{Name: "sales"}, BIC: &sipedge.BICInfo{CampaignID: "spring", CallbackData: "crm:1"}},
		a: &leg{name: "a", callID: "c1-a"}, b: &leg{name: "b", callID: "c1-b"}}
	c.ringingAt = time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	c.answeredAt = c.ringingAt.Add(time.Second)
	s.journalUp(c)
	j.Close()
	j2, err := OpenJournal(path)
	if err != nil {
		t.Fatal(err)
	}
	defer j2.Close()
	left := j2.left()
	if len(left) != 1 {
		t.Fatalf("%d calls left, want 1", len(left))
	}
	got := left[0]
	if !got.Ringing.Equal(c.ringingAt) || got.BUser != c.bUser || got.Permission != "allowed" || got.RecordingID != c.recordingID ||
		got.Origin != "click_to_call" || !got.AfterHours || got.Hunt != "sales" || got.CampaignID != "spring" || got.CallbackData != "crm:1" {
		t.Errorf("journaled %+v, want the call's ringing time, callee, permission, recording, origin, hunt, campaign and callback data", got)
	}
}

// TestJournalLeftOnlyThePreviousRun: the calls handed over at start-up
// are those the previous run left, not calls of this run that started
// between the listeners binding and the hand-over (INVITEs retransmitted
// to a restarted wagate come at once): those are live, must stay in the
// journal, and must not be hung up or recorded as ended by the restart.
func TestJournalLeftOnlyThePreviousRun(t *testing.T) {
	path := filepath.Join(t.TempDir(), "live-calls.journal")
	j, err := OpenJournal(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := j.up(testJournalCall("old"), nil); err != nil {
		t.Fatal(err)
	}
	// The crash: no Close.
	j2, err := OpenJournal(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := j2.up(testJournalCall("new"), nil); err != nil { // this run's call, before the hand-over
		t.Fatal(err)
	}
	left := j2.left()
	if len(left) != 1 || left[0].ID != "old" {
		ids := []string{}
		for _, c := range left {
			ids = append(ids, c.ID)
		}
		t.Fatalf("handed over %v, want only the previous run's call \"old\"", ids)
	}
	// Killed again now: the new call is still in the journal.
	j3, err := OpenJournal(path)
	if err != nil {
		t.Fatal(err)
	}
	defer j3.Close()
	if left := j3.left(); len(left) != 1 || left[0].ID != "new" {
		t.Errorf("after a second crash: %d calls left, want this run's live call \"new\"", len(left))
	}
}

// TestJournalKeepsRecordsUntilStored: an ended call's record stays in the
// journal until the events store says it has it — across a rewrite of
// the file, and across a crash: the next start hands over the records
// not stored, in the order the calls ended, and no others.
func TestJournalKeepsRecordsUntilStored(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j")
	j, err := OpenJournal(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"c1", "c2", "c3", "c4"} {
		if err := j.up(testJournalCall(id), nil); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{"c3", "c1", "c2"} {
		cdr, _ := json.Marshal(events.CDR{CallID: id, Cause: "BYE from a", Outcome: events.Answered})
		if err := j.down(id, cdr); err != nil {
			t.Fatal(err)
		}
	}
	j.Stored([]string{"c1", "unknown"})
	j.mu.Lock()
	err = j.rewriteLocked() // as when the file has grown
	j.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	// The crash: no Close.
	j2, err := OpenJournal(path)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range j2.leftEnded() {
		if c.Cause != "BYE from a" || c.Outcome != events.Answered {
			t.Errorf("record of %s came back as %+v", c.CallID, c)
		}
		got = append(got, c.CallID)
	}
	if strings.Join(got, ",") != "c3,c2" {
		t.Errorf("records handed over: %v, want c3,c2 (c1 was stored)", got)
	}
	// Stored now (as the engine finds them stored, or stores them); the
	// calls left up are handed over, which rewrites the file: the start
	// after the next has nothing to hand over.
	j2.Stored([]string{"c3", "c2"})
	if left := j2.left(); len(left) != 1 || left[0].ID != "c4" {
		t.Errorf("calls left up: %+v, want c4", left)
	}
	j2.Close()
	j3, err := OpenJournal(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := j3.leftEnded(); len(got) != 0 {
		t.Errorf("records handed over again: %+v", got)
	}
}

// TestJournalOlderFileDownEndsInvites: a journal an older wagate wrote
// (no "inv-ends" line) wrote no "inv-end" for an INVITE that ended after
// its call's "down": there the "down" still ends the call's INVITEs, or
// the first start after an upgrade would cancel every INVITE of every
// call cancelled while ringing since the file was last rewritten.
func TestJournalOlderFileDownEndsInvites(t *testing.T) {
	path := filepath.Join(t.TempDir(), "live-calls.journal")
	var b []byte
	up, err := appendUpLine(nil, ptr(testJournalCall("c1")))
	if err != nil {
		t.Fatal(err)
	}
	b = append(append(b, up...), '\n')
	b = append(append(appendInviteLine(b, ptr(testJournalInvite("c1", "z9hG4bK-old"))), '\n'), appendDownLine(nil, "c1", nil)...)
	b = append(append(append(b, '\n'), appendInviteLine(nil, ptr(testJournalInvite("c2", "z9hG4bK-pending")))...), '\n')
	if err := os.WriteFile(path, b, 0o640); err != nil {
		t.Fatal(err)
	}
	j, err := OpenJournal(path)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	left := j.leftInvites()
	if len(left) != 1 || left[0].Branch != "z9hG4bK-pending" {
		t.Errorf("INVITEs left by an older journal %+v, want only z9hG4bK-pending (z9hG4bK-old's call ended)", left)
	}
}

func ptr[T any](v T) *T { return &v }

func testJournalInvite(call, branch string) journalInvite {
	return journalInvite{Branch: branch, Call: call, Leg: "b", URI: "sip:1001@127.0.0.3:5060",
		Via: "SIP/2.0/UDP 127.0.0.1:5072;branch=" + branch + ";rport", From: "<sip:+447700900123@127.0.0.1>;tag=f1",
		To: "<sip:1001@127.0.0.3>", CallID: call + "-b@wagate", CSeq: 2,
		Route: []string{"<sip:127.0.0.4;lr>"}, Transport: "UDP", Dest: "127.0.0.3:5060"}
}

// TestJournalInvitesLeftPending: the INVITEs without a final response
// when the process dies — and only those: not one that ended, before or
// after its call's end — are what the next start cancels, each CANCEL
// the INVITE's as RFC 3261 §9.1 has it, and once handed over they are
// not handed over again. An INVITE still pending after its call's end
// (the call's end sent its CANCEL, whose 487 had not come, or which was
// lost) is one of them: before, the call's "down" dropped it, and the
// callee rang on with nobody to cancel it.
func TestJournalInvitesLeftPending(t *testing.T) {
	path := filepath.Join(t.TempDir(), "live-calls.journal")
	j, err := OpenJournal(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"c1", "c2"} {
		if err := j.up(testJournalCall(id), nil); err != nil {
			t.Fatal(err)
		}
	}
	for _, inv := range []journalInvite{testJournalInvite("c1", "z9hG4bK-1a"), testJournalInvite("c1", "z9hG4bK-1b"),
		testJournalInvite("c2", "z9hG4bK-2a"), testJournalInvite("c2", "z9hG4bK-2b")} {
		if err := j.invite(inv); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.inviteEnded("z9hG4bK-1b"); err != nil { // answered or refused
		t.Fatal(err)
	}
	if err := j.down("c2", nil); err != nil { // its end cancelled its INVITEs
		t.Fatal(err)
	}
	before, _ := os.Stat(path)
	if err := j.inviteEnded("z9hG4bK-2a"); err != nil { // its 487 came; 2b's has not
		t.Fatal(err)
	}
	// The end of an INVITE after its call costs no write of its own: it
	// goes out with the next line.
	if after, _ := os.Stat(path); after.Size() != before.Size() {
		t.Errorf("the end of an INVITE after its call's end was written alone (%d → %d bytes)", before.Size(), after.Size())
	}
	if err := j.invite(testJournalInvite("c3", "z9hG4bK-3a")); err != nil {
		t.Fatal(err)
	}
	// The crash: no Close.
	j2, err := OpenJournal(path)
	if err != nil {
		t.Fatal(err)
	}
	left := j2.leftInvites()
	got := map[string]bool{}
	for _, inv := range left {
		got[inv.Branch] = true
	}
	if len(left) != 3 || !got["z9hG4bK-1a"] || !got["z9hG4bK-2b"] || !got["z9hG4bK-3a"] {
		t.Fatalf("left INVITEs %v, want z9hG4bK-1a, z9hG4bK-2b (its call ended, its CANCEL unanswered) and z9hG4bK-3a", got)
	}
	want := testJournalInvite("c1", "z9hG4bK-1a")
	for _, inv := range left {
		if inv.Branch != want.Branch {
			continue
		}
		c, err := inv.request("CANCEL", "")
		if err != nil {
			t.Fatal(err)
		}
		br, _ := c.Via().Params.Get("branch")
		totag, _ := c.To().Params.Get("tag")
		fromtag, _ := c.From().Params.Get("tag")
		if c.Method != "CANCEL" || c.Recipient.String() != want.URI || br != want.Branch || c.Via().Host != "127.0.0.1" || c.Via().Port != 5072 ||
			fromtag != "f1" || totag != "" || c.CallID().Value() != want.CallID || c.CSeq().SeqNo != 2 || c.CSeq().MethodName != "CANCEL" ||
			len(c.GetHeaders("Route")) != 1 || c.Destination() != want.Dest || c.Transport() != "UDP" {
			t.Errorf("CANCEL built from the journal:\n%s", c)
		}
		ack, err := inv.request("ACK", "<sip:1001@127.0.0.3>;tag=r9")
		if err != nil {
			t.Fatal(err)
		}
		if tag, _ := ack.To().Params.Get("tag"); tag != "r9" || ack.CSeq().MethodName != "ACK" || ack.CSeq().SeqNo != 2 {
			t.Errorf("ACK of the 487 built from the journal:\n%s", ack)
		}
	}
	j2.left()
	j2.Close()
	j3, err := OpenJournal(path)
	if err != nil {
		t.Fatal(err)
	}
	defer j3.Close()
	if left := j3.leftInvites(); len(left) != 0 {
		t.Errorf("INVITEs handed over twice: %d", len(left))
	}
}

// TestJournalRewriteKeepsPendingInvites: a rewrite (compaction, a normal
// stop) keeps the INVITEs still pending; a line edited into nonsense is
// reported, not sent.
func TestJournalRewriteKeepsPendingInvites(t *testing.T) {
	path := filepath.Join(t.TempDir(), "live-calls.journal")
	j, err := OpenJournal(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := j.invite(testJournalInvite("c1", "z9hG4bK-k")); err != nil {
		t.Fatal(err)
	}
	bad := testJournalInvite("c1", "z9hG4bK-bad")
	bad.Via = "not a via"
	if err := j.invite(bad); err != nil {
		t.Fatal(err)
	}
	j.Close()
	j2, err := OpenJournal(path)
	if err != nil {
		t.Fatal(err)
	}
	defer j2.Close()
	left := j2.leftInvites()
	if len(left) != 2 {
		t.Fatalf("%d INVITEs after a rewrite, want 2", len(left))
	}
	for _, inv := range left {
		_, err := inv.request("CANCEL", "")
		if (err != nil) != (inv.Branch == "z9hG4bK-bad") {
			t.Errorf("INVITE %s: CANCEL error %v", inv.Branch, err)
		}
	}
}

// TestJournalIncomingResponse: the final response a restart sends to an
// INVITE it had not answered is in that INVITE's transaction (every Via,
// in order), names its dialog (From, To tagged as wagate's 180 was,
// Call-ID, CSeq) and says why.
func TestJournalIncomingResponse(t *testing.T) {
	in := &journalIncoming{Via: []string{"SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK-a;rport=5060;received=10.0.0.1", "SIP/2.0/UDP 10.0.0.9;branch=z9hG4bK-p"},
		From: `"Ann" <sip:+447700900123@meta>;tag=f1`, To: "<sip:+15550100001@wagate>", CSeq: 3, Source: "10.0.0.1:5060", Transport: "UDP"}
	res, err := in.response("abc@10.0.0.1", "t9", "wagate")
	if err != nil {
		t.Fatal(err)
	}
	vias := res.GetHeaders("Via")
	br, _ := res.Via().Params.Get("branch")
	totag, _ := res.To().Params.Get("tag")
	if res.StatusCode != 503 || len(vias) != 2 || br != "z9hG4bK-a" || totag != "t9" || res.CallID().Value() != "abc@10.0.0.1" ||
		res.CSeq().SeqNo != 3 || res.CSeq().MethodName != "INVITE" || !strings.Contains(res.GetHeader("Reason").Value(), "restarted") {
		t.Errorf("final response:\n%s", res)
	}
	if _, err := (&journalIncoming{Via: []string{"not a via"}, From: "x", To: "y"}).response("c", "t", ""); err == nil {
		t.Error("a Via edited into nonsense made a response")
	}
}

// TestJournalReadsPastLongLines: a "down" line longer than a megabyte (the
// record of a call whose queue rang agents for an hour lists every
// attempt) is read like any other, and the calls journaled after it are
// still hung up at the next start. Before, reading stopped at that line:
// the call it ended was hung up again and the calls after it were left up.
func TestJournalReadsPastLongLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "live-calls.journal")
	j, err := OpenJournal(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"c1", "c2"} {
		if err := j.up(testJournalCall(id), nil); err != nil {
			t.Fatal(err)
		}
	}
	cdr, _ := json.Marshal(events.CDR{CallID: "c1", CallbackData: strings.Repeat("x", 2<<20), EndedAt: time.Now()})
	if err := j.down("c1", cdr); err != nil {
		t.Fatal(err)
	}
	if err := j.up(testJournalCall("c3"), nil); err != nil {
		t.Fatal(err)
	}
	j2, err := OpenJournal(path)
	if err != nil {
		t.Fatal(err)
	}
	defer j2.Close()
	ids := map[string]bool{}
	for _, c := range j2.left() {
		ids[c.ID] = true
	}
	if len(ids) != 2 || !ids["c2"] || !ids["c3"] {
		t.Errorf("left after a 2 MB line: %v, want c2 and c3", ids)
	}
	if recs := j2.leftEnded(); len(recs) != 1 || len(recs[0].CallbackData) != 2<<20 {
		t.Errorf("the 2 MB record not kept: %d records", len(recs))
	}
}

// TestReadLinesSkipsOverlong: a line past the limit is skipped without
// being held, counted, and the lines after it are read; lines longer
// than the reader's buffer but within the limit, and one exactly at it,
// are whole; the last line without its newline (cut short by a crash)
// still reaches the caller, which decides it is unreadable.
func TestReadLinesSkipsOverlong(t *testing.T) {
	long := strings.Repeat("y", 100<<10) // past bufio's 64 KB
	in := "a\n" + strings.Repeat("z", 300<<10) + "\n" + long + "\n\n" + strings.Repeat("w", 200<<10) + "\nb\nc"
	var got []string
	skipped := readLines(strings.NewReader(in), 200<<10, func(l []byte) { got = append(got, string(l)) })
	want := []string{"a", long, strings.Repeat("w", 200<<10), "b", "c"}
	if skipped != 1 || len(got) != len(want) {
		t.Fatalf("skipped %d, got %d lines, want 1 and %d", skipped, len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("line %d: %d bytes, want %d", i, len(got[i]), len(want[i]))
		}
	}
}

// TestJournalInvitesKeptAtStop: at a graceful stop the calls end first,
// and their INVITEs still without a final response (no 1xx yet, so no
// CANCEL could go; or a CANCEL not answered yet) must reach the next
// start, which cancels them; those that ended — before the call's end or
// after it, before or after a rewrite of the file — must not (a CANCEL to
// an answered INVITE's callee is a false one). One whose CANCEL was
// answered reaches it marked so: it gets no second CANCEL.
func TestJournalInvitesKeptAtStop(t *testing.T) {
	path := filepath.Join(t.TempDir(), "live-calls.journal")
	j, err := OpenJournal(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"c1", "c2"} {
		if err := j.up(testJournalCall(id), nil); err != nil {
			t.Fatal(err)
		}
	}
	for _, b := range []string{"z9hG4bK-1a", "z9hG4bK-1b", "z9hG4bK-1c", "z9hG4bK-1d", "z9hG4bK-1e"} {
		if err := j.invite(testJournalInvite("c1", b)); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.invite(testJournalInvite("c2", "z9hG4bK-2a")); err != nil {
		t.Fatal(err)
	}
	if err := j.inviteEnded("z9hG4bK-1a"); err != nil { // answered
		t.Fatal(err)
	}
	// The drain ends the calls; their attempts are still running.
	for _, id := range []string{"c1", "c2"} {
		if err := j.down(id, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.inviteEnded("z9hG4bK-1b"); err != nil { // its 487 came
		t.Fatal(err)
	}
	j.inviteCancelled("z9hG4bK-1e") // its CANCEL answered, its 487 not yet
	// A rewrite (compaction) keeps 1c and 1d past their calls' "down":
	// an end from then on is written.
	j.mu.Lock()
	if err := j.rewriteLocked(); err != nil {
		t.Fatal(err)
	}
	j.mu.Unlock()
	if err := j.inviteEnded("z9hG4bK-1d"); err != nil {
		t.Fatal(err)
	}
	// 1c, 1e and 2a have had no final response when the engine stops.
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	j2, err := OpenJournal(path)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{} // true: cancelled
	for _, inv := range j2.leftInvites() {
		got[inv.Branch] = inv.Cancelled
	}
	if want := map[string]bool{"z9hG4bK-1c": false, "z9hG4bK-2a": false, "z9hG4bK-1e": true}; !maps.Equal(got, want) {
		t.Errorf("INVITEs left for the next start (true: cancelled) %v, want z9hG4bK-1c and z9hG4bK-2a to cancel, z9hG4bK-1e cancelled", got)
	}
	if calls := j2.left(); len(calls) != 0 {
		t.Errorf("calls ended before the stop left up: %v", calls)
	}
	j2.Close()

	// A third start finds none: the second handed them over.
	j3, err := OpenJournal(path)
	if err != nil {
		t.Fatal(err)
	}
	defer j3.Close()
	if left := j3.leftInvites(); len(left) != 0 {
		t.Errorf("INVITEs handed over twice: %v", left)
	}
}
