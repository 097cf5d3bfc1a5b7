package store

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"
)

// UseShards makes the store put each delivery's keys in the hash slot of its
// shard: tag(id) is the hash tag of id's queue ("{webhooks:3:5}", or "" for
// untagged keys) and tags every shard's tag, over which the failed listings,
// counts and WaitReplicas range. The queue package owns both (the
// datastore's queue.Layout: Tag, Tags); call it once, before the store is
// used. Without it every key
// is untagged, as in earlier versions.
func (s *Store) UseShards(tag func(id string) string, tags []string) {
	if tag == nil || len(tags) == 0 {
		return
	}
	s.tag, s.tags = tag, slices.Clone(tags)
}

// listIndex returns up to limit+1 members of one shard's failed index after
// the cursor, newest first. Members with the cursor's score come back in
// descending id order; those not below the cursor's id were on an earlier
// page, so it over-fetches to skip them.
func (s *Store) listIndex(ctx context.Context, tag, max string, after bool, afterScore int64, afterID string, limit int) ([]redis.Z, error) {
	var ids []redis.Z
	for fetch := int64(limit) + 1; ; fetch *= 2 {
		zs, err := s.rdb.ZRevRangeByScoreWithScores(ctx, s.keys.failedIndex(tag), &redis.ZRangeBy{
			Max: max, Min: "-inf", Count: fetch,
		}).Result()
		if err != nil {
			return nil, fmt.Errorf("list failed deliveries: %w", err)
		}
		ids = ids[:0]
		for _, z := range zs {
			id := z.Member.(string)
			if after && int64(z.Score) == afterScore && id >= afterID {
				continue
			}
			ids = append(ids, z)
		}
		if len(ids) > limit || int64(len(zs)) < fetch {
			return ids, nil
		}
	}
}

// sortNewestFirst orders failed-index members as one index would hand them
// out newest first: by score, then by id, both descending.
func sortNewestFirst(zs []redis.Z) {
	slices.SortFunc(zs, func(a, b redis.Z) int {
		if c := cmp.Compare(b.Score, a.Score); c != 0 {
			return c
		}
		return cmp.Compare(b.Member.(string), a.Member.(string))
	})
}

// primaryFor returns the client of the node that holds key: on Redis Cluster
// the primary serving key's slot (WAIT counts the replicas of the node it is
// sent to, so it must go there), else the store's own client.
func (s *Store) primaryFor(ctx context.Context, key string) (redis.Cmdable, error) {
	if cc, ok := s.rdb.(*redis.ClusterClient); ok {
		node, err := cc.MasterForKey(ctx, key)
		if err != nil {
			return nil, fmt.Errorf("find the primary of %s: %w", key, err)
		}
		return node, nil
	}
	return s.rdb, nil
}

// WaitReplicasFor is WaitReplicas for the primary that holds the delivery
// with id (its shard's): what an enqueue of id waits for.
func (s *Store) WaitReplicasFor(ctx context.Context, id string, n int, timeout time.Duration) error {
	return s.waitReplicas(ctx, s.tag(id), n, timeout)
}

// readyTTL is how long a key written by Ready lives.
const readyTTL = 10 * time.Second

// Ready checks that Redis takes writes in the slot of every shard tag in tags
// (nil means every shard): one SET with a short expiry per shard, pipelined
// (on a cluster, one round trip per primary). A primary that is down, read
// only, out of memory or refusing writes (min-replicas-to-write) fails it,
// where PING would still answer.
func (s *Store) Ready(ctx context.Context, tags []string) error {
	if tags == nil {
		tags = s.tags
	}
	cmds, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, tag := range tags {
			p.Set(ctx, s.keys.ready(tag), "1", readyTTL)
		}
		return nil
	})
	if err != nil {
		for _, c := range cmds {
			if c.Err() != nil {
				return fmt.Errorf("write to redis: %w", c.Err())
			}
		}
		return fmt.Errorf("write to redis: %w", err)
	}
	return nil
}
