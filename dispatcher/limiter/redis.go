package limiter

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/artificialstudio/webhook-dispatcher/dispatcher"
)

// Fleet caps concurrent attempts per destination across every worker process
// sharing a Redis (or Redis Cluster): a semaphore per destination kept in
// Redis as a sorted set of holder tokens scored by lease expiry. A worker
// that dies holding slots (SIGKILL, a lost network) gives them back when
// their leases run out, so Lease bounds how long a dead worker's share stays
// taken.
//
// Each set is one key, touched only by single-key scripts, so it is safe on a
// cluster; times are Redis' own (TIME), so worker clocks do not matter.
//
// In-process, a Local with the same cap comes first: it keeps the policy of
// waiting briefly for fast destinations and deferring, with the booked delay,
// for slow ones, and spares Redis the calls a process could not win anyway
// (one process never holds more than the fleet's cap).
type Fleet struct {
	rdb   redis.UniversalClient
	key   func(dest string) string
	lease time.Duration
	local *Local
	poll  time.Duration
}

// NewFleet returns a fleet-wide limiter of max (>= 1) concurrent attempts
// per destination. key names the Redis key of a destination's holder set (the
// store builds it: store.CapKey). lease must exceed the longest an attempt
// holds its slot (the delivery timeout, plus a margin): a slot held longer
// is counted free again.
func NewFleet(rdb redis.UniversalClient, key func(dest string) string, max int, lease time.Duration) *Fleet {
	return &Fleet{rdb: rdb, key: key, lease: lease, local: NewLocal(max), poll: 25 * time.Millisecond}
}

var _ Limiter = (*Fleet)(nil)

// acquireScript drops expired holders and adds ARGV[3] if fewer than ARGV[2]
// remain, with a lease of ARGV[1] ms; the key expires with the newest lease,
// so an idle destination leaves nothing behind. Returns 1 when taken.
var acquireScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
`)

// Acquire takes an in-process slot (Local's policy: wait briefly or defer),
// then a fleet slot. When the fleet's slots are all held by other processes
// it polls for one as long as Local's policy would wait, then defers with
// Local's booked delay; a final attempt polls until ctx ends. A Redis error
// defers the task (a final attempt goes ahead under the in-process cap only).
func (f *Fleet) Acquire(ctx context.Context, dest string, final bool) (Slot, error) {
	local, err := f.local.Acquire(ctx, dest, final)
	if err != nil {
		return Slot{}, err
	}
	token := newToken()
	ok, err := f.try(ctx, dest, token)
	if err != nil {
		if final {
			return local, nil
		}
		local.release()
		return Slot{}, fmt.Errorf("acquire %s: %w: %w", dest, &dispatcher.DeferError{Delay: MinDefer}, err)
	}
	if !ok {
		wait := f.local.WorthWaiting(dest, SlotWaitBudget)
		if final {
			wait = -1
		}
		ok, err = f.pollFor(ctx, dest, token, wait)
		if err != nil && ctx.Err() != nil {
			local.release()
			return Slot{}, ctx.Err()
		}
	}
	if !ok {
		local.release()
		return Slot{}, fmt.Errorf("acquire %s: %w", dest, &dispatcher.DeferError{Delay: f.local.DeferFor(dest)})
	}
	return Slot{Dest: dest, release: func() {
		local.release()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		// A failed release leaves the slot taken until its lease ends.
		f.rdb.ZRem(ctx, f.key(dest), token)
	}}, nil
}

// try takes a fleet slot for token once.
func (f *Fleet) try(ctx context.Context, dest, token string) (bool, error) {
	n, err := acquireScript.Run(ctx, f.rdb, []string{f.key(dest)}, f.lease.Milliseconds(), f.local.Max(), token).Int()
	if err != nil {
		return false, fmt.Errorf("take a fleet slot for %s: %w", dest, err)
	}
	return n == 1, nil
}

// pollFor retries try every f.poll for up to wait (until ctx ends when wait < 0).
func (f *Fleet) pollFor(ctx context.Context, dest, token string, wait time.Duration) (bool, error) {
	if wait == 0 {
		return false, nil
	}
	if wait > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, wait)
		defer cancel()
	}
	t := time.NewTicker(f.poll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-t.C:
		}
		ok, err := f.try(ctx, dest, token)
		if ok {
			return true, nil
		}
		if err != nil && ctx.Err() != nil {
			return false, ctx.Err()
		}
	}
}

// Release frees s (in Redis and in process) and records how long its attempt took.
func (f *Fleet) Release(s Slot, took time.Duration) {
	if s.release == nil {
		return
	}
	f.local.Observe(s.Dest, took)
	s.release()
}

// Held returns how many fleet slots dest's holders hold now, expired leases
// excluded (for tests and the CLI).
func (f *Fleet) Held(ctx context.Context, dest string) (int64, error) {
	c := f.rdb
	now, err := c.Time(ctx).Result()
	if err != nil {
		return 0, fmt.Errorf("count fleet slots of %s: %w", dest, err)
	}
	n, err := c.ZCount(ctx, f.key(dest), fmt.Sprint(now.UnixMilli()+1), "+inf").Result()
	if err != nil {
		return 0, fmt.Errorf("count fleet slots of %s: %w", dest, err)
	}
	return n, nil
}

func newToken() string {
	b := make([]byte, 12)
	rand.Read(b) // crypto/rand does not fail on supported platforms
	return hex.EncodeToString(b)
}
