package media

import (
	"math"
	"runtime"
)

// descriptorReserveMin and descriptorReserveShare size what the derived
// bound-pair budget leaves to everything else wagate opens: SIP listeners
// and TCP/TLS connections (up to sip.tcp.max_connections), the API's
// connections, the events database, recordings being written, Redis. A
// quarter of the limit, at least 1,024: with the usual 65,536 that leaves
// 16,384, four times sip.tcp.max_connections' default.
const (
	descriptorReserveMin   = DescriptorsBeside
	descriptorReserveShare = 4 // 1/4 of the limit
)

// DescriptorsBeside is what wagate keeps for everything but RTP sockets
// whatever the load: pairs in use are bound only while the open-files
// limit leaves this many (MaxBoundPairsInUse).
const DescriptorsBeside = 1024

// PacerDescriptors is how many descriptors the media pacer may hold: a
// timerfd for each live shard (pacerclock_linux.go), shardsPerProc per
// GOMAXPROCS. They are kept on top of DescriptorsBeside, so that a host
// with many cores does not take them from SIP and the API. A shard that
// cannot make one sleeps on runtime timers instead, less precisely, and
// never fails a call.
func PacerDescriptors() int { return shardsPerProc * runtime.GOMAXPROCS(0) }

// MaxBoundPairsInUse is how many pairs may be bound at once, in use or
// kept, with limit open files (0 when unknown: no cap): past it a new call
// is refused (ErrNoPorts) rather than let RTP sockets take the descriptors
// SIP connections, the API, the events store and recordings need
// (DescriptorsBeside), and the pacer's (PacerDescriptors). It counts five
// descriptors for two pairs, as if every pair were in use: a pair's two
// sockets, and half of the epoll set a call's reader holds for its two
// pairs (callreader_linux.go).
func MaxBoundPairsInUse(limit uint64) int {
	if limit == 0 || limit >= math.MaxInt/2 {
		return math.MaxInt
	}
	beside := uint64(DescriptorsBeside + PacerDescriptors())
	return int((limit - min(limit, beside)) * 2 / 5)
}

// DescriptorReserve is how many of limit open files the derived budget
// leaves for descriptors other than RTP sockets.
func DescriptorReserve(limit uint64) uint64 {
	return max(descriptorReserveMin, limit/descriptorReserveShare)
}

// BoundPairBudget is how many RTP/RTCP port pairs wagate keeps bound: a
// released pair that would leave more bound is closed, and bound anew when
// it is next handed out. configured is media.max_bound_pairs; 0 derives
// the budget from limit, the open-files limit (0 when unknown: no budget),
// as what is left after DescriptorReserve, two descriptors a pair. The
// result is math.MaxInt when there is no budget.
func BoundPairBudget(configured int, limit uint64) int {
	if configured > 0 {
		return configured
	}
	if limit == 0 || limit >= math.MaxInt/2 {
		return math.MaxInt
	}
	return int((limit - min(limit, DescriptorReserve(limit))) / 2)
}
