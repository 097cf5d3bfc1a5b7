package dispatcher

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
)

// MaxLoggedAttempts bounds one delivery's attempt log: the ten scheduled
// attempts of four full cycles plus manual redeliveries. Older entries are
// trimmed first.
const MaxLoggedAttempts = 50

// ResponseSnippetBytes is how much of each response body the attempt log keeps.
const ResponseSnippetBytes = 1024

// Attempt is one entry of the attempt log: one POST (or one refused dial).
type Attempt struct {
	// Attempt counts from 1 within a delivery cycle; a manual redelivery starts
	// a new cycle at 1.
	Attempt    int       `json:"attempt"`
	StartedAt  time.Time `json:"startedAt"`
	EndedAt    time.Time `json:"endedAt"`
	DurationMs float64   `json:"durationMs"`
	// Outcome is "delivered" or the error class: http_status, timeout, dns,
	// connect, tls, blocked.
	Outcome string `json:"outcome"`
	// Status is the HTTP status code, 0 when no response arrived.
	Status int    `json:"status,omitempty"`
	Error  string `json:"error,omitempty"`
	// ResponseBody is the first ResponseSnippetBytes of the response body.
	ResponseBody string `json:"responseBody,omitempty"`
}

// FailedRecord is what the store keeps of a delivery that used up its
// attempts. It lives outside asynq's archive, which trims itself (10,000 tasks
// or 90 days per queue in asynq v0.26), so a failed delivery is never dropped
// silently: it stays until it is redelivered.
type FailedRecord struct {
	Delivery
	FailedAt  time.Time `json:"failedAt"`
	LastError string    `json:"lastError"`
}

// Store keeps the attempt log and the failed deliveries in Redis, next to
// asynq's keys. Attempt logs expire LogTTL after their last entry, except for
// failed deliveries, whose logs are kept as long as the failed record.
type Store struct {
	rdb    redis.UniversalClient
	prefix string
	logTTL time.Duration

	startWriter sync.Once
	appends     chan appendRequest
	stop        chan struct{}
	stopped     chan struct{}
}

type appendRequest struct {
	key   string
	entry []byte
	done  chan error
}

// maxAppendBatch bounds how many attempt-log writes share one pipeline.
const maxAppendBatch = 256

// NewStore returns a store on rdb. logTTL must cover the retry window plus the
// retention of completed deliveries; zero means 7 days plus 48 hours.
func NewStore(rdb redis.UniversalClient, logTTL time.Duration) *Store {
	if logTTL <= 0 {
		logTTL = 7*24*time.Hour + 48*time.Hour
	}
	return &Store{rdb: rdb, prefix: "webhook:", logTTL: logTTL,
		appends: make(chan appendRequest), stop: make(chan struct{}), stopped: make(chan struct{})}
}

// Close stops the attempt-log writer; AppendAttempt fails afterwards.
func (s *Store) Close() {
	s.startWriter.Do(func() { close(s.stopped) }) // never started: nothing to wait for
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.stopped
}

func (s *Store) attemptsKey(id string) string { return s.prefix + "attempts:" + id }
func (s *Store) failedKey(id string) string   { return s.prefix + "failed:" + id }
func (s *Store) failedIndex() string          { return s.prefix + "failed" }

// ErrStoreClosed is returned by AppendAttempt after Close.
var ErrStoreClosed = errors.New("dispatcher: store closed")

// AppendAttempt adds a to id's attempt log and returns once Redis holds it.
// Concurrent calls share one pipeline (a group commit): under load a worker
// makes one Redis round trip for many deliveries' log entries, not one each.
func (s *Store) AppendAttempt(ctx context.Context, id string, a Attempt) error {
	entry, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("encode attempt for %s: %w", id, err)
	}
	s.startWriter.Do(func() { go s.writeLoop() })
	req := appendRequest{key: s.attemptsKey(id), entry: entry, done: make(chan error, 1)}
	select {
	case s.appends <- req:
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

// writeLoop takes the first waiting write, gathers whatever else is waiting,
// and sends them all in one plain pipeline (no MULTI/EXEC: the entries need no
// isolation from each other).
func (s *Store) writeLoop() {
	defer close(s.stopped)
	batch := make([]appendRequest, 0, maxAppendBatch)
	for {
		select {
		case <-s.stop:
			return
		case r := <-s.appends:
			batch = append(batch[:0], r)
		}
	gather:
		for len(batch) < maxAppendBatch {
			select {
			case r := <-s.appends:
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
func (s *Store) LastAttempt(ctx context.Context, id string) (a Attempt, ok bool, err error) {
	raw, err := s.rdb.LIndex(ctx, s.attemptsKey(id), -1).Bytes()
	if errors.Is(err, redis.Nil) {
		return Attempt{}, false, nil
	}
	if err != nil {
		return Attempt{}, false, fmt.Errorf("read last attempt of %s: %w", id, err)
	}
	if err := json.Unmarshal(raw, &a); err != nil {
		return Attempt{}, false, fmt.Errorf("decode last attempt of %s: %w", id, err)
	}
	return a, true, nil
}

// Attempts returns id's whole log, oldest first.
func (s *Store) Attempts(ctx context.Context, id string) ([]Attempt, error) {
	raws, err := s.rdb.LRange(ctx, s.attemptsKey(id), 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("read attempts of %s: %w", id, err)
	}
	out := make([]Attempt, 0, len(raws))
	for _, raw := range raws {
		var a Attempt
		if err := json.Unmarshal([]byte(raw), &a); err != nil {
			return nil, fmt.Errorf("decode attempt of %s: %w", id, err)
		}
		out = append(out, a)
	}
	return out, nil
}

// MarkFailed records r and keeps its attempt log without expiry, in one
// transaction.
func (s *Store) MarkFailed(ctx context.Context, r FailedRecord) error {
	raw, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode failed record %s: %w", r.ID, err)
	}
	_, err = s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, s.failedKey(r.ID), raw, 0)
		p.ZAdd(ctx, s.failedIndex(), redis.Z{Score: float64(r.FailedAt.UnixMilli()), Member: r.ID})
		p.Persist(ctx, s.attemptsKey(r.ID))
		return nil
	})
	if err != nil {
		return fmt.Errorf("mark %s failed: %w", r.ID, err)
	}
	return nil
}

// Failed returns the failed record of id; ok is false when there is none.
func (s *Store) Failed(ctx context.Context, id string) (r FailedRecord, ok bool, err error) {
	raw, err := s.rdb.Get(ctx, s.failedKey(id)).Bytes()
	if errors.Is(err, redis.Nil) {
		return FailedRecord{}, false, nil
	}
	if err != nil {
		return FailedRecord{}, false, fmt.Errorf("read failed record %s: %w", id, err)
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		return FailedRecord{}, false, fmt.Errorf("decode failed record %s: %w", id, err)
	}
	return r, true, nil
}

// ClearFailed forgets that id failed (it has been queued again) and lets its
// attempt log expire like any other.
func (s *Store) ClearFailed(ctx context.Context, id string) error {
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, s.failedKey(id))
		p.ZRem(ctx, s.failedIndex(), id)
		p.Expire(ctx, s.attemptsKey(id), s.logTTL)
		return nil
	})
	if err != nil {
		return fmt.Errorf("clear failed record %s: %w", id, err)
	}
	return nil
}

// ErrBadCursor is returned for a listing cursor this store did not issue.
var ErrBadCursor = errors.New("dispatcher: invalid cursor")

// ListFailed returns up to limit failed records, newest first, starting after
// cursor ("" for the first page), and the cursor of the next page ("" at the end).
func (s *Store) ListFailed(ctx context.Context, cursor string, limit int) ([]FailedRecord, string, error) {
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
			return nil, "", fmt.Errorf("%w: %q", ErrBadCursor, cursor)
		}
		afterScore, afterID = score, id
		max = scoreText
	}
	// Members with the cursor's score come back in descending id order; those
	// not below the cursor's id were on an earlier page. Over-fetch to skip them.
	var ids []redis.Z
	for fetch := int64(limit) + 1; ; fetch *= 2 {
		zs, err := s.rdb.ZRevRangeByScoreWithScores(ctx, s.failedIndex(), &redis.ZRangeBy{
			Max: max, Min: "-inf", Count: fetch,
		}).Result()
		if err != nil {
			return nil, "", fmt.Errorf("list failed deliveries: %w", err)
		}
		ids = ids[:0]
		for _, z := range zs {
			id := z.Member.(string)
			if cursor != "" && int64(z.Score) == afterScore && id >= afterID {
				continue
			}
			ids = append(ids, z)
		}
		if len(ids) > limit || int64(len(zs)) < fetch {
			break
		}
	}
	next := ""
	if len(ids) > limit {
		ids = ids[:limit]
		last := ids[len(ids)-1]
		next = strconv.FormatInt(int64(last.Score), 10) + ":" + last.Member.(string)
	}
	out := make([]FailedRecord, 0, len(ids))
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
	ids, err := s.rdb.ZRangeByScore(ctx, s.failedIndex(), &redis.ZRangeBy{
		Min: strconv.FormatInt(since.UnixMilli(), 10), Max: "+inf",
	}).Result()
	if err != nil {
		return nil, fmt.Errorf("list failed deliveries since %s: %w", since.Format(time.RFC3339), err)
	}
	return ids, nil
}

// CountFailed returns how many failed deliveries the store holds.
func (s *Store) CountFailed(ctx context.Context) (int64, error) {
	n, err := s.rdb.ZCard(ctx, s.failedIndex()).Result()
	if err != nil {
		return 0, fmt.Errorf("count failed deliveries: %w", err)
	}
	return n, nil
}
