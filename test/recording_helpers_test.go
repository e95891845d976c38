package test

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wagate/wagate/test/internal/audio"
	"github.com/wagate/wagate/test/internal/metapeer"
	"github.com/wagate/wagate/test/internal/rtppeer"
)

// Helpers for the recording tests (recording_e2e_test.go): the config,
// the API, the files wagate writes (found the way docs/recording.md says
// they are named, with an independent implementation of the naming rule),
// a strict reader of the stereo WAV, per-channel tone measurements, and a
// raw SIP-over-TCP caller that can carry any Call-ID.

// recToken is the API bearer token of the recording tests (required when
// recording is enabled and the API listens).
const recToken = "rec-e2e-token"

// recRate is the recordings' sample rate (the default).
const recRate = 8000

// recOpts is a config that records every call into dir, with the API
// token set.
func recOpts(dir string) wagateOpts {
	return wagateOpts{
		MetaEncryption: "sdes",
		Extra:          fmt.Sprintf("recording: {enabled: true, directory: %q}\n", dir),
		APIExtra:       ", token: {value: " + recToken + "}",
	}
}

func (e *env) apiBase() string {
	return "http://" + net.JoinHostPort(e.WagateIP, strconv.Itoa(e.APIPort))
}

// apiGet GETs path (with the bearer token when token is set) and returns the
// response, its body read (at most 64 MiB).
func apiGet(t *testing.T, e *env, path, token string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, e.apiBase()+path, nil)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		t.Fatalf("GET %s: reading body: %v", path, err)
	}
	return resp, body
}

// escapeAllPath percent-encodes every byte outside [A-Za-z0-9_~-], as
// docs/recording.md says a Call-ID in the path must be.
func escapeAllPath(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '~' || c == '-' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// recStats is the "recordings" object of /v1/status (recording.Stats).
type recStats struct {
	Active        int64 `json:"active"`
	Completed     int64 `json:"completed"`
	Failed        int64 `json:"failed"`
	DroppedChunks int64 `json:"dropped_chunks"`
	BytesWritten  int64 `json:"bytes_written"`
}

// recordingStats reads /v1/status and returns its "recordings" object; it
// fails the test when there is none.
func recordingStats(t *testing.T, e *env) recStats {
	t.Helper()
	resp, body := apiGet(t, e, "/v1/status", "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/v1/status: %s: %s", resp.Status, body)
	}
	var doc struct {
		Recordings *recStats `json:"recordings"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatalf("/v1/status: %v: %s", err, body)
	}
	if doc.Recordings == nil {
		t.Fatalf("/v1/status has no \"recordings\" object with recording enabled: %s", body)
	}
	return *doc.Recordings
}

// sidecar is a recording's JSON sidecar, field names as docs/recording.md
// documents them (decoded independently of the recording package).
type sidecar struct {
	CallID          string    `json:"call_id"`
	CallIDBase64    string    `json:"call_id_base64"`
	NameBy          string    `json:"name_by"`
	ACallID         string    `json:"a_call_id"`
	BCallID         string    `json:"b_call_id"`
	WhatsAppCallID  string    `json:"whatsapp_call_id"`
	SessionID       string    `json:"session_id"`
	Direction       string    `json:"direction"`
	BusinessNumber  string    `json:"business_number"`
	UserNumber      string    `json:"user_number"`
	AEndpoint       string    `json:"a_endpoint"`
	BEndpoint       string    `json:"b_endpoint"`
	WhatsAppSide    string    `json:"whatsapp_side"`
	Channels        []string  `json:"channels"`
	Kind            string    `json:"kind"`
	StartTime       time.Time `json:"start_time"`
	AnswerTime      time.Time `json:"answer_time"`
	EndTime         time.Time `json:"end_time"`
	DurationSeconds float64   `json:"duration_seconds"`
	HangupSide      string    `json:"hangup_side"`
	HangupCause     string    `json:"hangup_cause"`
	SampleRate      int       `json:"sample_rate"`
	File            string    `json:"file"`
	Bytes           int64     `json:"bytes"`
	InProgress      bool      `json:"in_progress"`
	CutShort        bool      `json:"cut_short"`
	Error           string    `json:"error"`
	Recovered       bool      `json:"recovered"`
	DroppedChunks   int64     `json:"dropped_chunks"`
}

// exactCallID is the Call-ID a sidecar records, call_id_base64 decoded
// when present.
func (s sidecar) exactCallID() string {
	if s.CallIDBase64 != "" {
		if b, err := base64.StdEncoding.DecodeString(s.CallIDBase64); err == nil {
			return string(b)
		}
	}
	return s.CallID
}

func readSidecar(path string) (sidecar, []byte, error) {
	var s sidecar
	b, err := os.ReadFile(path)
	if err != nil {
		return s, nil, err
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, b, fmt.Errorf("%s: %v", path, err)
	}
	return s, b, nil
}

// docSafeName is the file name (without extension) docs/recording.md
// promises for a Call-ID that maps to at most 128 bytes: letters, digits
// and "-_.@+=" kept, every other byte %XX (uppercase), a leading '.' or '-'
// escaped, the empty Call-ID "%". Written from the documentation, not from
// the recording package.
func docSafeName(id string) string {
	if id == "" {
		return "%"
	}
	var b strings.Builder
	for i := 0; i < len(id); i++ {
		c := id[i]
		keep := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-_.@+=", c) >= 0
		if i == 0 && (c == '.' || c == '-') {
			keep = false
		}
		if keep {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// checkLongName checks the documented name of a Call-ID whose escaped form
// exceeds 128 bytes: at most 128 bytes, a prefix of the escaped Call-ID
// not cut inside a %XX, then '~' and 16 hex digits of its SHA-256.
func checkLongName(name, id string) error {
	full := docSafeName(id)
	sum := sha256.Sum256([]byte(id))
	suffix := "~" + hex.EncodeToString(sum[:])[:16]
	switch {
	case len(name) > 128:
		return fmt.Errorf("name is %d bytes, want at most 128", len(name))
	case !strings.HasSuffix(name, suffix):
		return fmt.Errorf("name %q does not end with ~ and the first 16 hex digits of the Call-ID's SHA-256 (%s)", name, suffix)
	}
	prefix := strings.TrimSuffix(name, suffix)
	if !strings.HasPrefix(full, prefix) {
		return fmt.Errorf("name prefix %q is not a prefix of the escaped Call-ID", prefix)
	}
	if i := strings.LastIndexByte(prefix, '%'); i >= 0 && i > len(prefix)-3 {
		return fmt.Errorf("name prefix %q is cut inside a %%XX escape", prefix)
	}
	return nil
}

// dayDirs are the day directories a call started around t may be in
// (UTC; the minute before t too, for a call started just before midnight).
func dayDirs(dir string, t time.Time) []string {
	a := filepath.Join(dir, t.UTC().Format("2006/01/02"))
	b := filepath.Join(dir, t.Add(-time.Minute).UTC().Format("2006/01/02"))
	if a == b {
		return []string{a}
	}
	return []string{a, b}
}

// recordingFiles returns the WAV and sidecar paths of the recording named
// by callID (at most 128 bytes escaped) for a call started around start,
// waiting (bounded) until its sidecar no longer says in_progress: the
// recorder finishes in the background after the hangup.
func recordingFiles(t *testing.T, dir, callID string, start time.Time) (wav, js string, sc sidecar) {
	t.Helper()
	name := docSafeName(callID)
	var lastErr error
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, d := range dayDirs(dir, start) {
			wav, js = filepath.Join(d, name+".wav"), filepath.Join(d, name+".json")
			var err error
			if sc, _, err = readSidecar(js); err != nil {
				lastErr = err
				continue
			}
			if _, err := os.Stat(wav); err != nil {
				lastErr = err
				continue
			}
			if !sc.InProgress {
				return wav, js, sc
			}
			lastErr = fmt.Errorf("%s still says in_progress", js)
		}
		if time.Now().After(deadline) {
			t.Fatalf("no finished recording for Call-ID %q named %q under %s within 10 s: %v\nfiles:\n%s", callID, name, dir, lastErr, listTree(dir))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// listTree lists every path under dir with its size (for failure messages).
func listTree(dir string) string {
	var b strings.Builder
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			fmt.Fprintf(&b, "  %s: %v\n", p, err)
			return nil
		}
		info, _ := d.Info()
		size := int64(0)
		if info != nil {
			size = info.Size()
		}
		fmt.Fprintf(&b, "  %q %v %d\n", p, d.Type(), size)
		return nil
	})
	return b.String()
}

// recWAV is a recording read back from disk.
type recWAV struct {
	Size        int64
	RIFFSize    uint32
	DataSize    uint32
	Channels    int
	Rate        int
	Bits        int
	Left, Right []int16
}

// Duration is the length of the audio in the file.
func (w recWAV) Duration() time.Duration {
	return time.Duration(len(w.Left)) * time.Second / time.Duration(max(w.Rate, 1))
}

// readRecWAV reads a recording and checks that it is the canonical WAV the
// documentation promises: a 44-byte header, PCM, 2 channels, 16 bits,
// recRate, and sizes that agree with the file's length.
func readRecWAV(path string) (recWAV, error) {
	var w recWAV
	b, err := os.ReadFile(path)
	if err != nil {
		return w, err
	}
	w.Size = int64(len(b))
	le := binary.LittleEndian
	if len(b) < 44 || string(b[0:4]) != "RIFF" || string(b[8:16]) != "WAVEfmt " || string(b[36:40]) != "data" {
		return w, fmt.Errorf("%s: not a canonical 44-byte-header WAV (%d bytes; head %q)", path, len(b), b[:min(len(b), 44)])
	}
	w.RIFFSize = le.Uint32(b[4:])
	fmtLen := le.Uint32(b[16:])
	format := le.Uint16(b[20:])
	w.Channels = int(le.Uint16(b[22:]))
	w.Rate = int(le.Uint32(b[24:]))
	byteRate := le.Uint32(b[28:])
	blockAlign := le.Uint16(b[32:])
	w.Bits = int(le.Uint16(b[34:]))
	w.DataSize = le.Uint32(b[40:])
	var problems []string
	if fmtLen != 16 || format != 1 {
		problems = append(problems, fmt.Sprintf("fmt chunk %d bytes, format %d; want 16, PCM (1)", fmtLen, format))
	}
	if w.Channels != 2 || w.Bits != 16 || w.Rate != recRate || blockAlign != 4 || byteRate != recRate*4 {
		problems = append(problems, fmt.Sprintf("%d channels, %d bits, %d Hz, block align %d, byte rate %d; want 2, 16, %d, 4, %d",
			w.Channels, w.Bits, w.Rate, blockAlign, byteRate, recRate, recRate*4))
	}
	if int64(w.DataSize) != w.Size-44 {
		problems = append(problems, fmt.Sprintf("data size field %d, but the file holds %d bytes of data", w.DataSize, w.Size-44))
	}
	if int64(w.RIFFSize) != w.Size-8 {
		problems = append(problems, fmt.Sprintf("RIFF size field %d, want file size − 8 = %d", w.RIFFSize, w.Size-8))
	}
	if (w.Size-44)%4 != 0 {
		problems = append(problems, fmt.Sprintf("%d data bytes: not whole stereo frames", w.Size-44))
	}
	if len(problems) > 0 {
		return w, fmt.Errorf("%s: %s", path, strings.Join(problems, "; "))
	}
	n := (len(b) - 44) / 4
	w.Left, w.Right = make([]int16, n), make([]int16, n)
	for i := range n {
		w.Left[i] = int16(le.Uint16(b[44+4*i:]))
		w.Right[i] = int16(le.Uint16(b[44+4*i+2:]))
	}
	return w, nil
}

// samplesAt converts a time offset into the file into a sample index.
func samplesAt(d time.Duration) int { return int(d.Seconds() * recRate) }

func sampleTime(n int) time.Duration {
	return (time.Duration(n) * time.Second / recRate).Round(time.Millisecond)
}

// toneOnset returns the first 20 ms frame of ch at or after from whose
// level is at least -30 dBFS and whose energy is mostly (Goertzel purity
// ≥ 0.5) at freq, or -1.
func toneOnset(ch []int16, from int, freq float64) int {
	const frame = recRate / 50
	for off := max(0, from/frame*frame); off+frame <= len(ch); off += frame {
		f := ch[off : off+frame]
		if audio.DBFS(f) >= -30 && audio.Goertzel(f, recRate, freq) >= 0.5 {
			return off
		}
	}
	return -1
}

// loudestIn is the level of the loudest 20 ms frame of ch[from:to] (dBFS).
func loudestIn(ch []int16, from, to int) float64 {
	from, to = max(0, from), min(len(ch), to)
	m := -120.0
	const frame = recRate / 50
	for off := from; off+frame <= to; off += frame {
		m = math.Max(m, audio.DBFS(ch[off:off+frame]))
	}
	return m
}

// checkChannel asserts that ch carries a want-Hz tone (checkTone: ±1 %,
// audible, present for minActive) whose active stretch is pure (Goertzel
// ≥ 0.7 at want, ≤ 0.1 at other).
func checkChannel(t *testing.T, what string, ch []int16, want, other float64, minActive time.Duration) {
	t.Helper()
	a := checkTone(t, what, ch, recRate, want, minActive)
	if a.Active.Len() == 0 {
		return
	}
	seg := ch[a.Active.Start:a.Active.End]
	if p := audio.Goertzel(seg, recRate, want); p < 0.7 {
		t.Errorf("%s: only %.2f of the energy of the active stretch is at %.0f Hz, want ≥ 0.7", what, p, want)
	}
	if p := audio.Goertzel(seg, recRate, other); p > 0.1 {
		t.Errorf("%s: %.2f of the energy is at %.0f Hz (the other side's tone): the channels are mixed or swapped", what, p, other)
	}
}

// ---------------------------------------------------------------------------
// Calls with the Go peers

// newMetaPBX starts the Go Meta peer (Opus, SDES-SRTP) and a Go G.711 PBX.
func newMetaPBX(t *testing.T, e *env) (meta, pbx *metapeer.Peer) {
	t.Helper()
	return newGoPeer(t, e.Meta, metapeer.Config{}), newGoPeer(t, e.PBX, metapeer.Config{Profile: metapeer.ProfileG711})
}

// recCall is one UIC between the Go Meta peer and the Go PBX.
type recCall struct {
	meta, pbx *metapeer.Call
	start     time.Time // before the INVITE
	answered  time.Time // the 200 reached the Meta peer
}

// placeUIC places a UIC from meta through w to pbx, answered at once.
func placeUIC(t *testing.T, w *wagate, meta, pbx *metapeer.Peer) recCall {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), peerCallLimit)
	defer cancel()
	answered := answerAsync(ctx, pbx, metapeer.AnswerSpec{})
	start := time.Now()
	mc, err := meta.Call(ctx, metapeer.CallSpec{Target: w.SIPAddr, To: businessNumber, From: waUser})
	if err != nil {
		t.Fatalf("UIC: %v", err)
	}
	pc := waitAnswer(t, answered, "the PBX")
	return recCall{meta: mc, pbx: pc, start: start, answered: mc.Dialog.AnsweredAt}
}

// metaTone and pbxTone are the two sides' tones: 1 kHz from WhatsApp
// (Opus at 48 kHz), 440 Hz from the contact centre (PCMU).
func metaTone() rtppeer.Source { return rtppeer.NewTone(1000, toneAmp, 48000) }
func pbxTone() rtppeer.Source  { return rtppeer.NewTone(440, toneAmp, 8000) }

// ---------------------------------------------------------------------------
// A raw SIP caller over TCP: sipua speaks UDP only, and a Call-ID of 8 KB
// cannot come back over UDP (sipgo refuses to send a UDP response within
// 200 bytes of a 1500-byte MTU), so the hostile-Call-ID calls are written
// by hand on a TCP connection from the Meta peer's address.

type tcpSIPConn struct {
	c  net.Conn
	mu sync.Mutex
	in chan sipMsg
}

func dialSIPTCP(localIP, remote string) (*tcpSIPConn, error) {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(localIP)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp4", remote)
	if err != nil {
		return nil, err
	}
	s := &tcpSIPConn{c: c, in: make(chan sipMsg, 64)}
	go s.readLoop()
	return s, nil
}

func (s *tcpSIPConn) Close() error { return s.c.Close() }

func (s *tcpSIPConn) local() string { return s.c.LocalAddr().String() }

func (s *tcpSIPConn) send(msg string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	_ = s.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, err := io.WriteString(s.c, msg)
	return err
}

func (s *tcpSIPConn) readLoop() {
	defer close(s.in)
	r := bufio.NewReaderSize(s.c, 64<<10)
	for {
		var head strings.Builder
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			if head.Len() == 0 && strings.TrimSpace(line) == "" {
				continue
			}
			head.WriteString(line)
			if line == "\r\n" || line == "\n" {
				break
			}
		}
		m := sipMsg{Text: strings.ReplaceAll(head.String(), "\r\n", "\n")}
		n, _ := strconv.Atoi(m.Header("Content-Length"))
		if n == 0 {
			n, _ = strconv.Atoi(m.Header("l"))
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(r, body); err != nil {
			return
		}
		m.Text = strings.TrimRight(m.Text, "\n") + "\n\n" + string(body)
		s.in <- m
	}
}

// next returns the next response to method (skipping 100 and requests),
// or an error after timeout.
func (s *tcpSIPConn) next(method string, timeout time.Duration) (sipMsg, error) {
	deadline := time.After(timeout)
	for {
		select {
		case m, ok := <-s.in:
			if !ok {
				return sipMsg{}, errors.New("connection closed")
			}
			if !strings.HasPrefix(m.StartLine(), "SIP/2.0 ") || strings.HasPrefix(m.StartLine(), "SIP/2.0 100") {
				continue
			}
			if f := strings.Fields(m.Header("CSeq")); len(f) != 2 || f[1] != method {
				continue
			}
			return m, nil
		case <-deadline:
			return sipMsg{}, fmt.Errorf("no response to %s within %v", method, timeout)
		}
	}
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// rawCallResult is what became of a raw TCP call.
type rawCallResult struct {
	Status   int    // final response to the INVITE
	Line     string // its status line
	CallID   string // the Call-ID as the 200 carried it back
	Answered time.Time
	HungUp   time.Time
}

// rawTCPUIC calls the business number over TCP from the Meta peer's IP
// with the given Call-ID and SDP; when answered it ACKs, holds for hold
// and hangs up with BYE. An error response is returned in Status, not as
// an error.
func rawTCPUIC(localIP, wagateAddr, callID, sdp string, hold time.Duration) (rawCallResult, error) {
	var res rawCallResult
	c, err := dialSIPTCP(localIP, wagateAddr)
	if err != nil {
		return res, err
	}
	defer c.Close()
	tag, wacid := randHex(6), "wacid."+randHex(12)
	from := fmt.Sprintf("<sip:%s@wa.meta.vc>;tag=%s", waUser, tag)
	inv := fmt.Sprintf("INVITE sip:%s@%s;transport=tcp SIP/2.0\r\n"+
		"Via: SIP/2.0/TCP %s;branch=z9hG4bK-%s;rport\r\n"+
		"Max-Forwards: 70\r\n"+
		"From: %s\r\n"+
		"To: <sip:%s@%s>\r\n"+
		"Call-ID: %s\r\n"+
		"CSeq: 1 INVITE\r\n"+
		"Contact: <sip:%s@%s;transport=tcp>\r\n"+
		"x-wa-meta-wacid: %s\r\n"+
		"Content-Type: application/sdp\r\nContent-Length: %d\r\n\r\n%s",
		businessNumber, wagateAddr, c.local(), randHex(8), from, businessNumber, wagateAddr, callID,
		waUser, c.local(), wacid, len(sdp), sdp)
	if err := c.send(inv); err != nil {
		return res, err
	}
	var ok200 sipMsg
	for {
		m, err := c.next("INVITE", 15*time.Second)
		if err != nil {
			return res, err
		}
		code, _ := strconv.Atoi(strings.Fields(m.StartLine())[1])
		if code < 200 {
			continue
		}
		res.Status, res.Line = code, m.StartLine()
		if code >= 300 {
			ack := fmt.Sprintf("ACK sip:%s@%s;transport=tcp SIP/2.0\r\nVia: SIP/2.0/TCP %s;branch=%s\r\nMax-Forwards: 70\r\nFrom: %s\r\nTo: %s\r\nCall-ID: %s\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
				businessNumber, wagateAddr, c.local(), viaBranch(m.Header("Via")), from, m.Header("To"), callID)
			_ = c.send(ack)
			return res, nil
		}
		ok200 = m
		break
	}
	res.Answered = time.Now()
	res.CallID = rawHeader(ok200.Text, "Call-ID")
	target := ok200.Header("Contact")
	if i, j := strings.IndexByte(target, '<'), strings.IndexByte(target, '>'); i >= 0 && j > i {
		target = target[i+1 : j]
	}
	to := ok200.Header("To")
	ack := fmt.Sprintf("ACK %s SIP/2.0\r\nVia: SIP/2.0/TCP %s;branch=z9hG4bK-%s;rport\r\nMax-Forwards: 70\r\nFrom: %s\r\nTo: %s\r\nCall-ID: %s\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
		target, c.local(), randHex(8), from, to, callID)
	if err := c.send(ack); err != nil {
		return res, err
	}
	time.Sleep(hold)
	bye := fmt.Sprintf("BYE %s SIP/2.0\r\nVia: SIP/2.0/TCP %s;branch=z9hG4bK-%s;rport\r\nMax-Forwards: 70\r\nFrom: %s\r\nTo: %s\r\nCall-ID: %s\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n",
		target, c.local(), randHex(8), from, to, callID)
	if err := c.send(bye); err != nil {
		return res, err
	}
	m, err := c.next("BYE", 10*time.Second)
	if err != nil {
		return res, err
	}
	res.HungUp = time.Now()
	if !strings.HasPrefix(m.StartLine(), "SIP/2.0 200") {
		return res, fmt.Errorf("BYE answered %q", m.StartLine())
	}
	return res, nil
}

func viaBranch(via string) string {
	for _, p := range strings.Split(via, ";") {
		if k, v, ok := strings.Cut(strings.TrimSpace(p), "="); ok && k == "branch" {
			return v
		}
	}
	return ""
}

// rawHeader returns the first value of header name in text exactly as it
// is (only the separator's spaces removed), without sipMsg's trimming of
// the ends that could hide a changed Call-ID.
func rawHeader(text, name string) string {
	head, _, _ := strings.Cut(text, "\n\n")
	for _, l := range strings.Split(head, "\n")[1:] {
		k, v, ok := strings.Cut(l, ":")
		if ok && strings.EqualFold(strings.TrimSpace(k), name) {
			return strings.TrimLeft(strings.TrimSuffix(v, "\r"), " ")
		}
	}
	return ""
}

// plainPCMUSDP is a plain-RTP PCMU offer from ip:port.
func plainPCMUSDP(ip string, port int) string {
	return "v=0\r\no=- 1 1 IN IP4 " + ip + "\r\ns=-\r\nc=IN IP4 " + ip + "\r\nt=0 0\r\n" +
		"m=audio " + strconv.Itoa(port) + " RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=ptime:20\r\n"
}

// answerLoop answers up to n calls on pbx in the background, each sending
// the 440 Hz tone, and returns the answered calls when stopped.
func answerLoop(ctx context.Context, pbx *metapeer.Peer, n int) (stop func() []*metapeer.Call) {
	var mu sync.Mutex
	var calls []*metapeer.Call
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range n {
			c, _, err := pbx.Answer(ctx, metapeer.AnswerSpec{})
			if err != nil {
				return
			}
			c.Media.SetSource(pbxTone())
			mu.Lock()
			calls = append(calls, c)
			mu.Unlock()
		}
	}()
	return func() []*metapeer.Call {
		<-done
		mu.Lock()
		defer mu.Unlock()
		return calls
	}
}
