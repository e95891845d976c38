// Agent state shared through Redis: each node writes what it knows of its
// agents (calls they are on through it, INVITEs to them under way through
// it, when they last left a call, when their after-call work ends) under
// its instance, and keeps a mirror of every other live instance's marks,
// fed by pub/sub and reloaded in full every third of slot_ttl. The call path reads the mirror only: no round
// trip to Redis before an INVITE.

package permissions

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// AgentMark is what one node knows of an agent ("user@endpoint").
type AgentMark struct {
	// Active counts the calls the agent is on through the node.
	Active int
	// LastEnd is when the agent last left a call there (zero: never).
	LastEnd time.Time
	// WrapUntil ends the agent's after-call work (zero: none).
	WrapUntil time.Time
	// Ringing counts the INVITEs to the agent under way through the node.
	Ringing int
}

// AgentBoardStats are the agent board's counters.
type AgentBoardStats struct {
	// Shared is whether the other nodes' marks are in force now (false
	// while Redis has been down longer than slot_ttl, and before the
	// first load).
	Shared bool
	// Agents counts the agents other nodes hold marks of now; Busy those
	// of them on a call or in wrap-up there, Ringing those an INVITE
	// through another node rings.
	Agents, Busy, Ringing int
	// WriteErrors counts the writes of this node's marks that failed.
	WriteErrors uint64
}

// AgentBoard shares agents' state among the nodes of one Redis (ShareAgents).
// All methods are safe for concurrent use.
type AgentBoard struct {
	r     *Redis
	watch func(agent string, others AgentMark)
	key   string // this instance's hash of marks
	set   string // the instances that wrote marks
	chn   string // pub/sub channel of changes

	// tellMu keeps watch's calls in the order of the states they carry:
	// the subscriber's and the loader's tell would otherwise race, and a
	// stale mark told last would stand until the agent next changes.
	tellMu sync.Mutex

	mu    sync.Mutex
	seq   uint64
	own   map[string]seqMark // this node's marks, by agent
	dirty map[string]bool
	// others are the other live instances' marks: instance → agent.
	others map[string]map[string]seqMark
	// heard is when each instance in others was last confirmed live (a
	// load listed it, or a message came from it).
	heard map[string]time.Time
	// loaded is when the last full load succeeded; downAt when the
	// loader first found Redis down (zero: up): the other nodes' marks
	// are dropped slot_ttl after it.
	loaded time.Time
	downAt time.Time
	// gone are the instances that said they stopped (by when it was
	// heard), for slot_ttl: a load that read one before it stopped must
	// not put its marks back.
	gone map[string]time.Time
	// warned are the garbled marks and messages logged already (see
	// garbled); suppressed counts those not logged again since the last
	// summary. Under warnMu (a leaf: garbled is called under mu).
	warnMu      sync.Mutex
	warned      map[string]bool
	suppressed  int
	summaryAt   time.Time
	shared      bool
	dropped     bool // the others' marks were dropped for an outage
	writeErrors uint64

	kick   chan struct{} // a mark to write
	reload chan struct{} // a full load wanted (resubscribed)
	stop   context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
}

type seqMark struct {
	seq uint64
	m   AgentMark
}

// ShareAgents starts sharing agent state through r: watch is told, from
// the board's own goroutines, the merged marks the other nodes hold of an
// agent whenever they change (the zero AgentMark: none). One board per
// store; the store's Close closes it first.
func (r *Redis) ShareAgents(watch func(agent string, others AgentMark)) *AgentBoard {
	b := &AgentBoard{
		r: r, watch: watch,
		key: r.prefix + "ag:" + r.instance, set: r.prefix + "agents", chn: r.prefix + "agents",
		own: map[string]seqMark{}, dirty: map[string]bool{},
		others: map[string]map[string]seqMark{}, heard: map[string]time.Time{},
		gone: map[string]time.Time{},
		kick: make(chan struct{}, 1), reload: make(chan struct{}, 1),
	}
	ctx, cancel := context.WithCancel(context.Background())
	b.stop = cancel
	b.wg.Go(func() { b.writer(ctx) })
	b.wg.Go(func() { b.loader(ctx) })
	b.wg.Go(func() { b.subscriber(ctx) })
	if old := r.agents.Swap(b); old != nil {
		old.Close()
	}
	return b
}

// Mark records this node's state of agent and hands it to the other
// nodes in the background: it never waits on the network.
func (b *AgentBoard) Mark(agent string, m AgentMark) {
	b.mu.Lock()
	b.seq++
	b.own[agent] = seqMark{b.seq, m}
	b.dirty[agent] = true
	b.mu.Unlock()
	select {
	case b.kick <- struct{}{}:
	default:
	}
}

// Stats are the board's counters.
func (b *AgentBoard) Stats() AgentBoardStats {
	b.mu.Lock()
	defer b.mu.Unlock()
	agents := map[string]bool{}
	for _, ms := range b.others {
		for a := range ms {
			agents[a] = true
		}
	}
	busy, ringing, now := 0, 0, time.Now()
	for a := range agents {
		m := b.othersOf(a)
		if m.Active > 0 || now.Before(m.WrapUntil) {
			busy++
		}
		if m.Ringing > 0 {
			ringing++
		}
	}
	return AgentBoardStats{Shared: b.shared, Agents: len(agents), Busy: busy, Ringing: ringing, WriteErrors: b.writeErrors}
}

// Close stops sharing and takes this node's marks out of Redis, so that
// the other nodes drop them at once instead of at slot_ttl.
func (b *AgentBoard) Close() {
	b.once.Do(func() {
		b.stop()
		b.wg.Wait()
		if !b.r.available() {
			return
		}
		ctx, cancel := b.r.opCtx()
		defer cancel()
		_, _ = b.r.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Del(ctx, b.key)
			p.SRem(ctx, b.set, b.r.instance)
			p.Publish(ctx, b.chn, b.message(nil, true))
			return nil
		})
	})
}

// agentMsg is a change published on the channel.
type agentMsg struct {
	Instance string            `json:"i"`
	Marks    map[string]string `json:"m,omitempty"`
	Gone     bool              `json:"gone,omitempty"`
}

func (b *AgentBoard) message(marks map[string]string, gone bool) string {
	buf, _ := json.Marshal(agentMsg{Instance: b.r.instance, Marks: marks, Gone: gone})
	return string(buf)
}

// encodeMark is a mark as stored: "seq,active,lastEndMs,wrapUntilMs"
// and, while the agent rings, ",ringing". A node of a wagate before
// ringing was shared reads four fields only and ignores (logs) a fifth:
// written only while it matters, it hides from such a node, during a
// rolling upgrade, just the marks of agents ringing now.
func encodeMark(s seqMark) string {
	ms := func(t time.Time) int64 {
		if t.IsZero() {
			return 0
		}
		return t.UnixMilli()
	}
	v := fmt.Sprintf("%d,%d,%d,%d", s.seq, s.m.Active, ms(s.m.LastEnd), ms(s.m.WrapUntil))
	if s.m.Ringing > 0 {
		v += "," + strconv.Itoa(s.m.Ringing)
	}
	return v
}

// decodeMark reads a mark of four fields (an older node's, or one not
// ringing: Ringing 0) or five.
func decodeMark(v string) (seqMark, error) {
	f := strings.Split(v, ",")
	if len(f) != 4 && len(f) != 5 {
		return seqMark{}, fmt.Errorf("agent mark %q: want 4 or 5 fields", v)
	}
	var n [5]int64
	for i, s := range f {
		x, err := strconv.ParseInt(s, 10, 64)
		if err != nil || x < 0 {
			return seqMark{}, fmt.Errorf("agent mark %q: field %d is not a count", v, i+1)
		}
		n[i] = x
	}
	t := func(ms int64) time.Time {
		if ms == 0 {
			return time.Time{}
		}
		return time.UnixMilli(ms)
	}
	if n[1] > maxActive {
		return seqMark{}, fmt.Errorf("agent mark %q: %d calls", v, n[1])
	}
	if n[4] > maxActive {
		return seqMark{}, fmt.Errorf("agent mark %q: %d rings", v, n[4])
	}
	return seqMark{uint64(n[0]), AgentMark{Active: int(n[1]), LastEnd: t(n[2]), WrapUntil: t(n[3]), Ringing: int(n[4])}}, nil
}

// maxActive bounds an agent's calls, and its rings, in a mark: the nodes'
// counts are summed, and a garbled one must not wrap the sum to "free".
const maxActive = 1 << 20

// writeBatch bounds the marks written in one round trip.
const writeBatch = 500

// writer writes this node's changed marks, coalesced: an agent that
// changed twice before a write is written once, as it is now. A failed
// write keeps them for the next try (Redis back, the loader's kick).
func (b *AgentBoard) writer(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-b.kick:
		}
		if !b.r.available() {
			continue
		}
		b.mu.Lock()
		marks := map[string]string{}
		for a := range b.dirty {
			marks[a] = encodeMark(b.own[a])
			delete(b.dirty, a)
			if len(marks) == writeBatch {
				break
			}
		}
		more := len(b.dirty) > 0
		b.mu.Unlock()
		if len(marks) == 0 {
			continue
		}
		if err := b.write(marks); err != nil {
			b.mu.Lock()
			b.writeErrors++
			for a := range marks {
				b.dirty[a] = true
			}
			b.mu.Unlock()
			b.r.failed("agent state", err)
			continue
		}
		if more {
			b.poke()
		}
	}
}

func (b *AgentBoard) poke() {
	select {
	case b.kick <- struct{}{}:
	default:
	}
}

func (b *AgentBoard) write(marks map[string]string) error {
	ctx, cancel := b.r.opCtx()
	defer cancel()
	args := make([]any, 0, 2*len(marks))
	for a, m := range marks {
		args = append(args, a, m)
	}
	_, err := b.r.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, b.key, args...)
		p.SAdd(ctx, b.set, b.r.instance)
		p.Publish(ctx, b.chn, b.message(marks, false))
		return nil
	})
	if err != nil {
		return fmt.Errorf("permissions: redis: write agent marks: %w", err)
	}
	return nil
}

// scriptAgentLoad: KEYS the set of instances with marks; ARGV prefix.
// Answers {instance, {agent, mark, …}, …} for every live instance, and
// drops the marks of dead ones: a node that died frees its agents when
// its instance key expires (slot_ttl).
var scriptAgentLoad = redis.NewScript(`
local out = {}
for _, m in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if redis.call('EXISTS', ARGV[1] .. 'inst:' .. m) == 1 then
    out[#out + 1] = m
    out[#out + 1] = redis.call('HGETALL', ARGV[1] .. 'ag:' .. m)
  else
    redis.call('DEL', ARGV[1] .. 'ag:' .. m)
    redis.call('SREM', KEYS[1], m)
  end
end
return out
`)

// loader reloads every instance's marks every third of slot_ttl (a dead
// node's marks go; a message lost on a broken subscription is made
// good), at once when the subscription is made again, and drops the other
// nodes' marks when Redis has been down longer than slot_ttl.
func (b *AgentBoard) loader(ctx context.Context) {
	beat := max(b.r.slotTTL/3, probeInterval)
	t := time.NewTicker(probeInterval)
	defer t.Stop()
	var last time.Time
	wasUp := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-b.reload:
			last = time.Time{}
		}
		up := b.r.available()
		b.mu.Lock()
		switch {
		case up:
			b.downAt = time.Time{}
		case b.downAt.IsZero():
			b.downAt = time.Now()
		}
		b.mu.Unlock()
		if up && !wasUp {
			// Back (or first up): rewrite every mark of this node, which
			// may have been dropped with an instance key that lapsed, or
			// never written.
			b.markAllDirty()
			last = time.Time{}
		}
		wasUp = up
		if !up {
			b.dropIfStale()
			continue
		}
		b.mu.Lock()
		pending := len(b.dirty) > 0
		b.mu.Unlock()
		if pending {
			b.poke()
		}
		if time.Since(last) < beat {
			continue
		}
		b.prune(time.Now())
		if err := b.load(); err != nil {
			b.r.failed("agent state", err)
			continue
		}
		last = time.Now()
	}
}

func (b *AgentBoard) markAllDirty() {
	b.mu.Lock()
	for a := range b.own {
		b.dirty[a] = true
	}
	b.mu.Unlock()
	b.poke()
}

// dropIfStale forgets the other nodes' marks once Redis has been down for
// longer than slot_ttl, timed from when the loader found it down (not
// from the last load, up to a third of slot_ttl before the outage): each
// node then rings by what it alone knows. An outage shorter than
// slot_ttl changes nothing (a dead node's marks would have lasted that
// long too).
func (b *AgentBoard) dropIfStale() {
	b.mu.Lock()
	if !b.shared || b.downAt.IsZero() || time.Since(b.downAt) <= b.r.slotTTL {
		b.mu.Unlock()
		return
	}
	b.shared, b.dropped = false, true
	changed := map[string]bool{}
	for _, ms := range b.others {
		for a := range ms {
			changed[a] = true
		}
	}
	clear(b.others)
	clear(b.heard)
	b.mu.Unlock()
	b.r.log.Warn("redis down longer than slot_ttl: agent state is no longer shared; hunt lists and queues see only the calls and wrap-up of this node's own agents "+
		"until redis answers (an agent on a call through another node may be rung)", "slot_ttl", b.r.slotTTL.String())
	b.tell(changed)
}

// load reads every live instance's marks and merges them into the mirror.
func (b *AgentBoard) load() error {
	start := time.Now()
	ctx, cancel := b.r.opCtx()
	v, err := scriptAgentLoad.Run(ctx, b.r.rdb, []string{b.set}, b.r.prefix).Slice()
	cancel()
	if err != nil {
		return fmt.Errorf("permissions: redis: load agent marks: %w", err)
	}
	if len(v)%2 != 0 {
		return errGarbage("agent load", v)
	}
	live := map[string]map[string]seqMark{}
	var ownHeld map[string]string // nil: this instance not listed
	for i := 0; i < len(v); i += 2 {
		inst := asString(v[i])
		fields, _ := v[i+1].([]any)
		if inst == b.r.instance {
			ownHeld = make(map[string]string, len(fields)/2)
			for j := 0; j+1 < len(fields); j += 2 {
				ownHeld[asString(fields[j])] = asString(fields[j+1])
			}
			continue
		}
		ms := map[string]seqMark{}
		for j := 0; j+1 < len(fields); j += 2 {
			m, err := decodeMark(asString(fields[j+1]))
			if err != nil {
				b.garbled("redis "+inst+" "+asString(fields[j])+" "+asString(fields[j+1]),
					"agent state: a mark in redis is garbled; ignored", "instance", inst, "agent", asString(fields[j]), "error", err)
				continue
			}
			ms[asString(fields[j])] = m
		}
		live[inst] = ms
	}
	changed := map[string]bool{}
	b.mu.Lock()
	for inst, when := range b.gone {
		if start.Sub(when) > b.r.slotTTL {
			// Long gone: the set no longer lists it (its Close took it
			// out in the transaction that said so). An instance id is
			// never used again.
			delete(b.gone, inst)
		}
	}
	for inst, ms := range live {
		if _, ok := b.gone[inst]; ok {
			// Read before it stopped, merged after its "gone": its
			// marks must not come back.
			delete(live, inst)
			continue
		}
		held := b.others[inst]
		if held == nil {
			held = map[string]seqMark{}
			b.others[inst] = held
		}
		for a, m := range ms {
			if h, ok := held[a]; !ok || m.seq > h.seq {
				b.hold(held, a, m, changed)
			}
		}
		b.heard[inst] = start
	}
	// An instance the load did not list is gone, unless it spoke after
	// the load began (it started meanwhile).
	for inst, ms := range b.others {
		if _, ok := live[inst]; ok || b.heard[inst].After(start) {
			continue
		}
		for a := range ms {
			changed[a] = true
		}
		delete(b.others, inst)
		delete(b.heard, inst)
	}
	wasShared := b.shared
	b.shared, b.dropped, b.loaded = true, false, time.Now()
	// Our marks as Redis has them: missing (the instance lapsed in an
	// outage and another node's load dropped them) or older (a failover
	// lost a write): write them again.
	for a, m := range b.own {
		if ownHeld[a] != encodeMark(m) {
			b.dirty[a] = true
		}
	}
	// Fields of ours Redis holds and this node does not (pruned, see
	// prune): taken out, if still as read (a Mark may write the agent
	// again meanwhile).
	var stale []any
	for a, v := range ownHeld {
		if _, ok := b.own[a]; !ok {
			stale = append(stale, a, v)
		}
	}
	pending := len(b.dirty) > 0
	b.mu.Unlock()
	if pending {
		b.poke()
	}
	if len(stale) > 0 {
		if err := b.forget(stale); err != nil {
			b.r.failed("agent state", err)
		}
	}
	if !wasShared {
		b.r.log.Info("agent state shared through redis: hunt lists and queues see the other nodes' agents", "instances", len(live))
	}
	b.tell(changed)
	return nil
}

// subscriber applies the other nodes' changes as they publish them. A
// subscription made again (after Redis or the connection came back) asks
// for a full load: messages may have been lost meanwhile.
func (b *AgentBoard) subscriber(ctx context.Context) {
	ps := b.r.rdb.Subscribe(ctx, b.chn)
	// Closing unblocks a receive under way: Close need not wait for its
	// timeout.
	stop := context.AfterFunc(ctx, func() { _ = ps.Close() })
	defer func() {
		if stop() {
			_ = ps.Close()
		}
	}()
	for {
		v, err := ps.ReceiveTimeout(ctx, 5*time.Second)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			var ne interface{ Timeout() bool }
			if errors.As(err, &ne) && ne.Timeout() {
				// Quiet: a PING finds a connection that died silently
				// (its answer, or the error, comes at the next receive).
				_ = ps.Ping(ctx)
				continue
			}
			// Redis down: go-redis dials again at the next receive.
			select {
			case <-ctx.Done():
				return
			case <-time.After(probeInterval):
			}
			continue
		}
		switch m := v.(type) {
		case *redis.Subscription:
			select {
			case b.reload <- struct{}{}:
			default:
			}
		case *redis.Message:
			b.apply(m.Payload)
		}
	}
}

// apply merges one published change into the mirror.
func (b *AgentBoard) apply(payload string) {
	var msg agentMsg
	if err := json.Unmarshal([]byte(payload), &msg); err != nil || msg.Instance == "" {
		b.garbled("channel "+payload, "agent state: a garbled message on the channel; ignored", "channel", b.chn, "error", err)
		return
	}
	if msg.Instance == b.r.instance {
		return
	}
	changed := map[string]bool{}
	b.mu.Lock()
	if b.dropped {
		// Dropped for an outage: the load that shares again reads it
		// all. (Before the first load a message is kept: the load merges
		// by sequence.)
		b.mu.Unlock()
		return
	}
	if _, ok := b.gone[msg.Instance]; ok {
		// Stopped: nothing it said before can come after this.
		b.mu.Unlock()
		return
	}
	if msg.Gone {
		for a := range b.others[msg.Instance] {
			changed[a] = true
		}
		delete(b.others, msg.Instance)
		delete(b.heard, msg.Instance)
		if b.gone == nil {
			b.gone = map[string]time.Time{}
		}
		b.gone[msg.Instance] = time.Now()
	} else {
		held := b.others[msg.Instance]
		if held == nil {
			held = map[string]seqMark{}
			b.others[msg.Instance] = held
		}
		for a, v := range msg.Marks {
			m, err := decodeMark(v)
			if err != nil {
				b.garbled("channel "+msg.Instance+" "+a+" "+v,
					"agent state: a garbled mark on the channel; ignored", "instance", msg.Instance, "agent", a, "error", err)
				continue
			}
			if h, ok := held[a]; !ok || m.seq > h.seq {
				b.hold(held, a, m, changed)
			}
		}
		b.heard[msg.Instance] = time.Now()
	}
	b.mu.Unlock()
	b.tell(changed)
}

// tell gives watch the merged marks of the agents changed.
func (b *AgentBoard) tell(changed map[string]bool) {
	if len(changed) == 0 || b.watch == nil {
		return
	}
	b.tellMu.Lock()
	defer b.tellMu.Unlock()
	merged := make(map[string]AgentMark, len(changed))
	b.mu.Lock()
	for a := range changed {
		merged[a] = b.othersOf(a)
	}
	b.mu.Unlock()
	for _, a := range slices.Sorted(maps.Keys(merged)) {
		b.watch(a, merged[a])
	}
}

// othersOf merges what the other instances hold of agent: on a call if
// on one anywhere, ringing if rung anywhere, last left at the latest of
// its ends, in wrap-up until the latest of its ends. Called with b.mu
// held.
func (b *AgentBoard) othersOf(agent string) AgentMark {
	var out AgentMark
	for _, ms := range b.others {
		m, ok := ms[agent]
		if !ok {
			continue
		}
		out.Active += m.m.Active
		out.Ringing += m.m.Ringing
		if m.m.LastEnd.After(out.LastEnd) {
			out.LastEnd = m.m.LastEnd
		}
		if m.m.WrapUntil.After(out.WrapUntil) {
			out.WrapUntil = m.m.WrapUntil
		}
	}
	return out
}

// agentForget is how long after an agent last left a call its marks are
// kept, when it is on no call, ringing for none and not in wrap-up: every
// agent ever seated (transfer targets too) would otherwise stay in memory
// and in Redis, and every load would read them all. least_recent then ranks it
// as never seen, which it ranks first of all, as it would anyway.
const agentForget = 24 * time.Hour

// forgettable reports whether m is past keeping at now.
func forgettable(m AgentMark, now time.Time) bool {
	// A ringing agent that never took a call (LastEnd zero) is kept: the
	// other nodes must not ring it too.
	return m.Active == 0 && m.Ringing == 0 && !now.Before(m.WrapUntil) && now.Sub(m.LastEnd) > agentForget
}

// prune forgets the marks past keeping: this node's own (the next load
// takes them out of Redis) and the mirror's of the other nodes (each
// node prunes its own mirror by the same rule, so no message is needed,
// nor lost).
func (b *AgentBoard) prune(now time.Time) {
	changed := map[string]bool{}
	b.mu.Lock()
	for a, m := range b.own {
		if forgettable(m.m, now) {
			delete(b.own, a)
			delete(b.dirty, a)
		}
	}
	for _, ms := range b.others {
		for a, m := range ms {
			if forgettable(m.m, now) {
				delete(ms, a)
				changed[a] = true
			}
		}
	}
	b.mu.Unlock()
	b.tell(changed)
}

// hold puts m, newer than what held has of agent, in held, or takes the
// agent out when m is past keeping (a node that does not prune, or whose
// prune has not reached Redis yet, must not make it come and go). Called
// with b.mu held.
func (b *AgentBoard) hold(held map[string]seqMark, agent string, m seqMark, changed map[string]bool) {
	if forgettable(m.m, time.Now()) {
		if _, ok := held[agent]; ok {
			delete(held, agent)
			changed[agent] = true
		}
		return
	}
	held[agent] = m
	changed[agent] = true
}

// scriptForget: KEYS this instance's hash; ARGV agent, mark, …: deletes
// each field still holding the mark given.
var scriptForget = redis.NewScript(`
local n = 0
for i = 1, #ARGV, 2 do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i + 1] then
    n = n + redis.call('HDEL', KEYS[1], ARGV[i])
  end
end
return n
`)

// forget takes the fields given (agent, mark, …) out of this instance's
// hash, each if it still holds that mark.
func (b *AgentBoard) forget(fields []any) error {
	ctx, cancel := b.r.opCtx()
	defer cancel()
	if err := scriptForget.Run(ctx, b.r.rdb, []string{b.key}, fields...).Err(); err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("permissions: redis: forget agent marks: %w", err)
	}
	return nil
}

// garbledSummary is how often the garbled input not logged again is
// counted in one line.
const garbledSummary = 10 * time.Minute

// garbled logs bad input once per key (where it came from and what it
// said): a garbled field in Redis is read again at every load, a
// publisher that garbles does so at every change. Repeats are counted
// and summed up every garbledSummary.
func (b *AgentBoard) garbled(key, msg string, args ...any) {
	if len(key) > 512 {
		key = key[:512]
	}
	b.warnMu.Lock()
	now := time.Now()
	var repeats int
	if b.suppressed > 0 && now.Sub(b.summaryAt) >= garbledSummary {
		repeats, b.suppressed, b.summaryAt = b.suppressed, 0, now
	}
	first := !b.warned[key]
	if first {
		if b.warned == nil || len(b.warned) >= 1024 {
			// Bounded: an endless stream of new garbage logs again
			// rather than grows.
			b.warned = map[string]bool{}
		}
		b.warned[key] = true
		if b.summaryAt.IsZero() {
			b.summaryAt = now
		}
	} else {
		b.suppressed++
	}
	b.warnMu.Unlock()
	if repeats > 0 {
		b.r.log.Warn("agent state: garbled marks or messages seen again, not logged each time", "count", repeats, "since", garbledSummary.String())
	}
	if first {
		b.r.log.Warn(msg, args...)
	}
}
