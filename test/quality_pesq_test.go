package test

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"github.com/wagate/wagate/test/internal/audio"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wagate/wagate/codec"
	"github.com/wagate/wagate/prompt"
	"github.com/wagate/wagate/test/internal/metapeer"
	"gopkg.in/hraban/opus.v2"
)

// Speech quality through the real binary, scored with narrowband PESQ
// (ITU-T P.862, reported as P.862.1 MOS-LQO). No P.862 implementation is
// packaged for Debian, and the ITU's reference code may not be shipped
// here, so this runs only when WAGATE_PESQ names a scorer
// (test/load/quality.sh builds one from a P.862 source tree the operator
// supplies); `make test` skips it. See docs/performance.md, "Speech quality".
//
// The speech is espeak-ng reading Harvard sentences, rendered at 8 kHz.
// PBX → WhatsApp: the PBX sends it as PCMU with every packet 0..J ms late
// (order kept), the WhatsApp side decodes the Opus wagate sends and that,
// brought to 8 kHz, is scored against the sentence. WhatsApp → PBX: the
// same speech at 48 kHz sent as Opus with the same jitter, scored from the
// PCMU the PBX gets.

// pesqMargin is how far under what the codecs alone score (no network,
// no playout) PBX → WhatsApp may fall: issue 11 set 3.6 up to 20 ms of
// jitter and 3.5 up to 40 ms for a speech sample whose ideal transcoding
// scored 3.87, that is 0.27 and 0.37 under the codecs' own score. PESQ
// depends on the speech, so the margins, not the absolute figures, carry
// over to this sample (espeak-ng's voice scores lower through Opus at
// 20 kbit/s than recorded speech does).
func pesqMargin(jitterMs int) float64 {
	if jitterMs <= 20 {
		return 0.27
	}
	return 0.37
}

const pesqText = "The birch canoe slid on the smooth planks. Glue the sheet to the dark blue background. " +
	"It is easy to tell the depth of a well. These days a chicken leg is a rare dish. " +
	"Rice is often served in round bowls. The juice of lemons makes fine punch."

func TestQualityPESQ(t *testing.T) {
	scorer := os.Getenv("WAGATE_PESQ")
	if scorer == "" {
		t.Skip("WAGATE_PESQ is not set: no P.862 scorer (test/load/quality.sh builds one)")
	}
	jitters := []int{0, 20, 30, 40}
	if s := os.Getenv("WAGATE_PESQ_JITTER"); s != "" {
		jitters = nil
		for _, f := range strings.Split(s, ",") {
			j, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || j < 0 {
				t.Fatalf("WAGATE_PESQ_JITTER: %q is not a list of milliseconds", s)
			}
			jitters = append(jitters, j)
		}
	}
	runs := 1
	if s := os.Getenv("WAGATE_PESQ_RUNS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("WAGATE_PESQ_RUNS: %q", s)
		}
		runs = n
	}
	speech := pesqSpeech(t)
	ref := filepath.Join(t.TempDir(), "ref.s16")
	writeS16(t, ref, speech)

	// What the codecs alone score, with no network and no playout: the
	// ceiling for the rows below.
	idealWA := runPESQ(t, scorer, ref, filepath.Join(t.TempDir(), "ideal-to-whatsapp.s16"), idealToWhatsApp(t, speech))
	idealPBX := runPESQ(t, scorer, ref, filepath.Join(t.TempDir(), "ideal-to-pbx.s16"), idealToPBX(t, speech))

	type result struct{ toWA, toPBX []float64 }
	results := make([]result, len(jitters))
	for i, j := range jitters {
		for r := range runs {
			t.Run(fmt.Sprintf("jitter%dms/run%d", j, r+1), func(t *testing.T) {
				toWA, toPBX := pesqCall(t, scorer, ref, speech, time.Duration(j)*time.Millisecond)
				results[i].toWA = append(results[i].toWA, toWA)
				results[i].toPBX = append(results[i].toPBX, toPBX)
			})
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "narrowband PESQ (P.862.1 MOS-LQO), %d run(s) each:\n", runs)
	fmt.Fprintf(&b, "%-10s %-22s %-22s %s\n", "jitter", "PBX → WhatsApp", "WhatsApp → PBX", "target (PBX → WhatsApp, at least)")
	fmt.Fprintf(&b, "%-10s %-22s %-22s\n", "codecs", fmt.Sprintf("%.2f", idealWA), fmt.Sprintf("%.2f", idealPBX))
	for i, j := range jitters {
		fmt.Fprintf(&b, "0..%-2d ms   %-22s %-22s %.2f\n", j, fmtScores(results[i].toWA), fmtScores(results[i].toPBX), idealWA-pesqMargin(j))
	}
	t.Log(b.String())
	for i, j := range jitters {
		for _, s := range results[i].toWA {
			if s < idealWA-pesqMargin(j) {
				t.Errorf("PBX → WhatsApp with 0..%d ms jitter scored %.2f, under the %.2f target (the codecs alone %.2f)", j, s, idealWA-pesqMargin(j), idealWA)
			}
		}
	}
}

// pesqCall places one UIC, sends the speech both ways in turn with the
// jitter, and returns the two scores.
func pesqCall(t *testing.T, scorer, ref string, speech []int16, jitter time.Duration) (toWA, toPBX float64) {
	e := newEnv(t)
	w := e.startWagate(wagateOpts{MetaEncryption: "sdes", APIExtra: tokenAPI})
	meta := newGoPeer(t, e.Meta, metapeer.Config{KeepFrames: true})
	pbx := newGoPeer(t, e.PBX, metapeer.Config{Profile: metapeer.ProfileG711})
	c := placeUIC(t, w, meta, pbx)
	dir := e.dir // WAGATE_TEST_ARTIFACTS keeps the recordings
	dur := time.Duration(len(speech)) * time.Second / 8000
	time.Sleep(500 * time.Millisecond) // silence first, as answered

	// PBX → WhatsApp.
	c.meta.Media.ResetRecording()
	c.pbx.Media.SetSendJitter(jitter)
	c.pbx.Media.SetSource(&clip{pcm: speech})
	time.Sleep(dur + time.Second)
	c.pbx.Media.SetSource(nil)
	c.pbx.Media.SetSendJitter(0)
	rec := c.meta.Media.Recording()
	got := prompt.Resample(rec, 48000, 8000)
	toWA = runPESQ(t, scorer, ref, filepath.Join(dir, "to-whatsapp.s16"), got)

	// WhatsApp → PBX.
	time.Sleep(300 * time.Millisecond)
	c.pbx.Media.ResetRecording()
	c.meta.Media.SetSendJitter(jitter)
	c.meta.Media.SetSource(&clip{pcm: prompt.Resample(speech, 8000, 48000)})
	time.Sleep(dur + time.Second)
	c.meta.Media.SetSource(nil)
	toPBX = runPESQ(t, scorer, ref, filepath.Join(dir, "to-pbx.s16"), c.pbx.Media.Recording())

	hangup(t, c.meta, "meta")
	waitBye(t, c.pbx, "the PBX")
	w.waitIdle()
	// What the scores do not say: the machine's own stalls (the peers
	// share it with wagate) and what wagate's playout did.
	cdr := waitCDRs(t, e, 1)[0]
	toW, toP := cdr.Media.BtoA, cdr.Media.AtoB
	t.Logf("0..%v jitter: PBX → WhatsApp %.3f (PBX sender stalls %v; wagate concealed %d, late %d, buffer %.0f ms); WhatsApp → PBX %.3f (Meta sender stalls %v; wagate concealed %d, late %d, buffer %.0f ms)",
		jitter, toWA, c.pbx.Media.Stats().SendStalls, toW.ConcealedFrames, toW.LateFrames, toW.JitterBufferMS,
		toPBX, c.meta.Media.Stats().SendStalls, toP.ConcealedFrames, toP.LateFrames, toP.JitterBufferMS)
	return toWA, toPBX
}

// clip plays pcm once, then silence.
type clip struct {
	mu  sync.Mutex
	pcm []int16
	off int
}

func (c *clip) Read(pcm []int16) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := copy(pcm, c.pcm[min(c.off, len(c.pcm)):])
	clear(pcm[n:])
	c.off += len(pcm)
}

// pesqSpeech is the WAV file WAGATE_PESQ_SPEECH names (recorded speech,
// any rate, brought to 8 kHz, with the same padding), or else
// renderPESQSpeech. P.862 was built and calibrated on recorded speech;
// synthetic speech scores lower through the same codecs.
func pesqSpeech(t *testing.T) []int16 {
	t.Helper()
	path := os.Getenv("WAGATE_PESQ_SPEECH")
	if path == "" {
		return renderPESQSpeech(t)
	}
	s, rate, err := audio.ReadWAV(path)
	if err != nil {
		t.Fatalf("WAGATE_PESQ_SPEECH %s: %v", path, err)
	}
	if rate != 8000 {
		s = prompt.Resample(s, rate, 8000)
	}
	t.Logf("speech from %s: %.1f s", path, float64(len(s))/8000)
	return padSpeech(s)
}

// padSpeech puts 300 ms of silence each side of s (P.862 wants some
// before and after the utterances).
func padSpeech(s []int16) []int16 {
	pad := make([]int16, 2400)
	return append(append(append([]int16(nil), pad...), s...), pad...)
}

// renderPESQSpeech is pesqText from espeak-ng at 8 kHz with 300 ms of
// silence each side (P.862 wants some before and after the utterances).
func renderPESQSpeech(t *testing.T) []int16 {
	t.Helper()
	tts, err := prompt.NewEspeak("", "en")
	if err != nil {
		t.Fatalf("espeak-ng: %v (make test installs it)", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	a, err := tts.Render(ctx, prompt.Speech{Text: pesqText, Voice: "en-US"}, prompt.Rate8k)
	if err != nil {
		t.Fatalf("espeak-ng: %v", err)
	}
	return padSpeech(a.Samples)
}

func writeS16(t *testing.T, path string, s []int16) {
	t.Helper()
	var b bytes.Buffer
	if err := binary.Write(&b, binary.LittleEndian, s); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// runPESQ writes deg and scores it against ref: the scorer prints
// "<raw P.862> <P.862.1 MOS-LQO>".
func runPESQ(t *testing.T, scorer, ref, deg string, s []int16) float64 {
	t.Helper()
	if len(s) < 8000 {
		t.Fatalf("%s: only %d samples received", filepath.Base(deg), len(s))
	}
	writeS16(t, deg, s)
	out, err := exec.Command(scorer, "8000", ref, deg).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", scorer, deg, err, out)
	}
	f := strings.Fields(string(out))
	if len(f) != 2 {
		t.Fatalf("%s printed %q, want two scores", scorer, out)
	}
	mos, err := strconv.ParseFloat(f[1], 64)
	if err != nil {
		t.Fatalf("%s printed %q: %v", scorer, out, err)
	}
	return mos
}

// idealToWhatsApp is speech through wagate's own G.711 → Opus transcoder
// in process, decoded as the WhatsApp side does.
func idealToWhatsApp(t *testing.T, speech []int16) []int16 {
	t.Helper()
	tc, err := codec.NewTranscoder(codec.Format{Name: "PCMU"}, codec.Format{Name: "opus"}, codec.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	dec, err := opus.NewDecoder(48000, 1)
	if err != nil {
		t.Fatal(err)
	}
	ulaw := codec.EncodeG711("PCMU", speech, nil)
	var out []int16
	pcm := make([]int16, 5760)
	for off := 0; off+160 <= len(ulaw); off += 160 {
		err := tc.Write(ulaw[off:off+160], 0, func(frame []byte, _ int) {
			n, err := dec.Decode(frame, pcm)
			if err != nil {
				t.Fatalf("opus decode: %v", err)
			}
			out = append(out, pcm[:n]...)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return prompt.Resample(out, 48000, 8000)
}

// idealToPBX is speech encoded as the WhatsApp side does (48 kHz VoIP,
// 20 kbit/s, wideband, FEC) through wagate's Opus → G.711 transcoder in
// process.
func idealToPBX(t *testing.T, speech []int16) []int16 {
	t.Helper()
	tc, err := codec.NewTranscoder(codec.Format{Name: "opus"}, codec.Format{Name: "PCMU"}, codec.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	enc, err := opus.NewEncoder(48000, 1, opus.AppVoIP)
	if err != nil {
		t.Fatal(err)
	}
	for _, set := range []error{enc.SetBitrate(20000), enc.SetMaxBandwidth(opus.Wideband), enc.SetInBandFEC(true)} {
		if set != nil {
			t.Fatal(set)
		}
	}
	s48 := prompt.Resample(speech, 8000, 48000)
	buf := make([]byte, 1500)
	var out []int16
	for off := 0; off+960 <= len(s48); off += 960 {
		n, err := enc.Encode(s48[off:off+960], buf)
		if err != nil {
			t.Fatal(err)
		}
		err = tc.Write(buf[:n], 0, func(frame []byte, _ int) {
			out = codec.DecodeG711("PCMU", frame, out)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func fmtScores(v []float64) string {
	var parts []string
	for _, s := range v {
		parts = append(parts, fmt.Sprintf("%.2f", s))
	}
	return strings.Join(parts, " ")
}
