package permissions

import (
	"context"
	"log/slog"
	"math"
	"strconv"
	"testing"
	"time"
)

// TestAgentBoardOwnMarkRestored: Redis loses a node's last write of an
// agent's mark (a failover to a replica that had not got it: the board's
// writes do not WAIT) and holds the older one, "on a call". The node's
// load counts its own marks only, so it does not write it again, and a
// node that loads afresh (started now, or back from an outage longer
// than slot_ttl) holds the agent busy until it next changes on the first.
func TestAgentBoardOwnMarkRestored(t *testing.T) {
	t.Parallel()
	srv := startRedis(t)
	ra, rb := openRedis(t, srv, "a", Limits{}), openRedis(t, srv, "b", Limits{})
	var sb seen
	ba := ra.ShareAgents(nil)
	rb.ShareAgents(sb.watch)
	ba.Mark("1001@pbx", AgentMark{Active: 1})
	sb.waitMark(t, "b", "1001@pbx", AgentMark{Active: 1}, 5*time.Second)
	end := time.UnixMilli(time.Now().UnixMilli())
	ba.Mark("1001@pbx", AgentMark{LastEnd: end})
	sb.waitMark(t, "b", "1001@pbx", AgentMark{LastEnd: end}, 5*time.Second)

	// The failover: Redis has the first write, not the second.
	if err := ra.rdb.HSet(context.Background(), ba.key, "1001@pbx", "1,1,0,0").Err(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // a's loads (every slot_ttl/3) see it
	rc := openRedis(t, srv, "c", Limits{})
	var sc seen
	rc.ShareAgents(sc.watch)
	sc.waitMark(t, "c", "1001@pbx", AgentMark{LastEnd: end}, 3*time.Second)
}

// TestAgentBoardHugeActive: two instances' garbled marks whose call
// counts sum past an int do not make the agent free.
func TestAgentBoardHugeActive(t *testing.T) {
	r := &Redis{instance: "self.0", log: discardLog()}
	b := &AgentBoard{r: r, others: map[string]map[string]seqMark{}, heard: map[string]time.Time{}, shared: true}
	big := strconv.FormatInt(math.MaxInt64, 10)
	b.apply(`{"i":"n.1","m":{"1001@pbx":"1,` + big + `,0,0"}}`)
	b.apply(`{"i":"n.2","m":{"1001@pbx":"1,` + big + `,0,0"}}`)
	b.mu.Lock()
	m := b.othersOf("1001@pbx")
	b.mu.Unlock()
	if m.Active < 0 {
		t.Errorf("merged Active %d: an agent every node holds busy reads as free", m.Active)
	}
}

func discardLog() *slog.Logger { return slog.New(slog.DiscardHandler) }
