package media

import "errors"

// errCallReaderOff: no call reader on this system: a reader per
// direction instead.
var errCallReaderOff = errors.New("media: no call reader here")

// errWaitUnsupported: a wait on a socket the runtime's poller does not
// watch (rtpconn_linux.go).
var errWaitUnsupported = errors.New("waiting on the socket is not supported")
