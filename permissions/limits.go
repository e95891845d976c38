package permissions

import (
	"time"

	"github.com/wagate/wagate/configs"
)

// Limits are Meta's call-permission rules (DESIGN.md §5). Meta changes them,
// so every one is configurable. A count limit of zero or less turns that
// rule off; a TemporaryTTL of zero or less means Meta's 168 hours.
type Limits struct {
	// TemporaryTTL is how long a temporary permission lasts after approval
	// when Meta does not say (Meta sends no webhook when it expires).
	TemporaryTTL time.Duration
	// ConnectedPerUser24h caps connected business-initiated calls per user
	// in a rolling 24 hours.
	ConnectedPerUser24h int
	// UnansweredRevoke consecutive unanswered or rejected calls revoke the
	// permission; UnansweredNudge of them log a nudge warning.
	UnansweredRevoke int
	UnansweredNudge  int
	// NewCallsPerNumber24h caps new business-initiated calls per business
	// number in a rolling 24 hours; ConcurrentPerNumber caps calls up at once.
	NewCallsPerNumber24h int
	ConcurrentPerNumber  int
	// RequestsPer24h and RequestsPer7d cap call-permission requests per user.
	RequestsPer24h int
	RequestsPer7d  int
}

// DefaultLimits are the rules as Meta documents them (the same numbers as
// configs' defaults; written out so that this package's tests do not move
// when configs does).
func DefaultLimits() Limits {
	return Limits{
		TemporaryTTL:         defaultTemporaryTTL,
		ConnectedPerUser24h:  100,
		UnansweredRevoke:     4,
		UnansweredNudge:      2,
		NewCallsPerNumber24h: 10000,
		ConcurrentPerNumber:  1000,
		RequestsPer24h:       1,
		RequestsPer7d:        2,
	}
}

// LimitsFrom converts the YAML limits.
func LimitsFrom(c configs.PermissionLimits) Limits {
	return Limits{
		TemporaryTTL:         c.TemporaryTTL.D(),
		ConnectedPerUser24h:  c.ConnectedCallsPerUser24h,
		UnansweredRevoke:     c.ConsecutiveUnansweredMax,
		UnansweredNudge:      c.ConsecutiveUnansweredNudge,
		NewCallsPerNumber24h: c.NewCallsPerNumber24h,
		ConcurrentPerNumber:  c.ConcurrentCallsPerNumber,
		RequestsPer24h:       c.RequestsPer24h,
		RequestsPer7d:        c.RequestsPer7d,
	}
}

// defaultTemporaryTTL is Meta's temporary permission lifetime.
const defaultTemporaryTTL = 168 * time.Hour

func (l Limits) ttl() time.Duration {
	if l.TemporaryTTL <= 0 {
		return defaultTemporaryTTL
	}
	return l.TemporaryTTL
}
