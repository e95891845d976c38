package events

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// sweepChunk bounds the rows one delete removes, so that a sweep of a
// large backlog holds the write connection for short turns and the writer
// gets it in between.
const sweepChunk = 1000

func (s *Sink) sweepLoop(ctx context.Context) {
	if s.opts.noSweepLoop || s.opts.CDRRetention <= 0 && s.opts.EventRetention <= 0 {
		return
	}
	t := time.NewTicker(s.opts.sweepEvery)
	defer t.Stop()
	for {
		if _, _, err := s.sweep(ctx); err != nil && ctx.Err() == nil {
			s.errs.log(s.log, slog.LevelError, "sweep", "events retention sweep failed", "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// sweep deletes CDRs older than the CDR retention, and delivered events,
// dead letters and the deliveries of subscribers no longer configured
// whose last change is older than the event retention. It reports the
// CDRs and events deleted.
func (s *Sink) sweep(ctx context.Context) (cdrs, events int64, err error) {
	now := s.now()
	if r := s.opts.CDRRetention; r > 0 {
		cdrs, err = s.deleteChunks(ctx, `DELETE FROM cdrs WHERE seq IN (SELECT seq FROM cdrs WHERE created_at < ? LIMIT ?)`,
			now.Add(-r).UnixNano())
		s.cdrsSwept.Add(uint64(cdrs))
		if err != nil {
			return cdrs, 0, fmt.Errorf("sweep CDRs: %w", err)
		}
		// Meta's reports go with the CDRs they annotate.
		if _, err = s.deleteChunks(ctx, `DELETE FROM meta_calls WHERE wa_call_id IN (SELECT wa_call_id FROM meta_calls WHERE updated_at < ? LIMIT ?)`,
			now.Add(-r).UnixNano()); err != nil {
			return cdrs, 0, fmt.Errorf("sweep Meta call reports: %w", err)
		}
	}
	if r := s.opts.EventRetention; r > 0 {
		cutoff := now.Add(-r).UnixNano()
		args := []any{cutoff, stateDelivered, stateDead}
		marks := []string{}
		for _, sub := range s.subs {
			args = append(args, sub.cfg.Name)
			marks = append(marks, "?")
		}
		// Deliveries to subscribers no longer configured go too.
		orphan := "1"
		if len(marks) > 0 {
			orphan = "subscriber NOT IN (" + strings.Join(marks, ", ") + ")"
		}
		if _, err = s.deleteChunks(ctx, `DELETE FROM deliveries WHERE id IN (SELECT id FROM deliveries
			WHERE updated_at < ? AND (state IN (?, ?) OR `+orphan+`) LIMIT ?)`, args...); err != nil {
			return cdrs, 0, fmt.Errorf("sweep deliveries: %w", err)
		}
		events, err = s.deleteChunks(ctx, `DELETE FROM events WHERE seq IN (SELECT e.seq FROM events e
			WHERE e.created_at < ? AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_seq = e.seq) LIMIT ?)`, cutoff)
		s.eventsPruned.Add(uint64(events))
		if err != nil {
			return cdrs, events, fmt.Errorf("sweep events: %w", err)
		}
	}
	if cdrs+events > 0 {
		s.log.Info("events retention sweep", "cdrs_deleted", cdrs, "events_deleted", events)
	}
	return cdrs, events, nil
}

// deleteChunks runs a DELETE whose last parameter is the chunk size until
// it deletes less than a chunk, and reports the rows deleted.
func (s *Sink) deleteChunks(ctx context.Context, stmt string, args ...any) (int64, error) {
	var total int64
	args = append(args, sweepChunk)
	for {
		res, err := s.wdb.ExecContext(ctx, stmt, args...)
		if err != nil {
			return total, err
		}
		n, _ := res.RowsAffected()
		total += n
		if n < sweepChunk {
			return total, nil
		}
	}
}
