package main

import (
	"github.com/wagate/wagate/b2bua"
	"github.com/wagate/wagate/permissions"
)

// agentBoard adapts the Redis store's agent board to the one b2bua
// consumes: with permissions.backend redis, the nodes share their agents'
// calls, rings and wrap-up (docs/multinode.md).
type agentBoard struct{ b *permissions.AgentBoard }

func (a agentBoard) Mark(agent string, m b2bua.AgentMark) {
	a.b.Mark(agent, permissions.AgentMark(m))
}

// shareAgents shares calls' agent state through perms when it is the
// Redis store (nil otherwise); the store's Close ends it.
func shareAgents(perms permissions.Store, calls *b2bua.Engine) *permissions.AgentBoard {
	r, ok := perms.(*permissions.Redis)
	if !ok {
		return nil
	}
	b := r.ShareAgents(func(agent string, m permissions.AgentMark) {
		calls.AgentsElsewhere(agent, b2bua.AgentMark(m))
	})
	calls.SetAgentBoard(agentBoard{b})
	return b
}
