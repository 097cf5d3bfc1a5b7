package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/encoding/protowire"
)

// This file holds what the reconciler (package dispatcher/reconcile) needs of
// Redis: a fleet-wide lock, and checks and repairs of asynq's three records
// of a task (the active list, the lease set and the task hash) that can
// disagree after a lost key, a failover or a script that asynq aborted half
// way with NOT FOUND (asynq v0.26 Lua scripts do not roll back).
//
// Every repair is one Lua script over the keys of one queue (one hash tag,
// one cluster slot) that checks the fault it repairs before it writes, so it
// is safe with any number of reconcilers and asynq servers running at once:
// a repair that finds the fault gone does nothing.

// TryLock takes the reconciler's lock for ttl and reports whether it got it.
// The lock is never released early: a pass runs at most once per ttl across
// every process that shares the Redis.
func (s *Store) TryLock(ctx context.Context, ttl time.Duration) (bool, error) {
	var b [8]byte
	_, _ = rand.Read(b[:])
	ok, err := s.rdb.SetNX(ctx, s.keys.reconcileLock(), hex.EncodeToString(b[:]), ttl).Result()
	if err != nil {
		return false, fmt.Errorf("take reconcile lock: %w", err)
	}
	return ok, nil
}

// Active returns the ids in queue's active list and the lease expiry of each
// id in its lease set, read in one transaction.
func (s *Store) Active(ctx context.Context, queue string) (active []string, leases map[string]time.Time, err error) {
	k := asynqKeys{queue}
	var lr *redis.StringSliceCmd
	var zr *redis.ZSliceCmd
	_, err = s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		lr = p.LRange(ctx, k.active(), 0, -1)
		zr = p.ZRangeWithScores(ctx, k.lease(), 0, -1)
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("read active tasks of %s: %w", queue, err)
	}
	leases = make(map[string]time.Time, len(zr.Val()))
	for _, z := range zr.Val() {
		leases[z.Member.(string)] = time.Unix(int64(z.Score), 0)
	}
	return lr.Val(), leases, nil
}

// restoreLeaseScript gives an active task without a lease entry one that
// expires at ARGV[2]: asynq's heartbeat extends it while a worker still runs
// the task, and once it expires the task is recovered like any other.
//
// KEYS[1] active, KEYS[2] lease; ARGV[1] id, ARGV[2] expiry (Unix s).
var restoreLeaseScript = redis.NewScript(`
if redis.call("ZSCORE", KEYS[2], ARGV[1]) then return 0 end
if not redis.call("LPOS", KEYS[1], ARGV[1]) then return 0 end
redis.call("ZADD", KEYS[2], ARGV[2], ARGV[1])
return 1`)

// RestoreLease gives id, active in queue without a lease, a lease that
// expires at until. It reports false when id has a lease or is not active.
func (s *Store) RestoreLease(ctx context.Context, queue, id string, until time.Time) (bool, error) {
	k := asynqKeys{queue}
	n, err := restoreLeaseScript.Run(ctx, s.rdb, []string{k.active(), k.lease()}, id, until.Unix()).Int()
	if err != nil {
		return false, fmt.Errorf("restore lease of %s: %w", id, err)
	}
	return n == 1, nil
}

// requeueScript moves a task whose lease expired before ARGV[2] from active
// back to the head of pending, as asynq's own Requeue does at shutdown: no
// attempt is spent. A task whose hash is gone is dropped from both sets.
//
// KEYS[1] active, KEYS[2] lease, KEYS[3] pending, KEYS[4] task hash;
// ARGV[1] id, ARGV[2] now (Unix s). Returns 1 requeued, -1 dropped, 0 no-op.
var requeueScript = redis.NewScript(`
local score = redis.call("ZSCORE", KEYS[2], ARGV[1])
if not score or tonumber(score) >= tonumber(ARGV[2]) then return 0 end
if redis.call("LREM", KEYS[1], 0, ARGV[1]) == 0 then return 0 end
redis.call("ZREM", KEYS[2], ARGV[1])
if redis.call("EXISTS", KEYS[4]) == 0 then return -1 end
redis.call("RPUSH", KEYS[3], ARGV[1])
redis.call("HSET", KEYS[4], "state", "pending")
return 1`)

// ErrGhost means a task id was listed as active but its hash was gone; the
// listing was dropped.
var ErrGhost = errors.New("store: active task without its hash")

// RequeueExpired puts id, active in queue with a lease that expired before
// now, back at the head of the pending list without spending an attempt. It
// reports false when the lease is live or id is no longer active.
func (s *Store) RequeueExpired(ctx context.Context, queue, id string, now time.Time) (bool, error) {
	k := asynqKeys{queue}
	n, err := requeueScript.Run(ctx, s.rdb, []string{k.active(), k.lease(), k.pending(), k.task(id)}, id, now.Unix()).Int()
	if err != nil {
		return false, fmt.Errorf("requeue %s: %w", id, err)
	}
	if n == -1 {
		return false, fmt.Errorf("requeue %s: %w", id, ErrGhost)
	}
	return n == 1, nil
}

// staleLeaseScript handles a lease entry whose task is not in the active
// list: a hash still saying active is put back in the active list (its lease
// then expires and it is recovered); otherwise the entry is dropped, or
// asynq's recoverer would fail on it with NOT FOUND every minute.
//
// KEYS[1] active, KEYS[2] lease, KEYS[3] task hash; ARGV[1] id.
// Returns 2 put back, 1 dropped, 0 no-op.
var staleLeaseScript = redis.NewScript(`
if not redis.call("ZSCORE", KEYS[2], ARGV[1]) then return 0 end
if redis.call("LPOS", KEYS[1], ARGV[1]) then return 0 end
if redis.call("HGET", KEYS[3], "state") == "active" then
	redis.call("LPUSH", KEYS[1], ARGV[1])
	return 2
end
redis.call("ZREM", KEYS[2], ARGV[1])
return 1`)

// FixStaleLease repairs a lease entry of queue whose id is not active (see
// staleLeaseScript); restored is true when the task went back to the active
// list, dropped when the entry was removed.
func (s *Store) FixStaleLease(ctx context.Context, queue, id string) (restored, dropped bool, err error) {
	k := asynqKeys{queue}
	n, err := staleLeaseScript.Run(ctx, s.rdb, []string{k.active(), k.lease(), k.task(id)}, id).Int()
	if err != nil {
		return false, false, fmt.Errorf("fix lease of %s: %w", id, err)
	}
	return n == 2, n == 1, nil
}

// orphanScript checks a batch of task hashes of one queue and puts each
// whose state names a list or set that does not hold it back there: active
// with a lease expiring at ARGV[2] (recovered like a crashed worker's task
// once it expires), scheduled, retry and archived due now, completed
// expiring at ARGV[4]. Pending is not checked: no asynq script leaves a
// pending orphan, and a search of a long pending list per task would cost
// O(n²).
//
// KEYS[1] active, [2] lease, [3] scheduled, [4] retry, [5] archived,
// [6] completed, [7…] task hashes; ARGV[1] task key prefix, ARGV[2] lease
// expiry, ARGV[3] now, ARGV[4] completed expiry (Unix s).
// Returns state, id pairs of the tasks put back.
var orphanScript = redis.NewScript(`
local out = {}
local plen = string.len(ARGV[1])
local sets = {scheduled = 3, retry = 4, archived = 5, completed = 6}
for i = 7, #KEYS do
	local state = redis.call("HGET", KEYS[i], "state")
	if state then
		local id = string.sub(KEYS[i], plen + 1)
		if state == "active" then
			if not redis.call("LPOS", KEYS[1], id) then
				redis.call("LPUSH", KEYS[1], id)
				redis.call("ZADD", KEYS[2], "NX", ARGV[2], id)
				table.insert(out, state)
				table.insert(out, id)
			end
		elseif sets[state] then
			local key = KEYS[sets[state]]
			if not redis.call("ZSCORE", key, id) then
				local score = ARGV[3]
				if state == "completed" then score = ARGV[4] end
				redis.call("ZADD", key, score, id)
				table.insert(out, state)
				table.insert(out, id)
			end
		end
	end
end
return out`)

// Orphan is a task that a repair put back where its hash says it is.
type Orphan struct{ ID, State string }

// ScanOrphans walks queue's task hashes from cursor (0 to start) and repairs
// the orphans among up to count of them (see orphanScript). It returns the
// repaired tasks and the next cursor, 0 when the walk is over. An active
// orphan gets a lease expiring at leaseUntil; a completed one is kept until
// completedUntil.
func (s *Store) ScanOrphans(ctx context.Context, queue string, cursor uint64, count int64, leaseUntil, completedUntil time.Time) ([]Orphan, uint64, error) {
	k := asynqKeys{queue}
	keys, next, err := s.rdb.Scan(ctx, cursor, k.taskPrefix()+"*", count).Result()
	if err != nil {
		return nil, 0, fmt.Errorf("scan tasks of %s: %w", queue, err)
	}
	if len(keys) == 0 {
		return nil, next, nil
	}
	all := append([]string{k.active(), k.lease(), k.scheduled(), k.retry(), k.archived(), k.completed()}, keys...)
	now := time.Now()
	res, err := orphanScript.Run(ctx, s.rdb, all, k.taskPrefix(), leaseUntil.Unix(), now.Unix(), completedUntil.Unix()).StringSlice()
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, 0, fmt.Errorf("repair orphans of %s: %w", queue, err)
	}
	var out []Orphan
	for i := 0; i+1 < len(res); i += 2 {
		out = append(out, Orphan{State: res[i], ID: res[i+1]})
	}
	return out, next, nil
}

// Archived returns the ids in queue's archive (at most asynq's 10,000).
func (s *Store) Archived(ctx context.Context, queue string) ([]string, error) {
	ids, err := s.rdb.ZRange(ctx, asynqKeys{queue}.archived(), 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("read archive of %s: %w", queue, err)
	}
	return ids, nil
}

// WithoutFailedRecord returns the ids among ids that have no failed record.
func (s *Store) WithoutFailedRecord(ctx context.Context, ids []string) ([]string, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	cmds := make([]*redis.IntCmd, len(ids))
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			cmds[i] = p.Exists(ctx, s.keys.failed(s.tag(id), id))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("look up failed records: %w", err)
	}
	var out []string
	for i, c := range cmds {
		if c.Val() == 0 {
			out = append(out, ids[i])
		}
	}
	return out, nil
}

// Reserved reports whether id is taken by a delivery the store knows of
// outside asynq: a failed record (kept until purged or FAILED_RETENTION) or
// a delivered marker within DEDUPE_WINDOW (see MarkDelivered). Enqueue
// refuses a reserved id (409) even after asynq has trimmed the task from its
// archive or dropped the completed task (RETENTION).
func (s *Store) Reserved(ctx context.Context, id string) (bool, error) {
	// One round trip: the failed record and the delivered markers of id
	// share its shard's slot.
	var failed *redis.IntCmd
	var markers []*redis.StringCmd
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		failed = p.Exists(ctx, s.keys.failed(s.tag(id), id))
		markers = s.queueDeliveredLookup(ctx, p, id)
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return false, fmt.Errorf("check reservation of %s: %w", id, err)
	}
	if failed.Val() > 0 {
		return true, nil
	}
	_, ok, err := newestMarker(markers, time.Now().Add(-s.window()))
	if err != nil {
		return false, fmt.Errorf("check reservation of %s: %w", id, err)
	}
	return ok, nil
}

// FailedBefore returns the ids of deliveries that failed before t, oldest
// first, at most limit (0 means all).
func (s *Store) FailedBefore(ctx context.Context, t time.Time, limit int64) ([]string, error) {
	var all []redis.Z
	for _, tag := range s.tags {
		zs, err := s.rdb.ZRangeByScoreWithScores(ctx, s.keys.failedIndex(tag), &redis.ZRangeBy{
			Min: "-inf", Max: "(" + strconv.FormatInt(t.UnixMilli(), 10), Count: limit,
		}).Result()
		if err != nil {
			return nil, fmt.Errorf("list failed deliveries before %s: %w", t.Format(time.RFC3339), err)
		}
		all = append(all, zs...)
	}
	sortNewestFirst(all)
	ids := make([]string, 0, len(all))
	for i := len(all) - 1; i >= 0; i-- { // oldest first
		ids = append(ids, all[i].Member.(string))
	}
	if limit > 0 && int64(len(ids)) > limit {
		ids = ids[:limit]
	}
	return ids, nil
}

// Forget deletes everything the store holds of id: its failed record, its
// index entry, its attempt log, its signing secret and its delivered markers. The caller removes asynq's task first, so
// a crash in between leaves a failed record (listed, redeliverable), never a
// task without one.
func (s *Store) Forget(ctx context.Context, id string) error {
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		tag := s.tag(id) // one slot: the transaction is allowed on a cluster
		p.Del(ctx, s.keys.failed(tag, id), s.keys.attempts(tag, id), s.keys.secret(tag, id))
		p.ZRem(ctx, s.keys.failedIndex(tag), id)
		s.forgetDelivered(ctx, p, id)
		return nil
	})
	if err != nil {
		return fmt.Errorf("forget %s: %w", id, err)
	}
	return nil
}

// settleScript ends the run of a task whose lease expired before ARGV[2] as
// asynq's own Retry or Archive would: out of active and lease, into the
// retry or archived set at score ARGV[3], state ARGV[5], and its message
// updated by appending ARGV[4] (protobuf fields appended to an encoded
// message override the earlier ones).
//
// KEYS[1] active, KEYS[2] lease, KEYS[3] retry or archived, KEYS[4] task hash;
// ARGV[1] id, ARGV[2] expired before (Unix s), ARGV[3] score, ARGV[4] message
// suffix, ARGV[5] state. Returns 1 settled, 0 no-op.
var settleScript = redis.NewScript(`
local score = redis.call("ZSCORE", KEYS[2], ARGV[1])
if not score or tonumber(score) >= tonumber(ARGV[2]) then return 0 end
local msg = redis.call("HGET", KEYS[4], "msg")
if not msg then return 0 end
if redis.call("LREM", KEYS[1], 0, ARGV[1]) == 0 then return 0 end
redis.call("ZREM", KEYS[2], ARGV[1])
redis.call("ZADD", KEYS[3], ARGV[3], ARGV[1])
redis.call("HSET", KEYS[4], "msg", msg .. ARGV[4], "state", ARGV[5])
return 1`)

// SettleExpired ends the run of id, active in queue with a lease that
// expired before expiredBefore, whose attempt ran and failed: with archive
// false it goes to the retry set due at due with its retry count set to
// retried (the attempt is spent), with archive true to the archive. errMsg
// becomes the task's last error. It reports false when the lease is live or
// the task is no longer active.
func (s *Store) SettleExpired(ctx context.Context, queue, id string, expiredBefore time.Time, archive bool, retried int, due time.Time, errMsg string) (bool, error) {
	k := asynqKeys{queue}
	now := time.Now()
	target, state := k.retry(), "retry"
	var suffix []byte
	if archive {
		target, state, due = k.archived(), "archived", now
	} else {
		suffix = protowire.AppendTag(suffix, 6, protowire.VarintType) // TaskMessage.retried
		suffix = protowire.AppendVarint(suffix, uint64(retried))
	}
	suffix = protowire.AppendTag(suffix, 7, protowire.BytesType) // TaskMessage.error_msg
	suffix = protowire.AppendString(suffix, errMsg)
	suffix = protowire.AppendTag(suffix, 11, protowire.VarintType) // TaskMessage.last_failed_at
	suffix = protowire.AppendVarint(suffix, uint64(now.Unix()))
	n, err := settleScript.Run(ctx, s.rdb, []string{k.active(), k.lease(), target, k.task(id)},
		id, expiredBefore.Unix(), due.Unix(), suffix, state).Int()
	if err != nil {
		return false, fmt.Errorf("settle %s: %w", id, err)
	}
	return n == 1, nil
}

// Nudge asks the next reconciler pass, in whichever process makes it, to
// walk all task hashes (the flag lasts an hour).
func (s *Store) Nudge(ctx context.Context) error {
	if err := s.rdb.Set(ctx, s.keys.reconcileNudge(), 1, time.Hour).Err(); err != nil {
		return fmt.Errorf("nudge reconciler: %w", err)
	}
	return nil
}

// TakeNudge clears the flag Nudge sets and reports whether it was set.
func (s *Store) TakeNudge(ctx context.Context) (bool, error) {
	n, err := s.rdb.Del(ctx, s.keys.reconcileNudge()).Result()
	if err != nil {
		return false, fmt.Errorf("read reconciler nudge: %w", err)
	}
	return n > 0, nil
}
