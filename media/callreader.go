package media

import "errors"

// errCallReaderOff: no call reader on this system: a reader per
// direction instead.
var errCallReaderOff = errors.New("media: no call reader here")
