package b2bua

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/wagate/wagate/callflow"
	"github.com/wagate/wagate/configs"
	sipedge "github.com/wagate/wagate/sip"
)

// Queues (a call flow's "queue" action): calls wait in line per hunt
// list, higher priority first, then by arrival. The call at the head
// rings the list's agents that wagate knows to be free — not on a call
// it connected (huntState), not ringing for another call (through this
// node or, with an agent board, another), not in
// after-call work (any list's wrap_up, agents.go), and not resting after
// a ring of theirs failed (the list's reject_backoff) — through the same
// hunt as any connect, and is connected to the first that answers; the
// others move up. While it rings, the calls behind it ring the free
// agents left over, in line order: a call rings when the free agents
// outnumber the calls ahead of it that ring nobody, and an agent rings
// for one waiting call at a time (huntState.reserve). Agents are looked
// for every second (queueRetry) and as soon as an agent leaves a call,
// through this node or another, or a ring of it through another node
// ends (huntState.freedC), so one that frees up is taken at once. The ring ends with the wait: at limit_time, when the engine
// leaves or the call ends, the agents ringing get CANCEL. The engine
// plays the music and the announcements; this side only keeps the line.

// queueRetry is how often a waiting call looks for a free agent
// (Engine.queueRetry, when set, in tests).
const queueRetry = time.Second

// Why a wait ended while its agents rang (connectHunt's error).
var (
	errQueueLimit = errors.New("queue limit_time passed")
	errQueueLeft  = errors.New("the call left the queue")
)

// queueHistory is how many of a line's latest connected waits its
// estimate averages.
const queueHistory = 10

// waitLines are the queues of the hunt lists, by name.
type waitLines struct {
	mu    sync.Mutex
	seq   uint64
	lines map[string][]*ticket
	// waits are each line's latest connected waits (at most
	// queueHistory, oldest first), for the estimated wait.
	waits map[string][]time.Duration
	// resting are the agents a line leaves alone until the time given,
	// after a ring of theirs failed, by line and "user@endpoint".
	resting map[restKey]time.Time
}

type restKey struct{ list, agent string }

// failed notes that ringing agent for line list failed: the line leaves
// it alone for backoff (0: not at all).
func (w *waitLines) failed(list, agent string, backoff time.Duration, now time.Time) {
	if backoff <= 0 {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.resting == nil {
		w.resting = map[restKey]time.Time{}
	}
	// Rests over are dropped here, so the map holds only agents that
	// failed within the longest back-off.
	for k, until := range w.resting {
		if !now.Before(until) {
			delete(w.resting, k)
		}
	}
	w.resting[restKey{list, agent}] = now.Add(backoff)
}

// restsUntil is when line list rings agent again, the zero time when it
// is not resting at now.
func (w *waitLines) restsUntil(list, agent string, now time.Time) time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	until, ok := w.resting[restKey{list, agent}]
	if !ok || !now.Before(until) {
		return time.Time{}
	}
	return until
}

// connected records that a call of line list was connected after
// waiting waited.
func (w *waitLines) connected(list string, waited time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.waits == nil {
		w.waits = map[string][]time.Duration{}
	}
	h := append(w.waits[list], waited)
	if len(h) > queueHistory {
		h = h[len(h)-queueHistory:]
	}
	w.waits[list] = h
}

// estimate is the wait left for a call of line list that has waited
// waited: the mean of the line's latest connected waits less that, or 0
// (no estimate) when none was connected yet or the call has already
// waited longer. Calls that hung up or timed out are not counted: a wait
// is how long it took to reach an agent. The estimate does not look at
// the call's place: a caller fifth in a line whose callers usually
// reach an agent in 2 minutes hears "about 2 minutes", as the ones before
// it did at their turn.
func (w *waitLines) estimate(list string, waited time.Duration) time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	h := w.waits[list]
	if len(h) == 0 {
		return 0
	}
	var sum time.Duration
	for _, d := range h {
		sum += d
	}
	return max(sum/time.Duration(len(h))-waited, 0)
}

// ticket is one call's place in a line (callflow.Ticket).
type ticket struct {
	list     string
	priority int
	seq      uint64

	// ringing: the call rings agents now (under waitLines.mu).
	ringing bool

	status    chan callflow.QueueStatus // the latest place (cap 1)
	result    chan callflow.QueueResult // one result (cap 1)
	leave     chan struct{}
	leaveOnce sync.Once
}

func (t *ticket) Status() <-chan callflow.QueueStatus { return t.status }
func (t *ticket) Result() <-chan callflow.QueueResult { return t.result }
func (t *ticket) Leave()                              { t.leaveOnce.Do(func() { close(t.leave) }) }

// setStatus replaces the place not read yet with the latest.
func (t *ticket) setStatus(st callflow.QueueStatus) {
	select {
	case <-t.status:
	default:
	}
	t.status <- st
}

func (w *waitLines) add(t *ticket) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.lines == nil {
		w.lines = map[string][]*ticket{}
	}
	w.seq++
	t.seq = w.seq
	line := append(w.lines[t.list], t)
	slices.SortStableFunc(line, func(a, b *ticket) int {
		if a.priority != b.priority {
			return b.priority - a.priority
		}
		return int(a.seq - b.seq)
	})
	w.lines[t.list] = line
}

func (w *waitLines) remove(t *ticket) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.lines[t.list] = slices.DeleteFunc(w.lines[t.list], func(x *ticket) bool { return x == t })
	if len(w.lines[t.list]) == 0 {
		delete(w.lines, t.list)
	}
}

// position is t's place in its line (1: next), 0 when not in it.
func (w *waitLines) position(t *ticket) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Index(w.lines[t.list], t) + 1
}

// waitingAhead is how many calls ahead of t in its line ring nobody
// now: each of them is owed one of the free agents before t.
func (w *waitLines) waitingAhead(t *ticket) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, x := range w.lines[t.list] {
		if x == t {
			break
		}
		if !x.ringing {
			n++
		}
	}
	return n
}

// setRinging marks whether t rings agents now.
func (w *waitLines) setRinging(t *ticket, on bool) {
	w.mu.Lock()
	t.ringing = on
	w.mu.Unlock()
}

// busy reports whether the hunt target name ("user@endpoint") is on a
// call wagate connected (agents.go) or in its after-call work, through
// this node or, with an agent board, another.
func (hs *huntState) busy(name string) bool {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	now := time.Now()
	if o, ok := hs.elsewhere[name]; ok && (o.Active > 0 || now.Before(o.WrapUntil)) {
		return true
	}
	a := hs.agents[name]
	return a != nil && (a.active > 0 || now.Before(a.wrapUntil))
}

// JoinQueue implements callflow.Queuer: the call waits in the hunt list's
// line until an agent is free (connected), r.LimitTime passes, the
// engine leaves or the call ends.
func (fc *flowCall) JoinQueue(ctx context.Context, r callflow.QueueRequest) (callflow.Ticket, error) {
	cfg := fc.s.edge.Config()
	list, callees, err := queueAgents(cfg, r.Queue)
	if err != nil {
		return nil, err
	}
	t := &ticket{list: r.Queue, priority: r.Priority, status: make(chan callflow.QueueStatus, 1),
		result: make(chan callflow.QueueResult, 1), leave: make(chan struct{})}
	fc.s.lines.add(t)
	fc.log.Info("call flow queued", "queue", r.Queue, "priority", r.Priority, "position", fc.s.lines.position(t))
	fc.s.wg.Go(func() { fc.waitInLine(t, cfg, list, callees, r.LimitTime) })
	return t, nil
}

// queueAgents returns the hunt list name of cfg, whose agents a queue
// rings, and its targets.
func queueAgents(cfg *configs.Config, name string) (*configs.HuntList, []sipedge.Callee, error) {
	list := cfg.HuntList(name)
	if list == nil {
		return nil, nil, fmt.Errorf("b2bua: queue: no hunt list %q under hunt_lists", name)
	}
	callees, _, rej := sipedge.Callees(cfg, configs.Route{Hunt: name})
	if rej != nil {
		return nil, nil, fmt.Errorf("b2bua: queue: %s", rej.Log)
	}
	for _, c := range callees {
		if c.EP.Kind != configs.KindPBX {
			return nil, nil, fmt.Errorf("b2bua: queue: endpoint %q is not a pbx", c.EP.Name)
		}
	}
	return list, callees, nil
}

// waitInLine keeps t's place and rings the free agents when its turn
// comes: those of the hunt list in the configuration running at each look
// (list and callees as of cfg, when the call joined), so that a reload
// that changes the list's agents, strategy or times applies to the calls
// already waiting. A reload that removes the list, or leaves it unusable
// for a queue, keeps the agents the call had.
func (fc *flowCall) waitInLine(t *ticket, cfg *configs.Config, list *configs.HuntList, callees []sipedge.Callee, limit time.Duration) {
	s, c := fc.s, fc.c
	start := time.Now()
	finish := func(outcome string, err error) {
		s.lines.remove(t)
		t.result <- callflow.QueueResult{Outcome: outcome, Err: err}
		fc.log.Info("call flow left the queue", "queue", t.list, "outcome", outcome, "waited_s", time.Since(start).Round(time.Millisecond).Seconds())
	}
	// wait ends with the wait, also while agents ring: at limit_time or
	// when the engine leaves (its cause says which).
	wait, end := context.WithCancelCause(context.Background())
	defer end(nil)
	deadline := time.AfterFunc(limit, func() { end(errQueueLimit) })
	defer deadline.Stop()
	s.wg.Go(func() {
		select {
		case <-t.leave:
			end(errQueueLeft)
		case <-wait.Done():
		}
	})
	failed := func(cl sipedge.Callee) {
		s.lines.failed(t.list, cl.Name(), list.RejectBackoff.D(), time.Now())
	}
	every := queueRetry
	if s.queueRetry > 0 {
		every = s.queueRetry
	}
	retry := time.NewTicker(every)
	defer retry.Stop()
	rest := time.NewTimer(time.Hour)
	rest.Stop()
	defer rest.Stop()
	last := 0
	for {
		// Taken before the look: an agent freed during it wakes the
		// next one.
		freed := s.hunts.freedC()
		pos := s.lines.position(t)
		if pos != last {
			last = pos
			t.setStatus(callflow.QueueStatus{Position: pos, ETA: s.lines.estimate(t.list, time.Since(start))})
		}
		var rested <-chan time.Time
		if now := s.edge.Config(); now != cfg {
			cfg = now
			if l, cl, err := queueAgents(cfg, t.list); err == nil {
				list, callees = l, cl
			} else {
				fc.log.Warn("call flow queue: the reloaded configuration has no usable hunt list for the queue; ringing the agents it had", "queue", t.list, "error", err)
			}
		}
		// A call rings when the free agents outnumber the calls ahead of
		// it that ring nobody: the head of the line first, and the ones
		// behind it while agents the calls ahead do not ring sit idle.
		ahead := s.lines.waitingAhead(t)
		if ahead < len(callees) && wait.Err() == nil {
			var free []sipedge.Callee
			var wake time.Time
			now := time.Now()
			for _, cl := range callees {
				if s.hunts.ringingNow(cl.Name()) {
					// Rung for another call, here or through another
					// node: free again, if it does not answer, at a
					// later look (at once for a ring elsewhere: its
					// end wakes this loop).
					continue
				}
				if s.hunts.busy(cl.Name()) || !s.edge.Up(cl.EP.Name) {
					// An agent whose wrap-up ends between two looks is
					// rung then, as a rest's.
					if until := s.hunts.wrapsUntil(cl.Name(), now); !until.IsZero() && (wake.IsZero() || until.Before(wake)) {
						wake = until
					}
					continue
				}
				if until := s.lines.restsUntil(t.list, cl.Name(), now); !until.IsZero() {
					if wake.IsZero() || until.Before(wake) {
						wake = until
					}
					continue
				}
				free = append(free, cl)
			}
			if !wake.IsZero() {
				// An agent's rest ends between two looks: ring it then,
				// not up to a second later.
				rest.Reset(time.Until(wake))
				rested = rest.C
			}
			if len(free) > ahead {
				s.lines.setRinging(t, true)
				err := fc.ring(wait, free, list, false, failed)
				s.lines.setRinging(t, false)
				switch {
				case err == nil:
					s.lines.connected(t.list, time.Since(start))
					finish(callflow.QueueConnected, nil)
					return
				case errors.Is(err, callflow.ErrCallEnded):
					finish(callflow.QueueLeft, callflow.ErrCallEnded)
					return
				case wait.Err() == nil:
					fc.log.Info("call flow queue: no free agent answered", "queue", t.list, "error", err)
				}
			}
		}
		select {
		case <-retry.C:
		case <-rested:
		case <-freed:
		case <-wait.Done():
			if errors.Is(context.Cause(wait), errQueueLimit) {
				finish(callflow.QueueTimedOut, nil)
			} else {
				finish(callflow.QueueLeft, nil)
			}
			return
		case <-c.ended:
			finish(callflow.QueueLeft, callflow.ErrCallEnded)
			return
		case <-s.ctx.Done():
			finish(callflow.QueueLeft, callflow.ErrCallEnded)
			return
		}
	}
}
