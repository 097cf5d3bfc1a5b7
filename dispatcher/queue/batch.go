package queue

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/artificialstudio/webhook-dispatcher/dispatcher"
)

// BatchParallelism bounds the concurrent asynq enqueues of one EnqueueBatch
// (asynq has no batch enqueue: one EVALSHA per task).
const BatchParallelism = 16

// EnqueueBatch is Enqueue for every delivery of ds, with fewer Redis round
// trips: the reservations of the whole batch are checked in one pipeline
// (reservations), the tasks are stored one EVALSHA each, at most
// BatchParallelism at a time (each delivery's secret first, as Enqueue), and
// ENQUEUE_MIN_REPLICAS waits once per primary involved after all of that
// primary's tasks are stored, not once per delivery. errs[i] answers ds[i]
// as Enqueue would: nil once stored (and replicated), wrapping
// dispatcher.ErrDuplicate or dispatcher.ErrUnavailable otherwise; an id the
// previous datastore holds (Previous, during a migration) is a duplicate too,
// checked per delivery just before its store. Once one
// delivery answers ErrUnavailable, those not yet sent are answered
// ErrUnavailable without trying, so the caller resends exactly those. ds's
// ids must be distinct (the API answers repeats within a batch itself).
//
// Deadlines are Enqueue's, per step: the reservation check of the batch and
// each delivery's store each get EnqueueTimeout (the replica wait is bounded
// by ReplicaWaitTimeout), so a stalled Redis answers 503 within them.
func (s *Service) EnqueueBatch(ctx context.Context, ds []dispatcher.Delivery) []error {
	errs := make([]error, len(ds))
	if len(ds) == 0 {
		return errs
	}
	ids := make([]string, len(ds))
	for i, d := range ds {
		ids[i] = d.ID
	}
	reserved, rerrs := s.reservations(ctx, ids)

	todo := make([]int, 0, len(ds))
	for i, d := range ds {
		switch {
		case rerrs != nil && rerrs[i] != nil:
			errs[i] = fmt.Errorf("enqueue %s: %w: %w", d.ID, dispatcher.ErrUnavailable, rerrs[i])
		case reserved[i]:
			errs[i] = fmt.Errorf("enqueue %s: %w", d.ID, dispatcher.ErrDuplicate)
		default:
			todo = append(todo, i)
		}
	}

	// Store the tasks; conflict[i] marks an id asynq already held (a resend
	// after a 503), which is a duplicate once replicated like the rest.
	conflict := make([]bool, len(ds))
	var (
		mu     sync.Mutex
		broken = rerrs != nil
		wg     sync.WaitGroup
		next   = make(chan int)
	)
	for range min(BatchParallelism, len(todo)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				d := ds[i]
				mu.Lock()
				skip := broken
				mu.Unlock()
				if skip {
					errs[i] = fmt.Errorf("enqueue %s: %w: not sent after an earlier item failed", d.ID, dispatcher.ErrUnavailable)
					continue
				}
				ictx, cancel := context.WithTimeout(ctx, s.enqueueTimeout())
				if err := s.checkPrevious(ictx, d.ID); err != nil {
					cancel()
					errs[i] = err
					if errors.Is(err, dispatcher.ErrUnavailable) {
						mu.Lock()
						broken = true
						mu.Unlock()
					}
					continue
				}
				c, err := s.put(ictx, d)
				cancel()
				if err != nil {
					errs[i] = err
					mu.Lock()
					broken = true
					mu.Unlock()
					continue
				}
				conflict[i] = c
			}
		}()
	}
	for _, i := range todo {
		next <- i
	}
	close(next)
	wg.Wait()

	// One WAIT per primary for every task stored (or found) there.
	var stored []int
	for _, i := range todo {
		if errs[i] == nil {
			stored = append(stored, i)
		}
	}
	storedIDs := make([]string, len(stored))
	for k, i := range stored {
		storedIDs[k] = ids[i]
	}
	wctx, cancel := context.WithTimeout(ctx, s.enqueueTimeout())
	defer cancel()
	werrs := s.Store.WaitReplicasForMany(wctx, storedIDs, s.MinReplicas, ReplicaWaitTimeout)
	for k, i := range stored {
		switch {
		case werrs != nil && werrs[k] != nil:
			errs[i] = fmt.Errorf("enqueue %s: %w: %w", ids[i], dispatcher.ErrUnavailable, werrs[k])
		case conflict[i]:
			errs[i] = fmt.Errorf("enqueue %s: %w", ids[i], dispatcher.ErrDuplicate)
		}
	}
	return errs
}

// reservations is the batch's one reservation check (store.ReservedMany:
// one pipelined round trip per primary): reserved[i] reports that ids[i]
// is taken outside asynq, errs (nil when all were answered) holds the
// error of each id that could not be checked. Every reservation check that
// Enqueue makes before storing a task belongs here too, for the whole
// batch at once, so that a batch refuses exactly what single enqueues
// refuse.
func (s *Service) reservations(ctx context.Context, ids []string) (reserved []bool, errs []error) {
	ctx, cancel := context.WithTimeout(ctx, s.enqueueTimeout())
	defer cancel()
	return s.Store.ReservedMany(ctx, ids)
}
