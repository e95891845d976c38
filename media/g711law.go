// G.711 of the other law: a peer that answered both PCMU and PCMA may
// send either, and its packets in the law the call does not use are
// converted code by code on arrival (sideMedia.otherLaw).

package media

import "github.com/wagate/wagate/codec"

// toULaw and toALaw map every A-law code to μ-law and back.
var toULaw, toALaw = func() (u, a [256]byte) {
	var codes [256]byte
	for i := range codes {
		codes[i] = byte(i)
	}
	codec.ALaw.Transcode(u[:0], codes[:], codec.MuLaw)
	codec.MuLaw.Transcode(a[:0], codes[:], codec.ALaw)
	return u, a
}()

// lawConversion is the table that converts G.711 of the other law into
// codec name's, nil when name is not G.711.
func lawConversion(name string) *[256]byte {
	switch name {
	case "PCMU":
		return &toULaw
	case "PCMA":
		return &toALaw
	}
	return nil
}

// otherLaw returns the payload types, ours and the peer's, of the G.711
// codec an answer lists beside its first (chosen) codec that is of the
// other law than chosen and answers one of ours in offered (n: how many
// of pts are set, 0 or 2).
func otherLaw(answer, offered []Codec, chosen Codec) (pts [2]uint8, n uint8) {
	law := canonicalCodec(chosen.Name)
	if lawConversion(law) == nil {
		return pts, 0
	}
	for _, cb := range answer {
		if cb.PT == chosen.PT {
			continue
		}
		got, off, ok := matchAnswer([]Codec{cb}, offered, false)
		if !ok {
			continue
		}
		if name := canonicalCodec(got.Name); name != law && lawConversion(name) != nil {
			// One codec of the other law: our payload type for it and
			// the peer's (an answer listing it twice is refused).
			return [2]uint8{off.PT, got.PT}, 2
		}
	}
	return pts, 0
}

// convertLaw converts a G.711 payload in place with table conv.
func convertLaw(payload []byte, conv *[256]byte) {
	for i, c := range payload {
		payload[i] = conv[c]
	}
}
