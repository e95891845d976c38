package permissions

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestAgentBoardForgetsOldAgents: an agent on no call, out of wrap-up,
// that left its last call more than a day ago is forgotten: out of this
// node's hash in Redis and out of every node's mirror (the engine told
// "nothing held"). An agent on a call, in wrap-up or seen within the day
// is kept. Without it every agent ever seated stayed in memory and in
// Redis for the process's life, and every load read them all.
func TestAgentBoardForgetsOldAgents(t *testing.T) {
	t.Parallel()
	srv := startRedis(t)
	ra, rb := openRedis(t, srv, "a", Limits{}), openRedis(t, srv, "b", Limits{})
	var sb seen
	ba := ra.ShareAgents(nil)
	bb := rb.ShareAgents(sb.watch)
	now := time.UnixMilli(time.Now().UnixMilli())
	old := now.Add(-25 * time.Hour)
	ba.Mark("old@pbx", AgentMark{LastEnd: old})
	ba.Mark("oncall@pbx", AgentMark{Active: 1, LastEnd: old})
	ba.Mark("wrapping@pbx", AgentMark{LastEnd: old, WrapUntil: now.Add(time.Hour)})
	ba.Mark("recent@pbx", AgentMark{LastEnd: now.Add(-time.Hour)})
	sb.waitMark(t, "b", "recent@pbx", AgentMark{LastEnd: now.Add(-time.Hour)}, 5*time.Second)

	ctx := context.Background()
	deadline := time.Now().Add(5 * time.Second)
	for {
		fields, err := ra.rdb.HKeys(ctx, ba.key).Result()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(strings.Join(fields, " "), "old@pbx") && len(fields) == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a's hash in redis holds %v, want all but old@pbx", fields)
		}
		time.Sleep(20 * time.Millisecond)
	}
	sb.waitMark(t, "b", "old@pbx", AgentMark{}, 5*time.Second)
	if st := bb.Stats(); st.Agents != 3 {
		t.Errorf("b mirrors %d agents of a, want 3 (old@pbx forgotten)", st.Agents)
	}
	sb.waitMark(t, "b", "oncall@pbx", AgentMark{Active: 1, LastEnd: old}, time.Second)
	// Seated again: shared again.
	ba.Mark("old@pbx", AgentMark{Active: 1, LastEnd: old})
	sb.waitMark(t, "b", "old@pbx", AgentMark{Active: 1, LastEnd: old}, 5*time.Second)
}

// logBuf is a slog destination the test reads.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.b.String(), s)
}

// TestAgentBoardGarbageLoggedOnce: a garbled field in another node's hash
// is read again at every load (every third of slot_ttl), and a publisher
// may send the same garbage again and again: each is logged once, not
// at every load or message.
func TestAgentBoardGarbageLoggedOnce(t *testing.T) {
	t.Parallel()
	srv := startRedis(t)
	ra := openRedis(t, srv, "a", Limits{})
	var logs logBuf
	rb := openRedis(t, srv, "b", Limits{}, func(o *RedisOptions) {
		o.Log = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	})
	var sb seen
	ba := ra.ShareAgents(nil)
	bb := rb.ShareAgents(sb.watch)
	ba.Mark("1001@pbx", AgentMark{Active: 1})
	sb.waitMark(t, "b", "1001@pbx", AgentMark{Active: 1}, 5*time.Second)
	// Another node's (an older version's, say) garbage: a node takes
	// fields of its own hash that it does not hold out of Redis.
	ctx := context.Background()
	const x = "x.0123"
	p := ra.rdb.TxPipeline()
	p.Set(ctx, ra.prefix+"inst:"+x, "1", time.Minute)
	p.SAdd(ctx, bb.set, x)
	p.HSet(ctx, ra.prefix+"ag:"+x, "bad@pbx", "1,x,0,0")
	if _, err := p.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := ra.rdb.Publish(ctx, bb.chn, "{not json").Err(); err != nil {
			t.Fatal(err)
		}
	}
	// Three loads of b at least (one every third of slot_ttl).
	bb.mu.Lock()
	from := bb.loaded
	bb.mu.Unlock()
	deadline := time.Now().Add(10 * time.Second)
	for loads := 0; loads < 3; {
		time.Sleep(20 * time.Millisecond)
		bb.mu.Lock()
		if bb.loaded.After(from) {
			loads, from = loads+1, bb.loaded
		}
		bb.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("b loaded %d times in 10 s", loads)
		}
	}
	if n := logs.count("a mark in redis is garbled"); n != 1 {
		t.Errorf("the garbled field was logged %d times over 3 loads, want once", n)
	}
	if n := logs.count("a garbled message on the channel"); n != 1 {
		t.Errorf("the same garbled message, sent 3 times, was logged %d times, want once", n)
	}
}

// TestAgentBoardGoneStaysGone: a load that read an instance before it
// stopped cleanly, merged after its "gone" came, must not put the
// stopped node's marks back (its agents would be busy until the next
// load, a third of slot_ttl, or for good if a mark is on a call). Here
// Redis keeps listing the instance after its "gone", as such a load saw
// it.
func TestAgentBoardGoneStaysGone(t *testing.T) {
	t.Parallel()
	srv := startRedis(t)
	rb := openRedis(t, srv, "b", Limits{}, func(o *RedisOptions) { o.SlotTTL = 3 * time.Second })
	var sb seen
	bb := rb.ShareAgents(sb.watch)
	ctx := context.Background()
	const x = "x.0123"
	p := rb.rdb.TxPipeline()
	p.Set(ctx, rb.prefix+"inst:"+x, "1", time.Minute)
	p.SAdd(ctx, bb.set, x)
	p.HSet(ctx, rb.prefix+"ag:"+x, "1001@pbx", "1,1,0,0")
	if _, err := p.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	sb.waitMark(t, "b", "1001@pbx", AgentMark{Active: 1}, 5*time.Second)
	if err := rb.rdb.Publish(ctx, bb.chn, `{"i":"`+x+`","gone":true}`).Err(); err != nil {
		t.Fatal(err)
	}
	sb.waitMark(t, "b", "1001@pbx", AgentMark{}, 5*time.Second)
	gone := time.Now()
	// A load after the "gone" (every second with slot_ttl 3 s).
	deadline := time.Now().Add(5 * time.Second)
	for {
		bb.mu.Lock()
		loaded := bb.loaded
		bb.mu.Unlock()
		if loaded.After(gone) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("b did not load in 5 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if m := sb.get("1001@pbx"); m.Active != 0 {
		t.Errorf("a load put the stopped node's marks back: 1001@pbx %+v", m)
	}
}
