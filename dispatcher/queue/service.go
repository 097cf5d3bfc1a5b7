// Package queue is the enqueue side of the dispatcher and the operator's view
// of it: enqueue, status, listing and redelivery, over asynq's Client and
// Inspector and the store. It is the only package that knows queue names
// (Layout: Names, Route), so sharding deliveries over several queues is a
// change to Layout alone.
//
// It may not speak HTTP and does not deliver webhooks.
package queue

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hibiken/asynq"

	"github.com/artificialstudio/webhook-dispatcher/dispatcher"
	"github.com/artificialstudio/webhook-dispatcher/dispatcher/store"
	"github.com/artificialstudio/webhook-dispatcher/schedule"
)

// DefaultRetention is how long asynq keeps a delivered delivery's completed
// task (~1.1 KB with its body): what GET shows in full and what Redeliver
// takes the body from. After it, the store's delivered marker answers GET
// ("delivered", deliveredAt) and keeps the id reserved for DEDUPE_WINDOW.
const DefaultRetention = time.Hour

// Service is the queue-facing side shared by the API and the CLI: enqueue,
// inspect, redeliver. Client, Inspector and Store are required.
type Service struct {
	Client    *asynq.Client
	Inspector *asynq.Inspector
	Store     *store.Store
	Layout    Layout            // the datastore's queues and key tags; zero is the single queue
	Retention time.Duration     // completed tasks; 0 means DefaultRetention
	Schedule  schedule.Schedule // for nextAttemptAt; zero means Production
	// TaskTimeout is asynq's own backstop per attempt (whole seconds); the
	// worker enforces the real per-attempt timeout on the HTTP exchange.
	TaskTimeout time.Duration
	// EnqueueTimeout bounds one enqueue so a slow Redis gets a 503, not a
	// hanging caller; 0 means 3s.
	EnqueueTimeout time.Duration
	// MinReplicas, when positive, makes Enqueue wait (Redis WAIT, at most
	// ReplicaWaitTimeout) until that many replicas hold the new task before
	// it reports success; fewer is ErrUnavailable, although the primary may
	// hold the task (a resend then reports ErrDuplicate, again only once
	// replicated). 0 reports success as soon as the primary holds the task:
	// replication is asynchronous, so a failover right after can lose it.
	MinReplicas int
	// Previous, when set, is the datastore being migrated from
	// (PREVIOUS_REDIS_URL): Enqueue also refuses ids it holds, and Status
	// answers from it for ids this datastore does not know.
	Previous Previous
	// Unsafe, when set, is asked by Ping: a non-nil answer (Redis may evict
	// accepted deliveries) makes the service not ready.
	Unsafe func() error
}

// ReplicaWaitTimeout is the longest Enqueue waits for replicas (MinReplicas).
const ReplicaWaitTimeout = time.Second

func (s *Service) schedule() schedule.Schedule {
	if s.Schedule == (schedule.Schedule{}) {
		return schedule.Production
	}
	return s.Schedule
}

// Enqueue stores d durably, and d.Secret (if any) in the store first. It
// returns nil only once Redis holds the task,
// dispatcher.ErrDuplicate when a delivery with the same id exists (queued, retrying,
// delivered within the retention, or failed), and dispatcher.ErrUnavailable otherwise.
// A failed delivery's id stays reserved while its failed record exists
// (store.Reserved), whether or not asynq's archive still holds the task.
// With Previous set, an id the previous datastore holds is a duplicate too,
// and one it cannot be asked about is ErrUnavailable.
func (s *Service) Enqueue(ctx context.Context, d dispatcher.Delivery) error {
	// One deadline for the reservation check and the enqueue: a stalled
	// Redis gets the caller a 503 within EnqueueTimeout, not go-redis's own
	// read timeouts and retries.
	ctx, cancel := context.WithTimeout(ctx, s.enqueueTimeout())
	defer cancel()
	reserved, err := s.Store.Reserved(ctx, d.ID)
	if err != nil {
		return fmt.Errorf("enqueue %s: %w: %w", d.ID, dispatcher.ErrUnavailable, err)
	}
	if reserved {
		return fmt.Errorf("enqueue %s: %w", d.ID, dispatcher.ErrDuplicate)
	}
	if err := s.checkPrevious(ctx, d.ID); err != nil {
		return err
	}
	return s.enqueue(ctx, d)
}

// enqueue stores d without looking at the store's reservations (Redeliver
// queues a delivery whose failed record it clears afterwards).
func (s *Service) enqueue(ctx context.Context, d dispatcher.Delivery) error {
	ctx, cancel := context.WithTimeout(ctx, s.enqueueTimeout())
	defer cancel()
	conflict, err := s.put(ctx, d)
	if err != nil {
		return err
	}
	// A resend after a 503 may find what the first try stored (conflict):
	// it is a duplicate only once that is as durable as an acceptance.
	if err := s.waitReplicas(ctx, d.ID); err != nil {
		return fmt.Errorf("enqueue %s: %w: %w", d.ID, dispatcher.ErrUnavailable, err)
	}
	if conflict {
		return fmt.Errorf("enqueue %s: %w", d.ID, dispatcher.ErrDuplicate)
	}
	return nil
}

// put stores d.Secret (if any) and then d's task, without waiting for
// replicas; conflict reports that asynq already holds a task with d's id.
// Errors wrap dispatcher.ErrUnavailable (or are d's own encoding error).
func (s *Service) put(ctx context.Context, d dispatcher.Delivery) (conflict bool, err error) {
	if d.EnqueuedAt.IsZero() {
		d.EnqueuedAt = time.Now().UTC()
	}
	task, err := dispatcher.NewTask(d)
	if err != nil {
		return false, err
	}
	if !d.Secret.IsZero() {
		// Before the task, so no worker finds a signed task without its
		// secret. A resend of the id (409) replaces it: the newest secret
		// the caller gave is the one the receiver holds.
		if err := s.Store.SetSecret(ctx, d.ID, d.Secret); err != nil {
			return false, fmt.Errorf("enqueue %s: %w: %w", d.ID, dispatcher.ErrUnavailable, err)
		}
	}
	_, err = s.Client.EnqueueContext(ctx, task, s.options(d.ID)...)
	switch {
	case err == nil:
		return false, nil
	case errors.Is(err, asynq.ErrTaskIDConflict):
		return true, nil
	default:
		return false, fmt.Errorf("enqueue %s: %w: %w", d.ID, dispatcher.ErrUnavailable, err)
	}
}

// enqueueTimeout is EnqueueTimeout, 3 s when zero.
func (s *Service) enqueueTimeout() time.Duration {
	if s.EnqueueTimeout <= 0 {
		return 3 * time.Second
	}
	return s.EnqueueTimeout
}

// waitReplicas returns nil once MinReplicas replicas of the primary holding
// id's task hold every write made to it so far (see store.WaitReplicasFor).
func (s *Service) waitReplicas(ctx context.Context, id string) error {
	return s.Store.WaitReplicasFor(ctx, id, s.MinReplicas, ReplicaWaitTimeout)
}

func (s *Service) options(id string) []asynq.Option {
	retention := s.Retention
	if retention <= 0 {
		retention = DefaultRetention
	}
	taskTimeout := s.TaskTimeout
	if taskTimeout < time.Minute {
		taskTimeout = time.Minute
	}
	return []asynq.Option{
		asynq.TaskID(id),
		asynq.Queue(s.Layout.Route(id)),
		asynq.MaxRetry(schedule.Steps),
		asynq.Retention(retention),
		asynq.Timeout(taskTimeout),
	}
}

// Status reports the delivery with id, from asynq's task state and the attempt
// log, or from the failed record once asynq's archive has trimmed the task, or
// from the delivered marker once asynq's retention has dropped the completed
// task (see deliveredStatus).
func (s *Service) Status(ctx context.Context, id string) (dispatcher.Status, error) {
	info, infoErr := s.Inspector.GetTaskInfo(s.Layout.Route(id), id)
	if infoErr != nil && !isNotFound(infoErr) {
		return dispatcher.Status{}, fmt.Errorf("status %s: %w: %w", id, dispatcher.ErrUnavailable, infoErr)
	}
	attempts, err := s.Store.Attempts(ctx, id)
	if err != nil {
		return dispatcher.Status{}, fmt.Errorf("status %s: %w: %w", id, dispatcher.ErrUnavailable, err)
	}
	st := dispatcher.Status{ID: id, Attempts: attempts, AttemptCount: len(attempts)}
	if infoErr != nil { // not in asynq: a failed delivery trimmed from the archive, or unknown
		rec, ok, err := s.Store.Failed(ctx, id)
		if err != nil {
			return dispatcher.Status{}, fmt.Errorf("status %s: %w: %w", id, dispatcher.ErrUnavailable, err)
		}
		if !ok {
			return s.deliveredStatus(ctx, st)
		}
		st.State = dispatcher.StateFailed
		st.Webhook = rec.Webhook
		st.EnqueuedAt = timePtr(rec.EnqueuedAt)
		st.FailedAt = timePtr(rec.FailedAt)
		st.LastError = rec.LastError
		return st, nil
	}

	if d, err := dispatcher.DecodeTask(info.Payload); err == nil {
		st.Webhook = d.Webhook
		st.EnqueuedAt = timePtr(d.EnqueuedAt)
	}
	st.LastError = info.LastErr
	switch info.State {
	case asynq.TaskStatePending, asynq.TaskStateAggregating:
		st.State = dispatcher.StatePending
		st.NextAttemptAt = timePtr(time.Now().UTC())
	case asynq.TaskStateActive:
		st.State = dispatcher.StateActive
	case asynq.TaskStateScheduled:
		st.State = dispatcher.StateScheduled
		st.NextAttemptAt = timePtr(info.NextProcessAt)
	case asynq.TaskStateRetry:
		st.State = dispatcher.StateRetrying
		st.NextAttemptAt = timePtr(s.nextAttempt(info, attempts))
	case asynq.TaskStateCompleted:
		st.State = dispatcher.StateDelivered
		st.LastError = ""
		st.DeliveredAt = timePtr(deliveredAt(info, attempts))
	case asynq.TaskStateArchived:
		st.State = dispatcher.StateFailed
		st.FailedAt = timePtr(info.LastFailedAt)
		if rec, ok, err := s.Store.Failed(ctx, id); err == nil && ok {
			st.FailedAt = timePtr(rec.FailedAt)
			st.LastError = rec.LastError
		}
	default:
		st.State = dispatcher.State(info.State.String())
	}
	return st, nil
}

// nextAttempt is the nominal time of the next retry (schedule.Next from the
// end of the last failed attempt); asynq's own due time is truncated to the
// second and is the fallback when the attempt log has nothing to go on.
func (s *Service) nextAttempt(info *asynq.TaskInfo, attempts []dispatcher.Attempt) time.Time {
	if n := len(attempts); n > 0 && attempts[n-1].Outcome != dispatcher.OutcomeDelivered {
		if t, ok := s.schedule().Next(attempts[n-1].EndedAt, info.Retried); ok {
			return t.UTC()
		}
	}
	return info.NextProcessAt
}

// ListFailed lists failed deliveries, newest first.
func (s *Service) ListFailed(ctx context.Context, cursor string, limit int) ([]dispatcher.Status, string, error) {
	recs, next, err := s.Store.ListFailed(ctx, cursor, limit)
	if err != nil {
		if errors.Is(err, dispatcher.ErrBadCursor) {
			return nil, "", err
		}
		return nil, "", fmt.Errorf("%w: %w", dispatcher.ErrUnavailable, err)
	}
	out := make([]dispatcher.Status, 0, len(recs))
	for _, r := range recs {
		out = append(out, dispatcher.Status{
			ID: r.ID, State: dispatcher.StateFailed, Webhook: r.Webhook,
			EnqueuedAt: timePtr(r.EnqueuedAt), FailedAt: timePtr(r.FailedAt), LastError: r.LastError,
		})
	}
	return out, next, nil
}

// Redeliver puts a failed or delivered delivery back in the queue for a fresh
// cycle of attempts with the same body bytes. asynq's RunTask would keep the
// retry count (one attempt, then straight back to the archive), so the old task
// is deleted and a new one with the same id is enqueued. The failed record is
// cleared only once the new task is stored, so a crash in between loses nothing.
func (s *Service) Redeliver(ctx context.Context, id string) error {
	info, err := s.Inspector.GetTaskInfo(s.Layout.Route(id), id)
	var d dispatcher.Delivery
	switch {
	case err != nil && !isNotFound(err):
		return fmt.Errorf("redeliver %s: %w: %w", id, dispatcher.ErrUnavailable, err)
	case err == nil:
		switch info.State {
		case asynq.TaskStateArchived, asynq.TaskStateCompleted:
		default:
			return fmt.Errorf("redeliver %s: %w (%s)", id, dispatcher.ErrInProgress, info.State)
		}
		if d, err = dispatcher.DecodeTask(info.Payload); err != nil {
			return fmt.Errorf("redeliver %s: %w", id, err)
		}
		if info.State == asynq.TaskStateArchived {
			// Make sure the failed record exists before the archived copy goes.
			if _, ok, _ := s.Store.Failed(ctx, id); !ok {
				rec := dispatcher.FailedRecord{Delivery: d, FailedAt: info.LastFailedAt, LastError: info.LastErr}
				if err := s.Store.MarkFailed(ctx, rec); err != nil {
					return fmt.Errorf("redeliver %s: %w: %w", id, dispatcher.ErrUnavailable, err)
				}
			}
		}
		if err := s.Inspector.DeleteTask(s.Layout.Route(id), id); err != nil && !isNotFound(err) {
			return fmt.Errorf("redeliver %s: %w: %w", id, dispatcher.ErrUnavailable, err)
		}
	default: // trimmed from asynq's archive: the failed record has the body
		rec, ok, err := s.Store.Failed(ctx, id)
		if err != nil {
			return fmt.Errorf("redeliver %s: %w: %w", id, dispatcher.ErrUnavailable, err)
		}
		if !ok {
			return s.redeliverGone(ctx, id)
		}
		d = rec.Delivery
	}
	d.EnqueuedAt = time.Now().UTC()
	if err := s.enqueue(ctx, d); err != nil {
		return err
	}
	if err := s.Store.ClearFailed(ctx, id); err != nil {
		return fmt.Errorf("redeliver %s: %w: %w", id, dispatcher.ErrUnavailable, err)
	}
	return nil
}

// RedeliverFailedSince redelivers every delivery that failed at or after
// since and reports how many were queued. It stops at the first error other
// than a delivery that is already back in progress.
func (s *Service) RedeliverFailedSince(ctx context.Context, since time.Time) (int, error) {
	ids, err := s.Store.FailedSince(ctx, since)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", dispatcher.ErrUnavailable, err)
	}
	n := 0
	for _, id := range ids {
		err := s.Redeliver(ctx, id)
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

// Ping checks that Unsafe (when set) has no objection and that Redis takes
// writes in every shard's slot (store.Ready): what an enqueue needs, where a
// PING alone answers on a read-only or half-failed Redis.
func (s *Service) Ping(ctx context.Context) error {
	if s.Unsafe != nil {
		if err := s.Unsafe(); err != nil {
			return err
		}
	}
	return s.Store.Ready(ctx, nil)
}

func isNotFound(err error) bool {
	return errors.Is(err, asynq.ErrTaskNotFound) || errors.Is(err, asynq.ErrQueueNotFound)
}

// deliveredAt is the end of the attempt log's last delivered entry (with
// milliseconds); asynq's CompletedAt, whole seconds, is the fallback.
func deliveredAt(info *asynq.TaskInfo, attempts []dispatcher.Attempt) time.Time {
	for i := len(attempts) - 1; i >= 0; i-- {
		if attempts[i].Outcome == dispatcher.OutcomeDelivered {
			return attempts[i].EndedAt
		}
	}
	return info.CompletedAt
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}
