package queue

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hibiken/asynq"

	"github.com/artificialstudio/webhook-dispatcher/dispatcher"
)

// Delete forgets a delivery that is over: a failed one (its failed record,
// asynq's archived task, its attempt log) or a delivered one (asynq's
// completed task while RETENTION lasts, its attempt log and its delivered
// marker). Its id is free afterwards. It returns
// dispatcher.ErrInProgress while the delivery is pending, scheduled, active
// or retrying, and dispatcher.ErrNotFound for an unknown id.
func (s *Service) Delete(ctx context.Context, id string) error {
	info, err := s.Inspector.GetTaskInfo(s.Layout.Route(id), id)
	switch {
	case err != nil && !isNotFound(err):
		return fmt.Errorf("delete %s: %w: %w", id, dispatcher.ErrUnavailable, err)
	case err == nil:
		if info.State != asynq.TaskStateArchived && info.State != asynq.TaskStateCompleted {
			return fmt.Errorf("delete %s: %w (%s)", id, dispatcher.ErrInProgress, info.State)
		}
		// asynq's task first: a crash before the store's records go leaves a
		// failed record (listed, redeliverable), never an unlisted task.
		if err := s.Inspector.DeleteTask(s.Layout.Route(id), id); err != nil && !isNotFound(err) {
			return fmt.Errorf("delete %s: %w: %w", id, dispatcher.ErrUnavailable, err)
		}
	default: // a failed record, or a delivered marker after RETENTION
		if ok, err := s.Store.Reserved(ctx, id); err != nil {
			return fmt.Errorf("delete %s: %w: %w", id, dispatcher.ErrUnavailable, err)
		} else if !ok {
			return fmt.Errorf("delete %s: %w", id, dispatcher.ErrNotFound)
		}
	}
	if err := s.Store.Forget(ctx, id); err != nil {
		return fmt.Errorf("delete %s: %w: %w", id, dispatcher.ErrUnavailable, err)
	}
	return nil
}

// PurgeFailed deletes every failed delivery that failed before before (see
// Delete) and reports how many; with dryRun it only counts them. A failed
// record whose delivery is back in progress (a redelivery cut short) is
// skipped. FAILED_RETENTION and `dispatcher deliveries purge` both use it.
func (s *Service) PurgeFailed(ctx context.Context, before time.Time, dryRun bool) (int, error) {
	ids, err := s.Store.FailedBefore(ctx, before, 0)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", dispatcher.ErrUnavailable, err)
	}
	n := 0
	for _, id := range ids {
		if dryRun {
			info, err := s.Inspector.GetTaskInfo(s.Layout.Route(id), id)
			if err == nil && info.State != asynq.TaskStateArchived && info.State != asynq.TaskStateCompleted {
				continue
			}
			n++
			continue
		}
		err := s.Delete(ctx, id)
		switch {
		case err == nil:
			n++
		case errors.Is(err, dispatcher.ErrInProgress), errors.Is(err, dispatcher.ErrNotFound):
		default:
			return n, err
		}
	}
	return n, nil
}
