package configs

import "path/filepath"

// CDR configures call detail records, stored in <data_dir>/events.db.
type CDR struct {
	// Enabled stores one record per call (default true).
	Enabled bool `yaml:"enabled"`
	// RetentionDays deletes records older than this (default 90; 0: keep
	// forever).
	RetentionDays int `yaml:"retention_days"`
}

// Events configures the call events wagate posts to webhook subscribers,
// from a durable outbox in <data_dir>/events.db.
type Events struct {
	// Subscribers receive signed webhooks; none: no events are kept.
	Subscribers []Subscriber `yaml:"subscribers"`
	// MaxAttempts per event and subscriber before it becomes a dead
	// letter (default 30).
	MaxAttempts int `yaml:"max_attempts"`
	// BackoffBase and BackoffMax bound the exponential backoff between
	// attempts, with full jitter (defaults 1s and 10m).
	BackoffBase Duration `yaml:"backoff_base"`
	BackoffMax  Duration `yaml:"backoff_max"`
	// QueueSize bounds the records (CDRs and events) waiting in memory to
	// be written; more are dropped and counted (default 10000).
	QueueSize int `yaml:"queue_size"`
	// MaxPending bounds each subscriber's undelivered events kept in the
	// outbox; beyond it new events are not queued for that subscriber
	// (counted, logged), so that a receiver down for long does not fill
	// the disk (default 1000000; 0: no bound).
	MaxPending int `yaml:"max_pending"`
	// RetentionDays keeps delivered events and dead letters this long
	// (default 7; 0: keep forever).
	RetentionDays int `yaml:"retention_days"`
}

// Subscriber is one webhook receiver of events.
type Subscriber struct {
	// Name identifies the subscriber in logs, the API and the outbox.
	Name string `yaml:"name"`
	// URL is where events are POSTed (http or https).
	URL string `yaml:"url"`
	// Secret keys the HMAC-SHA256 of X-Wagate-Signature (required).
	Secret Secret `yaml:"secret"`
	// Types lists the event types sent (default: all).
	Types []string `yaml:"types"`
	// Timeout bounds one delivery attempt, body included (default 10s).
	Timeout Duration `yaml:"timeout"`
	// Concurrency bounds the attempts in flight to this subscriber
	// (default 4).
	Concurrency int `yaml:"concurrency"`
}

// Event types, as they appear in the "type" of an event and in
// events.subscribers[].types.
const (
	EventCallStarted       = "call.started"
	EventCallRinging       = "call.ringing"
	EventCallAnswered      = "call.answered"
	EventCallEnded         = "call.ended"
	EventCallRefused       = "call.refused"
	EventCallTransferred   = "call.transferred"
	EventCallProgress      = "call.progress"
	EventPermissionChanged = "permission.changed"
	EventRecordingReady    = "recording.ready"
	// EventMetaSettingsChanged: Meta's account_settings_update webhook
	// reported a number's calling settings (SRTP keying, SIP status).
	EventMetaSettingsChanged = "meta.settings_changed"
)

// EventTypes lists every event type wagate emits.
func EventTypes() []string {
	return []string{EventCallStarted, EventCallRinging, EventCallAnswered, EventCallEnded,
		EventCallRefused, EventCallTransferred, EventPermissionChanged, EventRecordingReady, EventMetaSettingsChanged, EventCallProgress}
}

// EventsDB is the file of the CDRs and the event outbox.
func (c *Config) EventsDB() string { return filepath.Join(c.DataDir, EventsDBName) }

// EventsUsed reports whether the events database is needed: CDRs are
// stored or some subscriber receives events.
func (c *Config) EventsUsed() bool { return c.CDR.Enabled || len(c.Events.Subscribers) > 0 }
