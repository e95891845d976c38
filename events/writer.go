package events

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"time"
)

// maxBatch bounds the records (and, apart, the attempt results) committed
// in one transaction: large enough to amortise the fsync of a commit under
// load, small enough that a transaction stays short.
const maxBatch = 512

// writeStmts are the writer's statements, prepared once: preparing is a
// large part of a small insert's cost.
type writeStmts struct {
	cdr, event, delivery, delivered, failed, callPending, unblock *sql.Stmt
}

func prepareWrites(ctx context.Context, db *sql.DB) (*writeStmts, error) {
	var w writeStmts
	for _, p := range []struct {
		dst **sql.Stmt
		sql string
	}{
		{&w.cdr, `INSERT INTO cdrs (call_id, created_at, direction, business_number, wa_user, outcome, body)
			VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (call_id) DO NOTHING`},
		{&w.event, `INSERT INTO events (id, type, call_id, created_at, body) VALUES (?, ?, ?, ?, ?)`},
		{&w.delivery, `INSERT INTO deliveries (event_seq, subscriber, call_id, state, next_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)`},
		{&w.delivered, `UPDATE deliveries SET state = ?, attempts = ?, updated_at = ?, last_status = ?, last_error = ''
			WHERE subscriber = ? AND event_seq = ? AND state = ?`},
		{&w.failed, `UPDATE deliveries SET state = ?, attempts = ?, next_at = ?, updated_at = ?, last_status = ?, last_error = ?
			WHERE subscriber = ? AND event_seq = ? AND state = ?`},
		{&w.callPending, `SELECT EXISTS (SELECT 1 FROM deliveries WHERE subscriber = ? AND call_id = ? AND state = ?)`},
		{&w.unblock, `UPDATE deliveries SET next_at = ?1 WHERE next_at = ?2 AND id = (SELECT id FROM deliveries
			WHERE subscriber = ?3 AND call_id = ?4 AND state = ?5 AND event_seq > ?6 ORDER BY event_seq LIMIT 1)`},
	} {
		st, err := db.PrepareContext(ctx, p.sql)
		if err != nil {
			w.close()
			return nil, fmt.Errorf("prepare: %w", err)
		}
		*p.dst = st
	}
	return &w, nil
}

func (w *writeStmts) close() {
	for _, st := range []*sql.Stmt{w.cdr, w.event, w.delivery, w.delivered, w.failed, w.callPending, w.unblock} {
		if st != nil {
			st.Close()
		}
	}
}

// result is the outcome of one delivery attempt, to be written.
type result struct {
	sub    *subscriber
	seq    int64 // the event's
	callID string
	id     string // the event's id, for logs
	// delivered: a 2xx. Otherwise attempts is the count including this
	// one, dead says whether that was the last, and nextAt is when to try
	// again.
	delivered bool
	attempts  int
	dead      bool
	nextAt    time.Time
	status    int
	errText   string
}

// groupCommitWait is how long the writer waits for more records after the
// first before it commits them together.
const groupCommitWait = 20 * time.Millisecond

// writeLoop owns every write of records and results. It blocks only on
// its channels and the disk; the call path never waits for it.
func (s *Sink) writeLoop() {
	defer close(s.writerDone)
	items := make([]item, 0, maxBatch)
	res := make([]result, 0, maxBatch)
	linger := time.NewTimer(time.Hour)
	linger.Stop()
	for {
		stopping := false
		select {
		case it := <-s.queue:
			items = append(items, it)
		case r := <-s.results:
			res = append(res, r)
		case <-s.stopWriter:
			stopping = true
		}
		// Group commit: a transaction costs the same (a WAL sync) for
		// one record as for hundreds, and at a few hundred calls/s
		// records come one at a time. Lingering a moment for more cut
		// the writer's CPU per call several times over.
		if !stopping {
			linger.Reset(groupCommitWait)
		gather:
			for len(items) < maxBatch && len(res) < maxBatch {
				select {
				case it := <-s.queue:
					items = append(items, it)
				case r := <-s.results:
					res = append(res, r)
				case <-linger.C:
					break gather
				case <-s.stopWriter:
					stopping = true
					break gather
				}
			}
			linger.Stop()
		}
		for {
			items, res = s.gather(items, res)
			if len(items)+len(res) > 0 {
				s.commit(items, res)
			}
			// Keep going while the queue was full, so that a backlog is
			// written in full batches; when stopping, until it is empty.
			full := len(items) == maxBatch || len(res) == maxBatch
			empty := len(items)+len(res) == 0
			items, res = items[:0], res[:0]
			if stopping && empty {
				return
			}
			if !stopping && !full {
				break
			}
		}
	}
}

// gather adds what is waiting on the channels, without blocking, up to
// maxBatch of each.
func (s *Sink) gather(items []item, res []result) ([]item, []result) {
	for len(items) < maxBatch && len(res) < maxBatch {
		select {
		case it := <-s.queue:
			items = append(items, it)
		case r := <-s.results:
			res = append(res, r)
		default:
			return items, res
		}
	}
	return items, res
}

// commit writes one batch in one transaction. On failure the records are
// lost (counted and logged) and the results left unwritten: those events
// stay pending and are delivered again, which at-least-once allows.
func (s *Sink) commit(items []item, res []result) {
	ctx := context.Background()
	now := s.now().UnixNano()
	var nCDR, nEv, nDup uint64
	woken := make([]bool, len(s.subs))
	// delta is the change of each subscriber's pending count, applied
	// once the transaction is committed.
	delta := make([]int64, len(s.subs))
	var full []uint64
	err := func() error {
		tx, err := s.wdb.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		st := &writeStmts{
			cdr: tx.StmtContext(ctx, s.stmts.cdr), event: tx.StmtContext(ctx, s.stmts.event), delivery: tx.StmtContext(ctx, s.stmts.delivery),
			delivered: tx.StmtContext(ctx, s.stmts.delivered), failed: tx.StmtContext(ctx, s.stmts.failed),
			callPending: tx.StmtContext(ctx, s.stmts.callPending), unblock: tx.StmtContext(ctx, s.stmts.unblock),
		}
		// Results first: deliveries they finish make room in a full
		// backlog for the records of this batch.
		for i := range res {
			done, err := writeResult(ctx, st, &res[i], now)
			if err != nil {
				return err
			}
			if done {
				delta[res[i].sub.index]--
			}
		}
		full = make([]uint64, len(s.subs))
		for i := range items {
			c, e, dup, err := s.insert(ctx, st, &items[i], now, woken, delta, full)
			if err != nil {
				return err
			}
			nCDR, nEv, nDup = nCDR+c, nEv+e, nDup+dup
		}
		return tx.Commit()
	}()
	if err != nil {
		s.writeErrors.Add(1)
		s.lost.Add(uint64(len(items)))
		s.errs.log(s.log, slog.LevelError, "write", "events database write failed: records lost, calls unaffected",
			"error", err, "records_lost", len(items), "results_unwritten", len(res))
		for i := range res {
			res[i].sub.finished(&res[i], false)
		}
		return
	}
	s.cdrsWritten.Add(nCDR)
	s.eventsWritten.Add(nEv)
	if f := s.stored.Load(); f != nil && s.opts.StoreCDRs {
		var ids []string
		for i := range items {
			if items[i].cdr != nil {
				ids = append(ids, items[i].cdr.CallID)
			}
		}
		if len(ids) > 0 {
			(*f)(ids)
		}
	}
	for i, sub := range s.subs {
		sub.pending.Add(delta[i])
		if full[i] > 0 {
			sub.backlogFull.Add(full[i])
			s.errs.log(s.log, slog.LevelError, "backlog full "+sub.cfg.Name,
				"event subscriber's backlog is full: new events are not queued for it until it takes some (its CDRs are still stored)",
				"subscriber", sub.cfg.Name, "pending", sub.pending.Load(), "max_pending", s.opts.MaxPending, "events_not_queued", full[i])
		}
	}
	if nDup > 0 {
		s.duplicates.Add(nDup)
		s.errs.log(s.log, slog.LevelWarn, "duplicate", "CDR with a call id already stored was not written, nor its event", "count", nDup)
	}
	for i := range res {
		res[i].sub.finished(&res[i], true)
	}
	for i, w := range woken {
		if w {
			s.subs[i].poke()
		}
	}
}

// insert writes one record: its CDR (when stored) and its event with a
// pending delivery per subscriber of its type, marking those subscribers
// in woken. It reports the CDRs, events and duplicate CDRs written.
//
// A subscriber with Options.MaxPending pending deliveries (counting delta,
// this transaction's change) gets none: counted in full.
func (s *Sink) insert(ctx context.Context, st *writeStmts, it *item, now int64, woken []bool, delta []int64, full []uint64) (cdrs, evs, dups uint64, err error) {
	var data any = it.data
	if c := it.cdr; c != nil {
		if c.CallID == "" {
			c.CallID = "unnamed-" + newEventID(it.at)
			it.callID = c.CallID
			s.errs.log(s.log, slog.LevelWarn, "no call id", "CDR without a call id; one was made up", "call_id", c.CallID)
		}
		c.complete(s.opts.NodeID, it.at)
		c.Media.AtoB.sanitize()
		c.Media.BtoA.sanitize()
		body, err := json.Marshal(c)
		if err != nil {
			// Cannot happen for a sanitised CDR; lose only this one.
			s.lost.Add(1)
			s.log.Error("CDR not encodable; dropped", "call_id", c.CallID, "error", err)
			return 0, 0, 0, nil
		}
		if s.opts.StoreCDRs {
			r, err := st.cdr.ExecContext(ctx, c.CallID, c.CreatedAt.UnixNano(), string(c.Direction), c.BusinessNumber, c.User, string(c.Outcome), body)
			if err != nil {
				return 0, 0, 0, fmt.Errorf("insert CDR: %w", err)
			}
			if n, _ := r.RowsAffected(); n == 1 {
				cdrs = 1
			} else {
				// A CDR and its event are one: the call's record is
				// the one stored, so this event (a second call.ended
				// saying otherwise) is not sent either.
				return 0, 0, 1, nil
			}
		}
		data = json.RawMessage(body)
	}
	subs := s.typeSubs[it.typ]
	if it.id == "" || len(subs) == 0 {
		return cdrs, 0, dups, nil
	}
	if bound := int64(s.opts.MaxPending); bound > 0 {
		room := make([]*subscriber, 0, len(subs))
		for _, sub := range subs {
			if sub.pending.Load()+delta[sub.index] >= bound {
				full[sub.index]++
				continue
			}
			room = append(room, sub)
		}
		if subs = room; len(subs) == 0 {
			return cdrs, 0, dups, nil
		}
	}
	body, err := json.Marshal(Envelope{ID: it.id, Type: it.typ, Timestamp: it.at.UTC(), NodeID: s.opts.NodeID, CallID: it.callID, Data: data})
	if err != nil {
		s.lost.Add(1)
		s.log.Error("event not encodable; dropped", "type", it.typ, "call_id", it.callID, "error", err)
		return cdrs, 0, dups, nil
	}
	r, err := st.event.ExecContext(ctx, it.id, string(it.typ), it.callID, it.at.UnixNano(), body)
	if err != nil {
		return 0, 0, 0, fmt.Errorf("insert event: %w", err)
	}
	seq, err := r.LastInsertId()
	if err != nil {
		return 0, 0, 0, fmt.Errorf("insert event: %w", err)
	}
	for _, sub := range subs {
		next := now
		if it.callID != "" {
			var waits bool
			if err := st.callPending.QueryRowContext(ctx, sub.cfg.Name, it.callID, statePending).Scan(&waits); err != nil {
				return 0, 0, 0, fmt.Errorf("insert delivery: %w", err)
			}
			if waits {
				next = blocked
			}
		}
		if _, err := st.delivery.ExecContext(ctx, seq, sub.cfg.Name, it.callID, statePending, next, now); err != nil {
			return 0, 0, 0, fmt.Errorf("insert delivery: %w", err)
		}
		delta[sub.index]++
		woken[sub.index] = true
	}
	return cdrs, 1, dups, nil
}

// writeResult records an attempt; done says a pending delivery was
// finished (delivered or dead).
func writeResult(ctx context.Context, st *writeStmts, r *result, now int64) (done bool, err error) {
	var res sql.Result
	switch {
	case r.delivered:
		res, err = st.delivered.ExecContext(ctx, stateDelivered, r.attempts, now, r.status, r.sub.cfg.Name, r.seq, statePending)
	default:
		state := statePending
		if r.dead {
			state = stateDead
		}
		res, err = st.failed.ExecContext(ctx, state, r.attempts, r.nextAt.UnixNano(), now, r.status, r.errText, r.sub.cfg.Name, r.seq, statePending)
	}
	if err != nil {
		return false, fmt.Errorf("record delivery attempt: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 1 && (r.delivered || r.dead) {
		done = true
	}
	if (r.delivered || r.dead) && r.callID != "" {
		// The call's next event may go now.
		if _, err := st.unblock.ExecContext(ctx, now, int64(blocked), r.sub.cfg.Name, r.callID, statePending, r.seq); err != nil {
			return false, fmt.Errorf("release the call's next event: %w", err)
		}
	}
	return done, nil
}

// sanitize replaces values JSON cannot carry (NaN, ±Inf from a division
// by zero in a statistic) with 0.
func (m *MediaStats) sanitize() {
	for _, f := range []*float64{&m.JitterMS, &m.JitterBufferMS} {
		if math.IsNaN(*f) || math.IsInf(*f, 0) {
			*f = 0
		}
	}
}
