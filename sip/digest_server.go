package sip

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/wagate/wagate/configs"
)

// Digest authentication as a server: an endpoint with `auth` must prove a
// configured username and password on every out-of-dialog request
// (INVITE, OPTIONS, …). Requests inside a dialog that was authenticated
// (ACK, BYE, re-INVITE, INFO) are matched to their call by Call-ID and tags
// and are not challenged.
//
// Nonces carry their own issue time and an HMAC over it, the endpoint and
// the realm, keyed with a secret drawn at start-up: verifying one needs no
// table of issued nonces, and a restart invalidates them all (the peer is
// challenged again). A nonce older than nonce_ttl is refused as stale
// (stale=true, when the response was otherwise right, so the peer retries
// without prompting for a password).
//
// Brute force: every request whose credentials fail counts against its
// source address (per endpoint); max_failures within failure_window turn
// the source away with 403 until the window has passed. Unknown usernames
// are checked against a dummy password, so that they fail in the same way
// and the same time as wrong passwords of known ones.
//
// Replay: a response is bound to the method and Request-URI through the
// digest, and each (nonce, cnonce, nc) is accepted once; the set of used
// ones is kept only for nonce_ttl.

type authVerdict int

const (
	authOK        authVerdict = iota
	authChallenge             // answer 407 with a fresh nonce
	authForbidden             // answer 403: the source is locked out
)

type authResult struct {
	verdict authVerdict
	stale   bool
	user    string // the authenticated username, for the log
	why     string // for the log when not OK
	failed  bool   // the credentials counted as a failure
}

// digestServer checks credentials and keeps the per-source failure
// counters and the replay set. It is safe for concurrent use.
type digestServer struct {
	key [32]byte
	now func() time.Time

	mu    sync.Mutex
	fails map[failKey]*failWindow
	used  map[string]time.Time // nonce|cnonce|nc → when it may be forgotten
	// sweepAt is the map size that triggers the next sweep of expired
	// entries, so that sweeping stays amortised O(1).
	sweepFails, sweepUsed int
}

type failKey struct {
	endpoint string
	src      netip.Addr
}

type failWindow struct {
	start time.Time
	count int
	// window and max are the endpoint's failure_window and max_failures
	// when the window started, so that sweeping needs no config and a
	// reload cannot unlock a source early.
	window time.Duration
	max    int
}

const (
	nonceTSLen   = 8
	nonceRandLen = 8
	nonceMACLen  = 16
	nonceLen     = nonceTSLen + nonceRandLen + nonceMACLen
	// sweepMin is the smallest map size at which sweeping starts.
	sweepMin = 1024
	// nonceFutureSkew tolerates a clock that stepped back since issue.
	nonceFutureSkew = 5 * time.Second
	// dummyPassword is what unknown usernames are checked against.
	dummyPassword = "wagate-unknown-user-\x00"
)

func newDigestServer() *digestServer {
	d := &digestServer{
		now:        time.Now,
		fails:      make(map[failKey]*failWindow),
		used:       make(map[string]time.Time),
		sweepFails: sweepMin,
		sweepUsed:  sweepMin,
	}
	if _, err := rand.Read(d.key[:]); err != nil {
		panic("sip: no randomness for digest nonces: " + err.Error())
	}
	return d
}

// newNonce issues a nonce for endpoint ep at time now.
func (d *digestServer) newNonce(ep *configs.Endpoint, now time.Time) string {
	var b [nonceLen]byte
	binary.BigEndian.PutUint64(b[:nonceTSLen], uint64(now.UnixNano()))
	_, _ = rand.Read(b[nonceTSLen : nonceTSLen+nonceRandLen])
	copy(b[nonceTSLen+nonceRandLen:], d.nonceMAC(b[:nonceTSLen+nonceRandLen], ep))
	return base64.RawURLEncoding.EncodeToString(b[:])
}

func (d *digestServer) nonceMAC(tsRand []byte, ep *configs.Endpoint) []byte {
	m := hmac.New(sha256.New, d.key[:])
	m.Write(tsRand)
	m.Write([]byte(ep.Name))
	m.Write([]byte{0})
	m.Write([]byte(ep.Auth.Realm))
	return m.Sum(nil)[:nonceMACLen]
}

// nonceState is what a received nonce turned out to be.
type nonceState int

const (
	nonceValid nonceState = iota
	nonceStale
	nonceForged
)

// checkNonce verifies a nonce's MAC and age; it returns the issue time.
func (d *digestServer) checkNonce(nonce string, ep *configs.Endpoint, now time.Time) (nonceState, time.Time) {
	b, err := base64.RawURLEncoding.DecodeString(nonce)
	if err != nil || len(b) != nonceLen {
		return nonceForged, time.Time{}
	}
	want := d.nonceMAC(b[:nonceTSLen+nonceRandLen], ep)
	if !hmac.Equal(want, b[nonceTSLen+nonceRandLen:]) {
		return nonceForged, time.Time{}
	}
	issued := time.Unix(0, int64(binary.BigEndian.Uint64(b[:nonceTSLen])))
	age := now.Sub(issued)
	if age > ep.Auth.NonceTTL.D() || age < -nonceFutureSkew {
		return nonceStale, issued
	}
	return nonceValid, issued
}

// challenge is the Proxy-Authenticate value for a fresh nonce.
func (d *digestServer) challenge(ep *configs.Endpoint, stale bool) string {
	params := []digestParam{
		{"realm", ep.Auth.Realm, true},
		{"nonce", d.newNonce(ep, d.now()), true},
		{"algorithm", "MD5", false},
		{"qop", "auth", true},
	}
	if stale {
		params = append(params, digestParam{"stale", "true", false})
	}
	v, _ := formatDigest(params) // realm is checked quotable by configs
	return v
}

// check decides a request from endpoint ep (which has Auth) coming from
// src.
func (d *digestServer) check(ep *configs.Endpoint, req *sip.Request, src netip.Addr) authResult {
	a := ep.Auth
	now := d.now()
	fk := failKey{endpoint: ep.Name, src: src}
	if d.lockedOut(fk, now) {
		return authResult{verdict: authForbidden, why: "too many authentication failures from this source"}
	}

	creds, n := findCredentials(req, a.Realm)
	switch {
	case n == 0:
		return authResult{verdict: authChallenge, why: "no credentials"}
	case n > 1 || creds == nil:
		return d.failure(fk, ep, now, "malformed or repeated credentials for the realm")
	}

	alg, ok := digestAlgorithm(creds["algorithm"])
	if !ok {
		return d.failure(fk, ep, now, "unsupported digest algorithm")
	}
	qop := strings.ToLower(creds["qop"])
	nc, cnonce := creds["nc"], creds["cnonce"]
	if qop != "auth" || !validNC(nc) || cnonce == "" || len(cnonce) > 256 {
		return d.failure(fk, ep, now, "credentials without qop=auth, nc and cnonce")
	}
	if !sameRequestURI(creds["uri"], req.Recipient) {
		return d.failure(fk, ep, now, "digest uri is not the Request-URI")
	}
	username := creds["username"]
	password, known := lookupUser(a.Users, username)
	if !known {
		password = dummyPassword
	}
	in := digestInput{
		alg: alg, username: username, realm: a.Realm, password: password,
		method: string(req.Method), uri: creds["uri"],
		nonce: creds["nonce"], nc: nc, cnonce: cnonce, qop: qop,
	}
	want := in.response()
	got := strings.ToLower(creds["response"])
	match := subtle.ConstantTimeCompare([]byte(want), []byte(got)) == 1 && known

	state, issued := d.checkNonce(creds["nonce"], ep, now)
	switch {
	case state == nonceForged:
		return d.failure(fk, ep, now, "nonce not issued by wagate")
	case !match:
		return d.failure(fk, ep, now, "wrong username or password")
	case state == nonceStale:
		// Right password, old nonce: challenge again with stale=true.
		return authResult{verdict: authChallenge, stale: true, why: "stale nonce"}
	}
	if !d.firstUse(creds["nonce"]+"|"+cnonce+"|"+nc, issued.Add(a.NonceTTL.D()), now) {
		return authResult{verdict: authChallenge, why: "replayed credentials"}
	}
	return authResult{verdict: authOK, user: username}
}

// failure counts a failed attempt from fk and returns the verdict for it.
func (d *digestServer) failure(fk failKey, ep *configs.Endpoint, now time.Time, why string) authResult {
	d.mu.Lock()
	defer d.mu.Unlock()
	w := d.fails[fk]
	window := ep.Auth.FailureWindow.D()
	if w == nil || now.Sub(w.start) >= w.window {
		if len(d.fails) >= d.sweepFails {
			d.sweepFailsLocked(now)
		}
		w = &failWindow{start: now, window: window, max: ep.Auth.MaxFailures}
		d.fails[fk] = w
	}
	w.count++
	r := authResult{verdict: authChallenge, why: why, failed: true}
	if w.count >= w.max {
		r.verdict = authForbidden
	}
	return r
}

// lockedOut reports whether fk reached its failure limit in a window that
// has not passed yet.
func (d *digestServer) lockedOut(fk failKey, now time.Time) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	w := d.fails[fk]
	if w == nil {
		return false
	}
	if now.Sub(w.start) >= w.window {
		delete(d.fails, fk)
		return false
	}
	return w.count >= w.max
}

// firstUse records key until expires and reports whether it was new.
func (d *digestServer) firstUse(key string, expires, now time.Time) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, seen := d.used[key]; seen {
		return false
	}
	if len(d.used) >= d.sweepUsed {
		for k, exp := range d.used {
			if !now.Before(exp) {
				delete(d.used, k)
			}
		}
		d.sweepUsed = max(sweepMin, 2*len(d.used))
	}
	d.used[key] = expires
	return true
}

func (d *digestServer) sweepFailsLocked(now time.Time) {
	for k, w := range d.fails {
		if now.Sub(w.start) >= w.window {
			delete(d.fails, k)
		}
	}
	d.sweepFails = max(sweepMin, 2*len(d.fails))
}

// findCredentials returns the parameters of the one Authorization or
// Proxy-Authorization header for realm, and how many there were. A header
// that does not parse but might be for realm counts, with nil params.
func findCredentials(req *sip.Request, realm string) (map[string]string, int) {
	var found map[string]string
	n := 0
	for _, name := range []string{"Proxy-Authorization", "Authorization"} {
		for _, h := range req.GetHeaders(name) {
			p, err := parseDigest(h.Value())
			if err != nil {
				if strings.Contains(h.Value(), realm) {
					n++
					found = nil
				}
				continue
			}
			if p["realm"] != realm {
				continue
			}
			n++
			found = p
		}
	}
	return found, n
}

// lookupUser finds username's password, comparing every configured name
// so that the time taken does not say which names exist.
func lookupUser(users []configs.Credential, username string) (string, bool) {
	var password string
	found := false
	for _, u := range users {
		if subtle.ConstantTimeCompare([]byte(u.Username), []byte(username)) == 1 && !found {
			password, found = u.Secret(), true
		}
	}
	return password, found && password != ""
}

// validNC checks an nc value: 8 hex digits.
func validNC(nc string) bool {
	if len(nc) != 8 {
		return false
	}
	for i := 0; i < 8; i++ {
		c := nc[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// sameRequestURI checks that the digest uri names the request's
// Request-URI (user, host and port; parameters may be written differently
// by different stacks).
func sameRequestURI(uri string, ruri sip.Uri) bool {
	if uri == "" {
		return false
	}
	var u sip.Uri
	if err := sip.ParseUri(uri, &u); err != nil {
		return false
	}
	return u.User == ruri.User && strings.EqualFold(u.Host, ruri.Host) && u.Port == ruri.Port
}

// sourceIP returns the IP of a request's source address.
func sourceIP(req *sip.Request) netip.Addr {
	host, _, err := net.SplitHostPort(req.Source())
	if err != nil {
		return netip.Addr{}
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	return ip.Unmap()
}
