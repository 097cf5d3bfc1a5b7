package queue

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/artificialstudio/webhook-dispatcher/dispatcher"
	"github.com/artificialstudio/webhook-dispatcher/dispatcher/store"
	"github.com/artificialstudio/webhook-dispatcher/schedule"
)

// newTestService runs the queue service on miniredis (fast, no worker).
func newTestService(tb testing.TB) (*Service, *store.Store) {
	tb.Helper()
	mr := miniredis.RunT(tb)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	st := store.New(rdb, time.Hour)
	client := asynq.NewClientFromRedisClient(rdb)
	tb.Cleanup(func() { client.Close(); st.Close(); rdb.Close() })
	return &Service{Client: client, Inspector: asynq.NewInspectorFromRedisClient(rdb), Store: st}, st
}

func testDelivery(id string) dispatcher.Delivery {
	return dispatcher.Delivery{ID: id, Webhook: "https://hooks.example.com/h", Body: []byte(`{"id":"` + id + `"}`)}
}

func TestEnqueueAndStatus(t *testing.T) {
	svc, _ := newTestService(t)
	ctx := context.Background()
	if err := svc.Enqueue(ctx, testDelivery("q-1")); err != nil {
		t.Fatal(err)
	}
	if err := svc.Enqueue(ctx, testDelivery("q-1")); !errors.Is(err, dispatcher.ErrDuplicate) {
		t.Errorf("second enqueue = %v, want ErrDuplicate", err)
	}
	st, err := svc.Status(ctx, "q-1")
	if err != nil || st.State != dispatcher.StatePending || st.Webhook != "https://hooks.example.com/h" || st.EnqueuedAt == nil {
		t.Errorf("Status = %+v, %v; want pending with webhook and enqueue time", st, err)
	}
	if _, err := svc.Status(ctx, "never"); !errors.Is(err, dispatcher.ErrNotFound) {
		t.Errorf("Status(unknown) = %v, want ErrNotFound", err)
	}
	if err := svc.Redeliver(ctx, "q-1"); !errors.Is(err, dispatcher.ErrInProgress) {
		t.Errorf("Redeliver(pending) = %v, want ErrInProgress", err)
	}
	if err := svc.Redeliver(ctx, "never"); !errors.Is(err, dispatcher.ErrNotFound) {
		t.Errorf("Redeliver(unknown) = %v, want ErrNotFound", err)
	}
}

// TestRedeliverFromFailedRecord: a failed delivery that asynq no longer holds
// is queued again from its failed record, with the same body bytes, and the
// record is cleared only after the new task is stored.
func TestRedeliverFromFailedRecord(t *testing.T) {
	svc, st := newTestService(t)
	ctx := context.Background()
	d := testDelivery("q-failed")
	if err := st.MarkFailed(ctx, dispatcher.FailedRecord{Delivery: d, FailedAt: time.Now(), LastError: "500"}); err != nil {
		t.Fatal(err)
	}
	got, err := svc.Status(ctx, "q-failed")
	if err != nil || got.State != dispatcher.StateFailed || got.LastError != "500" {
		t.Fatalf("Status of a failed record = %+v, %v", got, err)
	}
	if n, err := svc.RedeliverFailedSince(ctx, time.Time{}); err != nil || n != 1 {
		t.Fatalf("RedeliverFailedSince = %d, %v; want 1", n, err)
	}
	info, err := svc.Inspector.GetTaskInfo(svc.Layout.Route("q-failed"), "q-failed")
	if err != nil {
		t.Fatal(err)
	}
	back, err := dispatcher.DecodeTask(info.Payload)
	if err != nil || string(back.Body) != string(d.Body) || info.State != asynq.TaskStatePending {
		t.Errorf("redelivered task = %+v (%s), %v", back, info.State, err)
	}
	if _, ok, _ := st.Failed(ctx, "q-failed"); ok {
		t.Error("failed record still there after the redelivery was stored")
	}
}

// TestNextAttemptFollowsSchedule: a retrying delivery's nextAttemptAt is the
// end of its last failed attempt plus the configured step, not asynq's
// whole-second due time.
func TestNextAttemptFollowsSchedule(t *testing.T) {
	custom, err := schedule.Parse("10s,20s,30s,40s,50s,60s,70s,80s,90s")
	if err != nil {
		t.Fatal(err)
	}
	svc := &Service{Schedule: custom}
	end := time.Date(2026, 1, 1, 0, 0, 0, 123e6, time.UTC)
	attempts := []dispatcher.Attempt{{Attempt: 1, EndedAt: end.Add(-time.Minute), Outcome: dispatcher.OutcomeTimeout}, {Attempt: 2, EndedAt: end, Outcome: dispatcher.OutcomeHTTPStatus}}
	info := &asynq.TaskInfo{Retried: 2, NextProcessAt: end.Add(20 * time.Second).Truncate(time.Second)}
	if got, want := svc.nextAttempt(info, attempts), end.Add(20*time.Second); !got.Equal(want) {
		t.Errorf("nextAttempt = %s, want %s (the custom schedule's second step from the last attempt)", got, want)
	}
	if got := svc.nextAttempt(info, nil); !got.Equal(info.NextProcessAt) {
		t.Errorf("nextAttempt without a log = %s, want asynq's %s", got, info.NextProcessAt)
	}
}
