package store

import (
	"context"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// TestRepairScripts runs each repair on asynq-shaped keys (miniredis, the
// embedded development Redis): each repairs its fault once and is a no-op
// when the fault is gone.
func TestRepairScripts(t *testing.T) {
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { rdb.Close() })
	s := New(rdb, time.Hour)
	ctx := context.Background()
	k := asynqKeys{"q"}
	now := time.Now()

	// Active without a lease: restored once.
	mr.Lpush(k.active(), "a")
	mr.HSet(k.task("a"), "state", "active", "msg", "m")
	if ok, err := s.RestoreLease(ctx, "q", "a", now.Add(-10*time.Second)); !ok || err != nil {
		t.Fatalf("RestoreLease = %v, %v; want true", ok, err)
	}
	if ok, _ := s.RestoreLease(ctx, "q", "a", now); ok {
		t.Error("RestoreLease twice repaired twice")
	}
	// Its lease (restored already expired) lets it be requeued, once.
	if ok, err := s.RequeueExpired(ctx, "q", "a", now); !ok || err != nil {
		t.Fatalf("RequeueExpired = %v, %v; want true", ok, err)
	}
	if got, _ := mr.List(k.pending()); len(got) != 1 || got[0] != "a" || mr.HGet(k.task("a"), "state") != "pending" {
		t.Errorf("after requeue: pending %v, state %q", got, mr.HGet(k.task("a"), "state"))
	}
	if ok, _ := s.RequeueExpired(ctx, "q", "a", now); ok {
		t.Error("RequeueExpired twice repaired twice")
	}

	// A live lease is left alone.
	mr.Lpush(k.active(), "live")
	mr.HSet(k.task("live"), "state", "active")
	mr.ZAdd(k.lease(), float64(now.Add(time.Minute).Unix()), "live")
	if ok, _ := s.RequeueExpired(ctx, "q", "live", now); ok {
		t.Error("RequeueExpired took a task with a live lease")
	}

	// An orphan: its hash says active, no list holds it.
	mr.HSet(k.task("b"), "state", "active")
	mr.HSet(k.task("c"), "state", "retry")
	found, _, err := s.ScanOrphans(ctx, "q", 0, 1000, now.Add(time.Minute), now.Add(time.Hour))
	if err != nil || len(found) != 2 {
		t.Fatalf("ScanOrphans = %+v, %v; want b (active) and c (retry)", found, err)
	}
	if ok, _ := mr.SortedSet(k.retry()); len(ok) != 1 {
		t.Errorf("retry set after repair: %v", ok)
	}
	if again, _, _ := s.ScanOrphans(ctx, "q", 0, 1000, now, now); len(again) != 0 {
		t.Errorf("second walk found %+v, want nothing", again)
	}

	// A stale lease entry: dropped.
	mr.ZAdd(k.lease(), 1, "gone")
	if _, dropped, err := s.FixStaleLease(ctx, "q", "gone"); !dropped || err != nil {
		t.Errorf("FixStaleLease = %v, %v; want dropped", dropped, err)
	}

	// Settle: a failed attempt whose worker is gone goes to the retry set.
	mr.Lpush(k.active(), "d")
	mr.HSet(k.task("d"), "state", "active", "msg", "m")
	mr.ZAdd(k.lease(), 1, "d")
	if ok, err := s.SettleExpired(ctx, "q", "d", now, false, 3, now.Add(time.Minute), "boom"); !ok || err != nil {
		t.Fatalf("SettleExpired = %v, %v", ok, err)
	}
	if st := mr.HGet(k.task("d"), "state"); st != "retry" || len(mr.HGet(k.task("d"), "msg")) <= 1 {
		t.Errorf("after settle: state %q, msg %q", st, mr.HGet(k.task("d"), "msg"))
	}
}

// TestSettleExpiredAsAsynqReadsIt: the fields SettleExpired appends to
// asynq's encoded message are what asynq's Inspector reads back.
func TestSettleExpiredAsAsynqReadsIt(t *testing.T) {
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { rdb.Close() })
	s := New(rdb, time.Hour)
	ctx := context.Background()
	client := asynq.NewClientFromRedisClient(rdb)
	if _, err := client.Enqueue(asynq.NewTask("t", []byte("p")), asynq.TaskID("x"), asynq.Queue("q"), asynq.MaxRetry(9)); err != nil {
		t.Fatal(err)
	}
	k := asynqKeys{"q"}
	// Dequeued by a worker that then died: active, lease long expired.
	mr.Lpush(k.active(), "x")
	if _, err := rdb.LRem(ctx, k.pending(), 0, "x").Result(); err != nil {
		t.Fatal(err)
	}
	mr.HSet(k.task("x"), "state", "active")
	mr.ZAdd(k.lease(), 1, "x")
	due := time.Now().Add(time.Hour).Truncate(time.Second)
	if ok, err := s.SettleExpired(ctx, "q", "x", time.Now(), false, 4, due, "receiver answered 500"); !ok || err != nil {
		t.Fatalf("SettleExpired = %v, %v", ok, err)
	}
	info, err := asynq.NewInspectorFromRedisClient(rdb).GetTaskInfo("q", "x")
	if err != nil {
		t.Fatal(err)
	}
	if info.State != asynq.TaskStateRetry || info.Retried != 4 || info.MaxRetry != 9 || info.LastErr != "receiver answered 500" ||
		string(info.Payload) != "p" || !info.NextProcessAt.Equal(due) || info.LastFailedAt.IsZero() {
		t.Errorf("asynq reads %+v", info)
	}
	if ok, _ := s.SettleExpired(ctx, "q", "x", time.Now(), true, 4, due, "again"); ok {
		t.Error("settled a task that is no longer active")
	}
}
