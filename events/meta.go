package events

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// MetaCall is Meta's own account of a call, from the calls webhook
// (call_created/connect and terminate, which Meta sends for SIP numbers
// whose webhook_delivery setting is on). It is stored by WhatsApp call id
// and joined to the CDR of that id whenever a CDR is read, whichever of
// the two arrived first.
type MetaCall struct {
	// WACallID is WhatsApp's call id (wacid…), the CDR's wa_call_id.
	WACallID      string `json:"wa_call_id"`
	PhoneNumberID string `json:"phone_number_id,omitempty"`
	// Event is the last webhook event applied: "call_created", "connect"
	// or "terminate".
	Event string `json:"event"`
	// Status is Meta's status of the call ("COMPLETED", "FAILED", …; empty
	// until a terminate says).
	Status    string `json:"status,omitempty"`
	Direction string `json:"direction,omitempty"`
	// DurationS is Meta's duration in seconds (terminate); nil when Meta
	// gave none.
	DurationS *int64    `json:"duration_s,omitempty"`
	StartedAt time.Time `json:"started_at,omitzero"`
	EndedAt   time.Time `json:"ended_at,omitzero"`
	// ReportedAt is when Meta sent the last event (its timestamp).
	ReportedAt time.Time `json:"reported_at,omitzero"`
}

// merge folds a later report into m: a terminate's status and times are
// never undone by a late or redelivered call_created.
func (m *MetaCall) merge(n MetaCall) {
	final := m.Event == "terminate"
	if !final || n.Event == "terminate" {
		m.Event = n.Event
	}
	set := func(dst *string, v string) {
		if v != "" && (!final || n.Event == "terminate" || *dst == "") {
			*dst = v
		}
	}
	set(&m.PhoneNumberID, n.PhoneNumberID)
	set(&m.Status, n.Status)
	set(&m.Direction, n.Direction)
	if n.DurationS != nil {
		m.DurationS = n.DurationS
	}
	if !n.StartedAt.IsZero() {
		m.StartedAt = n.StartedAt
	}
	if !n.EndedAt.IsZero() {
		m.EndedAt = n.EndedAt
	}
	if n.ReportedAt.After(m.ReportedAt) {
		m.ReportedAt = n.ReportedAt
	}
}

// ErrNoCDRStore is returned by RecordMetaCall when CDRs are not stored.
var ErrNoCDRStore = errors.New("events: CDRs are not stored (cdr.enabled false)")

// RecordMetaCall stores Meta's report of a call durably (synchronously: a
// nil error means it is on disk), merged with earlier reports of the same
// WhatsApp call id. The webhook answers Meta with an error when it fails,
// so that Meta delivers again.
func (s *Sink) RecordMetaCall(ctx context.Context, m MetaCall) error {
	if s == nil || !s.opts.StoreCDRs {
		return ErrNoCDRStore
	}
	if m.WACallID == "" {
		return errors.New("events: Meta call report without a call id")
	}
	tx, err := s.wdb.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("events: record Meta call: %w", err)
	}
	defer tx.Rollback()
	cur := MetaCall{WACallID: m.WACallID}
	var body []byte
	switch err := tx.QueryRowContext(ctx, `SELECT body FROM meta_calls WHERE wa_call_id = ?`, m.WACallID).Scan(&body); {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return fmt.Errorf("events: record Meta call: %w", err)
	default:
		if err := json.Unmarshal(body, &cur); err != nil {
			s.log.Warn("stored Meta call report unreadable; replaced", "wa_call_id", m.WACallID, "error", err)
			cur = MetaCall{WACallID: m.WACallID}
		}
	}
	cur.merge(m)
	body, err = json.Marshal(cur)
	if err != nil {
		return fmt.Errorf("events: record Meta call: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO meta_calls (wa_call_id, updated_at, body) VALUES (?, ?, ?)
		ON CONFLICT(wa_call_id) DO UPDATE SET updated_at = excluded.updated_at, body = excluded.body`,
		m.WACallID, s.now().UnixNano(), body); err != nil {
		return fmt.Errorf("events: record Meta call: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("events: record Meta call: %w", err)
	}
	return nil
}
