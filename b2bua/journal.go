package b2bua

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	sipedge "github.com/wagate/wagate/sip"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/wagate/wagate/events"
)

// The journal of live dialogs lets wagate hang up, after a crash, the calls
// that were up when it died: without it, both far ends of each call wait
// for media that never comes (Meta drops a call after 30 s without media,
// but a PBX may hold its agent for much longer) and no record says how the
// call ended.
//
// It is an append-only file of JSON lines: "up" with both legs' dialog
// state when a call is answered, "down" with the call id when it ends —
// and, when the engine has a CDR store (SetCDRStore), the call's record:
// a record is written to the events store a moment after the call ends
// (group commit), and a crash in that moment lost it. The "down" keeps
// it until the store says it is stored (Stored); at the next start the
// records the store does not have are given to it again. "inv" and
// "inv-end" lines keep the INVITEs wagate sent until their final
// responses, cancelled at the next start (journalinvite.go); the file
// starts with an "inv-ends" line (journalInvEnds).
// Each line is one write(2) without fsync: a killed process loses nothing
// written (the page cache survives it); a power cut loses the tail, and
// with it only calls whose far ends lost their media too. At start-up the
// calls still up are replayed (BYE on both legs) and the file is started
// afresh; while running it is rewritten with only the live calls whenever
// it has grown past journalCompactAt.

// journalCompactAt is the file size that triggers a rewrite, or twice
// what the live calls took at the last rewrite if that is more: with
// more live calls than fit in it (about 4,000 of a kilobyte), a fixed
// threshold would rewrite the whole file, and fsync it, at every call's
// end, under the lock every call start waits on.
const journalCompactAt = 4 << 20

// Journal is the file of live dialogs.
type Journal struct {
	path string

	mu   sync.Mutex
	f    *os.File
	size int64
	// compactAt is the size past which the file is rewritten.
	compactAt int64
	// rewrites counts rewrites (tests).
	rewrites int
	live     map[string]journalCall
	// prev is what the previous run left up, until left hands it over:
	// calls of this run may be journaled before then (the listeners serve
	// first), and are not the previous run's to end.
	prev []journalCall
	// ended holds the "down" lines with a record not stored yet, by call
	// id (at most journalEndedKept, the oldest forgotten first): a
	// rewrite keeps them. prevEnded lists those the previous run left.
	ended     map[string][]byte
	endedFIFO []string
	prevEnded []string
	// invites are the INVITEs sent and not ended, by branch
	// (journalinvite.go); invitesOf their branches by call id.
	// prevInvites are those the previous run left.
	invites     map[string]journalInvite
	invitesOf   map[string][]string
	prevInvites []journalInvite
	// lazyEnds are "inv-end" lines of INVITEs that ended after their
	// call, written with the next line (inviteEnded).
	lazyEnds []byte
}

// journalRecoverWithin is how recently a call must have ended for its
// record, found in the journal at start and not in the store, to be
// stored: a record the store lost in a crash is minutes old at most when
// wagate starts again (a restart a day later still recovers it); an
// older one may have been swept by the store's retention on purpose.
const journalRecoverWithin = 24 * time.Hour

// journalEndedKept bounds the ended calls whose records the journal keeps
// until the events store has them: minutes of a busy centre whose
// database has stalled, tens of megabytes at most.
const journalEndedKept = 20000

// journalCall is what the journal keeps of a call: enough to hang up both
// legs and say what the call was.
type journalCall struct {
	ID        string            `json:"id"`
	Direction sipedge.Direction `json:"direction"`
	AEndpoint string            `json:"a_endpoint"`
	BEndpoint string            `json:"b_endpoint"`
	Business  string            `json:"business,omitempty"`
	PNID      string            `json:"phone_number_id,omitempty"`
	WACallID  string            `json:"wa_call_id,omitempty"`
	User      string            `json:"user,omitempty"`
	Created   time.Time         `json:"created"`
	Answered  time.Time         `json:"answered"`
	// What the call's record carries beyond the legs, so that the record
	// written after a crash still names what a dialer or CRM matches it
	// by (its campaign and callback data, its recording).
	Ringing      time.Time `json:"ringing,omitzero"`
	BUser        string    `json:"b_user,omitempty"`
	Hunt         string    `json:"hunt,omitempty"`
	Origin       string    `json:"origin,omitempty"`
	Permission   string    `json:"permission,omitempty"`
	AfterHours   bool      `json:"after_hours,omitempty"`
	CampaignID   string    `json:"campaign_id,omitempty"`
	CallbackData string    `json:"callback_data,omitempty"`
	RecordingID  string    `json:"recording_id,omitempty"`
	// AUp: leg a answered before the call was (a click-to-call's agent,
	// while the user's phone rings); it gets a BYE at the restart.
	AUp bool          `json:"a_up,omitempty"`
	A   journalDialog `json:"a"`
	B   journalDialog `json:"b"`
	// AInvite is A's INVITE while wagate has sent it no final response
	// (journalinvite.go): a restart answers it.
	AInvite *journalIncoming `json:"a_invite,omitempty"`
}

// journalDialog is one leg's dialog, as newRequest needs it.
type journalDialog struct {
	CallID       string   `json:"call_id"`
	LocalURI     string   `json:"local_uri"`
	LocalTag     string   `json:"local_tag"`
	RemoteURI    string   `json:"remote_uri"`
	RemoteTag    string   `json:"remote_tag"`
	RemoteTarget string   `json:"remote_target"`
	RouteSet     []string `json:"route_set,omitempty"`
	CSeq         uint32   `json:"cseq"`
	Transport    string   `json:"transport"`
}

// journalInvEnds opens each file the journal writes: from it on, an
// INVITE ends only at its own "inv-end" line. A file without it was
// written by an older wagate, which wrote no "inv-end" for an INVITE that
// ended after its call's "down": there the "down" ends the call's
// INVITEs, or the first start after an upgrade would cancel every
// INVITE of a call cancelled while ringing since the last rewrite.
const journalInvEnds = `{"op":"inv-ends"}`

type journalLine struct {
	Op   string       `json:"op"`           // "up", "down", "inv", "inv-end" or "inv-ends"
	ID   string       `json:"id,omitempty"` // "down": the call; "inv-end": the branch
	Call *journalCall `json:"call,omitempty"`
	// CDR is the ended call's record ("down"), until it is stored.
	CDR json.RawMessage `json:"cdr,omitempty"`
	// Inv is an INVITE sent and not ended ("inv").
	Inv *journalInvite `json:"inv,omitempty"`
}

// OpenJournal reads the journal at path (creating its directory) and
// returns it with the calls a previous run left up, which Run hangs up.
func OpenJournal(path string) (*Journal, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("sip: journal directory: %w", err)
	}
	j := &Journal{path: path, live: make(map[string]journalCall), ended: make(map[string][]byte),
		invites: make(map[string]journalInvite), invitesOf: make(map[string][]string)}
	f, err := os.Open(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("sip: open journal: %w", err)
	default:
		j.read(f)
		f.Close()
	}
	for _, c := range j.live {
		j.prev = append(j.prev, c)
	}
	j.prevEnded = append([]string(nil), j.endedFIFO...)
	for _, inv := range j.invites {
		j.prevInvites = append(j.prevInvites, inv)
	}
	if err := j.rewriteLocked(); err != nil {
		return nil, err
	}
	return j, nil
}

// journalMaxLine bounds a journal line read back. A "down" line carries
// its call's record, which lists every attempt: a queue that rang agents
// for an hour writes megabytes. A longer line (a file damaged, or
// written by something else) is skipped, not held in memory.
const journalMaxLine = 64 << 20

// read folds the lines of r into j.live. A line cut short by a crash (the
// last one) or otherwise unreadable is skipped, and so is one longer
// than journalMaxLine; the lines after it are read (a reader that
// stopped there left every call after it ringing or up).
func (j *Journal) read(r io.Reader) {
	invEnds := false // journalInvEnds read
	skipped := readLines(r, journalMaxLine, func(line []byte) {
		var l journalLine
		if json.Unmarshal(line, &l) != nil {
			return
		}
		switch {
		case l.Op == "up" && l.Call != nil && l.Call.ID != "":
			j.live[l.Call.ID] = *l.Call
		case l.Op == "inv" && l.Inv != nil && l.Inv.Branch != "":
			j.dropInviteLocked(l.Inv.Branch)
			j.addInviteLocked(*l.Inv)
		case l.Op == "inv-end":
			j.dropInviteLocked(l.ID)
		case l.Op == "inv-ends":
			invEnds = true
		case l.Op == "down":
			delete(j.live, l.ID)
			if !invEnds {
				j.dropInvitesOfLocked(l.ID)
			}
			if len(l.CDR) > 0 && l.ID != "" {
				j.keepEndedLocked(l.ID, append([]byte(nil), line...))
			}
		}
	})
	if skipped > 0 {
		slog.Default().Warn("journal: lines longer than the limit skipped; the lines after them were read", "path", j.path, "lines", skipped, "limit_bytes", journalMaxLine)
	}
}

// readLines calls fn with each line of r (without its newline; the
// slice is reused) and skips, without holding them, lines longer than
// max bytes: it returns how many. A read error ends the reading as the
// end of the file does.
func readLines(r io.Reader, max int, fn func([]byte)) (skipped int) {
	br := bufio.NewReaderSize(r, 64<<10)
	var line []byte
	long := false
	for {
		frag, err := br.ReadSlice('\n')
		switch {
		case long:
		case len(line)+len(frag) > max+1: // +1: its newline
			long, line = true, line[:0]
		default:
			line = append(line, frag...)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if long {
			skipped++
		} else if l := bytes.TrimSuffix(line, []byte("\n")); len(l) > 0 {
			fn(l)
		}
		line, long = line[:0], false
		if err != nil {
			return skipped
		}
	}
}

// keepEndedLocked keeps the "down" line of a call whose record is not
// stored yet.
func (j *Journal) keepEndedLocked(id string, line []byte) {
	if _, ok := j.ended[id]; !ok {
		j.endedFIFO = append(j.endedFIFO, id)
	}
	j.ended[id] = line
	// The FIFO may still name calls stored since (Stored prunes it
	// lazily): count what is kept.
	for len(j.ended) > journalEndedKept {
		delete(j.ended, j.endedFIFO[0])
		j.endedFIFO = j.endedFIFO[1:]
	}
}

// Stored forgets the records of the calls ids: the events store has them
// (events.Sink.OnCDRStored).
func (j *Journal) Stored(ids []string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	n := 0
	for _, id := range ids {
		if _, ok := j.ended[id]; ok {
			delete(j.ended, id)
			n++
		}
	}
	if n == 0 {
		return
	}
	// The FIFO drops what is no longer kept once it has grown well past
	// what is, so that forgetting costs nothing per call.
	if len(j.endedFIFO) > 2*len(j.ended)+64 {
		kept := j.endedFIFO[:0]
		for _, id := range j.endedFIFO {
			if _, ok := j.ended[id]; ok {
				kept = append(kept, id)
			}
		}
		clear(j.endedFIFO[len(kept):])
		j.endedFIFO = kept
	}
}

// leftEnded returns the records of the calls the previous run ended whose
// records were not known to be stored, in the order they ended. They stay
// kept until Stored.
func (j *Journal) leftEnded() []events.CDR {
	j.mu.Lock()
	ids := j.prevEnded
	j.prevEnded = nil
	lines := make([][]byte, 0, len(ids))
	for _, id := range ids {
		if l, ok := j.ended[id]; ok {
			lines = append(lines, l)
		}
	}
	j.mu.Unlock()
	out := make([]events.CDR, 0, len(lines))
	for _, b := range lines {
		var l journalLine
		var cdr events.CDR
		if json.Unmarshal(b, &l) != nil || json.Unmarshal(l.CDR, &cdr) != nil || cdr.CallID == "" {
			continue
		}
		out = append(out, cdr)
	}
	return out
}

// rewriteLocked replaces the file with one "up" line per live call, the
// "down" lines of records not stored yet and an "inv" line per INVITE not
// ended.
func (j *Journal) rewriteLocked() error {
	tmp := j.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o640)
	if err != nil {
		return fmt.Errorf("sip: journal: %w", err)
	}
	// The INVITEs ended since the last line are not in j.invites: the
	// new file does not hold them, and their ends are moot.
	j.lazyEnds = j.lazyEnds[:0]
	w := bufio.NewWriter(f)
	w.WriteString(journalInvEnds + "\n")
	for _, c := range j.live {
		b, _ := json.Marshal(journalLine{Op: "up", Call: &c})
		w.Write(append(b, '\n'))
	}
	for _, id := range j.endedFIFO {
		if l, ok := j.ended[id]; ok {
			w.Write(l)
			w.WriteByte('\n')
		}
	}
	for _, inv := range j.invites {
		w.Write(append(appendInviteLine(nil, &inv), '\n'))
	}
	if err := w.Flush(); err == nil {
		err = f.Sync()
	}
	f.Close()
	if err != nil {
		return fmt.Errorf("sip: journal: %w", err)
	}
	if err := os.Rename(tmp, j.path); err != nil {
		return fmt.Errorf("sip: journal: %w", err)
	}
	nf, err := os.OpenFile(j.path, os.O_APPEND|os.O_WRONLY, 0o640)
	if err != nil {
		return fmt.Errorf("sip: journal: %w", err)
	}
	if j.f != nil {
		j.f.Close()
	}
	j.f = nf
	st, _ := nf.Stat()
	if st != nil {
		j.size = st.Size()
	}
	j.compactAt = max(journalCompactAt, 2*j.size)
	j.rewrites++
	return nil
}

// left returns the calls a previous run left up and forgets them; the
// calls of this run already journaled stay.
func (j *Journal) left() []journalCall {
	j.mu.Lock()
	defer j.mu.Unlock()
	out := j.prev
	j.prev = nil
	for _, c := range out {
		delete(j.live, c.ID)
	}
	if err := j.rewriteLocked(); err != nil {
		slog.Default().Error("journal not rewritten", "error", err)
	}
	return out
}

// up records c as up, unless ended (nil: never) says it has ended. ended
// is asked under the journal's lock: a call's end marks it ended before
// its "down" takes that lock, so an "up" racing the end (a transfer or a
// join completing as the call is hung up, a BYE right behind the 200)
// either comes before the "down" or is not written. Written after it, it
// would leave a dead call in the journal, replayed at the next start as
// a BYE to nobody and a second call.ended.
func (j *Journal) up(c journalCall, ended func() bool) error {
	b, err := appendUpLine(make([]byte, 0, 1024), &c)
	if err != nil {
		return err
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if ended != nil && ended() {
		return nil
	}
	j.live[c.ID] = c
	return j.appendLocked(b)
}

// down records the call id as ended, with its record cdr (JSON) when
// given, kept until Stored.
func (j *Journal) down(id string, cdr []byte) error {
	b := appendDownLine(make([]byte, 0, 64+len(cdr)), id, cdr)
	j.mu.Lock()
	defer j.mu.Unlock()
	if _, ok := j.live[id]; !ok {
		return nil
	}
	delete(j.live, id)
	// The call's INVITEs still pending stay until their own "inv-end":
	// its end has cancelled them, but until a 487 comes a crash (or a
	// stop) must leave them to the next start's CANCEL.
	if err := j.appendLocked(b); err != nil {
		return err
	}
	if len(cdr) > 0 {
		j.keepEndedLocked(id, b)
	}
	if j.size > j.compactAt {
		return j.rewriteLocked()
	}
	return nil
}

// appendLocked writes the line b, after the INVITE ends waiting for it
// (lazyEnds), in one write.
func (j *Journal) appendLocked(b []byte) error {
	if j.f == nil {
		return errors.New("sip: journal closed")
	}
	b = append(b, '\n')
	if len(j.lazyEnds) > 0 {
		j.lazyEnds = append(j.lazyEnds, b...)
		b = j.lazyEnds
		// Written or not, they are gone: a rewrite holds only the
		// INVITEs not ended.
		defer func() { j.lazyEnds = j.lazyEnds[:0] }()
	}
	n, err := j.f.Write(b)
	j.size += int64(n)
	return err
}

// Close closes the file; what it holds stays for the next start.
//
// It is rewritten first with only what is still live or not stored: the
// "down" lines of records the store has since written would otherwise
// be looked up again at the next start, and a record the store no longer
// has on purpose (swept by retention, a database replaced) stored again.
func (j *Journal) Close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil {
		return nil
	}
	rerr := j.rewriteLocked()
	err := j.f.Close()
	j.f = nil
	return errors.Join(rerr, err)
}

// SetJournal makes the server keep its live dialogs in j and hang up, once
// its listeners are bound, the calls a previous run left up. Call it
// before Run.
func (s *Engine) SetJournal(j *Journal) { s.journal = j }

// journalUp records a call as it starts, and again when it is answered
// (with the dialogs to hang up) and when what its record names changes.
func (s *Engine) journalUp(c *call) {
	if s.journal == nil {
		return
	}
	jc := journalCall{
		ID: c.id, Direction: c.dir,
		Business: c.route.Number.Number, PNID: c.route.Number.PhoneNumberID, WACallID: c.route.UIC.WACallID,
		User: c.route.User, Created: c.created,
	}
	c.mu.Lock()
	a, b := c.a, c.b
	aGone, bGone := a.retired, b.retired
	jc.AEndpoint, jc.BEndpoint = c.aEndpoint, c.bEndpoint
	c.mu.Unlock()
	// A leg that left the call (joined to another) has no dialog to end.
	if !aGone {
		jc.A = a.snapshot()
	}
	if !bGone {
		jc.B = b.snapshot()
	}
	c.mu.Lock()
	jc.Answered, jc.Ringing = c.answeredAt, c.ringingAt
	jc.BUser, jc.Permission, jc.RecordingID, jc.Origin = c.bUser, c.permission, c.recordingID, c.origin
	jc.AUp = c.aAnswered
	if c.aIncoming != nil && jc.Answered.IsZero() && !jc.AUp && c.finalCode == 0 && !c.cc.aReleased {
		jc.AInvite = c.aIncoming
	}
	c.mu.Unlock()
	if d := c.route; d != nil {
		jc.AfterHours = d.AfterHours
		if d.Hunt != nil {
			jc.Hunt = d.Hunt.Name
		}
		if d.BIC != nil {
			jc.CampaignID, jc.CallbackData = d.BIC.CampaignID, d.BIC.CallbackData
		}
	}
	if err := s.journal.up(jc, func() bool { return c.getState() == stateEnded }); err != nil {
		c.log.Error("journal: call not recorded as up; a crash now would leave its legs unreleased", "error", err)
	}
}

// journalDown records the call's end, with its record (cdr, when the
// engine has a CDR store and the call one) until the store has it.
func (s *Engine) journalDown(c *call, cdr *events.CDR) {
	if s.journal == nil {
		return
	}
	var body []byte
	if cdr != nil && s.cdrStored != nil {
		var err error
		if body, err = json.Marshal(cdr); err != nil {
			c.log.Error("journal: call record not encodable; a crash before it is stored would lose it", "error", err)
			body = nil
		}
	}
	if err := s.journal.down(c.id, body); err != nil {
		c.log.Error("journal: end of call not recorded", "error", err)
	}
}

// SetCDRStore has the journal keep each ended call's record until the
// events store has it, and stored says whether it has one for a call id:
// at start, the records the previous run ended without them being stored
// (a crash right after the call ended) are given to the observers again.
// Call it before Run, with the store's OnCDRStored told Journal.Stored.
func (s *Engine) SetCDRStore(stored func(ctx context.Context, callID string) (bool, error)) {
	s.cdrStored = stored
}

// recoverEndedRecords gives the observers the records of calls the
// previous run ended whose records the store does not have.
func (s *Engine) recoverEndedRecords(ctx context.Context) {
	if s.journal == nil {
		return
	}
	var have []string
	n := 0
	for _, cdr := range s.journal.leftEnded() {
		if s.cdrStored == nil || time.Since(cdr.EndedAt) > journalRecoverWithin {
			// CDRs turned off since (nothing tells what was sent), or
			// left by a crash long ago: the store may have swept it by
			// its retention, and it is not to come back.
			have = append(have, cdr.CallID)
			continue
		}
		lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		ok, err := s.cdrStored(lctx, cdr.CallID)
		cancel()
		if err != nil {
			s.log.Error("journal: cannot tell whether a call's record is stored; given again (a duplicate is not stored twice)", "call", cdr.CallID, "error", err)
		}
		if ok {
			have = append(have, cdr.CallID)
			continue
		}
		n++
		s.log.Warn("call record recovered from the journal: the previous run ended the call and stopped before storing its record",
			"call", cdr.CallID, "outcome", string(cdr.Outcome), "ended_at", cdr.EndedAt)
		for _, o := range s.observers {
			if r, ok := o.(RecoveredObserver); ok {
				r.CallRecovered(cdr)
				continue
			}
			o.CallEnded(cdr)
		}
	}
	s.journal.Stored(have)
	if n > 0 {
		s.log.Warn("call records recovered from the journal", "records", n)
	}
}

// snapshot is the leg's dialog as the journal keeps it.
func (l *leg) snapshot() journalDialog {
	l.mu.Lock()
	defer l.mu.Unlock()
	d := journalDialog{
		CallID: l.callID, LocalURI: l.localURI.String(), LocalTag: l.localTag,
		RemoteURI: l.remoteURI.String(), RemoteTag: l.remoteTag, RemoteTarget: l.remoteTarget.String(),
		CSeq: l.localCSeq, Transport: l.transport,
	}
	for _, r := range l.routeSet {
		d.RouteSet = append(d.RouteSet, r.String())
	}
	return d
}

// restore rebuilds a leg from the journal; false if a URI no longer parses.
func (d journalDialog) restore(name string) (*leg, bool) {
	l := &leg{name: name, callID: d.CallID, localTag: d.LocalTag, remoteTag: d.RemoteTag, localCSeq: d.CSeq, transport: d.Transport}
	for _, p := range []struct {
		s   string
		dst *sip.Uri
	}{{d.LocalURI, &l.localURI}, {d.RemoteURI, &l.remoteURI}, {d.RemoteTarget, &l.remoteTarget}} {
		if sip.ParseUri(p.s, p.dst) != nil {
			return nil, false
		}
	}
	for _, r := range d.RouteSet {
		var u sip.Uri
		if sip.ParseUri(r, &u) != nil {
			return nil, false
		}
		l.routeSet = append(l.routeSet, u)
	}
	return l, true
}

// hangUpLeftCalls sends CANCEL for every INVITE a previous run left
// ringing, BYE on both legs of every call it left up, and 503 to the
// callers it left unanswered (over UDP). It runs once the listeners are
// bound, owned by s.wg.
func (s *Engine) hangUpLeftCalls(ctx context.Context) {
	if s.journal == nil {
		return
	}
	// The CANCELs, BYEs and callers' 503s first: the far ends wait for
	// them; the records that were not stored come after (a store lookup
	// each).
	defer s.recoverEndedRecords(ctx)
	invites := s.journal.leftInvites()
	calls := s.journal.left()
	if len(calls) == 0 && len(invites) == 0 {
		return
	}
	s.edge.WaitUDPServing(ctx)
	// The phones still ringing first: someone may answer any moment.
	s.cancelLeftInvites(ctx, invites)
	if len(calls) == 0 {
		return
	}
	s.log.Warn("hanging up calls left up by a previous run", "calls", len(calls))
	for _, jc := range calls {
		log := s.log.With("call", jc.ID, "dir", string(jc.Direction), "a_endpoint", jc.AEndpoint, "b_endpoint", jc.BEndpoint)
		answered := !jc.Answered.IsZero()
		for _, d := range []struct {
			name string
			dlg  journalDialog
		}{{"a", jc.A}, {"b", jc.B}} {
			if d.dlg.CallID == "" || !(answered || d.name == "a" && jc.AUp) {
				continue // the leg had left the call, or was not answered
			}
			if d.dlg.RemoteTag == "" && d.name == "b" {
				continue // never connected (a call flow that had not connected B)
			}
			l, ok := d.dlg.restore(d.name)
			if !ok {
				log.Error("journal: leg not restorable; no BYE sent", "leg", d.name)
				continue
			}
			s.byeRestored(ctx, l, log)
		}
		answeredA := !answered && !jc.AUp && s.answerLeftInvite(ctx, jc, log)
		// Its record: when the call really ended is not known (wagate was
		// down); it ends now, and the cause says so. A call not answered
		// yet failed: its caller got the restart's 503 (answerLeftInvite,
		// over UDP), or no final response from wagate.
		cause, code, reason, outcome := causeRestartedUp, 200, "OK", events.Answered
		attrs := []any{"hangup_by", "wagate", "cause", cause, "talk_s", time.Since(jc.Answered).Round(time.Second).Seconds()}
		if !answered {
			cause, code, reason, outcome = causeRestartedRinging, 0, "", events.Failed
			if answeredA {
				code, reason = restartFinalCode, restartFinalReason
			}
			attrs = []any{"hangup_by", "wagate", "cause", cause}
		}
		log.Info("call ended", attrs...)
		cdr := events.CDR{
			CallID: jc.ID, Direction: events.Direction(jc.Direction), WACallID: jc.WACallID,
			BusinessNumber: jc.Business, PhoneNumberID: jc.PNID, User: jc.User,
			A:         events.Leg{Endpoint: jc.AEndpoint, SIPCallID: jc.A.CallID},
			B:         events.Leg{Endpoint: jc.BEndpoint, SIPCallID: jc.B.CallID, User: jc.BUser},
			CreatedAt: jc.Created, RingingAt: jc.Ringing, AnsweredAt: jc.Answered, EndedAt: time.Now(),
			SIPCode: code, SIPReason: reason, HangupBy: events.HangupWagate, Cause: cause, Outcome: outcome,
			Permission: jc.Permission, RecordingID: jc.RecordingID, CampaignID: jc.CampaignID, CallbackData: jc.CallbackData,
			Origin: jc.Origin, Hunt: jc.Hunt, AfterHours: jc.AfterHours,
		}
		for _, o := range s.observers {
			o.CallEnded(cdr)
		}
	}
}

// The causes of the records of calls a previous run left.
const (
	causeRestartedUp      = "wagate restarted while the call was up"
	causeRestartedRinging = "wagate restarted while the call was ringing"
)

// byeRestored sends BYE on a leg restored from the journal.
func (s *Engine) byeRestored(ctx context.Context, l *leg, log *slog.Logger) {
	req := l.newRequest(sip.BYE, nil)
	if err := reparses(req); err != nil {
		log.Error("journal: leg not restorable; no BYE sent", "leg", l.name, "error", err)
		return
	}
	s.edge.Prepare(req)
	s.wg.Go(func() {
		ctx, cancel := context.WithTimeout(ctx, 64*sip.T1)
		defer cancel()
		res, err := s.edge.Client().Do(ctx, req)
		switch {
		case err != nil || res == nil:
			log.Warn("BYE after restart failed", "leg", l.name, "error", errString(err))
		default:
			log.Info("BYE after restart answered", "leg", l.name, "code", res.StatusCode)
		}
	})
}
