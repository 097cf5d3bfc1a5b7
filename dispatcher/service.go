package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hibiken/asynq"

	"github.com/artificialstudio/webhook-dispatcher/schedule"
)

// Errors the service returns; the API maps them to status codes.
var (
	ErrDuplicate   = errors.New("dispatcher: delivery already exists")    // 409
	ErrUnavailable = errors.New("dispatcher: queue unavailable")          // 503
	ErrNotFound    = errors.New("dispatcher: delivery not found")         // 404
	ErrInProgress  = errors.New("dispatcher: delivery still in progress") // 409
)

// States of a delivery as the API reports them.
const (
	StatePending   = "pending"
	StateScheduled = "scheduled"
	StateActive    = "active"
	StateRetrying  = "retrying"
	StateDelivered = "delivered"
	StateFailed    = "failed"
)

// DefaultRetention is how long a delivered delivery stays queryable (and its
// id reserved against duplicates).
const DefaultRetention = 7 * 24 * time.Hour

// Service is the queue-facing side shared by the API and the CLI: enqueue,
// inspect, redeliver. Client, Inspector and Store are required.
type Service struct {
	Client    *asynq.Client
	Inspector *asynq.Inspector
	Store     *Store
	Queue     string            // "" means DefaultQueue
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
}

// ReplicaWaitTimeout is the longest Enqueue waits for replicas (MinReplicas).
const ReplicaWaitTimeout = time.Second

func (s *Service) queue() string {
	if s.Queue == "" {
		return DefaultQueue
	}
	return s.Queue
}

func (s *Service) schedule() schedule.Schedule {
	if s.Schedule == (schedule.Schedule{}) {
		return schedule.Production
	}
	return s.Schedule
}

// Enqueue stores d durably. It returns nil only once Redis holds the task,
// ErrDuplicate when a delivery with the same id exists (queued, retrying,
// delivered within the retention, or failed), and ErrUnavailable otherwise.
func (s *Service) Enqueue(ctx context.Context, d Delivery) error {
	if d.EnqueuedAt.IsZero() {
		d.EnqueuedAt = time.Now().UTC()
	}
	task, err := newTask(d)
	if err != nil {
		return err
	}
	timeout := s.EnqueueTimeout
	if timeout <= 0 {
		timeout = 3 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	_, err = s.Client.EnqueueContext(ctx, task, s.options(d.ID)...)
	switch {
	case err == nil:
		if err := s.waitReplicas(ctx); err != nil {
			return fmt.Errorf("enqueue %s: %w: %w", d.ID, ErrUnavailable, err)
		}
		return nil
	case errors.Is(err, asynq.ErrTaskIDConflict):
		// A resend after a 503 may find what the first try stored: it is a
		// duplicate only once that is as durable as an acceptance.
		if err := s.waitReplicas(ctx); err != nil {
			return fmt.Errorf("enqueue %s: %w: %w", d.ID, ErrUnavailable, err)
		}
		return fmt.Errorf("enqueue %s: %w", d.ID, ErrDuplicate)
	default:
		return fmt.Errorf("enqueue %s: %w: %w", d.ID, ErrUnavailable, err)
	}
}

// waitReplicas returns nil once MinReplicas replicas hold every write made so
// far. WAIT only counts its own connection's writes, and asynq's enqueue ran
// on a connection of its choosing, so the WAIT follows a write of its own on
// one pipelined connection: that write comes after the task in the
// replication stream, and a replica that acknowledges it holds the task.
func (s *Service) waitReplicas(ctx context.Context) error {
	if s.MinReplicas <= 0 {
		return nil
	}
	timeout := ReplicaWaitTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(dl))
	}
	if timeout < time.Millisecond { // WAIT n 0 would block for ever
		return fmt.Errorf("wait for replicas: %w", context.DeadlineExceeded)
	}
	pipe := s.Store.rdb.Pipeline()
	pipe.Incr(ctx, s.Store.prefix+"replication-barrier")
	acked := pipe.Do(ctx, "WAIT", s.MinReplicas, timeout.Milliseconds())
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("wait for replicas: %w", err)
	}
	if n, err := acked.Int64(); err != nil || n < int64(s.MinReplicas) {
		return fmt.Errorf("wait for replicas: %d of %d acknowledged within %s", n, s.MinReplicas, timeout)
	}
	return nil
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
		asynq.Queue(s.queue()),
		asynq.MaxRetry(schedule.Steps),
		asynq.Retention(retention),
		asynq.Timeout(taskTimeout),
	}
}

// Status is what the API reports about one delivery.
type Status struct {
	ID            string     `json:"id"`
	State         string     `json:"state"`
	Webhook       string     `json:"webhook,omitempty"`
	EnqueuedAt    *time.Time `json:"enqueuedAt,omitempty"`
	AttemptCount  int        `json:"attemptCount"`
	NextAttemptAt *time.Time `json:"nextAttemptAt"`
	DeliveredAt   *time.Time `json:"deliveredAt,omitempty"`
	FailedAt      *time.Time `json:"failedAt"`
	LastError     string     `json:"lastError,omitempty"`
	Attempts      []Attempt  `json:"attempts"`
}

// Status reports the delivery with id, from asynq's task state and the attempt
// log, or from the failed record once asynq's archive has trimmed the task.
func (s *Service) Status(ctx context.Context, id string) (Status, error) {
	info, infoErr := s.Inspector.GetTaskInfo(s.queue(), id)
	if infoErr != nil && !isNotFound(infoErr) {
		return Status{}, fmt.Errorf("status %s: %w: %w", id, ErrUnavailable, infoErr)
	}
	attempts, err := s.Store.Attempts(ctx, id)
	if err != nil {
		return Status{}, fmt.Errorf("status %s: %w: %w", id, ErrUnavailable, err)
	}
	st := Status{ID: id, Attempts: attempts, AttemptCount: len(attempts)}
	if infoErr != nil { // not in asynq: a failed delivery trimmed from the archive, or unknown
		rec, ok, err := s.Store.Failed(ctx, id)
		if err != nil {
			return Status{}, fmt.Errorf("status %s: %w: %w", id, ErrUnavailable, err)
		}
		if !ok {
			return Status{}, fmt.Errorf("status %s: %w", id, ErrNotFound)
		}
		st.State = StateFailed
		st.Webhook = rec.Webhook
		st.EnqueuedAt = timePtr(rec.EnqueuedAt)
		st.FailedAt = timePtr(rec.FailedAt)
		st.LastError = rec.LastError
		return st, nil
	}

	if d, err := decodeTask(info.Payload); err == nil {
		st.Webhook = d.Webhook
		st.EnqueuedAt = timePtr(d.EnqueuedAt)
	}
	st.LastError = info.LastErr
	switch info.State {
	case asynq.TaskStatePending, asynq.TaskStateAggregating:
		st.State = StatePending
		st.NextAttemptAt = timePtr(time.Now().UTC())
	case asynq.TaskStateActive:
		st.State = StateActive
	case asynq.TaskStateScheduled:
		st.State = StateScheduled
		st.NextAttemptAt = timePtr(info.NextProcessAt)
	case asynq.TaskStateRetry:
		st.State = StateRetrying
		st.NextAttemptAt = timePtr(s.nextAttempt(info, attempts))
	case asynq.TaskStateCompleted:
		st.State = StateDelivered
		st.LastError = ""
		st.DeliveredAt = timePtr(info.CompletedAt)
	case asynq.TaskStateArchived:
		st.State = StateFailed
		st.FailedAt = timePtr(info.LastFailedAt)
		if rec, ok, err := s.Store.Failed(ctx, id); err == nil && ok {
			st.FailedAt = timePtr(rec.FailedAt)
			st.LastError = rec.LastError
		}
	default:
		st.State = info.State.String()
	}
	return st, nil
}

// nextAttempt is the nominal time of the next retry: the end of the last
// failed attempt plus the step. asynq's own due time is truncated to the second.
func (s *Service) nextAttempt(info *asynq.TaskInfo, attempts []Attempt) time.Time {
	if n := len(attempts); n > 0 && info.Retried > 0 {
		if step, ok := s.schedule().Delay(info.Retried - 1); ok && attempts[n-1].Outcome != OutcomeDelivered {
			return attempts[n-1].EndedAt.Add(step).UTC()
		}
	}
	return info.NextProcessAt
}

// ListFailed lists failed deliveries, newest first.
func (s *Service) ListFailed(ctx context.Context, cursor string, limit int) ([]Status, string, error) {
	recs, next, err := s.Store.ListFailed(ctx, cursor, limit)
	if err != nil {
		if errors.Is(err, ErrBadCursor) {
			return nil, "", err
		}
		return nil, "", fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	out := make([]Status, 0, len(recs))
	for _, r := range recs {
		out = append(out, Status{
			ID: r.ID, State: StateFailed, Webhook: r.Webhook,
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
	info, err := s.Inspector.GetTaskInfo(s.queue(), id)
	var d Delivery
	switch {
	case err != nil && !isNotFound(err):
		return fmt.Errorf("redeliver %s: %w: %w", id, ErrUnavailable, err)
	case err == nil:
		switch info.State {
		case asynq.TaskStateArchived, asynq.TaskStateCompleted:
		default:
			return fmt.Errorf("redeliver %s: %w (%s)", id, ErrInProgress, info.State)
		}
		if d, err = decodeTask(info.Payload); err != nil {
			return fmt.Errorf("redeliver %s: %w", id, err)
		}
		if info.State == asynq.TaskStateArchived {
			// Make sure the failed record exists before the archived copy goes.
			if _, ok, _ := s.Store.Failed(ctx, id); !ok {
				rec := FailedRecord{Delivery: d, FailedAt: info.LastFailedAt, LastError: info.LastErr}
				if err := s.Store.MarkFailed(ctx, rec); err != nil {
					return fmt.Errorf("redeliver %s: %w: %w", id, ErrUnavailable, err)
				}
			}
		}
		if err := s.Inspector.DeleteTask(s.queue(), id); err != nil && !isNotFound(err) {
			return fmt.Errorf("redeliver %s: %w: %w", id, ErrUnavailable, err)
		}
	default: // trimmed from asynq's archive: the failed record has the body
		rec, ok, err := s.Store.Failed(ctx, id)
		if err != nil {
			return fmt.Errorf("redeliver %s: %w: %w", id, ErrUnavailable, err)
		}
		if !ok {
			return fmt.Errorf("redeliver %s: %w", id, ErrNotFound)
		}
		d = rec.Delivery
	}
	d.EnqueuedAt = time.Now().UTC()
	if err := s.Enqueue(ctx, d); err != nil {
		return err
	}
	if err := s.Store.ClearFailed(ctx, id); err != nil {
		return fmt.Errorf("redeliver %s: %w: %w", id, ErrUnavailable, err)
	}
	return nil
}

// RedeliverFailedSince redelivers every delivery that failed at or after
// since and reports how many were queued. It stops at the first error other
// than a delivery that is already back in progress.
func (s *Service) RedeliverFailedSince(ctx context.Context, since time.Time) (int, error) {
	ids, err := s.Store.FailedSince(ctx, since)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	n := 0
	for _, id := range ids {
		err := s.Redeliver(ctx, id)
		switch {
		case err == nil:
			n++
		case errors.Is(err, ErrInProgress), errors.Is(err, ErrNotFound):
		default:
			return n, err
		}
	}
	return n, nil
}

// Ping checks that Redis answers.
func (s *Service) Ping(ctx context.Context) error {
	return s.Store.rdb.Ping(ctx).Err()
}

func isNotFound(err error) bool {
	return errors.Is(err, asynq.ErrTaskNotFound) || errors.Is(err, asynq.ErrQueueNotFound)
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}
