package store

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/artificialstudio/webhook-dispatcher/dispatcher"
)

// FailedCursor is the ListFailed cursor that continues right after r, for a
// caller that stops part-way through a page (a filtered listing).
func FailedCursor(r dispatcher.FailedRecord) string {
	return strconv.FormatInt(r.FailedAt.UnixMilli(), 10) + ":" + r.ID
}

// FailedBetween returns the ids of deliveries that failed at or after since
// and before until (a zero until is open), oldest first.
func (s *Store) FailedBetween(ctx context.Context, since, until time.Time) ([]string, error) {
	lo, hi := "-inf", "+inf"
	if !since.IsZero() {
		lo = strconv.FormatInt(since.UnixMilli(), 10)
	}
	if !until.IsZero() {
		hi = "(" + strconv.FormatInt(until.UnixMilli(), 10)
	}
	var all []redis.Z
	for _, tag := range s.tags {
		zs, err := s.rdb.ZRangeByScoreWithScores(ctx, s.keys.failedIndex(tag), &redis.ZRangeBy{Min: lo, Max: hi}).Result()
		if err != nil {
			return nil, fmt.Errorf("list failed deliveries between %s and %s: %w", lo, hi, err)
		}
		all = append(all, zs...)
	}
	sortNewestFirst(all)
	ids := make([]string, len(all))
	for i, z := range all {
		ids[len(all)-1-i] = z.Member.(string) // oldest first
	}
	return ids, nil
}
