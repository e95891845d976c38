package sip

import "github.com/wagate/wagate/configs"

// blocked returns the rejection of a user-initiated call from a caller on
// the number's blocklist or the global one, or nil. The caller is known by
// its number (u.User) and by its business-scoped user id (u.UserID), as
// Meta reveals them; either on a list refuses the call. The number's own
// list is checked first, so its code wins for a caller on both.
func blocked(cfg *configs.Config, num *configs.Number, u UICInfo) *Rejection {
	for _, b := range []*configs.Blocklist{num.Blocklist, cfg.Blocklist} {
		if b == nil {
			continue
		}
		for _, id := range []string{u.User, u.UserID} {
			if id != "" && b.Set[id] {
				reason := DefaultReason(b.Code)
				if b.Code == 403 {
					reason = "Forbidden"
				}
				return &Rejection{Code: b.Code, Reason: reason, Log: "caller blocklisted"}
			}
		}
	}
	return nil
}
