package permissions

import (
	"sync"
	"testing"
	"time"
)

// TestAgentBoardTellOrder: the subscriber and the loader both tell watch
// an agent's merged marks. When the subscriber's call is held up (in
// wagate, AgentsElsewhere waits for the hunt state's lock, which the call
// path holds) while the loader tells a newer state, the stale one must not
// land last: nothing would correct it until the agent next changes on
// another node, and meanwhile this node's queues treat the agent as busy.
func TestAgentBoardTellOrder(t *testing.T) {
	t.Parallel()
	srv := startRedis(t)
	ra, rb := openRedis(t, srv, "a", Limits{}), openRedis(t, srv, "b", Limits{})
	var (
		mu      sync.Mutex
		last    = map[string]AgentMark{}
		held    bool
		entered = make(chan struct{})
		release = make(chan struct{})
	)
	watch := func(agent string, m AgentMark) {
		mu.Lock()
		first := m.Active == 1 && !held
		if first {
			held = true
		}
		mu.Unlock()
		if first {
			close(entered)
			<-release // the hunt state's lock is busy
		}
		mu.Lock()
		last[agent] = m
		mu.Unlock()
	}
	get := func() AgentMark {
		mu.Lock()
		defer mu.Unlock()
		return last["1001@pbx"]
	}
	ba := ra.ShareAgents(nil)
	rb.ShareAgents(watch)
	time.Sleep(500 * time.Millisecond) // b subscribed and loaded

	ba.Mark("1001@pbx", AgentMark{Active: 1})
	select {
	case <-entered:
	case <-time.After(5 * time.Second):
		t.Fatal("b never told of 1001's call")
	}
	// The call ends while b's watch is held up: b's loader reads it.
	end := time.UnixMilli(time.Now().UnixMilli())
	ba.Mark("1001@pbx", AgentMark{LastEnd: end})
	deadline := time.Now().Add(3 * time.Second)
	for get().LastEnd.IsZero() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	close(release)
	// Give b every chance to settle: a full load and the channel.
	time.Sleep(2 * time.Second)
	if m := get(); m.Active != 0 {
		t.Errorf("b's engine was last told 1001 has %d calls elsewhere (%+v); the board holds %+v: the agent stays busy on b",
			m.Active, m, rb.agents.Load().othersOfLocked("1001@pbx"))
	}
}

func (b *AgentBoard) othersOfLocked(agent string) AgentMark {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.othersOf(agent)
}
