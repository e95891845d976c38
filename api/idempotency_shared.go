package api

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
)

// SharedIdempotency keeps click-to-call Idempotency-Keys where every node
// sees them (permissions.Redis): a CRM behind a load balancer whose retry
// reaches another node must get the first answer, not place a second call
// to its customer. Records are opaque to the store.
type SharedIdempotency interface {
	// ClaimIdempotency stores rec under key for ttl unless the key is
	// held; then it returns the record held.
	ClaimIdempotency(ctx context.Context, key string, rec []byte, ttl time.Duration) (held []byte, first bool, err error)
	// FinishIdempotency replaces key's record with rec for ttl.
	FinishIdempotency(ctx context.Context, key string, rec []byte, ttl time.Duration) error
	// ReleaseIdempotency drops key if its record is still rec.
	ReleaseIdempotency(ctx context.Context, key string, rec []byte) error
	// GetIdempotency returns key's record, if any.
	GetIdempotency(ctx context.Context, key string) (rec []byte, ok bool, err error)
}

const (
	// idemPendingTTL bounds how long a claim whose node died before
	// answering pins its key: after it, a retry places the call.
	idemPendingTTL = time.Minute
	// idemSharedWait is how long a retry on another node waits for the
	// first request's answer (a click-to-call is answered once the
	// agent's INVITE is out, in milliseconds) before it is told to retry.
	idemSharedWait = 10 * time.Second
	idemPoll       = 100 * time.Millisecond
)

// idemRecord is what the nodes share of one key: pending while its node
// answers, then the answer.
type idemRecord struct {
	Node    string      `json:"node"`
	Sum     string      `json:"sum"`
	Pending bool        `json:"pending,omitempty"`
	Code    int         `json:"code,omitempty"`
	Header  http.Header `json:"header,omitempty"`
	Body    []byte      `json:"body,omitempty"`
}

// sharedIdem is the originate handlers' side of SharedIdempotency.
type sharedIdem struct {
	store   SharedIdempotency
	node    string
	log     *slog.Logger
	lastLog atomic.Int64 // Unix ns of the last "not shared" warning
}

// claim asks the other nodes about key before this node runs the request.
// answered: res is the answer (the first request's, replayed; 422 for
// another body; 409 while another node still answers). Otherwise, owned
// is this node's claim to settle once it has run the request (nil when
// the store failed: the key is then this node's alone).
func (s *sharedIdem) claim(ctx context.Context, key string, sum [32]byte) (res keptResponse, answered bool, owned []byte) {
	mine, _ := json.Marshal(idemRecord{Node: s.node, Sum: hex.EncodeToString(sum[:]), Pending: true})
	deadline := time.Now().Add(idemSharedWait)
	for {
		held, first, err := s.store.ClaimIdempotency(context.WithoutCancel(ctx), key, mine, idemPendingTTL)
		if err != nil {
			s.warn("claim", err)
			return res, false, nil
		}
		if first {
			return res, false, mine
		}
		for {
			var rec idemRecord
			if err := json.Unmarshal(held, &rec); err != nil {
				s.warn("read", fmt.Errorf("a record that is not JSON: %w", err))
				return res, false, nil
			}
			if rec.Sum != hex.EncodeToString(sum[:]) {
				return jsonResponse(http.StatusUnprocessableEntity, errorDoc{Error: "Idempotency-Key: already used with another body"}), true, nil
			}
			if !rec.Pending {
				res = keptResponse{code: rec.Code, header: rec.Header, body: rec.Body}
				if res.header == nil {
					res.header = http.Header{}
				}
				res.header.Set("Idempotent-Replayed", "true")
				// The call lives on the node that placed it, which alone
				// answers GET and DELETE for it.
				if rec.Node != "" {
					res.header.Set("X-Wagate-Node", rec.Node)
				}
				return res, true, nil
			}
			if time.Now().After(deadline) {
				res = jsonResponse(http.StatusConflict, errorDoc{Error: "Idempotency-Key: a request with this key is still being answered by node " + rec.Node + "; retry"})
				res.header.Set("Retry-After", strconv.Itoa(1))
				return res, true, nil
			}
			select {
			case <-ctx.Done():
				return jsonResponse(http.StatusServiceUnavailable, errorDoc{Error: "request ended"}), true, nil
			case <-time.After(idemPoll):
			}
			var ok bool
			held, ok, err = s.store.GetIdempotency(context.WithoutCancel(ctx), key)
			if err != nil {
				s.warn("read", err)
				return res, false, nil
			}
			if !ok {
				break // the first was refused and let go of the key: claim it
			}
		}
	}
}

// settle publishes this node's answer to its claim: kept when it may
// stand for a call placed, else the key is let go (a refusal dialled
// nobody, so a retry must run).
func (s *sharedIdem) settle(ctx context.Context, key string, sum [32]byte, owned []byte, res keptResponse) {
	ctx = context.WithoutCancel(ctx)
	if !res.started() {
		if err := s.store.ReleaseIdempotency(ctx, key, owned); err != nil {
			s.warn("release", err)
		}
		return
	}
	rec, _ := json.Marshal(idemRecord{Node: s.node, Sum: hex.EncodeToString(sum[:]), Code: res.code, Header: res.header, Body: res.body})
	if err := s.store.FinishIdempotency(ctx, key, rec, idemTTL); err != nil {
		// The pending claim lapses after idemPendingTTL; a retry on
		// another node after that places the call again.
		s.warn("keep", err)
	}
}

// warn logs at most one failure of the shared keys every 10 s: while
// Redis is down every click-to-call would say it again.
func (s *sharedIdem) warn(op string, err error) {
	now := time.Now().UnixNano()
	if last := s.lastLog.Load(); now-last > int64(10*time.Second) && s.lastLog.CompareAndSwap(last, now) {
		s.log.Warn("click-to-call Idempotency-Keys not shared with the other nodes: a retry that reaches another node may place a second call",
			"op", op, "error", err)
	}
}
