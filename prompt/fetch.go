package prompt

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Defaults for files.
const (
	// DefaultMaxFileBytes is the largest file fetched (5 MB).
	DefaultMaxFileBytes = 5 << 20
	// DefaultFileTimeout bounds one download, body included.
	DefaultFileTimeout = 10 * time.Second
	// DefaultFileTTL is how long a downloaded file is played from the
	// cache before it is fetched again.
	DefaultFileTTL = time.Hour
	// maxRedirects bounds the redirects one fetch follows.
	maxRedirects = 5
)

// Errors of fetching.
var (
	// ErrTooLarge is wrapped when a body is larger than allowed.
	ErrTooLarge = errors.New("prompt: file too large")
	// ErrScheme is wrapped when a URL or a redirect names a scheme other
	// than http or https.
	ErrScheme = errors.New("prompt: only http and https URLs are fetched")
	// ErrTimeout is wrapped when a server did not answer, or send the
	// whole file, within the download's timeout.
	ErrTimeout = errors.New("prompt: file not fetched in time")
)

// Reasons a file was not played, as a business's web service is told
// them: stable words that say what to fix without repeating wagate's own
// error, which may name addresses of wagate's network. The full error is
// logged.
const (
	// ReasonDenied: the scheme is not http or https, or the URL (or a
	// redirect) leads to an address that is not fetched from.
	ReasonDenied = "fetch_denied"
	// ReasonTimeout: no answer, or not the whole file, in time.
	ReasonTimeout = "fetch_timeout"
	// ReasonTooLarge: more bytes, or a longer sound, than allowed.
	ReasonTooLarge = "file_too_large"
	// ReasonUnsupported: not a WAV or MP3 file wagate plays.
	ReasonUnsupported = "unsupported_media"
	// ReasonFailed: anything else (refused connection, an HTTP status
	// other than 2xx, a TLS failure, …).
	ReasonFailed = "fetch_failed"
)

// FileReason is the Reason constant for an error of Library.File.
func FileReason(err error) string {
	switch {
	case errors.Is(err, ErrDenied), errors.Is(err, ErrScheme):
		return ReasonDenied
	case errors.Is(err, ErrTooLarge), errors.Is(err, ErrTooLong):
		return ReasonTooLarge
	case errors.Is(err, ErrNotAudio):
		return ReasonUnsupported
	case errors.Is(err, ErrTimeout):
		return ReasonTimeout
	}
	return ReasonFailed
}

// CheckURL returns an error unless raw is an absolute http or https URL
// with a host.
func CheckURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return nil, fmt.Errorf("prompt: %q is not a URL", raw)
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("%w: %q", ErrScheme, u.Redacted())
	case u.Host == "":
		return nil, fmt.Errorf("prompt: %q has no host", u.Redacted())
	}
	return u, nil
}

// SafeClient returns a copy of c (nil, or no Transport: on KeptTransport)
// whose redirects stay on http and https and stop after five hops, and
// keep a POST a POST (KeepPOST). Go's client refuses unknown schemes by
// itself, but with a message that does not say a redirect led there.
func SafeClient(c *http.Client) *http.Client {
	var cc http.Client
	if c != nil {
		cc = *c
	}
	if cc.Transport == nil {
		cc.Transport = KeptTransport()
	}
	cc.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if len(via) >= maxRedirects {
			return fmt.Errorf("prompt: more than %d redirects", maxRedirects)
		}
		if s := req.URL.Scheme; s != "http" && s != "https" {
			return fmt.Errorf("%w: redirected to %q", ErrScheme, req.URL.Redacted())
		}
		return KeepPOST(req, via)
	}
	return &cc
}

// KeepPOST, called from a CheckRedirect, sends a POST moved by 301 or 302
// again as it was, with its body and Content-Type, as after 307 and 308.
// Go's client (like a browser) turns it into a GET without the body,
// which a service moved from http to https, or to a URL with a trailing
// slash, cannot answer: a text-to-speech service gets no text, a call
// flow's service no event (and the signature, of the POST's body, no
// longer matches). A 303 still becomes a GET: the server asked for one.
func KeepPOST(req *http.Request, via []*http.Request) error {
	orig, moved := via[0], req.Response
	if orig.Method != http.MethodPost || req.Method != http.MethodGet || moved == nil || orig.GetBody == nil ||
		(moved.StatusCode != http.StatusMovedPermanently && moved.StatusCode != http.StatusFound) {
		return nil
	}
	body, err := orig.GetBody()
	if err != nil {
		return fmt.Errorf("redirected to %q: %w", req.URL.Redacted(), err)
	}
	req.Method, req.Body, req.GetBody, req.ContentLength = http.MethodPost, body, orig.GetBody, orig.ContentLength
	if ct := orig.Header.Get("Content-Type"); ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	return nil
}

// readBody reads at most limit bytes of resp's body: a declared length over
// the limit is refused before reading, and a body that grows past it is cut
// off while downloading, so a lying or endless server costs limit+1 bytes.
func readBody(resp *http.Response, limit int64) ([]byte, error) {
	if resp.ContentLength > limit {
		return nil, fmt.Errorf("%w: %d bytes declared (at most %d)", ErrTooLarge, resp.ContentLength, limit)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, limit)
	}
	return b, nil
}

// download GETs a file with the fetch rules above; client must be
// fetchClient(*allow)'s, or any SafeClient when allow is nil (a URL the
// operator configured).
func download(ctx context.Context, client *http.Client, allow *Allow, raw string, limit int64, timeout time.Duration) ([]byte, error) {
	u, err := CheckURL(raw)
	if err != nil {
		return nil, err
	}
	if allow != nil && !allow.allowsHost(u.Hostname()) {
		if err := allow.checkURL(u); err != nil {
			return nil, fmt.Errorf("prompt: fetch %s: %w", u.Redacted(), err)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("prompt: %w", err)
	}
	req.Header.Set("Accept", "audio/wav, audio/x-wav, audio/mpeg, */*;q=0.1")
	req.Header.Set("User-Agent", "wagate-prompt")
	resp, err := client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) && errors.Is(ue.Err, context.DeadlineExceeded) {
			return nil, fmt.Errorf("%w: fetch %s: no answer within %s", ErrTimeout, u.Redacted(), timeout)
		}
		return nil, fmt.Errorf("prompt: fetch %s: %w", u.Redacted(), err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return nil, fmt.Errorf("prompt: fetch %s: %s", u.Redacted(), resp.Status)
	}
	if ct := resp.Header.Get("Content-Type"); strings.HasPrefix(ct, "text/html") {
		// An error page served with 200 is the commonest wrong "file".
		return nil, fmt.Errorf("%w: %s is a web page (%s), not audio", ErrNotAudio, u.Redacted(), ct)
	}
	b, err := readBody(resp, limit)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%w: fetch %s: not downloaded within %s", ErrTimeout, u.Redacted(), timeout)
		}
		return nil, fmt.Errorf("prompt: fetch %s: %w", u.Redacted(), err)
	}
	return b, nil
}
