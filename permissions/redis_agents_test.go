package permissions

import (
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"
)

// seen records what a board's watch was told, by agent.
type seen struct {
	mu sync.Mutex
	m  map[string]AgentMark
}

func (s *seen) watch(agent string, m AgentMark) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]AgentMark{}
	}
	s.m[agent] = m
}

func (s *seen) get(agent string) AgentMark {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[agent]
}

// waitMark waits up to limit until s has agent at want.
func (s *seen) waitMark(t *testing.T, who, agent string, want AgentMark, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		got := s.get(agent)
		if got.Active == want.Active && got.Ringing == want.Ringing && got.LastEnd.Equal(want.LastEnd) && got.WrapUntil.Equal(want.WrapUntil) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s is %+v after %v, want %+v", who, agent, got, limit, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestAgentBoardShares: a mark one node makes reaches the others (pub/sub)
// with its times to the millisecond, merged over the nodes (calls summed,
// the later ends); a node starting later loads them all; a node's own
// marks never come back to it; a node that closes takes its marks with it.
func TestAgentBoardShares(t *testing.T) {
	t.Parallel()
	srv := startRedis(t)
	ra, rb := openRedis(t, srv, "a", Limits{}), openRedis(t, srv, "b", Limits{})
	var sa, sb seen
	ba, bb := ra.ShareAgents(sa.watch), rb.ShareAgents(sb.watch)

	ba.Mark("1001@pbx", AgentMark{Active: 1})
	sb.waitMark(t, "b", "1001@pbx", AgentMark{Active: 1}, 5*time.Second)
	end := time.UnixMilli(time.Now().UnixMilli())
	ba.Mark("1001@pbx", AgentMark{LastEnd: end, WrapUntil: end.Add(30 * time.Second)})
	sb.waitMark(t, "b", "1001@pbx", AgentMark{LastEnd: end, WrapUntil: end.Add(30 * time.Second)}, 5*time.Second)

	// b has the agent on a call too: a late node sees both, merged.
	bb.Mark("1001@pbx", AgentMark{Active: 1, LastEnd: end.Add(-time.Minute)})
	rc := openRedis(t, srv, "c", Limits{})
	var sc seen
	rc.ShareAgents(sc.watch)
	sc.waitMark(t, "c", "1001@pbx", AgentMark{Active: 1, LastEnd: end, WrapUntil: end.Add(30 * time.Second)}, 5*time.Second)
	if m := sa.get("1001@pbx"); m.Active != 1 || !m.WrapUntil.IsZero() {
		t.Errorf("a sees %+v of 1001, want only b's mark (its own never comes back)", m)
	}
	if st := rc.agents.Load().Stats(); !st.Shared || st.Agents != 1 || st.Busy != 1 {
		t.Errorf("c's stats %+v", st)
	}

	ra.Close()
	sc.waitMark(t, "c", "1001@pbx", AgentMark{Active: 1, LastEnd: end.Add(-time.Minute)}, 5*time.Second)
}

// TestAgentBoardDeadNode: a node that stops refreshing its instance (it
// died) loses its marks on the other nodes when the instance expires
// (slot_ttl, 1 s here), without a message from it.
func TestAgentBoardDeadNode(t *testing.T) {
	t.Parallel()
	srv := startRedis(t)
	ra, rb := openRedis(t, srv, "a", Limits{}), openRedis(t, srv, "b", Limits{})
	var sb seen
	ba := ra.ShareAgents(nil)
	rb.ShareAgents(sb.watch)
	ba.Mark("1001@pbx", AgentMark{Active: 1})
	sb.waitMark(t, "b", "1001@pbx", AgentMark{Active: 1}, 5*time.Second)

	// Dead: no heartbeat, no board, no goodbye.
	ba.stop()
	ba.wg.Wait()
	ra.stop()
	<-ra.done
	died := time.Now()
	sb.waitMark(t, "b", "1001@pbx", AgentMark{}, 5*time.Second)
	t.Logf("a dead node's agent freed after %v (slot_ttl %v)", time.Since(died).Round(time.Millisecond), ra.slotTTL)
}

// TestAgentBoardOutage: while Redis is down a node keeps the other nodes'
// marks for slot_ttl from the outage (a shorter one changes nothing,
// wherever it falls between two loads), then drops them —
// per-node agent state, said by Stats — and when Redis returns, the
// marks are loaded again, and the ones a node made during the outage
// reach the others.
func TestAgentBoardOutage(t *testing.T) {
	t.Parallel()
	srv := startRedis(t)
	ra, rb := openRedis(t, srv, "a", Limits{}), openRedis(t, srv, "b", Limits{})
	var sb seen
	ba := ra.ShareAgents(nil)
	bb := rb.ShareAgents(sb.watch)
	ba.Mark("1001@pbx", AgentMark{Active: 1})
	sb.waitMark(t, "b", "1001@pbx", AgentMark{Active: 1}, 5*time.Second)

	// Down just before b's next load is due: the marks are kept for
	// slot_ttl from the outage, not from b's last load (which would drop
	// them up to a third of slot_ttl sooner).
	beat := max(rb.slotTTL/3, probeInterval)
	for {
		bb.mu.Lock()
		since := time.Since(bb.loaded)
		bb.mu.Unlock()
		if since >= beat {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	down := time.Now()
	srv.kill()
	sb.waitMark(t, "b", "1001@pbx", AgentMark{}, 10*time.Second)
	if d := time.Since(down); d < rb.slotTTL {
		t.Errorf("b dropped a's marks %v into the outage, before slot_ttl %v", d, rb.slotTTL)
	}
	if st := bb.Stats(); st.Shared {
		t.Errorf("b's stats say shared with Redis down: %+v", st)
	}
	// Made during the outage: written when Redis answers.
	ba.Mark("2001@pbx", AgentMark{Active: 1})
	srv.restart()
	sb.waitMark(t, "b", "1001@pbx", AgentMark{Active: 1}, 10*time.Second)
	sb.waitMark(t, "b", "2001@pbx", AgentMark{Active: 1}, 10*time.Second)
	if st := bb.Stats(); !st.Shared || st.Busy != 2 {
		t.Errorf("b's stats after the outage: %+v", st)
	}
}

// FuzzAgentMark: a mark read from Redis or the channel either decodes to
// one that encodes back to the same text, or is an error; never a panic.
func FuzzAgentMark(f *testing.F) {
	for _, s := range []string{"1,0,0,0", "7,2,1733290000000,1733290030000", "", ",,,", "1,-1,0,0", "99999999999999999999,0,0,0", "1,2,3", "8,0,0,0,2", "8,1,0,0,0", "8,0,0,0,x", "8,0,0,0,1,1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := decodeMark(s)
		if err != nil {
			return
		}
		if got := encodeMark(m); got != s {
			// Leading zeros and "+" parse too; the value must survive.
			m2, err := decodeMark(got)
			if err != nil || m2 != m {
				t.Fatalf("%q → %+v → %q → %+v, %v", s, m, got, m2, err)
			}
		}
		_ = fmt.Sprint(m)
	})
}

// FuzzAgentMessage: whatever comes on the channel, apply logs and goes on.
func FuzzAgentMessage(f *testing.F) {
	for _, s := range []string{`{"i":"n.1","m":{"1001@pbx":"1,1,0,0"}}`, `{"i":"n.1","gone":true}`, `{}`, `x`, `{"i":"n.1","m":{"a":"1,1"}}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r := &Redis{instance: "self.0", log: slog.New(slog.DiscardHandler)}
		b := &AgentBoard{r: r, others: map[string]map[string]seqMark{}, heard: map[string]time.Time{}, shared: true}
		b.apply(s)
		for inst, ms := range b.others {
			if inst == "" || inst == r.instance {
				t.Fatalf("kept marks of instance %q", inst)
			}
			_ = ms
		}
	})
}
