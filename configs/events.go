package configs

import "path/filepath"

// EventsDB is the file of the CDRs and the event outbox.
func (c *Config) EventsDB() string { return filepath.Join(c.DataDir, EventsDBName) }

// EventsUsed reports whether the events database is needed: CDRs are
// stored or some subscriber receives events.
func (c *Config) EventsUsed() bool { return c.CDR.Enabled || len(c.Events.Subscribers) > 0 }
