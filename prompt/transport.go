package prompt

import "net/http"

// maxIdlePerHost is how many idle connections to one service a client
// keeps. Go's default is two: a contact centre's flows ask the business's
// service (and its text-to-speech) many at a time, and every request past
// two opened a new connection, a TCP and TLS handshake in the caller's
// silence, and left the service one more in TIME_WAIT.
const maxIdlePerHost = 64

// KeptTransport returns a clone of http.DefaultTransport that keeps up to
// maxIdlePerHost idle connections per host.
func KeptTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = maxIdlePerHost
	t.MaxIdleConns = 4 * maxIdlePerHost
	return t
}
