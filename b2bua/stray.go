package b2bua

import (
	"log/slog"
	"sync"
	"time"
)

// maxStrayByes bounds the BYEs wagate has under way for stray 2xx
// responses (a callee's 2xx for a call wagate no longer has). Each lives
// up to 64·T1 (32 s) and is resent ten times over UDP when unanswered, so
// without a bound a peer (or anyone spoofing its address) sending 2xx
// responses with B-leg-shaped Call-IDs made wagate hold a goroutine and a
// transaction per response for 32 s and send 12 requests back for each
// one (2,000 responses in 4 s: 24,000 requests, 2,000 goroutines, 2,000
// log lines). Real stray 2xx are rare races, a few at a time.
const maxStrayByes = 64

// strayWarnEvery bounds the warning about stray 2xx left without a BYE.
const strayWarnEvery = 10 * time.Second

// strayByes tracks the stray dialogs being hung up, by Call-ID.
type strayByes struct {
	mu      sync.Mutex
	live    map[string]struct{}
	skipped uint64 // stray 2xx left without a BYE since the last warning
	warned  time.Time
}

// start reports whether a BYE may be sent for the stray dialog callID:
// not when one is under way for it already (the 2xx was retransmitted
// before our ACK arrived), nor when maxStrayByes are. The caller calls
// done(callID) when a started BYE is over.
func (b *strayByes) start(callID string, log *slog.Logger) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, dup := b.live[callID]; dup {
		return false
	}
	if len(b.live) >= maxStrayByes {
		b.skipped++
		if now := time.Now(); now.Sub(b.warned) >= strayWarnEvery {
			log.Warn("stray 2xx to INVITE: too many BYEs under way, ACKed only",
				"sip_call_id", callID, "under_way", len(b.live), "skipped", b.skipped)
			b.warned, b.skipped = now, 0
		}
		return false
	}
	if b.live == nil {
		b.live = make(map[string]struct{})
	}
	b.live[callID] = struct{}{}
	return true
}

func (b *strayByes) done(callID string) {
	b.mu.Lock()
	delete(b.live, callID)
	b.mu.Unlock()
}
