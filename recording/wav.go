package recording

import (
	"encoding/binary"
	"errors"
)

// The recordings are canonical 44-byte-header RIFF/WAVE files: one "fmt "
// chunk (PCM, 2 channels, 16 bits) and one "data" chunk right after it.
const (
	headerSize  = 44
	channels    = 2
	bytesPerSmp = 2
	frameBytes  = channels * bytesPerSmp // one stereo sample frame
	// riffSizeOff and dataSizeOff are where the two sizes live; they are
	// rewritten in place while recording and by the start-up repair.
	riffSizeOff = 4
	dataSizeOff = 40
	// maxDataBytes is the largest data chunk a RIFF size field can describe
	// (the RIFF size is data + 36 and is a uint32), whole frames only.
	maxDataBytes = (1<<32 - 1 - 36) / frameBytes * frameBytes
)

// wavHeader returns the header of a stereo 16-bit file at rate whose data
// chunk holds dataBytes bytes.
func wavHeader(rate int, dataBytes uint32) []byte {
	h := make([]byte, headerSize)
	copy(h[0:], "RIFF")
	binary.LittleEndian.PutUint32(h[4:], 36+dataBytes)
	copy(h[8:], "WAVE")
	copy(h[12:], "fmt ")
	binary.LittleEndian.PutUint32(h[16:], 16) // fmt chunk size
	binary.LittleEndian.PutUint16(h[20:], 1)  // PCM
	binary.LittleEndian.PutUint16(h[22:], channels)
	binary.LittleEndian.PutUint32(h[24:], uint32(rate))
	binary.LittleEndian.PutUint32(h[28:], uint32(rate*frameBytes)) // byte rate
	binary.LittleEndian.PutUint16(h[32:], frameBytes)              // block align
	binary.LittleEndian.PutUint16(h[34:], bytesPerSmp*8)           // bits per sample
	copy(h[36:], "data")
	binary.LittleEndian.PutUint32(h[40:], dataBytes)
	return h
}

// wavInfo is what the repair needs from a header.
type wavInfo struct {
	riffSize   uint32
	dataSize   uint32
	rate       int
	channels   int
	blockAlign int
}

var errNotOurWAV = errors.New("not a canonical 44-byte PCM WAV header")

// parseHeader checks that h is a canonical PCM WAV header (the layout this
// package writes) and returns its fields. Anything else is left alone by
// the repair: wagate does not rewrite files it did not make.
func parseHeader(h []byte) (wavInfo, error) {
	if len(h) < headerSize || string(h[0:4]) != "RIFF" || string(h[8:12]) != "WAVE" ||
		string(h[12:16]) != "fmt " || binary.LittleEndian.Uint32(h[16:]) != 16 ||
		binary.LittleEndian.Uint16(h[20:]) != 1 || string(h[36:40]) != "data" {
		return wavInfo{}, errNotOurWAV
	}
	w := wavInfo{
		riffSize:   binary.LittleEndian.Uint32(h[4:]),
		dataSize:   binary.LittleEndian.Uint32(h[40:]),
		rate:       int(binary.LittleEndian.Uint32(h[24:])),
		channels:   int(binary.LittleEndian.Uint16(h[22:])),
		blockAlign: int(binary.LittleEndian.Uint16(h[32:])),
	}
	if w.rate <= 0 || w.channels <= 0 || w.blockAlign <= 0 {
		return wavInfo{}, errNotOurWAV
	}
	return w, nil
}

// sizeFields returns the RIFF and data size fields for dataBytes of audio.
func sizeFields(dataBytes int64) (riff, data [4]byte) {
	binary.LittleEndian.PutUint32(riff[:], uint32(36+dataBytes))
	binary.LittleEndian.PutUint32(data[:], uint32(dataBytes))
	return riff, data
}
