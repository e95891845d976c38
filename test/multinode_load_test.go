package test

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestMultiNodeLoad is a load tool, not a check: it measures the rate of
// business-initiated calls that 1, 2 and 3 wagate nodes behind Kamailio
// (permissions in Redis) answer without a failure, and who spends the CPU.
// It runs only when asked:
//
//	WAGATE_MULTINODE_LOAD=1,2,3 WAGATE_MULTINODE_RATES=100,200,300,400 \
//	  WAGATE_TEST_RACE=0 go test -count=1 -timeout 30m -run TestMultiNodeLoad -v ./test/
//
// Each step runs a SIPp dialer through Kamailio at the rate for
// WAGATE_MULTINODE_SECONDS (default 10) with calls held 1 s, cycling over
// 5,000 users granted through the API; a SIPp UAS plays Meta. A step is
// clean when every call was answered; the steps of a node count stop at the
// first that is not.
func TestMultiNodeLoad(t *testing.T) {
	counts := os.Getenv("WAGATE_MULTINODE_LOAD")
	if counts == "" {
		t.Skip("a load tool: set WAGATE_MULTINODE_LOAD=1,2,3 (docs/performance.md)")
	}
	rates := intList(t, envOr("WAGATE_MULTINODE_RATES", "100,200,300,400"))
	secs, _ := strconv.Atoi(envOr("WAGATE_MULTINODE_SECONDS", "10"))
	for _, n := range intList(t, counts) {
		t.Run(fmt.Sprintf("nodes=%d", n), func(t *testing.T) { loadNodes(t, n, rates, secs) })
	}
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func intList(t *testing.T, s string) []int {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			t.Fatalf("%q is not a list of positive integers", s)
		}
		out = append(out, n)
	}
	return out
}

func loadNodes(t *testing.T, n int, rates []int, secs int) {
	c := newCluster(t, n, "connected_calls_per_user_24h: 1000000, new_calls_per_number_24h: 100000000, concurrent_calls_per_number: 1000000")
	// A node busy with load may take more than the tests' 1 s to answer a
	// probe; production's 2 s.
	c.frTimer = 2000
	// Each transaction lives in Kamailio's shared memory for its whole
	// life (an INVITE's for 32 s after it ends on UDP): 48 MiB runs out
	// near 300 calls/s.
	c.shmMB = 512
	const users = 5000
	list := make([]string, users)
	for i := range list {
		list[i] = fmt.Sprintf("+447701%06d", i)
	}
	start := time.Now()
	var wg sync.WaitGroup
	ch := make(chan string)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for u := range ch {
				grantPermission(t, c.nodes[0].e, u, "permanent")
			}
		}()
	}
	for _, u := range list {
		ch <- u
	}
	close(ch)
	wg.Wait()
	t.Logf("%d users granted through the API in %v", users, time.Since(start).Round(time.Millisecond))
	c.startKamailio()
	inf := c.usersFile("users.csv", list)
	for _, rate := range rates {
		calls := rate * secs
		meta := c.e.startSipp(sippSpec{Name: fmt.Sprintf("meta%d", rate), Scenario: "uas.xml", Peer: c.e.Meta, Calls: calls, NoTrace: true})
		before := c.cpu()
		t0 := time.Now()
		d := c.e.startSipp(withNoTrace(c.dialSpec(fmt.Sprintf("dialer%d", rate), inf, calls, "-r", strconv.Itoa(rate), "-l", strconv.Itoa(3*rate), "-d", "1000")))
		_ = d.wait()
		wall := time.Since(t0)
		_ = meta.wait()
		after := c.cpu()
		got := countBy(outcomes(d))
		failed := calls - got["200"]
		var parts []string
		for who, ticks := range after {
			parts = append(parts, fmt.Sprintf("%s %.2f ms", who, float64(ticks-before[who])*10/float64(calls)))
		}
		t.Logf("nodes=%d rate=%d/s: %d calls in %v, %d answered, %d failed %v; CPU per call: %s",
			n, rate, calls, wall.Round(time.Millisecond), got["200"], failed, got, strings.Join(sortStrings(parts), ", "))
		if failed > 0 {
			break
		}
		time.Sleep(2 * time.Second) // let the last calls' media and timers end
	}
	// Calls a failed step left up end by wagate's RTP timeout (30 s here).
	for _, nd := range c.nodes {
		deadline := time.Now().Add(45 * time.Second)
		for time.Now().Before(deadline) {
			if s, err := nd.w.tryStatus(); err != nil || s.Calls == 0 {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
}

func sortStrings(s []string) []string {
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
	return s
}

// cpu reads the CPU time (clock ticks, utime+stime) of each node, of
// Kamailio's whole process group and of Redis.
func (c *cluster) cpu() map[string]int64 {
	m := map[string]int64{}
	for _, nd := range c.nodes {
		m[nd.id] = procTicks(nd.w.cmd.Process.Pid)
	}
	if c.kam != nil {
		pg := c.kam.cmd.Process.Pid
		ents, _ := os.ReadDir("/proc")
		for _, e := range ents {
			pid, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			if f := procStat(pid); len(f) > 14 && f[4] == strconv.Itoa(pg) {
				m["kamailio"] += procTicks(pid)
			}
		}
	}
	m["redis"] = procTicks(c.redis.cmd.Process.Pid)
	return m
}

// procStat is /proc/pid/stat split after the command name.
func procStat(pid int) []string {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return nil
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil
	}
	// Field k of proc(5) is at index k-1 (the pid and the name skipped).
	return append([]string{"", ""}, strings.Fields(s[i+1:])...)
}

func procTicks(pid int) int64 {
	f := procStat(pid)
	if len(f) < 15 {
		return 0
	}
	u, _ := strconv.ParseInt(f[13], 10, 64)
	s, _ := strconv.ParseInt(f[14], 10, 64)
	return u + s
}
