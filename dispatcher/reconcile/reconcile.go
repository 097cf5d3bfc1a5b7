// Package reconcile finds what asynq leaves behind and brings it back under
// asynq's own recovery, so that every accepted delivery ends delivered or
// listed failed. Worker processes run it at start and every Interval; any
// number may run at once (a short Redis lock keeps it to one pass per
// interval, and every repair is a script that checks its fault atomically).
//
// asynq v0.26 keeps three records of a running task: the active list, the
// lease set and the task hash. Its recoverer looks at the lease set alone
// (hibiken/asynq issues 1051 and 1144, PR 1158), and its scripts stop half
// way on NOT FOUND without undoing what they did, so the three can disagree
// for ever. A pass repairs, per queue:
//
//   - active without a lease: gets a lease expiring after Grace (a worker
//     still running it keeps it alive through asynq's heartbeat);
//   - active with a lease expired LeaseSlack ago: back to the head of the
//     pending list without spending an attempt when the attempt provably did
//     not run (the attempt log of the task's cycle has no entry for it) or
//     already delivered (the handler then completes it without a POST);
//     otherwise settled as asynq's recoverer would (up to 90 s later): the
//     attempt that ran is spent and the task retried at its nominal time, or
//     archived after the last attempt;
//   - a lease entry whose task is not active: dropped, or the task put back
//     in the active list when its hash still says active;
//   - a hash whose state names a list or set that does not hold it (every
//     OrphanEvery passes, or the next pass after Nudge: it walks all task
//     hashes): put back;
//   - archived tasks without a failed record (asynq's recoverer archives a
//     task whose last attempt's worker died without calling the handler):
//     the record is written, so the failed list, bulk redeliver, the metrics
//     and the id reservation count it;
//   - failed records older than FailedRetention: purged.
package reconcile

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"

	"github.com/artificialstudio/webhook-dispatcher/dispatcher"
	"github.com/artificialstudio/webhook-dispatcher/dispatcher/store"
	"github.com/artificialstudio/webhook-dispatcher/schedule"
)

// The kinds of repair: the label values of webhook_reconciled_total.
const (
	KindActiveWithoutLease    = "active_without_lease"
	KindLeaseExpiredNotRun    = "lease_expired_not_run"
	KindLeaseExpiredDelivered = "lease_expired_delivered"
	KindLeaseExpiredRan       = "lease_expired_ran"
	KindStaleLease            = "stale_lease"
	KindGhost                 = "ghost"
	KindOrphan                = "orphan"
	KindArchivedWithoutRecord = "archived_without_record"
	KindFailedExpired         = "failed_expired"
	// KindRerunSkipped is counted by the worker's handler: a run that found
	// its cycle already delivered and completed without a POST.
	KindRerunSkipped = "rerun_skipped"
)

// Kinds lists every kind, for metrics to create their series at zero.
func Kinds() []string {
	return []string{KindActiveWithoutLease, KindLeaseExpiredNotRun, KindLeaseExpiredDelivered, KindLeaseExpiredRan, KindStaleLease,
		KindGhost, KindOrphan, KindArchivedWithoutRecord, KindFailedExpired, KindRerunSkipped}
}

// Defaults of the Reconciler's zero fields.
const (
	DefaultInterval    = 30 * time.Second
	DefaultGrace       = 15 * time.Second
	DefaultLeaseSlack  = 5 * time.Second
	DefaultOrphanEvery = 10
)

// Recorder receives the repairs; *metrics.Metrics satisfies it.
type Recorder interface {
	Reconciled(kind string)
	Failed()
}

// Reconciler repairs asynq's records of the dispatcher's queues. Store and
// Inspector are required; nil Log discards, nil Metrics skips, nil Purge
// keeps failed records for ever.
type Reconciler struct {
	Store     *store.Store
	Inspector *asynq.Inspector
	Queues    []string
	// Schedule times the retry of an attempt whose worker was lost after it
	// ended; zero means schedule.Production.
	Schedule schedule.Schedule
	// Interval between passes; zero means DefaultInterval.
	Interval time.Duration
	// Grace is how long an active task without a lease gets before it is
	// recovered: longer than one attempt (DELIVERY_TIMEOUT plus a margin);
	// zero means DefaultGrace.
	Grace time.Duration
	// LeaseSlack is how long past its expiry a lease must be before the task
	// is taken back (clock skew, a slow heartbeat); zero means DefaultLeaseSlack.
	LeaseSlack time.Duration
	// Retention keeps an orphaned completed task this long; zero means 7 days.
	Retention time.Duration
	// OrphanEvery runs the walk of all task hashes on the first pass and
	// every OrphanEvery passes after; zero means DefaultOrphanEvery.
	OrphanEvery int
	// FailedRetention purges failed deliveries older than this through
	// Purge; zero keeps them.
	FailedRetention time.Duration
	Purge           func(ctx context.Context, before time.Time) (int, error)
	Log             *slog.Logger
	Metrics         Recorder

	passes       int
	orphanCursor map[string]uint64 // where an unfinished walk of a queue's task hashes resumes
	lastNudge    atomic.Int64      // Unix ns of the last Nudge sent
}

// Run makes a pass at once and every Interval until ctx ends.
func (r *Reconciler) Run(ctx context.Context) {
	t := time.NewTicker(r.interval())
	defer t.Stop()
	for {
		r.tick(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (r *Reconciler) tick(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, r.interval())
	defer cancel()
	ok, err := r.Store.TryLock(ctx, r.interval()*9/10)
	if err != nil {
		if ctx.Err() == nil {
			r.log().WarnContext(ctx, "reconcile: cannot take the lock", "error", err)
		}
		return
	}
	if !ok {
		return // another process made this interval's pass
	}
	if _, err := r.Pass(ctx); err != nil && ctx.Err() == nil {
		r.log().WarnContext(ctx, "reconcile pass incomplete", "error", err)
	}
}

// Nudge asks for a walk of all task hashes on the next pass, in whichever
// process makes it: asynq reported that it could not move a task (a script
// stopped on NOT FOUND, which can leave an orphan behind). It does not block;
// calls within a second of the last are dropped.
func (r *Reconciler) Nudge() {
	now := time.Now().UnixNano()
	last := r.lastNudge.Load()
	if now-last < int64(time.Second) || !r.lastNudge.CompareAndSwap(last, now) {
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := r.Store.Nudge(ctx); err != nil {
			r.log().Warn("reconcile: cannot record the nudge; the periodic walk will find the orphan", "error", err)
		}
	}()
}

// Pass makes one pass over every queue and returns how many repairs of each
// kind it made. It goes on after an error with the next step and returns
// the errors joined.
func (r *Reconciler) Pass(ctx context.Context) (map[string]int, error) {
	counts := map[string]int{}
	orphans := r.passes%r.orphanEvery() == 0
	if nudged, err := r.Store.TakeNudge(ctx); err == nil && nudged {
		orphans = true
	}
	r.passes++
	var errs []error
	for _, q := range r.Queues {
		errs = append(errs, r.leases(ctx, q, counts))
		if orphans || r.orphanCursor[q] != 0 {
			errs = append(errs, r.orphans(ctx, q, counts))
		}
		errs = append(errs, r.archive(ctx, q, counts))
	}
	if r.FailedRetention > 0 && r.Purge != nil {
		n, err := r.Purge(ctx, time.Now().Add(-r.FailedRetention))
		errs = append(errs, err)
		r.count(ctx, counts, KindFailedExpired, "", n)
	}
	return counts, errors.Join(errs...)
}

// leases repairs the active list against the lease set.
func (r *Reconciler) leases(ctx context.Context, q string, counts map[string]int) error {
	active, leases, err := r.Store.Active(ctx, q)
	if err != nil {
		return err
	}
	now := time.Now()
	var errs []error
	isActive := make(map[string]bool, len(active))
	for _, id := range active {
		isActive[id] = true
		exp, ok := leases[id]
		switch {
		case !ok:
			done, err := r.Store.RestoreLease(ctx, q, id, now.Add(r.grace()))
			if err != nil {
				errs = append(errs, err)
			} else if done {
				r.count(ctx, counts, KindActiveWithoutLease, id, 1)
			}
		case exp.Before(now.Add(-r.leaseSlack())):
			errs = append(errs, r.expired(ctx, q, id, now, counts))
		}
	}
	for id := range leases {
		if isActive[id] {
			continue
		}
		restored, dropped, err := r.Store.FixStaleLease(ctx, q, id)
		switch {
		case err != nil:
			errs = append(errs, err)
		case restored:
			r.count(ctx, counts, KindOrphan, id, 1)
		case dropped:
			r.count(ctx, counts, KindStaleLease, id, 1)
		}
	}
	return errors.Join(errs...)
}

// expired decides what becomes of an active task whose lease expired: its
// worker is gone (killed, cut off, or Redis lost its completion).
func (r *Reconciler) expired(ctx context.Context, q, id string, now time.Time, counts map[string]int) error {
	info, err := r.Inspector.GetTaskInfo(q, id)
	if err != nil && !errors.Is(err, asynq.ErrTaskNotFound) {
		return fmt.Errorf("reconcile %s: %w", id, err)
	}
	kind := KindGhost
	if err == nil {
		d, err := dispatcher.DecodeTask(info.Payload)
		if err != nil {
			return nil // the handler archives an unreadable task; leave it to asynq
		}
		log, err := r.Store.Attempts(ctx, id)
		if err != nil {
			return err
		}
		switch {
		case dispatcher.DeliveredInCycle(log, d):
			kind = KindLeaseExpiredDelivered
		case !dispatcher.RanInCycle(log, d, info.Retried+1):
			kind = KindLeaseExpiredNotRun
		default:
			// The attempt ran and failed, and its worker is gone before
			// telling asynq: settle it as asynq would have, spending that
			// attempt (asynq's recoverer would too, but up to 90 s later).
			return r.settle(ctx, q, id, info, log, d, now, counts)
		}
	}
	done, err := r.Store.RequeueExpired(ctx, q, id, now.Add(-r.leaseSlack()))
	switch {
	case errors.Is(err, store.ErrGhost):
		r.count(ctx, counts, KindGhost, id, 1)
		return nil
	case err != nil:
		return err
	case done && kind != KindGhost:
		r.count(ctx, counts, kind, id, 1)
	}
	return nil
}

// settle moves a task whose attempt ran and failed to the retry set at its
// nominal time (the end of that attempt plus the schedule's step), or to the
// archive after the last attempt; the archive sweep writes its failed record
// if the handler could not.
func (r *Reconciler) settle(ctx context.Context, q, id string, info *asynq.TaskInfo, log []dispatcher.Attempt, d dispatcher.Delivery, now time.Time, counts map[string]int) error {
	var last dispatcher.Attempt
	for i := len(log) - 1; i >= 0; i-- {
		if log[i].InCycle(d) && log[i].Attempt == info.Retried+1 {
			last = log[i]
			break
		}
	}
	final := info.Retried >= info.MaxRetry
	sched := r.Schedule
	if sched == (schedule.Schedule{}) {
		sched = schedule.Production
	}
	due, ok := sched.Next(last.EndedAt, info.Retried+1)
	if !ok || due.Before(now) {
		due = now
	}
	errMsg := last.Error
	if errMsg == "" {
		errMsg = string(last.Outcome)
	}
	done, err := r.Store.SettleExpired(ctx, q, id, now.Add(-r.leaseSlack()), final, info.Retried+1, due, errMsg)
	if err != nil {
		return err
	}
	if done {
		r.count(ctx, counts, KindLeaseExpiredRan, id, 1, "archived", final)
	}
	return nil
}

// orphans walks the task hashes of q and puts back the orphans. A walk that
// takes longer than half an interval stops there and resumes on the next
// pass, so a large keyspace never keeps a pass from finishing.
func (r *Reconciler) orphans(ctx context.Context, q string, counts map[string]int) error {
	if r.orphanCursor == nil {
		r.orphanCursor = map[string]uint64{}
	}
	cursor := r.orphanCursor[q]
	now := time.Now()
	budget := now.Add(r.interval() / 2)
	for {
		found, next, err := r.Store.ScanOrphans(ctx, q, cursor, 500, now.Add(r.grace()), now.Add(r.retention()))
		if err != nil {
			return err
		}
		for _, o := range found {
			r.count(ctx, counts, KindOrphan, o.ID, 1, "state", o.State)
		}
		r.orphanCursor[q] = next
		if next == 0 || time.Now().After(budget) {
			return nil
		}
		cursor = next
	}
}

// archive writes the failed record of every archived task that has none.
func (r *Reconciler) archive(ctx context.Context, q string, counts map[string]int) error {
	ids, err := r.Store.Archived(ctx, q)
	if err != nil {
		return err
	}
	missing, err := r.Store.WithoutFailedRecord(ctx, ids)
	if err != nil {
		return err
	}
	var errs []error
	for _, id := range missing {
		info, err := r.Inspector.GetTaskInfo(q, id)
		if errors.Is(err, asynq.ErrTaskNotFound) {
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("reconcile %s: %w", id, err))
			continue
		}
		if info.State != asynq.TaskStateArchived {
			continue // redelivered meanwhile
		}
		d, err := dispatcher.DecodeTask(info.Payload)
		if err != nil {
			continue // not a delivery this dispatcher can redeliver
		}
		failedAt := info.LastFailedAt
		if failedAt.IsZero() {
			failedAt = time.Now()
		}
		lastErr := info.LastErr
		if lastErr == asynq.ErrLeaseExpired.Error() { // the archive keeps only the text
			lastErr = "the worker was lost during the last attempt (" + lastErr + ")"
		}
		if err := r.Store.MarkFailed(ctx, dispatcher.FailedRecord{Delivery: d, FailedAt: failedAt.UTC(), LastError: lastErr}); err != nil {
			errs = append(errs, err)
			continue
		}
		if r.Metrics != nil {
			r.Metrics.Failed()
		}
		r.count(ctx, counts, KindArchivedWithoutRecord, id, 1)
	}
	return errors.Join(errs...)
}

func (r *Reconciler) count(ctx context.Context, counts map[string]int, kind, id string, n int, attrs ...any) {
	if n <= 0 {
		return
	}
	counts[kind] += n
	if r.Metrics != nil {
		for range n {
			r.Metrics.Reconciled(kind)
		}
	}
	args := append([]any{"kind", kind, "count", n}, attrs...)
	if id != "" {
		args = append(args, "delivery_id", id)
	}
	r.log().WarnContext(ctx, "reconciled", args...)
}

func (r *Reconciler) log() *slog.Logger {
	if r.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return r.Log
}

func (r *Reconciler) interval() time.Duration { return orDefault(r.Interval, DefaultInterval) }
func (r *Reconciler) grace() time.Duration    { return orDefault(r.Grace, DefaultGrace) }
func (r *Reconciler) leaseSlack() time.Duration {
	return orDefault(r.LeaseSlack, DefaultLeaseSlack)
}
func (r *Reconciler) retention() time.Duration { return orDefault(r.Retention, 7*24*time.Hour) }
func (r *Reconciler) orphanEvery() int {
	if r.OrphanEvery <= 0 {
		return DefaultOrphanEvery
	}
	return r.OrphanEvery
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}
