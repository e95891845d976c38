package sip

import (
	"time"

	"github.com/wagate/wagate/configs"
)

// InHours reports whether t falls within business hours h: not on a
// holiday, and inside one of the weekly ranges, both read in h's time zone.
// A local time that a daylight-saving change skips or repeats is read as
// the wall clock shows it.
func InHours(h *configs.Hours, t time.Time) bool {
	loc := h.Location
	if loc == nil {
		loc = time.UTC
	}
	local := t.In(loc)
	if h.Closed[local.Format(time.DateOnly)] {
		return false
	}
	// Minutes from Monday 00:00; time.Weekday counts from Sunday.
	day := (int(local.Weekday()) + 6) % 7
	m := day*1440 + local.Hour()*60 + local.Minute()
	for _, r := range h.Open {
		if m >= r.From && m < r.To {
			return true
		}
	}
	return false
}
