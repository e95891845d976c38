package b2bua

import (
	sipedge "github.com/wagate/wagate/sip"
	"os"
	"path/filepath"
	"testing"
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
		if err := j.up(testJournalCall(id)); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.down("c2"); err != nil {
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
		j.up(c)
		j.down(c.ID)
	}
	st, _ := os.Stat(path)
	if st.Size() > journalCompactAt+4096 {
		t.Errorf("journal is %d bytes after 20000 short calls, want it compacted", st.Size())
	}
}
