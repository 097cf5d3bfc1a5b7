package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/artificialstudio/webhook-dispatcher/dispatcher"
)

// batchRequest is the body of POST /v1/deliveries/batch. Its maxItems is
// MaxBatchItems (a tag cannot name the constant; TestBatchRequestLimit holds
// them equal): strictjson refuses a longer list before decoding any item.
type batchRequest struct {
	Deliveries []json.RawMessage `json:"deliveries" strictjson:"maxItems=500"`
}

// BatchService is what a Service may add for the batch endpoint: every
// delivery of a batch enqueued in one call, with fewer Redis round trips
// than an Enqueue each (*queue.Service.EnqueueBatch). errs[i] answers ds[i]
// as Enqueue would (nil, or wrapping dispatcher.ErrDuplicate or
// ErrUnavailable). A Service without it gets one Enqueue per item.
type BatchService interface {
	EnqueueBatch(ctx context.Context, ds []dispatcher.Delivery) (errs []error)
}

// enqueueMany enqueues deliveries[i] for each i of todo through bs and
// writes each answer to results[i]. Unavailable items are logged once per
// batch (with the first error), not once each.
func (a *API) enqueueMany(ctx context.Context, bs BatchService, deliveries []dispatcher.Delivery, todo []int, results []BatchResult) {
	if len(todo) == 0 {
		return
	}
	ds := make([]dispatcher.Delivery, len(todo))
	for k, i := range todo {
		ds[k] = deliveries[i]
	}
	errs := bs.EnqueueBatch(ctx, ds)
	var (
		firstErr    error
		firstID     string
		unavailable int
	)
	for k, i := range todo {
		d := ds[k]
		err := dispatcher.ErrUnavailable // an answer missing is not an acceptance
		if k < len(errs) {
			err = errs[k]
		}
		switch {
		case err == nil:
			a.count(dispatcher.ResultAccepted)
			results[i] = BatchResult{ID: d.ID, Status: http.StatusAccepted, State: dispatcher.StatePending}
		case errors.Is(err, dispatcher.ErrDuplicate):
			_, e := a.answer(d, err)
			results[i] = resultFromError(e)
			results[i].ID = d.ID
		default:
			a.count(dispatcher.ResultUnavailable)
			if firstErr == nil {
				firstErr, firstID = err, d.ID
			}
			unavailable++
			results[i] = BatchResult{ID: d.ID, Status: http.StatusServiceUnavailable, Code: "unavailable",
				Error: "queue unavailable or too slow: the delivery may not have been stored; send it again (409 then means it was)"}
		}
	}
	if firstErr != nil {
		a.log().Warn("batch enqueue failed", "items", unavailable, "delivery_id", firstID, "error", firstErr)
	}
}
