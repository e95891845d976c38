package main

import (
	"log/slog"
	"syscall"

	"github.com/wagate/wagate/configs"
)

// descriptorsBeside is what wagate opens besides its RTP sockets: SIP
// listeners and connections, the API's connections, the events database,
// recordings being written, Redis. A guess with room to spare.
const descriptorsBeside = 1024

// descriptorsWanted is how many descriptors wagate can come to hold with
// media m: every port pair of the range is kept bound once used (RTP and
// RTCP, two sockets; see media/portalloc.go), plus what it opens besides.
func descriptorsWanted(m configs.Media) uint64 {
	pairs := (m.PortMax - m.PortMin + 1) / 2
	return uint64(2*max(pairs, 0)) + descriptorsBeside
}

// checkDescriptorLimit warns at start when the open-files limit cannot
// hold the whole port range bound: under load new calls would then be
// refused with 503 ("too many open files") long before the range runs
// out, which an operator otherwise learns only from a busy day's logs.
// limit is the soft limit in force (Go raises it to the hard limit at
// start).
func checkDescriptorLimit(m configs.Media, limit uint64, log *slog.Logger) {
	want := descriptorsWanted(m)
	if limit >= want {
		return
	}
	log.Warn("the open-files limit is below what the media port range can use: calls past it get 503 (too many open files)",
		"limit", limit, "wanted", want, "port_min", m.PortMin, "port_max", m.PortMax,
		"calls_at_most", (limit-min(limit, descriptorsBeside))/4,
		"fix", "raise LimitNOFILE (deploy/wagate.service) or narrow media.port_min..port_max")
}

// openFilesLimit is the soft RLIMIT_NOFILE, 0 when unknown.
func openFilesLimit() uint64 {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return 0
	}
	return r.Cur
}
