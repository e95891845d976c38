// Validation of the permissions section: the permission store (Redis)
// and its limits.

package configs

import (
	"net"
	"path/filepath"
	"time"
)

func (v validator) permissions() {
	pm := &v.c.Permissions
	if pm.Store == "" {
		v.add("permissions.store", "must not be empty; remove the key to use %s", filepath.Join(v.c.DataDir, DefaultPermissionStore))
	}
	switch pm.Backend {
	case PermissionBackendBolt:
	case PermissionBackendRedis:
		v.permissionRedis(&pm.Redis)
	default:
		v.add("permissions.backend", "%q is not a store; use bbolt (one node) or redis (several nodes)", pm.Backend)
	}
	l := &pm.Limits
	const lp = "permissions.limits."
	v.positive(lp+"temporary_ttl", l.TemporaryTTL)
	counts := []struct {
		key string
		n   int
	}{
		{"connected_calls_per_user_24h", l.ConnectedCallsPerUser24h},
		{"consecutive_unanswered_max", l.ConsecutiveUnansweredMax},
		{"consecutive_unanswered_nudge", l.ConsecutiveUnansweredNudge},
		{"new_calls_per_number_24h", l.NewCallsPerNumber24h},
		{"concurrent_calls_per_number", l.ConcurrentCallsPerNumber},
		{"requests_per_24h", l.RequestsPer24h},
		{"requests_per_7d", l.RequestsPer7d},
	}
	// 0 turns a rule off (docs/api.md); below 0 is a mistake.
	ok := true
	for _, c := range counts {
		if c.n < 0 {
			v.add(lp+c.key, "%d is negative; use 0 to turn the rule off", c.n)
			ok = false
		}
	}
	if !ok {
		return // the comparisons below would repeat the problem
	}
	if l.ConsecutiveUnansweredNudge > 0 && l.ConsecutiveUnansweredMax > 0 && l.ConsecutiveUnansweredNudge >= l.ConsecutiveUnansweredMax {
		v.add(lp+"consecutive_unanswered_nudge", "%d must be below consecutive_unanswered_max %d: the nudge comes before the revocation",
			l.ConsecutiveUnansweredNudge, l.ConsecutiveUnansweredMax)
	}
	if l.RequestsPer7d > 0 && l.RequestsPer24h > l.RequestsPer7d {
		v.add(lp+"requests_per_24h", "%d is above requests_per_7d %d", l.RequestsPer24h, l.RequestsPer7d)
	}
}

func (v validator) permissionRedis(r *PermissionRedis) {
	const rp = "permissions.redis."
	if _, _, err := net.SplitHostPort(r.Address); err != nil || r.Address == "" {
		v.add(rp+"address", "%q is not host:port", redactUserinfo(r.Address))
	}
	v.secret(rp+"password", r.Password)
	if r.DB < 0 {
		v.add(rp+"db", "%d is negative", r.DB)
	}
	if r.Prefix == "" {
		v.add(rp+"prefix", "must not be empty; remove the key to use %q", DefaultRedisPrefix)
	}
	v.positive(rp+"slot_ttl", r.SlotTTL)
	if r.SlotTTL > 0 && r.SlotTTL < Duration(time.Second) {
		v.add(rp+"slot_ttl", "%s is below 1s: a node refreshes its slots every third of it", r.SlotTTL)
	}
	v.positive(rp+"timeout", r.Timeout)
	switch r.OnDown {
	case "refuse", "cache":
	default:
		v.add(rp+"on_down", "%q is not a policy; use refuse (503) or cache (admit from what this node last saw)", r.OnDown)
	}
	if r.WaitReplicas < 0 {
		v.add(rp+"wait_replicas", "%d is negative", r.WaitReplicas)
	}
	v.positive(rp+"wait_timeout", r.WaitTimeout)
}
