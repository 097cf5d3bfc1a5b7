package store

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/artificialstudio/webhook-dispatcher/dispatcher"
)

// Delivered markers: what the store keeps of a delivered delivery once
// asynq's completed task is gone (RETENTION), so that GET still answers
// "delivered" with deliveredAt and an enqueue of the id is refused (409)
// for DEDUPE_WINDOW.
//
// A marker is one field of a small hash: id → deliveredAt (Unix ms), in the
// hash of the UTC day of delivery and of the id's bucket (FNV-1a of the id
// modulo the bucket count), under the id's shard tag. Redis keeps a hash of
// at most hash-max-listpack-entries fields (128 by default) as one packed
// listpack, ~40 bytes per 24-character id (issue 16's measurement; see the
// README's Memory section); a key per id costs ~165 bytes and a field of a
// large hash ~90. A day's hash expires DEDUPE_WINDOW after the day ends, so
// a marker lives between DEDUPE_WINDOW and DEDUPE_WINDOW + 1 day; a lookup
// reads the hashes of the window's days (window/24h + 1 fields, one pipeline
// in one slot) and counts a marker only within the window.

// DefaultDedupeWindow is how long a delivered id stays reserved and
// answerable without asynq's completed task.
const DefaultDedupeWindow = 7 * 24 * time.Hour

// DefaultMarkerBuckets is the default number of a day's marker hashes over
// all shards: packed (≤ 128 fields each) up to ~100,000 deliveries a day.
const DefaultMarkerBuckets = 1024

// DefaultDeliveredLogTTL is how long a delivered delivery's attempt log is
// kept after its delivery.
const DefaultDeliveredLogTTL = 24 * time.Hour

const day = 24 * time.Hour

// Dedupe sets the delivered markers' lifetime (window; 0 means
// DefaultDedupeWindow), the number of a day's marker hashes over all shards
// (buckets, split evenly among the store's shards, see UseShards; 0 means
// DefaultMarkerBuckets; every process sharing the
// datastore must use the same number and shard count, or markers written
// with another are not found), and how long
// a delivered delivery's attempt log is kept (logTTL; 0 means
// DefaultDeliveredLogTTL). Call it before the store is used.
func (s *Store) Dedupe(window time.Duration, buckets int, logTTL time.Duration) {
	if window > 0 {
		s.dedupeWindow = window
	}
	if buckets > 0 {
		s.markerBuckets = buckets
	}
	if logTTL > 0 {
		s.deliveredLogTTL = logTTL
	}
}

func (s *Store) window() time.Duration {
	if s.dedupeWindow <= 0 {
		return DefaultDedupeWindow
	}
	return s.dedupeWindow
}

// bucket returns id's marker hash within its shard and day: one of
// ceil(buckets / shards), so DELIVERED_MARKER_BUCKETS is the number of a
// day's marker hashes over the whole datastore. With one shard it is
// FNV-1a-32(id) mod buckets, as markers have always been written. With
// several it is the high 32 bits of FNV-1a-64(id): the shard is
// FNV-1a-64(id) mod QUEUE_SHARDS (queue.Layout), and the 32- and 64-bit
// FNV-1a agree in their low 5 bits (same offset basis and prime modulo 32),
// so the 32-bit hash would leave each shard a fraction of its buckets (64
// of 1,024 with 48 shards) and fill those past what Redis packs.
func (s *Store) bucket(id string) uint32 {
	n := s.markerBuckets
	if n <= 0 {
		n = DefaultMarkerBuckets
	}
	if shards := len(s.tags); shards > 1 {
		perShard := (n + shards - 1) / shards
		h := fnv.New64a()
		h.Write([]byte(id))
		return uint32((h.Sum64() >> 32) % uint64(perShard))
	}
	h := fnv.New32a()
	h.Write([]byte(id))
	return h.Sum32() % uint32(n)
}

// dayOf is t's UTC day, counted from 1970-01-01.
func dayOf(t time.Time) int64 { return t.UnixMilli() / day.Milliseconds() }

// MarkDelivered records that id was delivered at at: its marker (kept
// DEDUPE_WINDOW) and its attempt log's expiry shortened to the delivered
// logs' lifetime (Dedupe), in one transaction. A later marker of the same
// id (a redelivery) replaces an earlier one of the same day.
func (s *Store) MarkDelivered(ctx context.Context, id string, at time.Time) error {
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		s.queueMarkDelivered(ctx, p, id, at)
		return nil
	})
	if err != nil {
		return fmt.Errorf("mark %s delivered: %w", id, err)
	}
	return nil
}

// AppendDelivered is AppendAttempt of a delivered attempt a together with
// MarkDelivered(id, a.EndedAt): the log entry and the marker go in the same
// group-committed pipeline, one Redis round trip shared with other
// deliveries' log writes instead of one more per delivery. The writes are
// not one transaction: should the connection break between them, the
// caller's retry writes them again (the log read skips a repeated entry,
// and the marker write is idempotent).
func (s *Store) AppendDelivered(ctx context.Context, id string, a dispatcher.Attempt) error {
	at := a.EndedAt
	if at.IsZero() {
		at = time.Now()
	}
	return s.appendAttempt(ctx, id, a, at)
}

// queueMarkDelivered queues on p MarkDelivered's writes, all in id's shard
// slot: the marker, its day hash's expiry, and the attempt log's expiry
// (after any other expiry of the log queued before it).
func (s *Store) queueMarkDelivered(ctx context.Context, p redis.Pipeliner, id string, at time.Time) {
	tag := s.tag(id)
	d := dayOf(at)
	key := s.keys.delivered(tag, d, s.bucket(id))
	expireAt := time.UnixMilli((d + 1) * day.Milliseconds()).Add(s.window())
	logTTL := s.deliveredLogTTL
	if logTTL <= 0 {
		logTTL = DefaultDeliveredLogTTL
	}
	p.HSet(ctx, key, id, at.UnixMilli())
	p.PExpireAt(ctx, key, expireAt)
	p.PExpire(ctx, s.keys.attempts(tag, id), logTTL)
}

// Delivered returns when id was last delivered, from its marker; ok is
// false when no marker within DEDUPE_WINDOW of now exists.
func (s *Store) Delivered(ctx context.Context, id string) (at time.Time, ok bool, err error) {
	cmds, err := s.deliveredLookup(ctx, id)
	if err != nil {
		return time.Time{}, false, err
	}
	return newestMarker(cmds, time.Now().Add(-s.window()))
}

// deliveredLookup reads id's field of the hash of every day of the window
// (window/24h + 1 days, today's first) in one pipeline.
func (s *Store) deliveredLookup(ctx context.Context, id string) ([]*redis.StringCmd, error) {
	var cmds []*redis.StringCmd
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		cmds = s.queueDeliveredLookup(ctx, p, id)
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("read delivered marker of %s: %w", id, err)
	}
	return cmds, nil
}

// queueDeliveredLookup queues on p the reads of deliveredLookup; all of them
// are in id's shard slot, so they go to one node in one round trip.
func (s *Store) queueDeliveredLookup(ctx context.Context, p redis.Pipeliner, id string) []*redis.StringCmd {
	tag, b := s.tag(id), s.bucket(id)
	today := dayOf(time.Now())
	days := int64(s.window()/day) + 1
	cmds := make([]*redis.StringCmd, 0, days+1)
	for d := today; d >= today-days; d-- {
		cmds = append(cmds, p.HGet(ctx, s.keys.delivered(tag, d, b), id))
	}
	return cmds
}

// forgetDelivered queues on p the removal of id's markers of every day of
// the window (see Forget).
func (s *Store) forgetDelivered(ctx context.Context, p redis.Pipeliner, id string) {
	tag, b := s.tag(id), s.bucket(id)
	today := dayOf(time.Now())
	for d := today; d >= today-int64(s.window()/day)-1; d-- {
		p.HDel(ctx, s.keys.delivered(tag, d, b), id)
	}
}

// newestMarker returns the newest marker time among cmds not before since.
func newestMarker(cmds []*redis.StringCmd, since time.Time) (at time.Time, ok bool, err error) {
	for _, c := range cmds {
		ms, err := c.Int64()
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			return time.Time{}, false, fmt.Errorf("read delivered marker: %w", err)
		}
		t := time.UnixMilli(ms).UTC()
		if !t.Before(since) && t.After(at) {
			at, ok = t, true
		}
	}
	return at, ok, nil
}
