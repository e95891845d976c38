package permissions

import (
	"context"
	"fmt"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// metaStep is one of Meta's account_updates (or a restart) in a case of
// testMetaOrder. Times are relative to the test's now.
type metaStep struct {
	sent    time.Duration // entry time
	undated bool          // the update has no entry time
	until   time.Duration // the expiration; at or before now: Meta's lift
	restart bool          // restart the store (a new node on Redis) instead
	legacy  time.Duration // write a pause ending then as an older wagate did
	lift    bool          // an operator lifts the pause (DELETE /v1/restrictions/…)
	want    MetaOutcome
}

// metaOrderCases: Meta's pauses and lifts of a number delivered out of
// order (Meta retries, deliveries reach several nodes). The one Meta sent
// last is in force, whatever arrives after it.
var metaOrderCases = []struct {
	name  string
	steps []metaStep
	until time.Duration // the pause in force at the end; 0: none
}{
	{"an older pause does not shorten a newer one", []metaStep{
		{sent: -time.Hour, until: 7*day - time.Hour, want: MetaPaused},
		{sent: -3 * time.Hour, until: 7*day - 3*time.Hour, want: MetaSuperseded},
	}, 7*day - time.Hour},
	{"an older lift does not lift a newer pause", []metaStep{
		{sent: -time.Hour, until: 7*day - time.Hour, want: MetaPaused},
		{sent: -2 * time.Hour, until: -2 * time.Hour, want: MetaSuperseded},
	}, 7*day - time.Hour},
	{"an older pause does not undo Meta's newer lift", []metaStep{
		{sent: -3 * time.Hour, until: 7*day - 3*time.Hour, want: MetaPaused},
		{sent: -time.Hour, until: -time.Hour, want: MetaLifted},
		{sent: -2 * time.Hour, until: 7*day - 2*time.Hour, want: MetaSuperseded},
	}, 0},
	{"newer updates apply, shorter or lifting", []metaStep{
		{sent: -4 * time.Hour, until: 7*day - 4*time.Hour, want: MetaPaused},
		{sent: -3 * time.Hour, until: 2 * day, want: MetaPaused},
		{sent: -2 * time.Hour, until: -2 * time.Hour, want: MetaLifted},
		{sent: -time.Hour, until: 7*day - time.Hour, want: MetaPaused},
	}, 7*day - time.Hour},
	{"a redelivery (same time) applies again", []metaStep{
		{sent: -time.Hour, until: 7*day - time.Hour, want: MetaPaused},
		{sent: -time.Hour, until: 7*day - time.Hour, want: MetaPaused},
	}, 7*day - time.Hour},
	{"the order survives a restart", []metaStep{
		{sent: -time.Hour, until: 7*day - time.Hour, want: MetaPaused},
		{restart: true},
		{sent: -2 * time.Hour, until: -2 * time.Hour, want: MetaSuperseded},
		{sent: -3 * time.Hour, until: 2 * day, want: MetaSuperseded},
	}, 7*day - time.Hour},
	{"after an undated update the time in force is unknown: the next applies", []metaStep{
		{sent: -time.Hour, until: 7*day - time.Hour, want: MetaPaused},
		{undated: true, until: 3 * day, want: MetaPaused},
		{sent: -2 * time.Hour, until: 7*day - 2*time.Hour, want: MetaPaused},
	}, 7*day - 2*time.Hour},
	{"an operator's lift: older updates stay ignored, the lifted pause too, a newer one applies", []metaStep{
		{sent: -2 * time.Hour, until: 7*day - 2*time.Hour, want: MetaPaused},
		{lift: true},
		{sent: -3 * time.Hour, until: 7*day - 3*time.Hour, want: MetaSuperseded},
		{sent: -2 * time.Hour, until: 7*day - 2*time.Hour, want: MetaOperatorLifted},
		{sent: -time.Hour, until: 7*day - time.Hour, want: MetaPaused},
	}, 7*day - time.Hour},
	{"a pause an older wagate recorded (no time kept) gives way as before", []metaStep{
		{legacy: 7*day - time.Hour},
		{sent: -3 * time.Hour, until: 7*day - 3*time.Hour, want: MetaPaused},
		{sent: -4 * time.Hour, until: 7*day - 4*time.Hour, want: MetaSuperseded},
	}, 7*day - 3*time.Hour},
}

// metaOrderStore is what testMetaOrder drives: either backend.
type metaOrderStore interface {
	RestrictFromMeta(phoneNumberID string, until, at time.Time, reason string) (MetaResult, error)
	Restrict(phoneNumberID string, until time.Time, reason string) error
	Restrictions() ([]Restriction, error)
	Stats() Stats
}

// testMetaOrder runs metaOrderCases; store gives the store in use (a new
// one after restart), legacy writes a pause as a wagate before this
// ordering did (no sent time kept).
func testMetaOrder(t *testing.T, now func() time.Time, store func() metaOrderStore, restart func(),
	legacy func(id string, until time.Time)) {
	for i, tc := range metaOrderCases {
		t.Run(tc.name, func(t *testing.T) {
			id := fmt.Sprintf("10654035%05d", i)
			base := now().Truncate(time.Second)
			var inForce time.Time // when the update in force was sent
			for j, s := range tc.steps {
				switch {
				case s.restart:
					restart()
					continue
				case s.legacy != 0:
					legacy(id, base.Add(s.legacy))
					continue
				case s.lift:
					if err := store().Restrict(id, time.Time{}, ""); err != nil {
						t.Fatal(err)
					}
					continue
				}
				at := base.Add(s.sent)
				if s.undated {
					at = time.Time{}
				}
				st := store()
				before := st.Stats().StaleAccountUpdates
				got, err := st.RestrictFromMeta(id, base.Add(s.until), at, metaReason)
				if err != nil {
					t.Fatalf("step %d: %v", j, err)
				}
				if got.Outcome != s.want {
					t.Errorf("step %d (sent %v, until %v): %v, want %v", j, s.sent, s.until, got.Outcome, s.want)
				}
				stale := st.Stats().StaleAccountUpdates - before
				switch {
				case s.want == MetaSuperseded && (stale != 1 || !got.InForceSent.Equal(inForce)):
					t.Errorf("step %d: superseded by the update sent %v (%d counted), want by %v, counted once", j, got.InForceSent, stale, inForce)
				case s.want != MetaSuperseded && stale != 0:
					t.Errorf("step %d: %d counted stale, want none", j, stale)
				}
				if got.Outcome.Applied() {
					inForce = at
				}
			}
			got := pausedUntil(t, store(), id)
			switch want := base.Add(tc.until); {
			case tc.until == 0 && !got.IsZero():
				t.Errorf("paused until %v, want no pause", got)
			case tc.until != 0 && (got.Before(want) || got.After(want.Add(time.Second))):
				// Redis lists the end from the time to live, to the second.
				t.Errorf("paused until %v, want %v", got, want)
			}
		})
	}
}

// TestMetaUpdatesOrderedBySentTime: on the embedded store, an
// account_update older than the one in force is ignored. Before, the
// last delivered won: a late older pause shortened the pause in force, a
// late older lift lifted it, and a late pause undid Meta's lift.
func TestMetaUpdatesOrderedBySentTime(t *testing.T) {
	e := open(t, DefaultLimits())
	testMetaOrder(t, e.clock.Now, func() metaOrderStore { return e.c }, func() { e.reopen(t) },
		func(id string, until time.Time) {
			err := e.c.store.db.Update(func(tx *bolt.Tx) error {
				return tx.Bucket(bucketRestrict).Put([]byte(id), encodeRestriction(Restriction{Until: until, Reason: metaReason}))
			})
			if err != nil {
				t.Fatal(err)
			}
			e.reopen(t)
		})
}

// TestRedisMetaUpdatesOrderedBySentTime: the same on Redis, the updates
// reaching several nodes.
func TestRedisMetaUpdatesOrderedBySentTime(t *testing.T) {
	srv := startRedis(t)
	nodes := []*Redis{openRedis(t, srv, "n1", DefaultLimits()), openRedis(t, srv, "n2", DefaultLimits())}
	turn := 0
	testMetaOrder(t, time.Now, func() metaOrderStore {
		// Each update to the other node than the one before.
		turn++
		return nodes[turn%len(nodes)]
	}, func() {
		srv.restart()
		nodes = []*Redis{openRedis(t, srv, "n3", DefaultLimits()), openRedis(t, srv, "n4", DefaultLimits())}
	}, func(id string, until time.Time) {
		r := nodes[0]
		ctx := context.Background()
		if err := r.rdb.Do(ctx, "SET", r.prefix+"r:"+id, metaReason, "PXAT", until.UnixMilli()).Err(); err != nil {
			t.Fatal(err)
		}
		if err := r.rdb.SAdd(ctx, r.restrictIdx(), id).Err(); err != nil {
			t.Fatal(err)
		}
	})
}
