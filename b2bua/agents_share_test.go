package b2bua

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wagate/wagate/configs"
	sipedge "github.com/wagate/wagate/sip"
)

// markLog is an AgentBoard that keeps what it was told: marks has each
// agent's calls, rings its INVITEs under way, both the two.
type markLog struct {
	mu    sync.Mutex
	marks []string
	rings []string
	both  []string
}

func (m *markLog) Mark(agent string, a AgentMark) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.marks = append(m.marks, agent+":"+string(rune('0'+a.Active)))
	m.rings = append(m.rings, agent+":"+string(rune('0'+a.Ringing)))
	m.both = append(m.both, fmt.Sprintf("%s:a%d/r%d", agent, a.Active, a.Ringing))
}

// told is what m was told so far, in order: one of its lists joined.
func (m *markLog) told(list *[]string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return strings.Join(*list, " ")
}

// TestAgentsElsewhere: another node's marks count as this node's own. An
// agent on a call there is busy here (queues pass it over, a queue's ring
// does not reserve it, least_recent rings it last); one in wrap-up there
// is in wrap-up here; least_recent ranks by the latest end anywhere. This
// node's own changes go to the board as they happen; an agent leaving a
// call, here or there, wakes the waiting queue calls.
func TestAgentsElsewhere(t *testing.T) {
	s, board, order := leastRecentBoard()
	hs := &s.hunts

	s.AgentsElsewhere("1@pbx", AgentMark{Active: 1})
	if !hs.busy("1@pbx") {
		t.Error("an agent on a call through another node is free here")
	}
	if _, ok := hs.reserve("1@pbx"); ok {
		t.Error("a queue reserved an agent on a call through another node")
	}
	if got := order(); got != "2 3 1" {
		t.Errorf("least_recent order %s, want 2 3 1 (1 on a call elsewhere)", got)
	}

	// Its call there ends: the waiting queue calls look again at once.
	freed := hs.freedC()
	now := time.Now()
	s.AgentsElsewhere("1@pbx", AgentMark{LastEnd: now, WrapUntil: now.Add(time.Minute)})
	select {
	case <-freed:
	default:
		t.Error("an agent's call ending elsewhere did not wake the waiting queue calls")
	}
	if until := hs.wrapsUntil("1@pbx", now); !until.Equal(now.Add(time.Minute)) {
		t.Errorf("wrap-up elsewhere until %v, want %v", until, now.Add(time.Minute))
	}
	if !hs.busy("1@pbx") {
		t.Error("an agent in wrap-up through another node is free here")
	}

	// 2 leaves a call here, after 1 left its call elsewhere: 3 (never
	// answered) first, then 1, then 2.
	leave := hs.answered("2@pbx", nil)
	freed = hs.freedC()
	leave()
	select {
	case <-freed:
	default:
		t.Error("an agent leaving a call here did not wake the waiting queue calls")
	}
	if got := order(); got != "3 1 2" {
		t.Errorf("least_recent order %s, want 3 1 2", got)
	}
	board.mu.Lock()
	marks := strings.Join(board.marks, " ")
	board.mu.Unlock()
	if marks != "2@pbx:1 2@pbx:0" {
		t.Errorf("board told %s, want 2@pbx:1 2@pbx:0", marks)
	}

	// Nothing held elsewhere any more: per node again.
	s.AgentsElsewhere("1@pbx", AgentMark{})
	if hs.busy("1@pbx") || !hs.wrapsUntil("1@pbx", now).IsZero() {
		t.Error("an agent nobody holds is still busy")
	}
	if got := order(); got != "1 3 2" {
		t.Errorf("least_recent order %s, want 1 3 2 (1 never seen here, list order before 3)", got)
	}
}

// TestAgentsRingingElsewhere: an INVITE under way to an agent through
// another node counts as one through this node. A queue's ring does not
// reserve the agent and the queue's look passes it over; least_recent
// rings it after the free agents and before those on a call; the end of
// that ring (the count going down) wakes the waiting queue calls. This
// node's own rings go to the board as they start and end. Before, rings
// were per node: a queue on another node rang the agent at once, and
// least_recent there ranked it idle.
func TestAgentsRingingElsewhere(t *testing.T) {
	s, board, order := leastRecentBoard()
	hs := &s.hunts

	leave := hs.answered("2@pbx", nil) // on a call here
	s.AgentsElsewhere("1@pbx", AgentMark{Ringing: 1})
	if release, ok := hs.reserve("1@pbx"); ok {
		release()
		t.Error("a queue reserved an agent an INVITE through another node rings")
	}
	if !hs.ringingNow("1@pbx") {
		t.Error("an agent ringing through another node is not ringing for the queue's look")
	}
	if hs.busy("1@pbx") {
		t.Error("an agent ringing elsewhere is busy (on a call or in wrap-up)")
	}
	if got := order(); got != "3 1 2" {
		t.Errorf("least_recent order %s, want 3 1 2 (1 ringing elsewhere after the free 3, before 2 on a call)", got)
	}

	// A second ring there, then one ends: still ringing, no wake; the
	// last ends unanswered: the waiting queue calls look again at once.
	s.AgentsElsewhere("1@pbx", AgentMark{Ringing: 2})
	freed := hs.freedC()
	s.AgentsElsewhere("1@pbx", AgentMark{Ringing: 1})
	select {
	case <-freed:
	default:
		t.Error("one of an agent's rings elsewhere ending did not wake the waiting queue calls")
	}
	if !hs.ringingNow("1@pbx") {
		t.Error("an agent still ringing through another node is not ringing here")
	}
	freed = hs.freedC()
	s.AgentsElsewhere("1@pbx", AgentMark{})
	select {
	case <-freed:
	default:
		t.Error("an agent's ring elsewhere ending unanswered did not wake the waiting queue calls")
	}
	release, ok := hs.reserve("1@pbx")
	if !ok {
		t.Fatal("a queue could not reserve an agent whose ring elsewhere ended")
	}
	if got := order(); got != "3 1 2" {
		t.Errorf("least_recent order %s, want 3 1 2 (1 ringing here)", got)
	}
	release()
	other := hs.rings("3@pbx")
	other()
	leave()
	board.mu.Lock()
	rings := strings.Join(board.rings, " ")
	board.mu.Unlock()
	if want := "2@pbx:0 1@pbx:1 1@pbx:0 3@pbx:1 3@pbx:0 2@pbx:0"; rings != want {
		t.Errorf("board told rings %s, want %s", rings, want)
	}
}

// TestAgentsForgotten: an agent that left its last call more than a day
// ago, on no call, ringing for none and out of wrap-up, is forgotten at
// the next seat's sweep (least_recent ranks it as never seen); one on a
// call, ringing, in wrap-up or seen within the day is kept. Without it
// every agent ever seated stayed for the process's life.
func TestAgentsForgotten(t *testing.T) {
	var hs huntState
	now := time.Now()
	for _, n := range []string{"old@pbx", "recent@pbx", "ringing@pbx", "wrapping@pbx"} {
		hs.answered(n, nil)()
	}
	onCall := hs.answered("oncall@pbx", nil)
	release := hs.rings("ringing@pbx")
	hs.mu.Lock()
	for n, a := range hs.agents {
		if n != "recent@pbx" {
			a.lastEnd = now.Add(-25 * time.Hour)
		}
	}
	hs.agents["wrapping@pbx"].wrapUntil = now.Add(time.Minute)
	hs.sweptAt = now.Add(-sweepEvery)
	hs.mu.Unlock()
	leave := hs.answered("new@pbx", nil) // sweeps
	hs.mu.Lock()
	var kept []string
	for n := range hs.agents {
		kept = append(kept, n)
	}
	hs.mu.Unlock()
	slices.Sort(kept)
	if got := strings.Join(kept, " "); got != "new@pbx oncall@pbx recent@pbx ringing@pbx wrapping@pbx" {
		t.Errorf("agents kept: %s, want all but old@pbx", got)
	}
	release()
	onCall()
	leave()
	if hs.busy("oncall@pbx") || hs.busy("new@pbx") {
		t.Error("an agent kept through the sweep is still busy after leaving")
	}
}

// leastRecentBoard is an engine sharing through a markLog, and the order
// its least_recent list of 1@pbx, 2@pbx and 3@pbx rings now.
func leastRecentBoard() (*Engine, *markLog, func() string) {
	s := &Engine{}
	board := &markLog{}
	s.SetAgentBoard(board)
	list := &configs.HuntList{Name: "lr", Strategy: configs.HuntLeastRecent}
	callee := func(user string) sipedge.Callee {
		return sipedge.Callee{EP: &configs.Endpoint{Name: "pbx", Kind: configs.KindPBX}, User: user}
	}
	d := &sipedge.Decision{Hunt: list, Callees: []sipedge.Callee{callee("1"), callee("2"), callee("3")}}
	return s, board, func() string {
		var out []string
		for _, c := range s.hunts.order(d) {
			out = append(out, c.User)
		}
		return strings.Join(out, " ")
	}
}
