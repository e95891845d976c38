package main

import (
	"log/slog"

	"github.com/wagate/wagate/configs"
	"github.com/wagate/wagate/media"
)

// checkDescriptorLimit says at start what the open-files limit means for
// the media port range. Pairs are kept bound between calls (two
// descriptors each; see media/portalloc.go) up to a budget derived from
// the limit or set in media.max_bound_pairs; past it a released pair is
// closed and bound again at its next use. A range wider than the budget
// therefore costs a bind per call beyond it (CPU, not refusals), which an
// operator may want to fix by raising the limit; a max_bound_pairs the
// limit cannot hold lets free pairs take the descriptors new calls need
// (503).
// limit is the soft limit in force (Go raises it to the hard limit at
// start), 0 when unknown.
func checkDescriptorLimit(m configs.Media, limit uint64, log *slog.Logger) {
	if limit == 0 {
		return
	}
	pairs := max((m.PortMax-m.PortMin+1)/2, 0)
	budget := media.BoundPairBudget(m.MaxBoundPairs, limit)
	// Concurrent calls the limit holds at all: pairs in use are bound
	// whatever the budget, two per call, and a call's reader holds an
	// epoll set, up to what leaves media.DescriptorsBeside and the
	// pacer's timerfds.
	maxBound := media.MaxBoundPairsInUse(limit)
	callsAtMost := maxBound / 2
	if m.MaxBoundPairs > 0 && min(budget, pairs) > maxBound {
		log.Warn("media.max_bound_pairs keeps more sockets bound than the open-files limit allows: free pairs may hold the descriptors new calls need, which then get 503",
			"limit", limit, "max_bound_pairs", m.MaxBoundPairs, "descriptors_wanted", min(budget, pairs)*5/2+media.DescriptorsBeside+media.PacerDescriptors(),
			"fix", "lower media.max_bound_pairs or set it to 0 (derived from the limit), or raise LimitNOFILE (deploy/wagate.service)")
		return
	}
	if budget >= pairs {
		return
	}
	log.Warn("the open-files limit cannot keep the whole media port range bound: past max_bound_pairs a released port pair is closed and bound again at its next use, a bind per call beyond it",
		"limit", limit, "port_pairs", pairs, "max_bound_pairs", budget, "port_min", m.PortMin, "port_max", m.PortMax,
		"concurrent_calls_at_most", callsAtMost,
		"fix", "raise LimitNOFILE (deploy/wagate.service) or narrow media.port_min..port_max")
}
