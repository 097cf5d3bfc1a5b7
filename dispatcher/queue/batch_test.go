package queue

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/artificialstudio/webhook-dispatcher/dispatcher"
	"github.com/artificialstudio/webhook-dispatcher/dispatcher/store"
	"github.com/artificialstudio/webhook-dispatcher/payload/signature"
)

// TestEnqueueBatchAnswersLikeEnqueue: in one batch, ids reserved outside
// asynq (a failed record, a delivered marker) and an id asynq already holds
// answer ErrDuplicate and store nothing; the rest are stored, a signed one
// with its secret.
func TestEnqueueBatchAnswersLikeEnqueue(t *testing.T) {
	svc, st := newTestService(t)
	ctx := context.Background()
	if err := svc.Enqueue(ctx, testDelivery("b-queued")); err != nil {
		t.Fatal(err)
	}
	if err := st.MarkFailed(ctx, dispatcher.FailedRecord{Delivery: testDelivery("b-failed"), FailedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := st.MarkDelivered(ctx, "b-delivered", time.Now().Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	sec, err := signature.GenerateSecret(nil)
	if err != nil {
		t.Fatal(err)
	}
	signed := testDelivery("b-signed")
	signed.Signed, signed.Secret = true, sec

	ds := []dispatcher.Delivery{testDelivery("b-new-1"), testDelivery("b-queued"), testDelivery("b-failed"),
		signed, testDelivery("b-delivered"), testDelivery("b-new-2")}
	want := []error{nil, dispatcher.ErrDuplicate, dispatcher.ErrDuplicate, nil, dispatcher.ErrDuplicate, nil}
	errs := svc.EnqueueBatch(ctx, ds)
	if len(errs) != len(ds) {
		t.Fatalf("EnqueueBatch returned %d answers for %d deliveries", len(errs), len(ds))
	}
	for i, w := range want {
		if w == nil && errs[i] != nil || w != nil && !errors.Is(errs[i], w) {
			t.Errorf("%s: %v, want %v", ds[i].ID, errs[i], w)
		}
	}
	for _, id := range []string{"b-new-1", "b-new-2", "b-signed"} {
		if info, err := svc.Inspector.GetTaskInfo(svc.Layout.Route(id), id); err != nil || info.State != asynq.TaskStatePending {
			t.Errorf("%s: task %v, %v; want pending", id, info, err)
		}
	}
	for _, id := range []string{"b-failed", "b-delivered"} {
		if _, err := svc.Inspector.GetTaskInfo(svc.Layout.Route(id), id); !isNotFound(err) {
			t.Errorf("%s (reserved): GetTaskInfo = %v, want not found: a reserved id must not be queued", id, err)
		}
	}
	if got, ok, err := st.Secret(ctx, "b-signed"); err != nil || !ok || got.Reveal() != sec.Reveal() {
		t.Errorf("secret of b-signed: ok %v, %v; want the caller's", ok, err)
	}
}

// TestEnqueueBatchRedisDown: with Redis gone, every item answers
// ErrUnavailable, none is accepted.
func TestEnqueueBatchRedisDown(t *testing.T) {
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr(), MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	st := store.New(rdb, time.Hour)
	client := asynq.NewClientFromRedisClient(rdb)
	t.Cleanup(func() { client.Close(); st.Close(); rdb.Close() })
	svc := &Service{Client: client, Inspector: asynq.NewInspectorFromRedisClient(rdb), Store: st, EnqueueTimeout: time.Second}
	mr.Close()

	ds := []dispatcher.Delivery{testDelivery("down-1"), testDelivery("down-2"), testDelivery("down-3")}
	errs := svc.EnqueueBatch(context.Background(), ds)
	if len(errs) != len(ds) {
		t.Fatalf("EnqueueBatch returned %d answers for %d deliveries", len(errs), len(ds))
	}
	for i, err := range errs {
		if !errors.Is(err, dispatcher.ErrUnavailable) {
			t.Errorf("%s: %v, want ErrUnavailable", ds[i].ID, err)
		}
	}
}

// TestReservedManyMatchesReserved: the batch check answers as Reserved does
// for each id, in order.
func TestReservedManyMatchesReserved(t *testing.T) {
	svc, st := newTestService(t)
	ctx := context.Background()
	if err := st.MarkFailed(ctx, dispatcher.FailedRecord{Delivery: testDelivery("r-failed"), FailedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := st.MarkDelivered(ctx, "r-delivered", time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := st.MarkDelivered(ctx, "r-expired", time.Now().Add(-8*24*time.Hour)); err != nil { // outside the 7-day window
		t.Fatal(err)
	}
	ids := []string{"r-free", "r-failed", "r-delivered", "r-expired"}
	got, errs := svc.Store.ReservedMany(ctx, ids)
	if errs != nil {
		t.Fatalf("ReservedMany errors: %v", errs)
	}
	for i, id := range ids {
		one, err := st.Reserved(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if got[i] != one {
			t.Errorf("%s: ReservedMany %v, Reserved %v", id, got[i], one)
		}
	}
	if want := []bool{false, true, true, false}; !slices.Equal(got, want) {
		t.Errorf("ReservedMany = %v, want %v", got, want)
	}
}
