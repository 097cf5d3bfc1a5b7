package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Known reports whether this datastore holds the delivery with generation id
// in asynq queue q (its shard's queue) in any form that keeps the id taken:
// asynq's task (pending, scheduled, retrying, active, completed within
// asynq's retention, or archived: asynq refuses a TaskID while the task hash
// exists), a failed record, or a delivered marker within the dedupe window
// (see Dedupe). It is one pipelined round trip: with tagged keys every one
// of them is in the slot of id's shard.
//
// It is what the API asks the previous datastore during a migration (see
// queue.Previous); it reads asynq's task key directly, as repair.go does,
// because asynq's Inspector needs two round trips for the same answer.
func (s *Store) Known(ctx context.Context, q, id string) (bool, error) {
	var task, failed *redis.IntCmd
	var markers []*redis.StringCmd
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		task = p.Exists(ctx, asynqKeys{queue: q}.task(id))
		failed = p.Exists(ctx, s.keys.failed(s.tag(id), id))
		markers = s.queueDeliveredLookup(ctx, p, id)
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return false, fmt.Errorf("look up %s: %w", id, err)
	}
	if task.Val() > 0 || failed.Val() > 0 {
		return true, nil
	}
	_, ok, err := newestMarker(markers, time.Now().Add(-s.window()))
	if err != nil {
		return false, fmt.Errorf("look up %s: %w", id, err)
	}
	return ok, nil
}
