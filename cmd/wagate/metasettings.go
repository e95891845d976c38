package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/wagate/wagate/api"
	"github.com/wagate/wagate/configs"
	"github.com/wagate/wagate/events"
	"github.com/wagate/wagate/metrics"
)

// metaSettingsFile keeps, under data_dir, the calling settings Meta last
// reported per number, so that a restart still knows a number flipped.
const metaSettingsFile = "meta-settings.json"

// metaSettings holds what Meta's account_settings_update webhook reported
// of each number's calling settings. It compares Meta's keying with the
// running config's media_encryption: a mismatch is logged at error,
// counted and sent as an event, and (refuse_keying_mismatch) business-
// initiated calls of the number are refused (b2bua.MetaKeying).
type metaSettings struct {
	path string
	cfg  func() *configs.Config
	sink *events.Sink // nil: no events
	log  *slog.Logger

	mu       sync.Mutex
	reported map[string]events.MetaSettings // by phone_number_id

	updates, mismatches, refusals atomic.Uint64
}

func newMetaSettings(dataDir string, cfg func() *configs.Config, sink *events.Sink, log *slog.Logger) (*metaSettings, error) {
	m := &metaSettings{path: filepath.Join(dataDir, metaSettingsFile), cfg: cfg, sink: sink, log: log, reported: map[string]events.MetaSettings{}}
	b, err := os.ReadFile(m.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return m, nil
	case err != nil:
		return nil, fmt.Errorf("meta settings: %w", err)
	}
	if err := json.Unmarshal(b, &m.reported); err != nil {
		// Losing the file loses only what Meta will tell again; say so
		// and start empty rather than refuse to start.
		log.Error("meta settings file unreadable; starting without Meta's reported keying", "path", m.path, "error", err)
		m.reported = map[string]events.MetaSettings{}
	}
	return m, nil
}

// configuredKeying is the media_encryption wagate uses toward Meta for a
// number: its own, else the first whatsapp endpoint's.
func configuredKeying(cfg *configs.Config, phoneNumberID string) string {
	n := cfg.NumberByPhoneNumberID(phoneNumberID)
	if n == nil {
		return ""
	}
	if n.MediaEncryption != "" {
		return n.MediaEncryption
	}
	for i := range cfg.Endpoints {
		if cfg.Endpoints[i].Kind == configs.KindWhatsApp {
			return cfg.Endpoints[i].MediaEncryption
		}
	}
	return ""
}

// apply is the webhook's api.Options.MetaSettings.
func (m *metaSettings) apply(u api.MetaSettingsUpdate) error {
	m.updates.Add(1)
	m.mu.Lock()
	s := m.reported[u.PhoneNumberID]
	if !u.At.IsZero() && u.At.Before(s.ReportedAt) {
		// A redelivered batch (Meta retries after our non-2xx) must not
		// put an older keying back over a newer one.
		m.mu.Unlock()
		m.log.Info("Meta settings update older than the one in force; ignored",
			"phone_number_id", u.PhoneNumberID, "at", u.At, "in_force", s.ReportedAt)
		return nil
	}
	s.PhoneNumberID = u.PhoneNumberID
	if u.SRTPKeyExchange != "" {
		s.SRTPKeyExchange = u.SRTPKeyExchange
	}
	if u.SIPStatus != "" {
		s.SIPStatus = u.SIPStatus
	}
	s.ReportedAt = u.At
	s.Configured = configuredKeying(m.cfg(), u.PhoneNumberID)
	s.Mismatch = s.SRTPKeyExchange != "" && s.Configured != "" && s.SRTPKeyExchange != s.Configured
	m.reported[u.PhoneNumberID] = s
	err := m.saveLocked()
	m.mu.Unlock()

	attrs := []any{"phone_number_id", u.PhoneNumberID, "meta_keying", s.SRTPKeyExchange, "sip_status", s.SIPStatus, "media_encryption", s.Configured}
	switch {
	case s.Configured == "":
		m.log.Warn("Meta changed the calling settings of a number wagate does not serve", attrs...)
	case s.Mismatch:
		m.mismatches.Add(1)
		m.log.Error("Meta's SRTP keying for a number differs from media_encryption: its calls will have no audio until one side is changed", attrs...)
	case s.SIPStatus != "" && s.SIPStatus != "ENABLED":
		m.log.Error("Meta turned SIP off for a number: its calls will not reach wagate", attrs...)
	default:
		m.log.Warn("Meta changed a number's calling settings", attrs...)
	}
	m.sink.MetaSettingsChanged(s)
	if err != nil {
		return fmt.Errorf("meta settings: %w", err)
	}
	return nil
}

// saveLocked writes the reports atomically (temp file, rename).
func (m *metaSettings) saveLocked() error {
	b, err := json.MarshalIndent(m.reported, "", "  ")
	if err != nil {
		return err
	}
	tmp := m.path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o640); err != nil {
		return err
	}
	return os.Rename(tmp, m.path)
}

// Mismatch implements b2bua.MetaKeying against the running config.
func (m *metaSettings) Mismatch(phoneNumberID, configured string) (string, bool) {
	m.mu.Lock()
	s, ok := m.reported[phoneNumberID]
	m.mu.Unlock()
	if !ok || s.SRTPKeyExchange == "" || configured == "" {
		return s.SRTPKeyExchange, false
	}
	return s.SRTPKeyExchange, s.SRTPKeyExchange != configured
}

// Refused implements b2bua.MetaKeying.
func (m *metaSettings) Refused(string) { m.refusals.Add(1) }

// stats is the metrics' view (CallReports is the API's to fill).
func (m *metaSettings) stats() metrics.MetaWebhookStats {
	st := metrics.MetaWebhookStats{SettingsUpdates: m.updates.Load(), Mismatches: m.mismatches.Load(), Refusals: m.refusals.Load()}
	cfg := m.cfg()
	m.mu.Lock()
	for id, s := range m.reported {
		if c := configuredKeying(cfg, id); s.SRTPKeyExchange != "" && c != "" && c != s.SRTPKeyExchange {
			st.Mismatched++
		}
	}
	m.mu.Unlock()
	return st
}
