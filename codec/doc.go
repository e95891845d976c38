// Package codec turns audio payloads of one codec into payloads of another:
// Opus (the WhatsApp leg, opus/48000/2, 20 ms) and G.711 μ-law/A-law (the
// PBX leg, 8 kHz, 10–40 ms). It knows nothing about sockets, RTP headers or
// SDP: the media package hands it payloads in sequence order, says how many
// packets were lost in between, and gets payloads back through a callback.
//
// A call that transcodes has two Transcoders, one per direction. Each one
// decodes its input to 8 kHz mono PCM, buffers that PCM until a whole output
// packet is available (repacketization between G.711's ptime and Opus's
// 20 ms), and encodes it. Everything runs synchronously inside Write; buffers
// are allocated once in NewTranscoder so the per-packet path allocates
// nothing.
//
// Decisions worth knowing (numbers and reasons in docs/codec.md):
//
//   - 8 kHz is the one internal rate. G.711 is 8 kHz and carries 300–3400 Hz;
//     nothing above 4 kHz survives a PBX leg, so the Opus side is
//     narrowband too.
//   - The 48 kHz ↔ 8 kHz conversion is done by libopus itself (decoder and
//     encoder opened at 8 kHz, so narrowband SILK runs with no resampling
//     at all). The alternative, libopus at 48 kHz plus our own polyphase
//     FIR (resample.go), was measured: the same spectra, worse round-trip
//     waveform fidelity, 2.1 ms more delay per direction and 1.3–1.6×
//     the CPU. It stays in the package behind the same type (opus8k) so the
//     choice is one constant (defaultRateMode) to flip.
//   - Opus is always decoded mono, whatever opus/48000/2 says: libopus
//     downmixes a stereo packet, and the PBX leg is mono anyway.
//   - Loss: a lost Opus packet is rebuilt from the in-band FEC carried in the
//     next packet when there is one, else by libopus PLC; lost G.711 packets
//     are filled by repeating the last audio with a fade to silence. Output
//     always covers the gap so the outgoing timestamps stay continuous.
package codec
