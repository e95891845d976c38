package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/wagate/wagate/events"
	"github.com/wagate/wagate/permissions"
	"github.com/wagate/wagate/recording"
)

// wireEvents tells the events sink what the permission cache and the
// recordings do: neither package knows about events, each has a hook.
// Either may be nil (turned off). A finished recording goes to ready
// (readyAfterEnd.ready: after its call's call.ended).
//
// The Redis store has no such hook yet: with permissions.backend redis,
// no permission.changed event is sent (docs/events.md says so).
func wireEvents(sink *events.Sink, perms permissions.Store, rec *recording.Manager, ready func(events.Recording), log *slog.Logger) {
	if perms != nil {
		if o, ok := perms.(interface {
			SetObserver(func(permissions.Change))
		}); ok {
			o.SetObserver(func(ch permissions.Change) { sink.PermissionChanged(permissionChange(ch)) })
		} else {
			log.Warn("events: this permission store reports no changes; permission.changed is not sent")
		}
	}
	if rec != nil {
		rec.SetObserver(func(e recording.Entry) { ready(recordingReady(e)) })
	}
}

func permissionChange(ch permissions.Change) events.PermissionChange {
	return events.PermissionChange{
		PhoneNumberID: ch.Key.PhoneNumberID,
		User:          ch.Key.User,
		Status:        string(ch.Status),
		Previous:      string(ch.Previous),
		ExpiresAt:     ch.ExpiresAt,
		Source:        ch.Source,
	}
}

// recordingReady describes a finished recording. Its id is the WAV's path
// under the recordings directory, as the call's CDR names it.
func recordingReady(e recording.Entry) events.Recording {
	return events.Recording{
		RecordingID: e.File,
		CallID:      e.SessionID,
		SIPCallID:   e.CallID,
		File:        e.File,
		Bytes:       e.Bytes,
		DurationMS:  int64(e.DurationSeconds*1000 + 0.5),
		StartedAt:   e.AnswerTime,
		EndedAt:     e.EndTime,
		Error:       e.Error,
		Kind:        e.Kind,
	}
}

// closeEvents closes the events sink last of the three: recordings still
// finishing and the permission cache's last changes go in before it.
// Closing twice is harmless for each, so the deferred closes in run stay.
func closeEvents(sink *events.Sink, perms permissions.Store, rec *recording.Manager, log *slog.Logger) {
	rec.Close()
	if perms != nil {
		if err := perms.Close(); err != nil {
			log.Error("permission store close", "error", err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := sink.Close(ctx); err != nil {
		log.Error("events store close", "error", err)
	}
}
