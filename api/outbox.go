package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"strconv"
	"strings"

	"github.com/wagate/wagate/events"
)

// EventOutbox is what the API needs of the event outbox (*events.Sink
// implements it).
type EventOutbox interface {
	DeadLetters(ctx context.Context, q events.DeadLetterQuery) (events.DeadLetterPage, error)
	Replay(ctx context.Context, eventID, subscriber string) (int, error)
}

// subscriberName is what configs accepts as a subscriber name.
var subscriberName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

type outboxHandlers struct {
	outbox EventOutbox
	log    *slog.Logger
}

func (h *outboxHandlers) register(mux router) {
	mux.HandleFunc("GET /v1/events/dead", h.dead)
	mux.HandleFunc("POST /v1/events/{id}/replay", h.replay)
}

type deadListDoc struct {
	DeadLetters []events.DeadLetter `json:"dead_letters"`
	NextCursor  string              `json:"next_cursor,omitempty"`
}

var deadParams = map[string]bool{"subscriber": true, "cursor": true, "limit": true}

func (h *outboxHandlers) dead(w http.ResponseWriter, r *http.Request) {
	v := r.URL.Query()
	for k, vals := range v {
		switch {
		case !deadParams[k]:
			writeError(w, http.StatusBadRequest, quoteParam(k)+": unknown parameter; use subscriber, cursor or limit")
			return
		case len(vals) > 1:
			writeError(w, http.StatusBadRequest, k+": given more than once")
			return
		}
	}
	var q events.DeadLetterQuery
	if s := v.Get("subscriber"); s != "" {
		if !subscriberName.MatchString(s) {
			writeError(w, http.StatusBadRequest, "subscriber: "+quoteParam(s)+" is not a subscriber name")
			return
		}
		q.Subscriber = s
	}
	var err error
	if q.After, err = events.ParseDeadLetterCursor(v.Get("cursor")); err != nil {
		writeError(w, http.StatusBadRequest, "cursor: "+err.Error()+"; pass next_cursor as it was given")
		return
	}
	if q.Limit, err = intParam(v.Get("limit"), events.DefaultLimit, 1, events.MaxLimit); err != nil {
		writeError(w, http.StatusBadRequest, "limit: "+err.Error())
		return
	}
	page, err := h.outbox.DeadLetters(r.Context(), q)
	if err != nil {
		h.log.Error("dead-letter query failed", "error", err)
		writeError(w, http.StatusInternalServerError, "query failed; see wagate's log")
		return
	}
	writeJSON(w, http.StatusOK, deadListDoc{DeadLetters: page.DeadLetters, NextCursor: page.NextCursor})
}

type replayDoc struct {
	EventID    string `json:"event_id"`
	Subscriber string `json:"subscriber,omitempty"`
	Requeued   int    `json:"requeued"`
}

// replay re-queues an event: ?subscriber=NAME for one subscriber (whatever
// the delivery's state), none for every dead delivery of the event.
func (h *outboxHandlers) replay(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := checkID(id); err != nil {
		writeError(w, http.StatusBadRequest, "event id: "+err.Error())
		return
	}
	v := r.URL.Query()
	for k, vals := range v {
		if k != "subscriber" {
			writeError(w, http.StatusBadRequest, quoteParam(k)+": unknown parameter; use subscriber")
			return
		}
		if len(vals) > 1 {
			writeError(w, http.StatusBadRequest, "subscriber: given more than once")
			return
		}
	}
	sub := v.Get("subscriber")
	if sub != "" && !subscriberName.MatchString(sub) {
		writeError(w, http.StatusBadRequest, "subscriber: "+quoteParam(sub)+" is not a subscriber name")
		return
	}
	n, err := h.outbox.Replay(r.Context(), id, sub)
	var removed *events.RemovedSubscribersError
	switch {
	case errors.As(err, &removed):
		writeError(w, http.StatusConflict, fmt.Sprintf("event %q has dead deliveries only to subscribers no longer configured (%s); "+
			"name a configured subscriber to send it there", id, quoteList(removed.Subscribers)))
	case errors.Is(err, events.ErrNotFound):
		writeError(w, http.StatusNotFound, "no event "+strconv.Quote(id)+" in the outbox (unknown, or pruned after its retention)")
	case errors.Is(err, events.ErrUnknownSubscriber):
		writeError(w, http.StatusBadRequest, "subscriber: "+quoteParam(sub)+" is not configured")
	case errors.Is(err, events.ErrNothingToReplay):
		msg := "event " + strconv.Quote(id) + " has no dead delivery; name a subscriber to send it again"
		if sub != "" {
			msg = fmt.Sprintf("event %q is already queued for %s", id, sub)
		}
		writeError(w, http.StatusConflict, msg)
	case err != nil:
		h.log.Error("replay failed", "event_id", id, "error", err)
		writeError(w, http.StatusInternalServerError, "replay failed; see wagate's log")
	default:
		h.log.Info("event re-queued through the API", "event_id", id, "subscriber", sub, "deliveries", n)
		writeJSON(w, http.StatusOK, replayDoc{EventID: id, Subscriber: sub, Requeued: n})
	}
}

// quoteList quotes names for an error message: "a", "b".
func quoteList(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = strconv.Quote(n)
	}
	return strings.Join(q, ", ")
}
