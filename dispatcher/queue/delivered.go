package queue

import (
	"context"
	"fmt"
	"time"

	"github.com/artificialstudio/webhook-dispatcher/dispatcher"
)

// deliveredStatus completes st (id and attempt log filled in) for a delivery
// asynq no longer holds and that has no failed record: "delivered" with
// deliveredAt from the store's marker (kept DEDUPE_WINDOW), or else what the
// previous datastore says (Previous, during a migration), or ErrNotFound.
// The webhook and enqueuedAt went with asynq's completed task; the attempts
// are what the log still holds (ATTEMPT_LOG_RETENTION after delivery).
func (s *Service) deliveredStatus(ctx context.Context, st dispatcher.Status) (dispatcher.Status, error) {
	at, ok, err := s.Store.Delivered(ctx, st.ID)
	if err != nil {
		return dispatcher.Status{}, fmt.Errorf("status %s: %w: %w", st.ID, dispatcher.ErrUnavailable, err)
	}
	if !ok {
		return s.previousStatus(ctx, st.ID)
	}
	st.State = dispatcher.StateDelivered
	st.DeliveredAt = timePtr(at)
	return st, nil
}

// redeliverGone answers a redelivery of id that asynq no longer holds and
// that has no failed record: ErrNotFound, saying so when id was delivered
// (its marker exists) but its body went with asynq's completed task after
// RETENTION. Redelivering a delivered delivery needs its body, so it works
// within RETENTION only.
func (s *Service) redeliverGone(ctx context.Context, id string) error {
	at, ok, err := s.Store.Delivered(ctx, id)
	if err != nil {
		return fmt.Errorf("redeliver %s: %w: %w", id, dispatcher.ErrUnavailable, err)
	}
	if ok {
		return fmt.Errorf("redeliver %s: %w: delivered at %s, its body is kept only for RETENTION", id, dispatcher.ErrNotFound, at.Format(time.RFC3339))
	}
	return fmt.Errorf("redeliver %s: %w", id, dispatcher.ErrNotFound)
}
