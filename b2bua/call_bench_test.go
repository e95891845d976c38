//go:build unix

package b2bua

import (
	"io"
	"log/slog"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// BenchmarkCall is the CPU and allocation of whole calls through the
// b2bua, media aside (a fake bridge): Meta's INVITE, the INVITE to the
// PBX, its 200, the 200 to Meta, both ACKs, Meta's BYE and the PBX's 200,
// in batches of 50 calls at a time. The log is JSON at warn, as under load
// (test/load/run.sh). B/op, allocs/op and cpu-ns/call (the process's user
// and system CPU time) are per call and count the whole process: the two
// raw peers' parsing is in them, a small part. ns/op is wall time, mostly
// waiting on loopback.
// Run it alone (sipgo's timers are set once per process):
//
//	go test -run '^$' -bench 'Call$' -benchmem -count 5 ./b2bua/
func BenchmarkCall(b *testing.B) {
	const batch = 50
	meta, pbx := benchPeer(b, "127.0.0.2"), benchPeer(b, "127.0.0.3")
	log := slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelWarn}))
	addr := benchServerLog(b, meta, pbx, log)
	answered, pbxByes, metaByeOKs := serveBenchPeers(meta, pbx, batch)
	run := strconv.FormatInt(time.Now().UnixNano(), 36)
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := processCPU(b)
	done := 0
	for done < b.N {
		n := min(batch, b.N-done)
		invites := make(map[string]*sip.Request, n)
		for i := range n {
			inv := sippInvite(b, addr, meta.conn.LocalAddr().String(), run+"-"+strconv.Itoa(done+i))
			invites[callIDOf(inv)] = inv
			meta.sendTo(addr, inv)
		}
		byesBefore, oksBefore := pbxByes.Load(), metaByeOKs.Load()
		for acked := 0; acked < n; {
			select {
			case res := <-answered:
				inv, ok := invites[callIDOf(res)]
				if !ok {
					continue
				}
				delete(invites, callIDOf(res))
				meta.sendTo(addr, ackFor(inv, res))
				meta.sendTo(addr, byeFor(inv, res, 2))
				acked++
			case <-time.After(10 * time.Second):
				b.Fatalf("%d of %d calls answered", acked, n)
			}
		}
		deadline := time.Now().Add(10 * time.Second)
		for pbxByes.Load()-byesBefore < int64(n) || metaByeOKs.Load()-oksBefore < int64(n) {
			if time.Now().After(deadline) {
				b.Fatalf("hang-up: PBX got %d BYEs, Meta %d 200s, of %d", pbxByes.Load()-byesBefore, metaByeOKs.Load()-oksBefore, n)
			}
			time.Sleep(200 * time.Microsecond)
		}
		done += n
	}
	b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N), "cpu-ns/call")
}

// processCPU is the user and system CPU time the process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
