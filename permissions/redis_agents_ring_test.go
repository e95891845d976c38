package permissions

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"
)

// TestAgentBoardSharesRinging: an INVITE under way to an agent through
// one node (Ringing) reaches the other nodes, as its calls do: over the
// channel, in a late node's load (summed over the nodes), counted in
// Stats, and gone when the ring ends — also for an agent that never took
// a call (a mark with nothing else in it), and with a node that dies
// mid-ring (its instance expires, slot_ttl). A mark of four fields, as a
// node of an older wagate writes it, still reads (not ringing) during a
// rolling upgrade; a garbled or huge ringing count is ignored and logged.
// Before, a node's rings stayed its own: another node's queue rang the
// same agent at once.
func TestAgentBoardSharesRinging(t *testing.T) {
	t.Parallel()
	srv := startRedis(t)
	var logs logBuf
	ra, rb := openRedis(t, srv, "a", Limits{}), openRedis(t, srv, "b", Limits{}, func(o *RedisOptions) {
		o.Log = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	})
	var sa, sb seen
	ba, bb := ra.ShareAgents(sa.watch), rb.ShareAgents(sb.watch)

	// Rung through a, never seated anywhere: b sees it ringing, then not.
	ba.Mark("1001@pbx", AgentMark{Ringing: 1})
	sb.waitMark(t, "b", "1001@pbx", AgentMark{Ringing: 1}, 5*time.Second)
	if st := bb.Stats(); st.Ringing != 1 || st.Busy != 0 {
		t.Errorf("b's stats %+v, want 1 agent ringing elsewhere, none busy", st)
	}
	ba.Mark("1001@pbx", AgentMark{})
	sb.waitMark(t, "b", "1001@pbx", AgentMark{}, 5*time.Second)

	// Both nodes ring it (one beside a call): a late node sums them.
	end := time.UnixMilli(time.Now().UnixMilli())
	ba.Mark("1001@pbx", AgentMark{Ringing: 2, LastEnd: end})
	bb.Mark("1001@pbx", AgentMark{Ringing: 1, Active: 1})
	sa.waitMark(t, "a", "1001@pbx", AgentMark{Ringing: 1, Active: 1}, 5*time.Second)
	rc := openRedis(t, srv, "c", Limits{})
	var sc seen
	rc.ShareAgents(sc.watch)
	sc.waitMark(t, "c", "1001@pbx", AgentMark{Ringing: 3, Active: 1, LastEnd: end}, 5*time.Second)

	// a dies mid-ring: its rings go with its instance.
	ba.stop()
	ba.wg.Wait()
	ra.stop()
	<-ra.done
	sc.waitMark(t, "c", "1001@pbx", AgentMark{Ringing: 1, Active: 1}, 5*time.Second)

	// An older node's marks, of four fields, in Redis and on the
	// channel; and garbage in the fifth.
	ctx := context.Background()
	const old = "old.0123"
	p := rb.rdb.TxPipeline()
	p.Set(ctx, rb.prefix+"inst:"+old, "1", time.Minute)
	p.SAdd(ctx, bb.set, old)
	p.HSet(ctx, rb.prefix+"ag:"+old, "2001@pbx", "5,1,0,0", "bad@pbx", "5,0,0,0,x", "huge@pbx", "5,0,0,0,99999999")
	if _, err := p.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	sc.waitMark(t, "c", "2001@pbx", AgentMark{Active: 1}, 5*time.Second)
	if err := rb.rdb.Publish(ctx, bb.chn, fmt.Sprintf(`{"i":%q,"m":{"2001@pbx":"6,0,%d,0"}}`, old, end.UnixMilli())).Err(); err != nil {
		t.Fatal(err)
	}
	sc.waitMark(t, "c", "2001@pbx", AgentMark{LastEnd: end}, 5*time.Second)
	// b's next load has read the garbage.
	bb.mu.Lock()
	from := bb.loaded
	bb.mu.Unlock()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		bb.mu.Lock()
		done := bb.loaded.After(from)
		bb.mu.Unlock()
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("b did not load in 5 s")
		}
	}
	if m := sb.get("bad@pbx"); m != (AgentMark{}) {
		t.Errorf("a garbled ringing count read as %+v", m)
	}
	if m := sb.get("huge@pbx"); m != (AgentMark{}) {
		t.Errorf("a ringing count past any phone's read as %+v", m)
	}
	if n := logs.count("a mark in redis is garbled"); n != 2 {
		t.Errorf("b logged %d garbled marks, want 2 (bad@pbx, huge@pbx)", n)
	}
}
