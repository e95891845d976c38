package recording

import (
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"
)

const (
	// maxRecoverDays and maxRecoverFiles bound the start-up scan: the
	// newest day directories are the only ones a crash can have left
	// something in (earlier crashes were repaired by earlier starts).
	maxRecoverDays  = 31
	maxRecoverFiles = 200000
)

// recoverMsg is the error recorded in the sidecar of a repaired recording.
const recoverMsg = "recording interrupted (wagate stopped while recording); repaired at start-up"

// recoverAll repairs what a crash left in the newest day directories:
// WAV files whose header sizes disagree with their length, and sidecars
// still marked in progress (or missing).
func (m *Manager) recoverAll() {
	days := m.days()
	if len(days) > maxRecoverDays {
		days = days[len(days)-maxRecoverDays:]
	}
	examined := 0
	for i := len(days) - 1; i >= 0; i-- {
		d := days[i]
		ents, err := m.readDir(d.rel)
		if err != nil {
			m.log.Warn("recordings directory not readable", "dir", d.rel, "error", err)
			continue
		}
		names := make(map[string]bool, len(ents))
		for _, e := range ents {
			if e.Type().IsRegular() {
				names[e.Name()] = true
			}
		}
		for _, e := range ents {
			name := e.Name()
			if !e.Type().IsRegular() {
				continue
			}
			rel := path.Join(d.rel, name)
			if strings.HasPrefix(name, ".") {
				if strings.HasSuffix(name, ".json.tmp") {
					m.root.Remove(filepath.FromSlash(rel)) // a sidecar rewrite a crash interrupted
				}
				continue
			}
			if examined >= maxRecoverFiles {
				m.log.Warn("start-up repair stopped early: too many files", "limit", maxRecoverFiles)
				return
			}
			switch {
			case strings.HasSuffix(name, ".wav"):
				examined++
				base := strings.TrimSuffix(name, ".wav")
				m.recoverWAV(d.rel, base, names[base+".json"])
			case strings.HasSuffix(name, ".json"):
				base := strings.TrimSuffix(name, ".json")
				if !names[base+".wav"] {
					examined++
					m.recoverOrphan(d.rel, base)
				}
			}
		}
	}
}

// recoverWAV checks one WAV file and repairs it and its sidecar if a crash
// interrupted its recording.
func (m *Manager) recoverWAV(dayRel, base string, hasJSON bool) {
	rel := path.Join(dayRel, base+".wav")
	jrel := path.Join(dayRel, base+".json")
	f, err := m.root.OpenFile(filepath.FromSlash(rel), os.O_RDWR, 0)
	if err != nil {
		m.log.Warn("recording not checked", "file", rel, "error", err)
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() {
		return
	}
	size := st.Size()

	var e Entry
	haveSidecar := false
	if hasJSON {
		if e, err = m.readSidecar(jrel); err == nil {
			haveSidecar = true
		} else {
			m.log.Warn("recording sidecar unreadable; writing a new one", "file", jrel, "error", err)
			e = Entry{}
		}
	}

	h := make([]byte, headerSize)
	n, _ := f.ReadAt(h, 0)
	var info wavInfo
	headerFixed := false
	if n < headerSize {
		// Killed between creating the file and completing its header.
		if n > 0 && !strings.HasPrefix("RIFF", string(h[:min(n, 4)])) {
			m.log.Warn("not a wagate recording; left alone", "file", rel)
			return
		}
		rate := m.rate
		if haveSidecar && (e.SampleRate == 8000 || e.SampleRate == 16000) {
			rate = e.SampleRate
		}
		if err := f.Truncate(0); err == nil {
			_, err = f.WriteAt(wavHeader(rate, 0), 0)
		}
		if err != nil {
			m.log.Error("recording not repaired", "file", rel, "error", err)
			return
		}
		size, headerFixed = headerSize, true
		info = wavInfo{riffSize: 36, rate: rate, channels: channels, blockAlign: frameBytes}
	} else if info, err = parseHeader(h); err != nil {
		m.log.Warn("not a wagate recording; left alone", "file", rel, "error", err)
		return
	}

	ba := int64(info.blockAlign)
	dataLen := min((size-headerSize)/ba*ba, maxDataBytes/ba*ba)
	mismatch := headerFixed || int64(info.dataSize) != dataLen ||
		int64(info.riffSize) != 36+dataLen || size != headerSize+dataLen
	if !mismatch && haveSidecar && !e.InProgress {
		return // a finished recording
	}
	if mismatch {
		err := error(nil)
		if size != headerSize+dataLen {
			err = f.Truncate(headerSize + dataLen)
		}
		riff, data := sizeFields(dataLen)
		if err == nil {
			_, err = f.WriteAt(riff[:], riffSizeOff)
		}
		if err == nil {
			_, err = f.WriteAt(data[:], dataSizeOff)
		}
		if err == nil {
			err = f.Sync()
		}
		if err != nil {
			m.log.Error("recording not repaired", "file", rel, "error", err)
			return
		}
	}

	if !haveSidecar {
		e = Entry{SampleRate: info.rate, Channels: channelNames}
	}
	e.File = rel
	e.InProgress = false
	e.Recovered = true
	e.CutShort = true
	if e.Error == "" {
		e.Error = recoverMsg
	}
	e.Bytes = headerSize + dataLen
	if e.SampleRate == 0 {
		e.SampleRate = info.rate
	}
	if info.rate > 0 {
		e.DurationSeconds = float64(dataLen) / float64(int64(info.rate)*ba)
	}
	if e.EndTime.IsZero() && !e.AnswerTime.IsZero() {
		// Estimated: when the audio stops.
		e.EndTime = e.AnswerTime.Add(time.Duration(e.DurationSeconds * float64(time.Second))).UTC()
	}
	if err := m.replaceSidecar(jrel, &e); err != nil {
		m.log.Error("recording sidecar not written", "file", jrel, "error", err)
	}
	m.report(e)
	m.log.Warn("repaired a recording interrupted by a crash", "file", rel,
		"header_data_bytes", info.dataSize, "data_bytes", dataLen,
		"truncated_bytes", size-headerSize-dataLen, "sidecar_written", !haveSidecar)
}

// recoverOrphan closes the sidecar of a recording whose WAV is gone.
func (m *Manager) recoverOrphan(dayRel, base string) {
	jrel := path.Join(dayRel, base+".json")
	e, err := m.readSidecar(jrel)
	if err != nil || !e.InProgress {
		return
	}
	e.InProgress = false
	e.Recovered = true
	e.CutShort = true
	e.Error = "recording interrupted; the audio file is missing"
	e.Bytes = 0
	e.DurationSeconds = 0
	if err := m.replaceSidecar(jrel, &e); err != nil {
		m.log.Error("recording sidecar not written", "file", jrel, "error", err)
		return
	}
	m.report(e)
	m.log.Warn("closed the sidecar of a recording whose audio file is missing", "file", jrel)
}
