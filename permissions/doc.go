// Package permissions is wagate's call-permission state (DESIGN.md §5): the
// state of each (business phone-number-id, WhatsApp user) pair, Meta's
// limits and counters, expiry of temporary grants, Meta's pauses of a
// number, and persistence.
//
// Two stores implement the Store interface:
//
//   - Cache, the embedded default for one node: memory answers, and a bbolt
//     file keeps grants, revocations and every counter (connected calls
//     per user per 24 h, unanswered streaks, permission requests, each
//     number's new calls per 24 h), BSUID links, restrictions and applied
//     webhook message ids. Each change is fsynced (batched across
//     concurrent calls) before the call that made it returns, so a kill -9
//     forgets nothing. Calls in progress are not written: a restarted node
//     has none.
//   - Redis, for several nodes: every admission and outcome is one Lua
//     script, so N nodes admit exactly what one would; windows use Redis's
//     clock, not the nodes'; each node's calls in progress are held under
//     its instance, which lives only while the node refreshes it, so a
//     dead node's slots free themselves.
//
// The Redis store also carries the cluster's agent state (AgentBoard,
// redis_agents.go): each node's agents' calls, last ends and wrap-up, held
// under its instance like its slots, mirrored on every node through
// pub/sub, so that hunt lists and queues (b2bua) see every node's agents
// without a round trip per call. It lives here because it shares the
// store's client, instance and outage handling; b2bua consumes it through
// its own small interface.
//
// The package knows nothing about SIP: sip turns a Decision into a response
// and reports a call's outcome through the Reservation that Reserve (or the
// Cache's Admit) returns.
package permissions
