package api

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/artificialstudio/webhook-dispatcher/dispatcher"
)

// Operations is the operator's side of the queue service (*queue.Service
// satisfies it): listings by state and destination, the backlog at a glance,
// cancellation and filtered bulk redelivery. A Service that does not
// implement it still lists failed deliveries unfiltered; the other operator
// routes then answer 501.
type Operations interface {
	// List pages through deliveries in f.State matching f; errors wrap
	// dispatcher.ErrBadCursor or ErrUnavailable.
	List(ctx context.Context, f dispatcher.Filter, cursor string, limit int) ([]dispatcher.Status, string, error)
	// Stats counts deliveries per state and ranks destinations by backlog;
	// top <= 0 means 10.
	Stats(ctx context.Context, top int) (dispatcher.QueueStats, error)
	// Cancel ends a pending, scheduled or retrying delivery as failed with
	// lastError "cancelled"; errors wrap ErrNotFound, ErrInProgress or
	// ErrUnavailable.
	Cancel(ctx context.Context, id string) error
	// RedeliverFailed redelivers (or with dryRun counts) the failed
	// deliveries matching f's host and failure time.
	RedeliverFailed(ctx context.Context, f dispatcher.Filter, dryRun bool, progress func(done, total int)) (dispatcher.BulkResult, error)
}

// MaxListLimit bounds limit on GET /v1/deliveries.
const MaxListLimit = 1000

func (a *API) operations(w http.ResponseWriter) (Operations, bool) {
	ops, ok := a.Service.(Operations)
	if !ok {
		writeError(w, http.StatusNotImplemented, "not_implemented", "this service does not support operator calls")
	}
	return ops, ok
}

// parseTime reads an optional RFC 3339 time.
func parseTime(name, s string) (time.Time, *apiError) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, &apiError{Status: http.StatusBadRequest, Code: "bad_" + name, Message: name + " must be an RFC 3339 time such as 2024-01-15T00:00:00Z"}
	}
	return t, nil
}

func validState(s dispatcher.State) bool {
	for _, st := range dispatcher.States() {
		if s == st {
			return true
		}
	}
	return false
}

func stateNames() string {
	names := make([]string, 0, len(dispatcher.States()))
	for _, st := range dispatcher.States() {
		names = append(names, string(st))
	}
	return strings.Join(names, ", ")
}

// listDeliveries answers GET /v1/deliveries?state=&host=&since=&limit=&cursor=.
func (a *API) listDeliveries(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := dispatcher.Filter{State: dispatcher.State(q.Get("state")), Host: q.Get("host")}
	if !validState(f.State) {
		writeError(w, http.StatusBadRequest, "bad_state", "state must be one of "+stateNames())
		return
	}
	var e *apiError
	if f.Since, e = parseTime("since", q.Get("since")); e != nil {
		writeAPIError(w, e)
		return
	}
	limit := 50
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxListLimit {
			writeError(w, http.StatusBadRequest, "bad_limit", "limit must be a number from 1 to "+strconv.Itoa(MaxListLimit))
			return
		}
		limit = n
	}
	var (
		list []dispatcher.Status
		next string
		err  error
	)
	if ops, ok := a.Service.(Operations); ok {
		list, next, err = ops.List(r.Context(), f, q.Get("cursor"), limit)
	} else if f == (dispatcher.Filter{State: dispatcher.StateFailed}) {
		list, next, err = a.Service.ListFailed(r.Context(), q.Get("cursor"), limit)
	} else {
		writeError(w, http.StatusNotImplemented, "not_implemented", "this service lists failed deliveries only, unfiltered")
		return
	}
	if err != nil {
		if errors.Is(err, dispatcher.ErrBadCursor) {
			writeError(w, http.StatusBadRequest, "bad_cursor", err.Error())
			return
		}
		a.writeServiceError(w, err)
		return
	}
	if list == nil {
		list = []dispatcher.Status{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"deliveries": list, "nextCursor": next})
}

// queueStats answers GET /v1/queue?top=N.
func (a *API) queueStats(w http.ResponseWriter, r *http.Request) {
	ops, ok := a.operations(w)
	if !ok {
		return
	}
	top := 10
	if s := r.URL.Query().Get("top"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 100 {
			writeError(w, http.StatusBadRequest, "bad_top", "top must be a number from 1 to 100")
			return
		}
		top = n
	}
	st, err := ops.Stats(r.Context(), top)
	if err != nil {
		a.writeServiceError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

// cancelOne answers POST /v1/deliveries/{id}/cancel.
func (a *API) cancelOne(w http.ResponseWriter, r *http.Request) {
	ops, ok := a.operations(w)
	if !ok {
		return
	}
	id := r.PathValue("id")
	err := ops.Cancel(r.Context(), id)
	switch {
	case err == nil:
	case errors.Is(err, dispatcher.ErrInProgress):
		writeError(w, http.StatusConflict, "not_cancellable", "only pending, scheduled or retrying deliveries can be cancelled: "+err.Error())
		return
	default:
		a.writeServiceError(w, err)
		return
	}
	a.log().Info("delivery cancelled", "delivery_id", id)
	writeJSON(w, http.StatusOK, map[string]any{"id": id, "state": dispatcher.StateFailed, "lastError": dispatcher.ReasonCancelled})
}

// redeliverBulk answers POST /v1/deliveries/redeliver
// {"state":"failed","host","since","until","dryRun"}.
func (a *API) redeliverBulk(w http.ResponseWriter, r *http.Request) {
	var req struct {
		State  dispatcher.State `json:"state"`
		Host   string           `json:"host"`
		Since  string           `json:"since"`
		Until  string           `json:"until"`
		DryRun bool             `json:"dryRun"`
	}
	if e := readJSON(w, r, MaxRequestBytes, &req); e != nil {
		writeAPIError(w, e)
		return
	}
	if req.State != dispatcher.StateFailed {
		writeError(w, http.StatusBadRequest, "bad_state", "state must be \"failed\"")
		return
	}
	f := dispatcher.Filter{Host: req.Host}
	var e *apiError
	if f.Since, e = parseTime("since", req.Since); e != nil {
		writeAPIError(w, e)
		return
	}
	if f.Until, e = parseTime("until", req.Until); e != nil {
		writeAPIError(w, e)
		return
	}
	var (
		res dispatcher.BulkResult
		err error
	)
	if ops, ok := a.Service.(Operations); ok {
		res, err = ops.RedeliverFailed(r.Context(), f, req.DryRun, nil)
	} else if f.Host == "" && f.Until.IsZero() && !req.DryRun {
		res.Done, err = a.Service.RedeliverFailedSince(r.Context(), f.Since)
		res.Matched = res.Done
	} else {
		writeError(w, http.StatusNotImplemented, "not_implemented", "this service redelivers by since only")
		return
	}
	if a.Metrics != nil && res.Done > 0 {
		a.Metrics.Redelivered(res.Done)
	}
	body := map[string]any{"queued": res.Done, "matched": res.Matched, "skipped": res.Skipped, "dryRun": res.DryRun}
	if err != nil {
		a.log().Warn("bulk redelivery stopped", "queued", res.Done, "error", err)
		body["error"], body["code"] = "stopped early: queue unavailable; run again to continue", "unavailable"
		writeJSON(w, http.StatusServiceUnavailable, body)
		return
	}
	a.log().Info("bulk redelivery", "queued", res.Done, "matched", res.Matched, "skipped", res.Skipped, "dry_run", res.DryRun)
	writeJSON(w, http.StatusOK, body)
}
