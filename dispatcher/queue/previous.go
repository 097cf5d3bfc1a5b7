package queue

import (
	"context"
	"fmt"

	"github.com/artificialstudio/webhook-dispatcher/dispatcher"
)

// Previous is the datastore a fleet is moving away from (a single Redis to a
// cluster, or a change of QUEUE_SHARDS): its old workers still drain it
// while the API enqueues to the new one. Service.Enqueue refuses an id it
// holds (Reserved) as a duplicate, and Service.Status answers from it for an
// id the new datastore does not know. *PreviousStore implements it.
type Previous interface {
	// Reserved reports whether id is taken there: queued, scheduled,
	// retrying, active, completed within asynq's retention, delivered within
	// the dedupe window, or failed. An error means it could not be asked.
	Reserved(ctx context.Context, id string) (bool, error)
	// Status reports id as it is there; errors wrap dispatcher.ErrNotFound
	// or dispatcher.ErrUnavailable.
	Status(ctx context.Context, id string) (dispatcher.Status, error)
}

// PreviousStore is Previous over a datastore's Inspector and Store, with
// that datastore's own Layout (its QUEUE_SHARDS): a read-only Service.
type PreviousStore struct {
	svc *Service
}

var _ Previous = (*PreviousStore)(nil)

// NewPreviousStore returns the previous datastore that old reads from.
// old.Inspector, old.Store (with old.Layout's tags: Store.UseShards) and
// old.Layout are required; Schedule and Retention are used as by Status;
// old.Client is not used (nothing is ever written there).
func NewPreviousStore(old *Service) *PreviousStore {
	return &PreviousStore{svc: old}
}

// Reserved is store.Known on the queue of id's shard in the previous layout.
func (p *PreviousStore) Reserved(ctx context.Context, id string) (bool, error) {
	return p.svc.Store.Known(ctx, p.svc.Layout.Route(id), id)
}

// Status is Service.Status on the previous datastore.
func (p *PreviousStore) Status(ctx context.Context, id string) (dispatcher.Status, error) {
	return p.svc.Status(ctx, id)
}

// checkPrevious returns nil when id is free in the previous datastore (or
// there is none), an error wrapping dispatcher.ErrDuplicate when it is taken
// there, and one wrapping dispatcher.ErrUnavailable when it cannot be asked:
// accepting then could deliver the id twice, once from each datastore.
func (s *Service) checkPrevious(ctx context.Context, id string) error {
	if s.Previous == nil {
		return nil
	}
	reserved, err := s.Previous.Reserved(ctx, id)
	if err != nil {
		return fmt.Errorf("enqueue %s: previous datastore: %w: %w", id, dispatcher.ErrUnavailable, err)
	}
	if reserved {
		return fmt.Errorf("enqueue %s: in the previous datastore: %w", id, dispatcher.ErrDuplicate)
	}
	return nil
}

// previousStatus answers Status for an id the datastore does not hold: from
// the previous datastore when there is one, else dispatcher.ErrNotFound.
func (s *Service) previousStatus(ctx context.Context, id string) (dispatcher.Status, error) {
	if s.Previous == nil {
		return dispatcher.Status{}, fmt.Errorf("status %s: %w", id, dispatcher.ErrNotFound)
	}
	st, err := s.Previous.Status(ctx, id)
	if err != nil {
		return dispatcher.Status{}, fmt.Errorf("previous datastore: %w", err)
	}
	return st, nil
}
