package queue

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hibiken/asynq"

	"github.com/artificialstudio/webhook-dispatcher/dispatcher"
	"github.com/artificialstudio/webhook-dispatcher/dispatcher/store"
)

// MaxScan bounds the tasks (or failed records) one List call reads; a
// filtered listing that finds fewer than limit matches within it answers the
// matches so far and a cursor to continue from.
const MaxScan = 10_000

// StatsScan bounds the pending and retrying tasks Stats reads to rank
// destinations.
const StatsScan = 10_000

// scanPage is how many tasks one Inspector call reads.
const scanPage = 500

// queueNames is the layout's queue names in a fixed (sorted) order, for cursors.
func (s *Service) queueNames() []string {
	names := make([]string, 0, s.Layout.Shards())
	for q := range s.Layout.Names() {
		names = append(names, q)
	}
	sort.Strings(names)
	return names
}

// lister returns the Inspector call that lists tasks in state; ok is false
// for states asynq does not hold (failed: the store's records).
func (s *Service) lister(state dispatcher.State) (func(string, ...asynq.ListOption) ([]*asynq.TaskInfo, error), bool) {
	switch state {
	case dispatcher.StatePending:
		return s.Inspector.ListPendingTasks, true
	case dispatcher.StateScheduled:
		return s.Inspector.ListScheduledTasks, true
	case dispatcher.StateRetrying:
		return s.Inspector.ListRetryTasks, true
	case dispatcher.StateActive:
		return s.Inspector.ListActiveTasks, true
	case dispatcher.StateDelivered:
		return s.Inspector.ListCompletedTasks, true
	}
	return nil, false
}

// List returns up to limit deliveries in f.State that match f, and the
// cursor of the next page ("" after the last). Failed deliveries come from the
// store, newest failure first; the others from asynq in its order (pending:
// queue order; scheduled, retrying: by due time; delivered: by expiry). A page
// is read at one moment: deliveries that change state while an operator pages
// may be missed or shown twice. Errors wrap dispatcher.ErrBadCursor or
// dispatcher.ErrUnavailable.
func (s *Service) List(ctx context.Context, f dispatcher.Filter, cursor string, limit int) ([]dispatcher.Status, string, error) {
	if limit <= 0 {
		limit = 50
	}
	if f.State == dispatcher.StateFailed {
		return s.listFailed(ctx, f, cursor, limit)
	}
	list, ok := s.lister(f.State)
	if !ok {
		return nil, "", fmt.Errorf("list: unknown state %q", f.State)
	}
	queues := s.queueNames()
	qi, page, offset, err := parseTaskCursor(cursor, len(queues))
	if err != nil {
		return nil, "", err
	}
	out := []dispatcher.Status{}
	scanned := 0
	for ; qi < len(queues); qi, page, offset = qi+1, 1, 0 {
		for {
			if err := ctx.Err(); err != nil {
				return nil, "", fmt.Errorf("list %s: %w: %w", f.State, dispatcher.ErrUnavailable, err)
			}
			tasks, err := list(queues[qi], asynq.PageSize(scanPage), asynq.Page(page))
			if err != nil && !isNotFound(err) {
				return nil, "", fmt.Errorf("list %s: %w: %w", f.State, dispatcher.ErrUnavailable, err)
			}
			for i := offset; i < len(tasks); i++ {
				scanned++
				if st, ok := listed(tasks[i], f); ok {
					out = append(out, st)
				}
				more := i+1 < len(tasks) || len(tasks) == scanPage || qi+1 < len(queues)
				if (len(out) == limit || scanned >= MaxScan) && more {
					switch {
					case i+1 == scanPage: // the page is done: the next one
						return out, taskCursor(qi, page+1, 0), nil
					case i+1 == len(tasks): // the queue is done: the next one
						return out, taskCursor(qi+1, 1, 0), nil
					}
					return out, taskCursor(qi, page, i+1), nil
				}
			}
			if len(tasks) < scanPage {
				break
			}
			page, offset = page+1, 0
		}
	}
	return out, "", nil
}

// listed reports the listing entry for t, and whether t matches f.
func listed(t *asynq.TaskInfo, f dispatcher.Filter) (dispatcher.Status, bool) {
	d, err := dispatcher.DecodeTask(t.Payload)
	if err != nil || !f.MatchHost(d.Webhook) || !f.MatchTime(d.EnqueuedAt) {
		return dispatcher.Status{}, false
	}
	st := dispatcher.Status{ID: t.ID, State: f.State, Webhook: d.Webhook, EnqueuedAt: timePtr(d.EnqueuedAt),
		AttemptCount: t.Retried, LastError: t.LastErr}
	switch t.State {
	case asynq.TaskStateScheduled, asynq.TaskStateRetry:
		st.NextAttemptAt = timePtr(t.NextProcessAt)
	case asynq.TaskStateCompleted:
		st.AttemptCount = t.Retried + 1
		st.LastError = ""
		st.DeliveredAt = timePtr(t.CompletedAt)
	}
	return st, true
}

// taskCursor and parseTaskCursor encode a position in asynq's lists: queue
// index, 1-based page of scanPage tasks, index within the page.
func taskCursor(qi, page, offset int) string {
	return fmt.Sprintf("q%d.%d.%d", qi, page, offset)
}

func parseTaskCursor(c string, queues int) (qi, page, offset int, err error) {
	if c == "" {
		return 0, 1, 0, nil
	}
	parts := strings.Split(strings.TrimPrefix(c, "q"), ".")
	if !strings.HasPrefix(c, "q") || len(parts) != 3 {
		return 0, 0, 0, fmt.Errorf("%w: %q", dispatcher.ErrBadCursor, c)
	}
	var n [3]int
	for i, p := range parts {
		if n[i], err = strconv.Atoi(p); err != nil || n[i] < 0 {
			return 0, 0, 0, fmt.Errorf("%w: %q", dispatcher.ErrBadCursor, c)
		}
	}
	if n[0] >= queues || n[1] < 1 || n[2] >= scanPage {
		return 0, 0, 0, fmt.Errorf("%w: %q", dispatcher.ErrBadCursor, c)
	}
	return n[0], n[1], n[2], nil
}

// listFailed pages through the store's failed records, newest first, keeping
// those that match f.
func (s *Service) listFailed(ctx context.Context, f dispatcher.Filter, cursor string, limit int) ([]dispatcher.Status, string, error) {
	out := []dispatcher.Status{}
	scanned := 0
	for {
		recs, next, err := s.Store.ListFailed(ctx, cursor, scanPage)
		if err != nil {
			if errors.Is(err, dispatcher.ErrBadCursor) {
				return nil, "", err
			}
			return nil, "", fmt.Errorf("list failed: %w: %w", dispatcher.ErrUnavailable, err)
		}
		for i, r := range recs {
			scanned++
			if !f.Since.IsZero() && r.FailedAt.Before(f.Since) {
				return out, "", nil // newest first: nothing older can match
			}
			if f.MatchHost(r.Webhook) && f.MatchTime(r.FailedAt) {
				out = append(out, failedStatus(r))
			}
			more := i+1 < len(recs) || next != ""
			if (len(out) == limit || scanned >= MaxScan) && more {
				return out, store.FailedCursor(r), nil
			}
		}
		if next == "" {
			return out, "", nil
		}
		cursor = next
	}
}

func failedStatus(r dispatcher.FailedRecord) dispatcher.Status {
	return dispatcher.Status{
		ID: r.ID, State: dispatcher.StateFailed, Webhook: r.Webhook,
		EnqueuedAt: timePtr(r.EnqueuedAt), FailedAt: timePtr(r.FailedAt), LastError: r.LastError,
	}
}

// Stats counts deliveries per state, reports the oldest pending delivery's
// age and ranks destinations by backlog (pending + retrying) over at most
// StatsScan tasks, with the outcome of each top destination's latest attempt.
// top <= 0 means 10. Errors wrap dispatcher.ErrUnavailable.
func (s *Service) Stats(ctx context.Context, top int) (dispatcher.QueueStats, error) {
	if top <= 0 {
		top = 10
	}
	st := dispatcher.QueueStats{Counts: map[dispatcher.State]int{}, ScanLimit: StatsScan, Complete: true}
	for _, state := range dispatcher.States() {
		st.Counts[state] = 0
	}
	for _, q := range s.queueNames() {
		info, err := s.Inspector.GetQueueInfo(q)
		if isNotFound(err) {
			continue
		}
		if err != nil {
			return st, fmt.Errorf("queue stats %s: %w: %w", q, dispatcher.ErrUnavailable, err)
		}
		st.Counts[dispatcher.StatePending] += info.Pending + info.Aggregating
		st.Counts[dispatcher.StateScheduled] += info.Scheduled
		st.Counts[dispatcher.StateActive] += info.Active
		st.Counts[dispatcher.StateRetrying] += info.Retry
		st.Counts[dispatcher.StateDelivered] += info.Completed
		st.OldestPendingSeconds = max(st.OldestPendingSeconds, info.Latency.Seconds())
	}
	failed, err := s.Store.CountFailed(ctx)
	if err != nil {
		return st, fmt.Errorf("queue stats: %w: %w", dispatcher.ErrUnavailable, err)
	}
	st.Counts[dispatcher.StateFailed] = int(failed)

	type dest struct {
		dispatcher.DestinationBacklog
		sample     string    // a delivery whose attempt log tells the latest outcome
		sampleTime time.Time // its last failure (zero for pending)
	}
	byHost := map[string]*dest{}
	for _, state := range []dispatcher.State{dispatcher.StateRetrying, dispatcher.StatePending} {
		err := s.scan(state, StatsScan-st.Scanned, func(t *asynq.TaskInfo, d dispatcher.Delivery) {
			st.Scanned++
			host := dispatcher.CanonicalHost(d.Webhook)
			e := byHost[host]
			if e == nil {
				e = &dest{DestinationBacklog: dispatcher.DestinationBacklog{Host: host}}
				byHost[host] = e
			}
			if state == dispatcher.StateRetrying {
				e.Retrying++
			} else {
				e.Pending++
			}
			e.Backlog++
			if e.sample == "" || t.LastFailedAt.After(e.sampleTime) {
				e.sample, e.sampleTime = t.ID, t.LastFailedAt
			}
		})
		if err != nil {
			return st, err
		}
	}
	if st.Scanned < st.Counts[dispatcher.StatePending]+st.Counts[dispatcher.StateRetrying] {
		st.Complete = false
	}
	ranked := make([]*dest, 0, len(byHost))
	for _, e := range byHost {
		ranked = append(ranked, e)
	}
	sort.Slice(ranked, func(i, j int) bool {
		if ranked[i].Backlog != ranked[j].Backlog {
			return ranked[i].Backlog > ranked[j].Backlog
		}
		return ranked[i].Host < ranked[j].Host
	})
	if len(ranked) > top {
		ranked = ranked[:top]
	}
	st.TopDestinations = make([]dispatcher.DestinationBacklog, 0, len(ranked))
	for _, e := range ranked {
		if a, ok, err := s.Store.LastAttempt(ctx, e.sample); err == nil && ok {
			e.LastOutcome, e.LastStatus, e.LastAttemptAt = a.Outcome, a.Status, timePtr(a.EndedAt)
			e.LastError = a.Error
		}
		st.TopDestinations = append(st.TopDestinations, e.DestinationBacklog)
	}
	return st, nil
}

// scan calls fn for up to limit tasks in state (every queue), oldest first.
func (s *Service) scan(state dispatcher.State, limit int, fn func(*asynq.TaskInfo, dispatcher.Delivery)) error {
	list, ok := s.lister(state)
	if !ok {
		return fmt.Errorf("scan: unknown state %q", state)
	}
	seen := 0
	for _, q := range s.queueNames() {
		for page := 1; seen < limit; page++ {
			tasks, err := list(q, asynq.PageSize(scanPage), asynq.Page(page))
			if isNotFound(err) {
				break
			}
			if err != nil {
				return fmt.Errorf("scan %s: %w: %w", state, dispatcher.ErrUnavailable, err)
			}
			for _, t := range tasks {
				if seen >= limit {
					return nil
				}
				seen++
				if d, err := dispatcher.DecodeTask(t.Payload); err == nil {
					fn(t, d)
				}
			}
			if len(tasks) < scanPage {
				break
			}
		}
	}
	return nil
}

// Cancel stops a pending, scheduled or retrying delivery: asynq archives its
// task (atomically refused while a worker holds it, so an attempt in flight
// is never cut off and the delivery never lost), then the store records it as
// failed with lastError "cancelled", listed and redeliverable. Errors wrap
// dispatcher.ErrNotFound, dispatcher.ErrInProgress (active now, or already
// delivered or failed) or dispatcher.ErrUnavailable.
func (s *Service) Cancel(ctx context.Context, id string) error {
	info, err := s.Inspector.GetTaskInfo(s.Layout.Route(id), id)
	switch {
	case isNotFound(err):
		if _, ok, ferr := s.Store.Failed(ctx, id); ferr == nil && ok {
			return fmt.Errorf("cancel %s: %w (already failed)", id, dispatcher.ErrInProgress)
		}
		return fmt.Errorf("cancel %s: %w", id, dispatcher.ErrNotFound)
	case err != nil:
		return fmt.Errorf("cancel %s: %w: %w", id, dispatcher.ErrUnavailable, err)
	}
	switch info.State {
	case asynq.TaskStatePending, asynq.TaskStateScheduled, asynq.TaskStateRetry, asynq.TaskStateAggregating:
	default:
		return fmt.Errorf("cancel %s: %w (%s)", id, dispatcher.ErrInProgress, info.State)
	}
	d, err := dispatcher.DecodeTask(info.Payload)
	if err != nil {
		return fmt.Errorf("cancel %s: %w", id, err)
	}
	before, _, err := s.Store.LastAttempt(ctx, id)
	if err != nil {
		return fmt.Errorf("cancel %s: %w: %w", id, dispatcher.ErrUnavailable, err)
	}
	if err := s.Inspector.ArchiveTask(s.Layout.Route(id), id); err != nil {
		if isNotFound(err) {
			return fmt.Errorf("cancel %s: %w", id, dispatcher.ErrNotFound)
		}
		// Active (a worker took it meanwhile) or archived: asynq refused, nothing changed.
		if now, ierr := s.Inspector.GetTaskInfo(s.Layout.Route(id), id); ierr == nil && now.State != info.State {
			return fmt.Errorf("cancel %s: %w (%s)", id, dispatcher.ErrInProgress, now.State)
		}
		return fmt.Errorf("cancel %s: %w: %w", id, dispatcher.ErrUnavailable, err)
	}
	// asynq's archive script also takes a completed task: if a worker
	// delivered it between the state check and the archive, say so rather
	// than record a delivered webhook as cancelled.
	if after, ok, err := s.Store.LastAttempt(ctx, id); err == nil && ok &&
		after.Outcome == dispatcher.OutcomeDelivered && !after.StartedAt.Equal(before.StartedAt) {
		return fmt.Errorf("cancel %s: %w (delivered before the cancel took effect)", id, dispatcher.ErrInProgress)
	}
	rec := dispatcher.FailedRecord{Delivery: d, FailedAt: time.Now().UTC(), LastError: dispatcher.ReasonCancelled}
	if err := s.Store.MarkFailed(ctx, rec); err != nil {
		// The archived task is still in asynq: Status reports it failed and
		// Redeliver writes the record before it requeues.
		return fmt.Errorf("cancel %s: %w: %w", id, dispatcher.ErrUnavailable, err)
	}
	return nil
}

// CancelMatching cancels every pending, scheduled or retrying delivery that
// matches f (host, enqueue time), reporting progress after each. With dryRun
// it only counts. It stops at the first error other than a delivery that
// moved on meanwhile (counted as Skipped).
func (s *Service) CancelMatching(ctx context.Context, f dispatcher.Filter, dryRun bool, progress func(done, total int)) (dispatcher.BulkResult, error) {
	var ids []string
	for _, state := range []dispatcher.State{dispatcher.StatePending, dispatcher.StateScheduled, dispatcher.StateRetrying} {
		err := s.scan(state, int(^uint(0)>>1), func(t *asynq.TaskInfo, d dispatcher.Delivery) {
			if f.MatchHost(d.Webhook) && f.MatchTime(d.EnqueuedAt) {
				ids = append(ids, t.ID)
			}
		})
		if err != nil {
			return dispatcher.BulkResult{}, err
		}
	}
	return s.bulk(ctx, ids, dryRun, progress, s.Cancel)
}

// RedeliverFailed redelivers every failed delivery that matches f (host,
// failure time), reporting progress after each. With dryRun it only counts.
// It stops at the first error other than a delivery that moved on meanwhile
// (counted as Skipped).
func (s *Service) RedeliverFailed(ctx context.Context, f dispatcher.Filter, dryRun bool, progress func(done, total int)) (dispatcher.BulkResult, error) {
	ids, err := s.Store.FailedBetween(ctx, f.Since, f.Until)
	if err != nil {
		return dispatcher.BulkResult{}, fmt.Errorf("%w: %w", dispatcher.ErrUnavailable, err)
	}
	if f.Host != "" {
		kept := ids[:0]
		for _, id := range ids {
			rec, ok, err := s.Store.Failed(ctx, id)
			if err != nil {
				return dispatcher.BulkResult{}, fmt.Errorf("%w: %w", dispatcher.ErrUnavailable, err)
			}
			if ok && f.MatchHost(rec.Webhook) {
				kept = append(kept, id)
			}
		}
		ids = kept
	}
	return s.bulk(ctx, ids, dryRun, progress, s.Redeliver)
}

func (s *Service) bulk(ctx context.Context, ids []string, dryRun bool, progress func(done, total int), act func(context.Context, string) error) (dispatcher.BulkResult, error) {
	res := dispatcher.BulkResult{Matched: len(ids), DryRun: dryRun}
	if dryRun {
		return res, nil
	}
	for i, id := range ids {
		err := act(ctx, id)
		switch {
		case err == nil:
			res.Done++
		case errors.Is(err, dispatcher.ErrInProgress), errors.Is(err, dispatcher.ErrNotFound):
			res.Skipped++
		default:
			return res, err
		}
		if progress != nil {
			progress(i+1, len(ids))
		}
	}
	return res, nil
}
