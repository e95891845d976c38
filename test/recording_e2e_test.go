package test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/wagate/wagate/test/internal/metapeer"
)

// Recording by Call-ID, end to end through the real binary: a recorded UIC
// between the Go Meta peer (Opus over SDES-SRTP, 1 kHz) and a Go PBX
// (PCMU, 440 Hz) must leave <dir>/<YYYY>/<MM>/<DD>/<safe Call-ID>.wav with
// WhatsApp on the left and the contact centre on the right, as long as the
// call, aligned on wall-clock time across silences, plus its sidecar; the
// file name must stay inside the directory whatever the Call-ID; a kill -9
// leaves a file the next start repairs; a full disk costs the recording,
// never the call; and the API serves it all behind the token.
// docs/recording.md is the contract.

// TestRecordingUICStereoChannels: a 3.5 s UIC with a different tone on
// each side; then the WAV's channels, its length, the sidecar, the status
// counters and the HTTP API (list by call_id, download, 401 without the
// token).
func TestRecordingUICStereoChannels(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	dir := filepath.Join(e.dir, "recordings")
	w := e.startWagate(recOpts(dir))
	meta, pbx := newMetaPBX(t, e)

	c := placeUIC(t, w, meta, pbx)
	c.pbx.Media.SetSource(pbxTone())
	c.meta.Media.SetSource(metaTone())
	time.Sleep(3500 * time.Millisecond)
	hangup(t, c.meta, "meta")
	hungUp := time.Now()
	waitBye(t, c.pbx, "the PBX")
	callDur := hungUp.Sub(c.answered)
	s := w.waitIdle()
	w.expectCounts(s, 1, 1)

	aID, bID := c.meta.Dialog.CallID, c.pbx.Dialog.CallID
	wavPath, jsonPath, sc := recordingFiles(t, dir, aID, c.start)
	t.Logf("recording %s (Call-ID %q, call answered for %v)", wavPath, aID, callDur.Round(time.Millisecond))
	rec, err := readRecWAV(wavPath)
	if err != nil {
		t.Fatalf("recording: %v", err)
	}
	if d := rec.Duration() - callDur; d < -time.Second || d > time.Second {
		t.Errorf("recording lasts %v, the call was answered for %v: want within ±1 s", rec.Duration(), callDur.Round(time.Millisecond))
	}
	minActive := callDur - 1500*time.Millisecond
	checkChannel(t, "left channel (WhatsApp side, 1 kHz)", rec.Left, 1000, 440, minActive)
	checkChannel(t, "right channel (contact centre, 440 Hz)", rec.Right, 440, 1000, minActive)

	// The sidecar.
	rel, _ := filepath.Rel(dir, wavPath)
	type keyFields struct {
		CallID, NameBy, ACallID, BCallID, Direction, BusinessNumber, WhatsAppSide, HangupSide, File string
		SampleRate                                                                                  int
		Bytes                                                                                       int64
		InProgress, CutShort, Recovered                                                             bool
		Error                                                                                       string
		DroppedChunks                                                                               int64
	}
	wantFile := filepath.ToSlash(rel)
	want := keyFields{
		CallID: aID, NameBy: "a", ACallID: aID, BCallID: bID, Direction: "UIC",
		BusinessNumber: businessNumber, WhatsAppSide: "a", HangupSide: "a", File: wantFile,
		SampleRate: recRate, Bytes: rec.Size,
	}
	got := keyFields{
		sc.CallID, sc.NameBy, sc.ACallID, sc.BCallID, sc.Direction, sc.BusinessNumber, sc.WhatsAppSide, sc.HangupSide, sc.File,
		sc.SampleRate, sc.Bytes, sc.InProgress, sc.CutShort, sc.Recovered, sc.Error, sc.DroppedChunks,
	}
	if got != want {
		raw, _ := os.ReadFile(jsonPath)
		t.Errorf("sidecar differs:\n got %+v\nwant %+v\n%s", got, want, raw)
	}
	if !strings.EqualFold(sc.HangupCause, "bye") {
		t.Errorf("sidecar hangup_cause %q, want the BYE", sc.HangupCause)
	}
	if strings.Join(sc.Channels, ",") != "whatsapp,contact_centre" {
		t.Errorf("sidecar channels %v, want [whatsapp contact_centre]", sc.Channels)
	}
	if sc.AEndpoint != "meta" || sc.BEndpoint != "pbx" || sc.UserNumber != waUser {
		t.Errorf("sidecar a_endpoint %q, b_endpoint %q, user_number %q; want meta, pbx, %s", sc.AEndpoint, sc.BEndpoint, sc.UserNumber, waUser)
	}
	if !strings.HasPrefix(sc.WhatsAppCallID, "wacid.") || sc.SessionID == "" {
		t.Errorf("sidecar whatsapp_call_id %q, session_id %q: want Meta's wacid and wagate's session", sc.WhatsAppCallID, sc.SessionID)
	}
	if d := sc.DurationSeconds - rec.Duration().Seconds(); d < -0.01 || d > 0.01 {
		t.Errorf("sidecar duration_seconds %.3f, the file holds %.3f s", sc.DurationSeconds, rec.Duration().Seconds())
	}
	// Wall-clock stamps seconds apart: a step of the clock between them
	// moves them by as much (wallClockStep).
	if step := wallClockStep(); sc.StartTime.IsZero() || sc.AnswerTime.Before(sc.StartTime.Add(-step)) || !sc.EndTime.After(sc.AnswerTime.Add(-step)) {
		t.Errorf("sidecar times start %v answer %v end %v: want start ≤ answer < end", sc.StartTime, sc.AnswerTime, sc.EndTime)
	}
	if d := sc.AnswerTime.Sub(c.answered); d < -time.Second || d > time.Second {
		t.Errorf("sidecar answer_time %v, the Meta peer got the 200 at %v", sc.AnswerTime, c.answered.UTC())
	}
	if fi, err := os.Stat(wavPath); err == nil && fi.Mode().Perm() != 0o640 {
		t.Errorf("WAV mode %v, want 0640", fi.Mode().Perm())
	}

	st := recordingStats(t, e)
	if st.Active != 0 || st.Completed != 1 || st.Failed != 0 || st.DroppedChunks != 0 || st.BytesWritten < rec.Size {
		t.Errorf("/v1/status recordings %+v, want active 0, completed 1, failed 0, dropped_chunks 0, bytes_written ≥ %d", st, rec.Size)
	}

	t.Run("API", func(t *testing.T) {
		fileBytes, err := os.ReadFile(wavPath)
		if err != nil {
			t.Fatal(err)
		}
		// List by Call-ID.
		resp, body := apiGet(t, e, "/v1/recordings?call_id="+url.QueryEscape(aID), recToken)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("list by call_id: %s: %s", resp.Status, body)
		}
		var list struct {
			Recordings []sidecar `json:"recordings"`
			Count      int       `json:"count"`
		}
		if err := json.Unmarshal(body, &list); err != nil {
			t.Fatalf("list: %v: %s", err, body)
		}
		if list.Count != 1 || len(list.Recordings) != 1 || list.Recordings[0].CallID != aID || list.Recordings[0].File != wantFile || list.Recordings[0].BCallID != bID {
			t.Errorf("list by call_id: want the one recording of %q (%s), got %s", aID, wantFile, body)
		}
		// List by date, and a bad date.
		date := c.start.UTC().Format("2006-01-02")
		if resp, body := apiGet(t, e, "/v1/recordings?date="+date, recToken); resp.StatusCode != http.StatusOK || !bytes.Contains(body, []byte(wantFile)) {
			t.Errorf("list by date %s: %s: %s", date, resp.Status, body)
		}
		if resp, body := apiGet(t, e, "/v1/recordings?date=31-01-2025", recToken); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("list with a bad date: %s: %s, want 400", resp.Status, body)
		}
		// Download by the escaped Call-ID: the file's very bytes.
		path := "/v1/recordings/" + escapeAllPath(aID)
		resp, body = apiGet(t, e, path, recToken)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %s: %s", path, resp.Status, body)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "audio/wav" {
			t.Errorf("GET %s: Content-Type %q, want audio/wav", path, ct)
		}
		if !bytes.Equal(body, fileBytes) {
			t.Errorf("GET %s: %d bytes that differ from the %d-byte file on disk", path, len(body), len(fileBytes))
		}
		if cd := resp.Header.Get("Content-Disposition"); !strings.HasPrefix(cd, "attachment") {
			t.Errorf("GET %s: Content-Disposition %q, want attachment", path, cd)
		}
		// url.PathEscape leaves ':' alone: the same recording.
		if resp, body := apiGet(t, e, "/v1/recordings/"+url.PathEscape(aID), recToken); resp.StatusCode != http.StatusOK || !bytes.Equal(body, fileBytes) {
			t.Errorf("GET with url.PathEscape: %s (%d bytes)", resp.Status, len(body))
		}
		if resp, body := apiGet(t, e, "/v1/recordings/"+escapeAllPath(aID+"x"), recToken); resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET of an unknown Call-ID: %s: %s, want 404", resp.Status, body)
		}
		// Without the token, or with a wrong one: 401, and nothing leaks.
		for _, tok := range []string{"", "wrong-" + recToken} {
			for _, p := range []string{path, "/v1/recordings?call_id=" + url.QueryEscape(aID), "/v1/recordings"} {
				resp, body := apiGet(t, e, p, tok)
				if resp.StatusCode != http.StatusUnauthorized {
					t.Errorf("GET %s with token %q: %s, want 401", p, tok, resp.Status)
				}
				if bytes.Contains(body, []byte("RIFF")) || bytes.Contains(body, []byte(aID)) {
					t.Errorf("GET %s with token %q: the 401 carries recording data: %q", p, tok, body[:min(len(body), 200)])
				}
			}
		}
	})
}

// TestRecordingSilentGapKeepsAlignment: the PBX stops sending for 4 s
// (1 s → 5 s after the answer) and the WhatsApp side for 1 s (2 s → 3 s);
// the file must still last as long as the call, keep the silences on
// their own channel, and put the tone that follows each gap at the moment
// it was sent (±300 ms).
func TestRecordingSilentGapKeepsAlignment(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	dir := filepath.Join(e.dir, "recordings")
	w := e.startWagate(recOpts(dir))
	meta, pbx := newMetaPBX(t, e)

	c := placeUIC(t, w, meta, pbx)
	c.pbx.Media.SetSource(pbxTone())
	c.meta.Media.SetSource(metaTone())
	at := func(d time.Duration) { time.Sleep(time.Until(c.answered.Add(d))) }
	at(1 * time.Second)
	c.pbx.Media.SetSource(nil)
	pbxStop := time.Now()
	at(2 * time.Second)
	c.meta.Media.SetSource(nil)
	metaStop := time.Now()
	at(3 * time.Second)
	c.meta.Media.SetSource(metaTone())
	metaResume := time.Now()
	at(5 * time.Second)
	c.pbx.Media.SetSource(pbxTone())
	pbxResume := time.Now()
	at(6 * time.Second)
	hangup(t, c.pbx, "the PBX") // the contact centre hangs up this time
	hungUp := time.Now()
	waitBye(t, c.meta, "the Meta peer")
	callDur := hungUp.Sub(c.answered)
	w.waitIdle()

	wavPath, _, sc := recordingFiles(t, dir, c.meta.Dialog.CallID, c.start)
	rec, err := readRecWAV(wavPath)
	if err != nil {
		t.Fatalf("recording: %v", err)
	}
	if d := rec.Duration() - callDur; d < -time.Second || d > time.Second {
		t.Errorf("recording lasts %v, the call was answered for %v: want within ±1 s", rec.Duration(), callDur.Round(time.Millisecond))
	}
	if sc.HangupSide != "b" {
		t.Errorf("sidecar hangup_side %q, want b (the PBX hung up)", sc.HangupSide)
	}
	off := func(tm time.Time) int { return samplesAt(tm.Sub(c.answered)) }
	const tol = 300 * time.Millisecond
	margin := samplesAt(200 * time.Millisecond)

	// Each side's silence stays on its channel, the other keeps its tone.
	if l := loudestIn(rec.Right, off(pbxStop)+margin, off(pbxResume)-margin); l > activeDBFS {
		t.Errorf("right channel during the PBX's 4 s of silence: loudest 20 ms at %.1f dBFS, want below %.0f dBFS", l, activeDBFS)
	}
	if l := loudestIn(rec.Left, off(metaStop)+margin, off(metaResume)-margin); l > activeDBFS {
		t.Errorf("left channel during the WhatsApp side's 1 s of silence: loudest 20 ms at %.1f dBFS, want below %.0f dBFS", l, activeDBFS)
	}
	// The recorder places audio by wall-clock arrival: audio held up more
	// than 100 ms (its tolLate) before wagate decoded it is re-anchored
	// after silence as long as the hold-up. On a busy machine one such
	// hole, as long as the stall, is the host's (beside CPU hogs: 20
	// frames in one run, 5 in another whose WhatsApp-side sender never
	// stalled over 50 ms); the PBX's silence leaking into this
	// channel would blank it throughout or every tick, not in one place.
	// checkTone's 1.5 s of tone bounds that hole's length.
	if a := checkTone(t, "left channel across the PBX's silence", rec.Left[off(metaResume)+margin:off(pbxResume)], recRate, 1000, 1500*time.Millisecond); a.Breaks-a.LongestBreak > 2 {
		t.Errorf("left channel: %d quiet frames inside the tone while only the PBX was silent (%d beside the longest run of %d): %s",
			a.Breaks, a.Breaks-a.LongestBreak, a.LongestBreak, levelProfile(rec.Left, recRate))
	}
	checkTone(t, "right channel across the WhatsApp side's silence", rec.Right[:off(pbxStop)], recRate, 440, 700*time.Millisecond)

	// The tones after the gaps land when they were sent.
	for _, g := range []struct {
		what        string
		ch          []int16
		freq        float64
		gap, resume time.Time
	}{
		{"right channel: the PBX's tone after its 4 s gap", rec.Right, 440, pbxStop, pbxResume},
		{"left channel: the WhatsApp tone after its 1 s gap", rec.Left, 1000, metaStop, metaResume},
	} {
		want := off(g.resume)
		from := off(g.gap) + margin // the search starts inside the gap
		got := toneOnset(g.ch, from, g.freq)
		switch {
		case got < 0:
			t.Errorf("%s: not found after %v (level per 100 ms: %s)", g.what, sampleTime(from), levelProfile(g.ch, recRate))
		case sampleTime(got-want) < -tol || sampleTime(got-want) > tol:
			t.Errorf("%s starts at %v in the file, sent at %v after the answer: off by %v, want within ±%v (level per 100 ms: %s)",
				g.what, sampleTime(got), sampleTime(want), sampleTime(got-want), tol, levelProfile(g.ch, recRate))
		default:
			t.Logf("%s starts at %v in the file, sent at %v (%+v)", g.what, sampleTime(got), sampleTime(want), sampleTime(got-want))
		}
	}
}

// hostileCallIDs are Call-IDs that must not steer the file name: path
// traversal, absolute paths, separators, dots, control characters,
// non-UTF-8 bytes, escapes that look like the escaping, 8 KB of text.
func hostileCallIDs(tag string) []string {
	long := strings.Repeat("L", 8*1024-len(tag)-8)
	return []string{
		"../../../../../" + tag + "-escape",
		"/tmp/" + tag + "-abs",
		"a/b\\c/" + tag,
		"..",
		".hidden-" + tag,
		"-dash-" + tag,
		"x%2Fy-" + tag, // the escaped form of the next one, literally
		"x/y-" + tag,
		"x:y-" + tag,
		"ctl\x01\x02\x1b[31m\x7f\tmid-" + tag,
		"bad-utf8-\xff\xfe\xc3(\x80-" + tag,
		"\xc3\xa9t\xc3\xa9-" + tag, // valid UTF-8, not ASCII
		long + "-1@" + tag,         // 8 KB, distinct only at the end
		long + "-2@" + tag,
	}
}

// TestRecordingHostileCallIDs: Meta calls (SIP over TCP, plain RTP) with
// Call-IDs built to escape or confuse the recordings directory; every call
// must be recorded inside it, under a name without separators or control
// characters, one file per Call-ID, found again by its exact Call-ID.
func TestRecordingHostileCallIDs(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	dir := filepath.Join(e.dir, "jail", "recordings")
	o := recOpts(dir)
	o.MetaEncryption, o.MetaTransport = "none", "tcp"
	w := e.startWagate(o)
	pbx := newGoPeer(t, e.PBX, metapeer.Config{Profile: metapeer.ProfileG711})
	listenUDP(t, net.JoinHostPort(e.Meta.IP, strconv.Itoa(e.Meta.MediaPort))) // wagate's RTP toward Meta lands here
	tag := "wgt" + randHex(4)
	ids := hostileCallIDs(tag)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stopAnswering := answerLoop(ctx, pbx, len(ids))
	results := make([]rawCallResult, len(ids))
	errs := make([]error, len(ids))
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = rawTCPUIC(e.Meta.IP, w.SIPAddr, id, plainPCMUSDP(e.Meta.IP, e.Meta.MediaPort), 1500*time.Millisecond)
		}()
	}
	wg.Wait()
	pcalls := stopAnswering()
	for _, pc := range pcalls {
		waitBye(t, pc, "the PBX")
	}
	recorded := map[string]bool{}
	for i, id := range ids {
		switch r := results[i]; {
		case errs[i] != nil:
			t.Errorf("call with Call-ID %s: %v", shortID(id), errs[i])
		case r.Status != 200:
			t.Errorf("call with Call-ID %s: %s, want 200", shortID(id), r.Line)
		case r.CallID != id:
			t.Errorf("call with Call-ID %s: the 200 came back with Call-ID %s", shortID(id), shortID(r.CallID))
		default:
			recorded[id] = true
		}
	}
	s := w.waitIdle()
	w.expectCounts(s, uint64(len(ids)), uint64(len(ids)))

	// Wait for every recording to be finalized.
	deadline := time.Now().Add(10 * time.Second)
	for recordingStats(t, e).Active > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	st := recordingStats(t, e)
	if st.Active != 0 || st.Completed != int64(len(recorded)) || st.Failed != 0 {
		t.Errorf("/v1/status recordings %+v, want active 0, completed %d, failed 0", st, len(recorded))
	}

	// Nothing outside the recordings directory: walk the test's whole
	// directory (the jail's parent included) for anything wagate wrote
	// that is not its config or log.
	err := filepath.WalkDir(e.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == e.dir || p == filepath.Join(e.dir, "jail") || p == dir {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == ".." || strings.HasPrefix(rel, "../") {
			if base := filepath.Base(p); !d.IsDir() && (base == "wagate.yaml" || base == "wagate.log") {
				return nil
			}
			if state, _ := filepath.Rel(filepath.Join(e.dir, "data"), p); !strings.HasPrefix(state, "..") {
				return nil // wagate's own state (data_dir): the journal of live calls
			}
			t.Errorf("%q was created outside the recordings directory %s", p, dir)
			return nil
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walking %s: %v", e.dir, err)
	}
	for _, p := range []string{"/tmp/" + tag + "-abs.wav", "/tmp/" + tag + "-abs", "/" + tag + "-escape.wav"} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s exists: a Call-ID reached the file system as a path", p)
		}
	}

	// Inside: <YYYY>/<MM>/<DD>/<name>.{wav,json}, names from the safe set
	// only, regular files, no symbolic links, no leftovers.
	nameRE := regexp.MustCompile(`^[A-Za-z0-9_.@+=%~-]+\.(wav|json)$`)
	dayRE := regexp.MustCompile(`^[0-9]{4}/[0-9]{2}/[0-9]{2}$`)
	byID := map[string][]string{} // exact Call-ID → WAV names
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "." {
			return nil
		}
		rel = filepath.ToSlash(rel)
		if d.Type()&fs.ModeSymlink != 0 || !d.IsDir() && !d.Type().IsRegular() {
			t.Errorf("%s: %v, want a regular file or directory", rel, d.Type())
			return nil
		}
		if d.IsDir() {
			if depth := strings.Count(rel, "/"); depth > 2 || depth == 2 && !dayRE.MatchString(rel) {
				t.Errorf("unexpected directory %q in the recordings directory", rel)
			}
			return nil
		}
		name := d.Name()
		if !dayRE.MatchString(filepath.ToSlash(filepath.Dir(rel))) {
			t.Errorf("file %q is not in a <YYYY>/<MM>/<DD> directory", rel)
		}
		if !nameRE.MatchString(name) || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "-") {
			t.Errorf("file name %q: want only [A-Za-z0-9_.@+=%%~-], no leading '.' or '-'", name)
		}
		if len(name) > 128+len(".json")+6 {
			t.Errorf("file name %q is %d bytes long", name, len(name))
		}
		if strings.HasSuffix(name, ".json") {
			sc, raw, err := readSidecar(p)
			if err != nil {
				t.Errorf("sidecar %s: %v", rel, err)
				return nil
			}
			if sc.File != strings.TrimSuffix(rel, ".json")+".wav" {
				t.Errorf("sidecar %s says file %q", rel, sc.File)
			}
			if sc.InProgress || sc.CutShort {
				t.Errorf("sidecar %s: in_progress %v, cut_short %v after a normal hangup:\n%s", rel, sc.InProgress, sc.CutShort, raw)
			}
			byID[sc.exactCallID()] = append(byID[sc.exactCallID()], strings.TrimSuffix(name, ".json"))
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walking %s: %v", dir, err)
	}

	names := map[string]string{}
	for _, id := range ids {
		if !recorded[id] {
			continue
		}
		got := byID[id]
		if len(got) != 1 {
			t.Errorf("Call-ID %s: %d recordings %v, want exactly one\ntree:\n%s", shortID(id), len(got), got, listTree(dir))
			continue
		}
		name := got[0]
		if other, dup := names[name]; dup {
			t.Errorf("Call-IDs %s and %s share the file name %q", shortID(other), shortID(id), name)
		}
		names[name] = id
		wavs, _ := filepath.Glob(filepath.Join(dir, "*", "*", "*", name+".wav"))
		if len(wavs) != 1 {
			t.Errorf("Call-ID %s: %d WAV files named %q", shortID(id), len(wavs), name)
		} else if _, err := readRecWAV(wavs[0]); err != nil {
			t.Errorf("Call-ID %s: %v", shortID(id), err)
		}
		if full := docSafeName(id); len(full) <= 128 {
			if name != full {
				t.Errorf("Call-ID %s is stored as %q, docs/recording.md says %q", shortID(id), name, full)
			}
		} else if err := checkLongName(name, id); err != nil {
			t.Errorf("Call-ID %s (%d bytes): %v", shortID(id), len(id), err)
		}
	}
	if len(byID) != len(recorded) {
		t.Errorf("%d distinct Call-IDs in the sidecars, %d calls recorded", len(byID), len(recorded))
	}

	// Found again by the exact Call-ID through the API (the 8 KB ones
	// would need a 24 KB URL: above the API's 16 KB header limit).
	for _, id := range ids {
		if !recorded[id] || len(id) > 1000 {
			continue
		}
		resp, body := apiGet(t, e, "/v1/recordings?call_id="+url.QueryEscape(id), recToken)
		var list struct {
			Recordings []sidecar `json:"recordings"`
		}
		if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &list) != nil || len(list.Recordings) != 1 || list.Recordings[0].exactCallID() != id {
			t.Errorf("list by call_id %s: %s: %s", shortID(id), resp.Status, body)
		}
		resp, body = apiGet(t, e, "/v1/recordings/"+escapeAllPath(id), recToken)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "audio/wav" || !bytes.HasPrefix(body, []byte("RIFF")) {
			t.Errorf("GET /v1/recordings/%s: %s %q: %q", escapeAllPath(id), resp.Status, resp.Header.Get("Content-Type"), body[:min(len(body), 100)])
		}
	}
}

// shortID shows a Call-ID quoted, cut to 60 bytes.
func shortID(id string) string {
	if len(id) > 60 {
		return fmt.Sprintf("%q…(%d bytes)", id[:30], len(id))
	}
	return fmt.Sprintf("%q", id)
}

// TestRecordingLongCallIDOverUDP: an INVITE with an 8 KB Call-ID over UDP
// is answered over UDP too (wagate sends datagrams past the MTU, which IP
// fragments, rather than refusing to answer as sipgo's 1,300-byte limit
// did). The caller retransmits as RFC 3261 says (T1 = 500 ms: at 0, 0.5,
// 1.5 and 3.5 s, same branch): one INVITE transaction must never become
// more than one call to the agent; the caller then ACKs and hangs up, and
// nothing may be left behind — no call, no port, no active recording.
func TestRecordingLongCallIDOverUDP(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	dir := filepath.Join(e.dir, "recordings")
	o := recOpts(dir)
	o.MetaEncryption = "none"
	w := e.startWagate(o)
	pbx := newGoPeer(t, e.PBX, metapeer.Config{Profile: metapeer.ProfileG711})
	p := newRawPeer(t, e.Meta.IP, w)
	id := strings.Repeat("U", 8*1024) + "@udp"

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	stopAnswering := answerLoop(ctx, pbx, 8)
	inv := rawInvite(p, id, businessNumber, "application/sdp", plainPCMUSDP(e.Meta.IP, e.Meta.MediaPort))
	var answers []string
	var ok200 string
	sent := time.Now()
	for _, at := range []time.Duration{0, 500 * time.Millisecond, 1500 * time.Millisecond, 3500 * time.Millisecond} {
		time.Sleep(time.Until(sent.Add(at)))
		if got := p.exchangeMsg(inv, 100*time.Millisecond); got != "" {
			line, _, _ := strings.Cut(got, "\r\n")
			answers = append(answers, line)
			if strings.HasPrefix(line, "SIP/2.0 200") {
				ok200 = got
			}
		}
	}
	if ok200 == "" {
		t.Fatalf("the 8 KB INVITE got no 200 over UDP: %q", answers)
	}
	for i, m := range []string{"ACK", "BYE"} {
		req := fmt.Sprintf("%s sip:wagate@%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK-end%d\r\nFrom: %s\r\nTo: %s\r\nCall-ID: %s\r\nCSeq: %d %s\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
			m, p.to, p.local(), i, headerOf(inv, "From"), headerOf(ok200, "To"), id, i+1, m)
		if m == "ACK" {
			_, _ = p.conn.WriteToUDP([]byte(req), p.to)
			continue
		}
		if got := p.exchange(req, replyLimit); !strings.HasPrefix(got, "SIP/2.0 200") {
			t.Errorf("BYE after the 8 KB INVITE: got %q, want 200", got)
		}
	}
	time.Sleep(500 * time.Millisecond)
	cancel()
	calls := stopAnswering()
	for _, pc := range calls {
		waitBye(t, pc, "the PBX")
	}
	s := w.waitIdle()
	st := recordingStats(t, e)
	t.Logf("8 KB Call-ID over UDP, sent 4 times: final responses %q; the PBX was called %d time(s); status %+v, recordings %+v", answers, len(calls), s, st)
	if len(calls) > 1 {
		log, _ := os.ReadFile(w.logPath)
		var lines []string
		for _, l := range strings.Split(string(log), "\n") {
			if strings.Contains(l, `"msg":"call started"`) || strings.Contains(l, "not sent") || strings.Contains(l, "BYE failed") {
				lines = append(lines, regexp.MustCompile(`U{20,}`).ReplaceAllString(l, "U…U"))
			}
		}
		t.Errorf("one INVITE (4 transmissions of the same transaction, 8 KB Call-ID over UDP) made wagate call the agent %d times: each retransmission became a new call (calls_started %d), answered by the agent and dropped, while the caller got no response at all; wagate's log:\n%s",
			len(calls), s.CallsStarted, strings.Join(lines, "\n"))
	}
	if st.Active != 0 {
		t.Errorf("recordings still active: %+v", st)
	}
	if tree := listTree(dir); strings.Contains(tree, ".wav") {
		t.Logf("recordings left (a call that was never answered toward the caller):\n%s", tree)
	}
}

// TestRecordingRepairAfterKill9: wagate is SIGKILLed 3 s into a recorded
// call with tones flowing; started again on the same config, it repairs
// the file: a valid WAV whose sizes match its length (and that sox
// reads, when installed), holding the ~3 s that were heard, with a sidecar
// saying recovered and cut short.
func TestRecordingRepairAfterKill9(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	dir := filepath.Join(e.dir, "recordings")
	o := recOpts(dir)
	cfg := e.writeConfig(o)

	// The first wagate is started here rather than by startWagate, whose
	// cleanup treats an exit during the test as a failure.
	w1 := &wagate{
		t: t, e: e,
		logPath: filepath.Join(e.dir, "wagate-killed.log"),
		apiURL:  fmt.Sprintf("http://%s/v1/status", net.JoinHostPort(e.WagateIP, strconv.Itoa(e.APIPort))),
		SIPAddr: net.JoinHostPort(e.WagateIP, strconv.Itoa(e.SIPPort)),
		exited:  make(chan struct{}),
	}
	logf, err := os.Create(w1.logPath)
	if err != nil {
		t.Fatal(err)
	}
	w1.cmd = exec.Command(wagateBin, "-config", cfg)
	w1.cmd.Stdout, w1.cmd.Stderr, w1.cmd.Dir = logf, logf, e.dir
	if err := w1.cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("start wagate: %v", err)
	}
	go func() {
		w1.waitErr = w1.cmd.Wait()
		logf.Close()
		close(w1.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-w1.exited:
		default:
			_ = w1.cmd.Process.Kill()
			<-w1.exited
		}
		if t.Failed() {
			log, _ := os.ReadFile(w1.logPath)
			t.Logf("killed wagate's log (%s):\n%s", w1.logPath, tail(log, 100))
		}
	})
	w1.waitReady()

	meta, pbx := newMetaPBX(t, e)
	c := placeUIC(t, w1, meta, pbx)
	c.pbx.Media.SetSource(pbxTone())
	c.meta.Media.SetSource(metaTone())
	time.Sleep(time.Until(c.answered.Add(3 * time.Second)))
	if err := w1.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9: %v", err)
	}
	killedAt := time.Now()
	select {
	case <-w1.exited:
	case <-time.After(5 * time.Second):
		t.Fatal("wagate still running 5 s after SIGKILL")
	}
	heard := killedAt.Sub(c.answered)
	c.meta.Media.Close()
	c.pbx.Media.Close()

	name := docSafeName(c.meta.Dialog.CallID)
	var wavPath, jsonPath string
	for _, d := range dayDirs(dir, c.start) {
		if _, err := os.Stat(filepath.Join(d, name+".wav")); err == nil {
			wavPath, jsonPath = filepath.Join(d, name+".wav"), filepath.Join(d, name+".json")
		}
	}
	if wavPath == "" {
		t.Fatalf("no recording named %q after the kill:\n%s", name, listTree(dir))
	}
	before, _ := os.ReadFile(wavPath)
	scBefore, _, _ := readSidecar(jsonPath)
	if _, err := readRecWAV(wavPath); err != nil {
		t.Logf("as the kill left it (%d bytes, sidecar in_progress %v): %v", len(before), scBefore.InProgress, err)
	} else {
		t.Logf("as the kill left it (%d bytes, sidecar in_progress %v): already consistent", len(before), scBefore.InProgress)
	}

	// Started again on the same config: the start-up repair runs.
	w2 := e.startWagate(o)
	rec, err := readRecWAV(wavPath)
	if err != nil {
		t.Fatalf("after the restart: %v", err)
	}
	if d := rec.Duration(); d < heard-time.Second || d > heard+300*time.Millisecond {
		t.Errorf("repaired recording holds %v of audio; %v were heard before the kill: want between −1 s and +0.3 s of it", d, heard.Round(time.Millisecond))
	} else {
		t.Logf("repaired recording holds %v of audio; %v were heard before the kill", d, heard.Round(time.Millisecond))
	}
	checkChannel(t, "repaired left channel (1 kHz)", rec.Left, 1000, 440, heard-1500*time.Millisecond)
	checkChannel(t, "repaired right channel (440 Hz)", rec.Right, 440, 1000, heard-1500*time.Millisecond)
	sc, raw, err := readSidecar(jsonPath)
	switch {
	case err != nil:
		t.Errorf("sidecar after the repair: %v", err)
	case sc.InProgress || !sc.Recovered || !sc.CutShort || sc.Error == "" || sc.Bytes != rec.Size || sc.CallID != c.meta.Dialog.CallID:
		t.Errorf("sidecar after the repair: want in_progress absent, recovered and cut_short true, an error, bytes %d, call_id %q:\n%s", rec.Size, c.meta.Dialog.CallID, raw)
	case sc.DurationSeconds < rec.Duration().Seconds()-0.01 || sc.DurationSeconds > rec.Duration().Seconds()+0.01:
		t.Errorf("sidecar duration_seconds %.3f, the file holds %.3f s", sc.DurationSeconds, rec.Duration().Seconds())
	}
	if tmps, _ := filepath.Glob(filepath.Join(filepath.Dir(wavPath), ".*.tmp")); len(tmps) > 0 {
		t.Errorf("temporary sidecars left: %v", tmps)
	}
	log, _ := os.ReadFile(w2.logPath)
	if n := bytes.Count(log, []byte("repaired a recording interrupted by a crash")); n != 1 {
		t.Errorf("the restarted wagate logged %d repair warnings, want 1", n)
	}
	if sox, err := exec.LookPath("sox"); err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, sox, "--i", wavPath).CombinedOutput()
		if err != nil || !bytes.Contains(out, []byte("Channels       : 2")) || !bytes.Contains(out, []byte("Sample Rate    : 8000")) {
			t.Errorf("sox --i %s: %v\n%s", wavPath, err, out)
		}
		if out, err := exec.CommandContext(ctx, sox, wavPath, "-n", "stat").CombinedOutput(); err != nil {
			t.Errorf("sox %s -n stat (decodes the whole file): %v\n%s", wavPath, err, out)
		}
	} else {
		t.Logf("sox not installed: the header check above stands alone")
	}
	// The restarted wagate serves it.
	resp, body := apiGet(t, e, "/v1/recordings/"+escapeAllPath(c.meta.Dialog.CallID), recToken)
	if file, _ := os.ReadFile(wavPath); resp.StatusCode != http.StatusOK || !bytes.Equal(body, file) {
		t.Errorf("GET of the repaired recording: %s, %d bytes (file %d)", resp.Status, len(body), len(file))
	}
	if st := recordingStats(t, e); st.Active != 0 {
		t.Errorf("/v1/status recordings after the restart: %+v, want none active", st)
	}
	// The peers' dialogs died with the first wagate; nothing to hang up.
	w2.waitIdle()
}

// TestRecordingDiskFullCallGoesOn: the recordings directory sits on a 64 KB
// tmpfs (2 s of stereo 8 kHz), which fills up during a 4.5 s call: the
// call must go on with audio both ways and end normally, and /v1/status
// must count the failure. Without root (or without mount) a directory the
// process cannot write (0500) stands in for it.
func TestRecordingDiskFullCallGoesOn(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	mnt := filepath.Join(e.dir, "small")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(mnt, "recordings")
	mode := ""
	if os.Geteuid() == 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		out, err := exec.CommandContext(ctx, "mount", "-t", "tmpfs", "-o", "size=64k,mode=0755", "tmpfs", mnt).CombinedOutput()
		cancel()
		if err != nil {
			t.Skipf("running as root but `mount -t tmpfs -o size=64k` failed (%v: %s), and root ignores directory permissions: no way to make the recordings directory unwritable here", err, bytes.TrimSpace(out))
		}
		mode = "full tmpfs"
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if out, err := exec.CommandContext(ctx, "umount", mnt).CombinedOutput(); err != nil {
				t.Errorf("umount %s: %v: %s", mnt, err, out)
			}
		})
	} else {
		if err := os.Mkdir(dir, 0o500); err != nil {
			t.Fatal(err)
		}
		mode = "read-only directory"
		t.Cleanup(func() { os.Chmod(dir, 0o700) })
	}
	// Registered after the unmount: runs (stopping wagate) before it.
	w := e.startWagate(recOpts(dir))
	meta, pbx := newMetaPBX(t, e)

	c := placeUIC(t, w, meta, pbx)
	// 4.5 s of tone each way counted in packets (a loaded machine stalls
	// the senders: wall time says nothing), well past the failure, and
	// its tail waited for.
	playFor(t, 4500*time.Millisecond, play{c.pbx.Media, pbxTone()}, play{c.meta.Media, metaTone()})
	mrec, prec := c.meta.Media.Recording(), c.pbx.Media.Recording()
	hangup(t, c.meta, "meta")
	waitBye(t, c.pbx, "the PBX")
	if bye := c.pbx.Dialog.RemoteBye(); bye == nil {
		t.Errorf("the PBX got no BYE from wagate")
	}
	s := w.waitIdle()
	w.expectCounts(s, 1, 1)

	// Audio flowed both ways for the whole call, past the failure.
	checkTone(t, "WhatsApp's tone at the PBX ("+mode+")", prec, 8000, 1000, 3500*time.Millisecond)
	checkTone(t, "the PBX's tone at WhatsApp ("+mode+")", mrec, 48000, 440, 3500*time.Millisecond)

	deadline := time.Now().Add(10 * time.Second)
	var st recStats
	for {
		st = recordingStats(t, e)
		if st.Failed >= 1 && st.Active == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if st.Failed < 1 || st.Active != 0 || st.Completed != 0 {
		t.Errorf("/v1/status recordings %+v with a %s: want failed ≥ 1, active 0, completed 0", st, mode)
	} else {
		t.Logf("/v1/status recordings with a %s: %+v", mode, st)
	}
	log, _ := os.ReadFile(w.logPath)
	if !bytes.Contains(log, []byte("the call goes on without it")) {
		t.Errorf("wagate logged no recording failure")
	}

	// What is left on disk must still be a valid WAV (partial), and its
	// sidecar must say the recording was cut short and why, not that the
	// call is still being recorded.
	t.Run("after the failure", func(t *testing.T) {
		id := c.meta.Dialog.CallID
		found := false
		for _, d := range dayDirs(dir, c.start) {
			wavPath := filepath.Join(d, docSafeName(id)+".wav")
			if _, err := os.Stat(wavPath); err != nil {
				continue
			}
			found = true
			if rec, err := readRecWAV(wavPath); err != nil {
				t.Errorf("the partial recording is not a valid WAV: %v", err)
			} else {
				t.Logf("partial recording: %v of audio, %d bytes", rec.Duration(), rec.Size)
			}
			sc, raw, err := readSidecar(filepath.Join(d, docSafeName(id)+".json"))
			switch {
			case err != nil:
				t.Errorf("sidecar of the failed recording: %v", err)
			case sc.InProgress || !sc.CutShort || sc.Error == "":
				t.Errorf("sidecar of the failed recording after the call ended: in_progress %v, cut_short %v, error %q; docs/recording.md: \"if a write fails mid-call (disk full, …) … the sidecar says cut_short and why\":\n%s",
					sc.InProgress, sc.CutShort, sc.Error, raw)
			}
			if resp, body := apiGet(t, e, "/v1/recordings/"+escapeAllPath(id), recToken); resp.StatusCode == http.StatusConflict {
				t.Errorf("GET /v1/recordings/{call-id} after the call ended: %s %s — the API reports an ended call as still being recorded", resp.Status, bytes.TrimSpace(body))
			}
		}
		if !found && mode == "full tmpfs" {
			t.Errorf("no partial recording on the full tmpfs:\n%s", listTree(dir))
		}
	})
}

// TestRecordingRetentionAfterRecordingTurnedOff: recording was turned off
// (recording.enabled false, no number records) but retention_days is
// set: the recordings made before must still be deleted when they are
// older than the retention, as they were while recording was on — a
// business that stops recording still owes its callers the deletion.
// Files wagate did not write stay.
func TestRecordingRetentionAfterRecordingTurnedOff(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	dir := filepath.Join(e.dir, "recordings")
	day := filepath.Join(dir, "2020", "01", "31")
	if err := os.MkdirAll(day, 0o750); err != nil {
		t.Fatal(err)
	}
	hdr := []byte("RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x02\x00\x40\x1f\x00\x00\x00\x7d\x00\x00\x04\x00\x10\x00data\x00\x00\x00\x00")
	old := map[string][]byte{
		"old@pbx.example.wav":  hdr,
		"old@pbx.example.json": []byte(`{"call_id":"old@pbx.example","file":"2020/01/31/old@pbx.example.wav","sample_rate":8000,"bytes":44}`),
	}
	for name, b := range old {
		if err := os.WriteFile(filepath.Join(day, name), b, 0o640); err != nil {
			t.Fatal(err)
		}
	}
	foreign := filepath.Join(day, "notes.txt")
	if err := os.WriteFile(foreign, []byte("not a recording"), 0o640); err != nil {
		t.Fatal(err)
	}
	w := e.startWagate(wagateOpts{Extra: fmt.Sprintf("recording: {enabled: false, directory: %q, retention_days: 30}\n", dir)})

	deadline := time.Now().Add(10 * time.Second)
	for {
		left := 0
		for name := range old {
			if _, err := os.Stat(filepath.Join(day, name)); err == nil {
				left++
			}
		}
		if left == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d files of a recording from 2020 still there 10 s after the start, with retention_days 30:\n%s", left, listTree(dir))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := os.Stat(foreign); err != nil {
		t.Errorf("a file wagate did not write was removed: %v", err)
	}
	w.waitIdle()
}

// TestRecordingOffByReloadWhileRinging: recording is on; a call rings
// at the PBX while the operator turns recording off for its number
// (`recording: false`, SIGHUP). When it is answered after the reload, it
// is not recorded: the running configuration decides at the answer, not
// the one the call started under.
func TestRecordingOffByReloadWhileRinging(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	dir := filepath.Join(e.dir, "recordings")
	o := recOpts(dir)
	w := e.startWagate(o)
	meta, pbx := newMetaPBX(t, e)
	ctx, cancel := context.WithTimeout(context.Background(), peerCallLimit)
	defer cancel()
	answered := answerAsync(ctx, pbx, metapeer.AnswerSpec{Ring: 5 * time.Second})
	type result struct {
		c   *metapeer.Call
		err error
	}
	caller := make(chan result, 1)
	go func() {
		c, err := meta.Call(ctx, metapeer.CallSpec{Target: w.SIPAddr, To: businessNumber, From: waUser})
		caller <- result{c, err}
	}()
	w.waitLogMsg("call started", 0)
	skip := len(w.logLines())
	o.NumberExtra = ", recording: false"
	e.writeConfig(o)
	w.hup()
	w.waitLogMsg("config reloaded", skip)
	pc := waitAnswer(t, answered, "the PBX")
	r := <-caller
	if r.err != nil {
		t.Fatalf("UIC: %v", r.err)
	}
	time.Sleep(time.Second) // a second the recording would hold
	hangup(t, r.c, "meta")
	waitBye(t, pc, "the PBX")
	w.waitIdle()
	reloaded, answeredAt := -1, -1
	for i, l := range w.logLines() {
		switch l.str("msg") {
		case "config reloaded":
			reloaded = i
		case "call answered":
			answeredAt = i
		}
	}
	if reloaded < 0 || answeredAt < reloaded {
		t.Fatalf("the call was answered (log line %d) before the reload was applied (line %d): the PBX's ring was too short for this machine", answeredAt, reloaded)
	}
	if wavs, _ := filepath.Glob(filepath.Join(dir, "*", "*", "*", "*.wav")); len(wavs) > 0 {
		t.Errorf("a call answered after its number's recording was turned off was recorded: %v\n%s", wavs, listTree(dir))
	}
}
