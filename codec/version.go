package codec

import "gopkg.in/hraban/opus.v2"

// OpusVersion is the version string of the libopus wagate is linked
// against at run time ("libopus 1.3.1"), as libopus itself reports it.
func OpusVersion() string { return opus.Version() }
