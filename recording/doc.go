// Package recording records calls to stereo WAV files named by Call-ID,
// with a JSON sidecar per call, and lists and serves them. It knows
// nothing about SIP: the signalling layer calls Manager.Start when a call
// is answered and Recorder.Finish when it ends, the media layer hands
// decoded 8 kHz PCM of each side to Recorder.PCM, and the API mounts
// Manager.Handler. docs/recording.md is the operator's view.
//
// Decisions worth knowing:
//
//   - Layout: <dir>/<YYYY>/<MM>/<DD>/<SafeName(Call-ID)>[-N].wav and .json,
//     the day of the call's start in UTC. Left channel = the WhatsApp side,
//     right = the contact-centre side; 16-bit PCM at 8 kHz or 16 kHz
//     (linear-interpolation upsampling: the source is narrowband anyway).
//   - The Call-ID is hostile input. SafeName escapes every byte outside
//     [A-Za-z0-9-_.@+=] as %XX (and a leading '.' or '-'), so names are
//     plain ASCII, injective below 128 bytes, hashed above. Every file
//     operation goes through an os.Root on the recordings directory (no
//     "..", no symbolic link out), names are reserved with O_EXCL (a repeat
//     or a collision gets "-2", "-3", …) and lookups compare the Call-ID
//     stored in the sidecar, never the file name.
//   - Alignment is by wall-clock time (an injectable Clock): each side has
//     a cursor against the recording's start; a side that goes quiet is
//     padded with silence (lazily: a silent stretch costs no memory) and
//     re-anchored when it speaks again; audio running more than 300 ms
//     ahead is trimmed. The file lasts as long as the call.
//   - One writer goroutine per recording behind a 256-chunk channel. PCM
//     copies into a pooled buffer and never blocks: a full channel drops
//     the chunk (counted; the hole becomes silence). A write error stops
//     that recording only (logged, counted in Stats, sidecar says
//     cut_short); the call never notices.
//   - Crash safety: the header is written at creation and its sizes
//     updated in place after every second of audio, so kill -9 leaves a
//     playable file; New repairs sizes and torn frames of what a crash left
//     in the newest 31 day directories and marks the sidecars "recovered".
//   - Finish returns at once; finalizing (padding, header, fsync, sidecar)
//     happens on the recorder's goroutine. Wait or Close wait for it.
package recording
