package worker

import (
	"context"
	"time"
)

// markerWait bounds how long a handler keeps trying to write a delivered
// marker while Redis refuses writes. Without the marker the id is reserved
// and answerable only for asynq's RETENTION, not DEDUPE_WINDOW.
const markerWait = 5 * time.Second

// markDelivered writes id's delivered marker (store.MarkDelivered), trying
// again every 200 ms for up to markerWait; a shutdown does not cut it. A
// marker that cannot be written is logged, and the task still completes: the
// receiver has its 200.
func (h *Handler) markDelivered(ctx context.Context, id string, at time.Time) {
	if h.Store == nil {
		return
	}
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), markerWait)
	defer cancel()
	for {
		actx, cancelTry := context.WithTimeout(wctx, 2*time.Second)
		err := h.Store.MarkDelivered(actx, id, at)
		cancelTry()
		if err == nil {
			return
		}
		select {
		case <-wctx.Done():
			h.log().ErrorContext(ctx, "cannot write delivered marker; the id stays reserved only while asynq keeps the completed task", keyDeliveryID, id, "error", err)
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
}
