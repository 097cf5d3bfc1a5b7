// Package store owns every Redis key of the dispatcher outside asynq's own:
// the attempt log, the failed records and their index, the per-delivery
// signing secrets, the replication barrier used for WAIT, and the health
// check. Keys are built only in
// keys.go, so a change of key scheme (hash tags for Redis Cluster) is one
// edit there.
//
// It touches asynq's keys only in repair.go, for the reconciler's atomic
// repairs of what asynq leaves behind (asynq has no API for them); the queue
// package goes through asynq's Client and Inspector. It knows nothing of HTTP.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/artificialstudio/webhook-dispatcher/dispatcher"
)

// MaxLoggedAttempts bounds one delivery's attempt log: the ten scheduled
// attempts of four full cycles plus manual redeliveries. Older entries are
// trimmed first.
const MaxLoggedAttempts = 50

// Store keeps the attempt log and the failed deliveries in Redis, next to
// asynq's keys. Attempt logs expire LogTTL after their last entry, except for
// failed deliveries, whose logs are kept as long as the failed record.
type Store struct {
	rdb    redis.UniversalClient
	keys   keyspace
	logTTL time.Duration
	tag    func(id string) string // id's shard hash tag; see UseShards
	tags   []string               // every shard's tag

	dedupeWindow    time.Duration // see Dedupe
	markerBuckets   int
	deliveredLogTTL time.Duration

	// One group-commit writer per shard tag, started on first use: a
	// pipeline of one shard's entries goes to one node, so a dead or slow
	// primary holds up only the writes of its own shards.
	writersMu sync.Mutex
	writers   map[string]chan appendRequest
	closed    bool
	stop      chan struct{}
	running   sync.WaitGroup
}

type appendRequest struct {
	key   string
	entry []byte
	done  chan error
	// id and deliveredAt, when set, add id's delivered marker (AppendDelivered).
	id          string
	deliveredAt time.Time
}

// maxAppendBatch bounds how many attempt-log writes share one pipeline.
const maxAppendBatch = 256

// New returns a store on rdb. logTTL must cover the retry window plus the
// retention of completed deliveries; zero means 7 days plus 48 hours.
func New(rdb redis.UniversalClient, logTTL time.Duration) *Store {
	if logTTL <= 0 {
		logTTL = 7*24*time.Hour + 48*time.Hour
	}
	return &Store{rdb: rdb, keys: defaultKeyspace, logTTL: logTTL,
		tag: func(string) string { return "" }, tags: []string{""},
		writers: map[string]chan appendRequest{}, stop: make(chan struct{})}
}

// Close stops the attempt-log writer; AppendAttempt fails afterwards.
func (s *Store) Close() {
	s.writersMu.Lock()
	if !s.closed {
		s.closed = true
		close(s.stop)
	}
	s.writersMu.Unlock()
	s.running.Wait()
}

// writer returns the channel of tag's attempt-log writer, starting it on
// first use; ok is false after Close.
func (s *Store) writer(tag string) (ch chan appendRequest, ok bool) {
	s.writersMu.Lock()
	defer s.writersMu.Unlock()
	if s.closed {
		return nil, false
	}
	if ch = s.writers[tag]; ch == nil {
		ch = make(chan appendRequest)
		s.writers[tag] = ch
		s.running.Add(1)
		go s.writeLoop(ch)
	}
	return ch, true
}

// ErrStoreClosed is returned by AppendAttempt after Close.
var ErrStoreClosed = errors.New("store: closed")

// AppendAttempt adds a to id's attempt log and returns once Redis holds it.
// Concurrent calls for ids of one shard share one pipeline (a group commit):
// under load a worker makes one Redis round trip for many deliveries' log
// entries, not one each. Shards do not share pipelines, so on a cluster a
// primary that is down stalls only its own shards' writes.
func (s *Store) AppendAttempt(ctx context.Context, id string, a dispatcher.Attempt) error {
	return s.appendAttempt(ctx, id, a, time.Time{})
}

// appendAttempt is AppendAttempt, also writing id's delivered marker at
// deliveredAt unless it is zero (AppendDelivered).
func (s *Store) appendAttempt(ctx context.Context, id string, a dispatcher.Attempt, deliveredAt time.Time) error {
	entry, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("encode attempt for %s: %w", id, err)
	}
	tag := s.tag(id)
	ch, ok := s.writer(tag)
	if !ok {
		return ErrStoreClosed
	}
	req := appendRequest{key: s.keys.attempts(tag, id), entry: entry, done: make(chan error, 1),
		id: id, deliveredAt: deliveredAt}
	select {
	case ch <- req:
	case <-s.stop:
		return ErrStoreClosed
	case <-ctx.Done():
		return fmt.Errorf("append attempt for %s: %w", id, ctx.Err())
	}
	select {
	case err := <-req.done:
		if err != nil {
			return fmt.Errorf("append attempt for %s: %w", id, err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("append attempt for %s: %w", id, ctx.Err())
	}
}

// writeLoop serves one shard's writes: it takes the first waiting write,
// gathers whatever else is waiting, and sends them all in one plain pipeline
// (no MULTI/EXEC: the entries need no isolation from each other).
func (s *Store) writeLoop(appends chan appendRequest) {
	defer s.running.Done()
	batch := make([]appendRequest, 0, maxAppendBatch)
	for {
		select {
		case <-s.stop:
			return
		case r := <-appends:
			batch = append(batch[:0], r)
		}
	gather:
		for len(batch) < maxAppendBatch {
			select {
			case r := <-appends:
				batch = append(batch, r)
			default:
				break gather
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, r := range batch {
				p.RPush(ctx, r.key, r.entry)
				p.LTrim(ctx, r.key, -MaxLoggedAttempts, -1)
				p.Expire(ctx, r.key, s.logTTL)
				if !r.deliveredAt.IsZero() {
					s.queueMarkDelivered(ctx, p, r.id, r.deliveredAt)
				}
			}
			return nil
		})
		cancel()
		for _, r := range batch {
			r.done <- err
		}
	}
}

// LastAttempt returns the newest entry of id's log; ok is false when the log is empty.
func (s *Store) LastAttempt(ctx context.Context, id string) (a dispatcher.Attempt, ok bool, err error) {
	raw, err := s.rdb.LIndex(ctx, s.keys.attempts(s.tag(id), id), -1).Bytes()
	if errors.Is(err, redis.Nil) {
		return dispatcher.Attempt{}, false, nil
	}
	if err != nil {
		return dispatcher.Attempt{}, false, fmt.Errorf("read last attempt of %s: %w", id, err)
	}
	if err := json.Unmarshal(raw, &a); err != nil {
		return dispatcher.Attempt{}, false, fmt.Errorf("decode last attempt of %s: %w", id, err)
	}
	return a, true, nil
}

// Attempts returns id's whole log, oldest first. An entry written twice (a
// write retried after Redis took it but its answer was lost: every entry
// carries its start time to the nanosecond, so copies are byte-identical and
// adjacent) is returned once.
func (s *Store) Attempts(ctx context.Context, id string) ([]dispatcher.Attempt, error) {
	raws, err := s.rdb.LRange(ctx, s.keys.attempts(s.tag(id), id), 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("read attempts of %s: %w", id, err)
	}
	out := make([]dispatcher.Attempt, 0, len(raws))
	for i, raw := range raws {
		if i > 0 && raw == raws[i-1] {
			continue
		}
		var a dispatcher.Attempt
		if err := json.Unmarshal([]byte(raw), &a); err != nil {
			return nil, fmt.Errorf("decode attempt of %s: %w", id, err)
		}
		out = append(out, a)
	}
	return out, nil
}

// MarkFailed records r and keeps its attempt log and signing secret without
// expiry, in one transaction.
func (s *Store) MarkFailed(ctx context.Context, r dispatcher.FailedRecord) error {
	raw, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode failed record %s: %w", r.ID, err)
	}
	tag := s.tag(r.ID) // one slot: the transaction is allowed on a cluster
	_, err = s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, s.keys.failed(tag, r.ID), raw, 0)
		p.ZAdd(ctx, s.keys.failedIndex(tag), redis.Z{Score: float64(r.FailedAt.UnixMilli()), Member: r.ID})
		p.Persist(ctx, s.keys.attempts(tag, r.ID))
		p.Persist(ctx, s.keys.secret(tag, r.ID)) // a no-op for unsigned deliveries
		return nil
	})
	if err != nil {
		return fmt.Errorf("mark %s failed: %w", r.ID, err)
	}
	return nil
}

// Failed returns the failed record of id; ok is false when there is none.
func (s *Store) Failed(ctx context.Context, id string) (r dispatcher.FailedRecord, ok bool, err error) {
	raw, err := s.rdb.Get(ctx, s.keys.failed(s.tag(id), id)).Bytes()
	if errors.Is(err, redis.Nil) {
		return dispatcher.FailedRecord{}, false, nil
	}
	if err != nil {
		return dispatcher.FailedRecord{}, false, fmt.Errorf("read failed record %s: %w", id, err)
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		return dispatcher.FailedRecord{}, false, fmt.Errorf("decode failed record %s: %w", id, err)
	}
	return r, true, nil
}

// ClearFailed forgets that id failed (it has been queued again) and lets its
// attempt log and signing secret expire like any other's, LogTTL from now.
func (s *Store) ClearFailed(ctx context.Context, id string) error {
	tag := s.tag(id) // one slot: the transaction is allowed on a cluster
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, s.keys.failed(tag, id))
		p.ZRem(ctx, s.keys.failedIndex(tag), id)
		p.Expire(ctx, s.keys.attempts(tag, id), s.logTTL)
		p.Expire(ctx, s.keys.secret(tag, id), s.logTTL)
		return nil
	})
	if err != nil {
		return fmt.Errorf("clear failed record %s: %w", id, err)
	}
	return nil
}

// ListFailed returns up to limit failed records, newest first, starting after
// cursor ("" for the first page), and the cursor of the next page ("" at the end).
func (s *Store) ListFailed(ctx context.Context, cursor string, limit int) ([]dispatcher.FailedRecord, string, error) {
	if limit <= 0 {
		limit = 50
	}
	max := "+inf"
	var afterScore int64
	var afterID string
	if cursor != "" {
		scoreText, id, found := strings.Cut(cursor, ":")
		score, err := strconv.ParseInt(scoreText, 10, 64)
		if !found || err != nil || id == "" {
			return nil, "", fmt.Errorf("%w: %q", dispatcher.ErrBadCursor, cursor)
		}
		afterScore, afterID = score, id
		max = scoreText
	}
	// Each shard's index gives its newest limit+1 after the cursor; merged in
	// the cursor's order (score, then id, both descending), the first limit+1
	// of all of them are the page and the sign of a next one.
	var ids []redis.Z
	for _, tag := range s.tags {
		zs, err := s.listIndex(ctx, tag, max, cursor != "", afterScore, afterID, limit)
		if err != nil {
			return nil, "", err
		}
		ids = append(ids, zs...)
	}
	sortNewestFirst(ids)
	next := ""
	if len(ids) > limit {
		ids = ids[:limit]
		last := ids[len(ids)-1]
		next = strconv.FormatInt(int64(last.Score), 10) + ":" + last.Member.(string)
	}
	out := make([]dispatcher.FailedRecord, 0, len(ids))
	for _, z := range ids {
		r, ok, err := s.Failed(ctx, z.Member.(string))
		if err != nil {
			return nil, "", err
		}
		if ok {
			out = append(out, r)
		}
	}
	return out, next, nil
}

// FailedSince returns the ids of deliveries that failed at or after since,
// oldest first.
func (s *Store) FailedSince(ctx context.Context, since time.Time) ([]string, error) {
	var all []redis.Z
	for _, tag := range s.tags {
		zs, err := s.rdb.ZRangeByScoreWithScores(ctx, s.keys.failedIndex(tag), &redis.ZRangeBy{
			Min: strconv.FormatInt(since.UnixMilli(), 10), Max: "+inf",
		}).Result()
		if err != nil {
			return nil, fmt.Errorf("list failed deliveries since %s: %w", since.Format(time.RFC3339), err)
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

// CountFailed returns how many failed deliveries the store holds.
func (s *Store) CountFailed(ctx context.Context) (int64, error) {
	var total int64
	for _, tag := range s.tags {
		n, err := s.rdb.ZCard(ctx, s.keys.failedIndex(tag)).Result()
		if err != nil {
			return 0, fmt.Errorf("count failed deliveries: %w", err)
		}
		total += n
	}
	return total, nil
}

// Ping checks that Redis answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("ping redis: %w", err)
	}
	return nil
}

// WaitReplicas returns nil once n replicas hold every write made so far, or
// an error after timeout (bounded by ctx's deadline). WAIT only counts its own
// connection's writes, and asynq's enqueue ran on a connection of its
// choosing, so the WAIT follows a write of its own on one pipelined
// connection: that write comes after the task in the replication stream, and
// a replica that acknowledges it holds the task. n <= 0 returns nil at once.
//
// WaitReplicas waits on every shard's primary in turn; WaitReplicasFor waits
// on the one primary that holds a given delivery.
func (s *Store) WaitReplicas(ctx context.Context, n int, timeout time.Duration) error {
	for _, tag := range s.tags {
		if err := s.waitReplicas(ctx, tag, n, timeout); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) waitReplicas(ctx context.Context, tag string, n int, timeout time.Duration) error {
	if n <= 0 {
		return nil
	}
	if dl, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(dl))
	}
	if timeout < time.Millisecond { // WAIT n 0 would block for ever
		return fmt.Errorf("wait for replicas: %w", context.DeadlineExceeded)
	}
	key := s.keys.barrier(tag)
	node, err := s.primaryFor(ctx, key)
	if err != nil {
		return fmt.Errorf("wait for replicas: %w", err)
	}
	pipe := node.Pipeline()
	pipe.Incr(ctx, key)
	acked := pipe.Do(ctx, "WAIT", n, timeout.Milliseconds())
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("wait for replicas: %w", err)
	}
	if got, err := acked.Int64(); err != nil || got < int64(n) {
		return fmt.Errorf("wait for replicas: %d of %d acknowledged within %s", got, n, timeout)
	}
	return nil
}
