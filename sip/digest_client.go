package sip

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"net/netip"
	"strings"

	"github.com/emiago/sipgo/sip"
	"github.com/wagate/wagate/configs"
)

// Digest authentication as a client: wagate answers the 401/407 that Meta
// sends to a business-initiated INVITE with the business number's
// credentials. It answers only
//
//   - a challenge to a B-leg toward a whatsapp endpoint,
//   - received from an address of that same endpoint,
//   - whose realm is the endpoint's digest_realm (default wa.meta.vc),
//   - once per call: a second challenge means the credentials are wrong,
//     unless it says stale=true (the nonce expired, the password was
//     right: RFC 7616 §3.3), which is answered once more,
//
// so that no other peer (a PBX, a rogue responder, a redirect target) can
// obtain a response computed with Meta's per-number password.

// errNoChallenge and friends say why a challenge is not answered; they end
// up in the log line of the call's 503.
var (
	errChallengeNotWhatsApp = errors.New("challenge from a non-whatsapp endpoint is never answered")
	errChallengeSource      = errors.New("challenge did not come from the whatsapp endpoint's addresses")
	errChallengeRealm       = errors.New("no digest challenge for the configured realm with a supported algorithm and qop")
	errNoDigestPassword     = errors.New("business number has no digest password configured")
)

// AnswerChallenge builds the INVITE that retries req with credentials for
// the challenge in res (RFC 3261 §22.2: same Call-ID, From tag and To,
// CSeq+1, new branch). cfg, ep and num are the configuration of the call.
func AnswerChallenge(cfg *configs.Config, ep *configs.Endpoint, num *configs.Number, req *sip.Request, res *sip.Response) (*sip.Request, error) {
	if ep.Kind != configs.KindWhatsApp {
		return nil, errChallengeNotWhatsApp
	}
	if !fromEndpoint(cfg, ep, res.Source()) {
		return nil, errChallengeSource
	}
	password := num.Digest.Resolve()
	if password == "" {
		return nil, errNoDigestPassword
	}
	chName, authName := "WWW-Authenticate", "Authorization"
	if res.StatusCode == 407 {
		chName, authName = "Proxy-Authenticate", "Proxy-Authorization"
	}
	ch, ok := pickChallenge(res.GetHeaders(chName), ep.DigestRealm)
	if !ok {
		return nil, errChallengeRealm
	}
	in := digestInput{
		alg:      ch.alg,
		username: strings.TrimPrefix(num.Number, "+"),
		realm:    ch.realm,
		password: password,
		method:   string(req.Method),
		uri:      req.Recipient.String(),
		nonce:    ch.nonce,
		qop:      ch.qop,
		body:     req.Body(),
	}
	params := []digestParam{
		{"username", in.username, true},
		{"realm", in.realm, true},
		{"nonce", in.nonce, true},
		{"uri", in.uri, true},
	}
	if in.qop != "" {
		in.nc = "00000001"
		in.cnonce = newCnonce()
	}
	params = append(params, digestParam{"response", in.response(), true}, digestParam{"algorithm", in.alg.name, false})
	if in.qop != "" {
		params = append(params,
			digestParam{"cnonce", in.cnonce, true},
			digestParam{"qop", in.qop, false},
			digestParam{"nc", in.nc, false})
	}
	if ch.opaque != "" {
		params = append(params, digestParam{"opaque", ch.opaque, true})
	}
	value, ok := formatDigest(params)
	if !ok {
		// The nonce, opaque or realm would need escaping: refuse
		// rather than send something Meta may read differently.
		return nil, errChallengeRealm
	}

	retry := req.Clone()
	retry.RemoveHeader("Via") // a new transaction: sipgo adds a Via with a new branch
	for retry.RemoveHeader("Authorization") {
	}
	for retry.RemoveHeader("Proxy-Authorization") {
	}
	retry.CSeq().SeqNo++
	retry.AppendHeader(sip.NewHeader(authName, value))
	return retry, nil
}

// challenge is the digest challenge wagate chose to answer.
type challenge struct {
	alg                  digestAlg
	realm, nonce, opaque string
	qop                  string // "auth", "auth-int" or "" (RFC 2069)
	stale                bool
}

// StaleChallenge reports whether the challenge in res that wagate would
// answer for ep says stale=true: the credentials were right, only the nonce
// had expired, so answering the new nonce is not guessing a password.
func StaleChallenge(ep *configs.Endpoint, res *sip.Response) bool {
	name := "WWW-Authenticate"
	if res.StatusCode == 407 {
		name = "Proxy-Authenticate"
	}
	ch, ok := pickChallenge(res.GetHeaders(name), ep.DigestRealm)
	return ok && ch.stale
}

// pickChallenge chooses, among the challenge header values, one for realm
// that wagate can answer: SHA-256 before MD5 (RFC 8760 §2.4), qop=auth
// before auth-int before none.
func pickChallenge(hdrs []sip.Header, realm string) (challenge, bool) {
	var best challenge
	bestRank := -1
	for _, h := range hdrs {
		p, err := parseDigest(h.Value())
		if err != nil || realm == "" || p["realm"] != realm || p["nonce"] == "" {
			continue
		}
		alg, ok := digestAlgorithm(p["algorithm"])
		if !ok {
			continue
		}
		ch := challenge{alg: alg, realm: p["realm"], nonce: p["nonce"], opaque: p["opaque"],
			stale: strings.EqualFold(p["stale"], "true")}
		rank := 0
		if q, ok := p["qop"]; ok {
			qs := qopList(q)
			switch {
			case contains(qs, "auth"):
				ch.qop, rank = "auth", 2
			case contains(qs, "auth-int"):
				ch.qop, rank = "auth-int", 1
			default:
				continue
			}
		}
		if alg.name == algSHA256.name {
			rank += 10
		}
		if rank > bestRank {
			best, bestRank = ch, rank
		}
	}
	return best, bestRank >= 0
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// fromEndpoint reports whether src ("ip:port") is an address of ep.
func fromEndpoint(cfg *configs.Config, ep *configs.Endpoint, src string) bool {
	host, _, err := net.SplitHostPort(src)
	if err != nil {
		return false
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	got := cfg.EndpointForSource(ip.Unmap())
	return got != nil && got.Name == ep.Name
}

func newCnonce() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
