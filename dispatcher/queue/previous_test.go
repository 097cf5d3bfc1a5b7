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
)

// TestPreviousDatastore: with Previous set, an id the previous datastore
// holds in any form (queued task, failed record, delivered marker) is a
// duplicate, a fresh id is enqueued in the new datastore only, Status of an
// id only the previous one knows answers from it, and a previous datastore
// that cannot be reached makes Enqueue ErrUnavailable without enqueuing.
func TestPreviousDatastore(t *testing.T) {
	ctx := context.Background()
	oldMR := miniredis.RunT(t)
	oldRDB := redis.NewClient(&redis.Options{Addr: oldMR.Addr(), MaxRetries: -1})
	oldStore := store.New(oldRDB, time.Hour)
	oldClient := asynq.NewClientFromRedisClient(oldRDB)
	t.Cleanup(func() { oldClient.Close(); oldStore.Close(); oldRDB.Close() })
	old := &Service{Client: oldClient, Inspector: asynq.NewInspectorFromRedisClient(oldRDB), Store: oldStore}

	if err := old.Enqueue(ctx, testDelivery("old-pending")); err != nil {
		t.Fatal(err)
	}
	failed := dispatcher.FailedRecord{Delivery: testDelivery("old-failed"), FailedAt: time.Now().UTC(), LastError: "HTTP 500"}
	if err := oldStore.MarkFailed(ctx, failed); err != nil {
		t.Fatal(err)
	}
	if err := oldStore.MarkDelivered(ctx, "old-delivered", time.Now().Add(-2*time.Hour)); err != nil {
		t.Fatal(err)
	}

	layout, err := NewLayout(12, true)
	if err != nil {
		t.Fatal(err)
	}
	svc, st := newTestService(t)
	svc.Layout = layout
	st.UseShards(layout.Tag, layout.Tags())
	svc.Previous = NewPreviousStore(old)

	for _, id := range []string{"old-pending", "old-failed", "old-delivered"} {
		if err := svc.Enqueue(ctx, testDelivery(id)); !errors.Is(err, dispatcher.ErrDuplicate) {
			t.Errorf("Enqueue(%s held by the previous datastore) = %v, want ErrDuplicate", id, err)
		}
		if _, err := svc.Inspector.GetTaskInfo(layout.Route(id), id); !isNotFound(err) {
			t.Errorf("%s was enqueued in the new datastore too (GetTaskInfo err %v)", id, err)
		}
	}
	if err := svc.Enqueue(ctx, testDelivery("new-1")); err != nil {
		t.Fatalf("Enqueue of a fresh id = %v", err)
	}
	// The batch path refuses what Enqueue refuses.
	batch := []dispatcher.Delivery{testDelivery("old-pending"), testDelivery("new-b"), testDelivery("old-failed"), testDelivery("old-delivered")}
	for i, err := range svc.EnqueueBatch(ctx, batch) {
		id := batch[i].ID
		if id == "new-b" {
			if err != nil {
				t.Errorf("EnqueueBatch: %s = %v, want stored", id, err)
			}
			continue
		}
		if !errors.Is(err, dispatcher.ErrDuplicate) {
			t.Errorf("EnqueueBatch: %s (held by the previous datastore) = %v, want ErrDuplicate", id, err)
		}
		if _, err := svc.Inspector.GetTaskInfo(layout.Route(id), id); !isNotFound(err) {
			t.Errorf("EnqueueBatch: %s was enqueued in the new datastore too (GetTaskInfo err %v)", id, err)
		}
	}
	if _, err := svc.Inspector.GetTaskInfo(layout.Route("new-1"), "new-1"); err != nil {
		t.Errorf("new-1 not in its shard's queue of the new datastore: %v", err)
	}
	if _, err := old.Inspector.GetTaskInfo(DefaultQueue, "new-1"); !isNotFound(err) {
		t.Errorf("new-1 reached the previous datastore (GetTaskInfo err %v)", err)
	}

	for id, want := range map[string]dispatcher.State{
		"old-pending": dispatcher.StatePending, "old-failed": dispatcher.StateFailed,
		"old-delivered": dispatcher.StateDelivered, "new-1": dispatcher.StatePending,
	} {
		got, err := svc.Status(ctx, id)
		if err != nil || got.State != want {
			t.Errorf("Status(%s) = %q, %v; want %q", id, got.State, err, want)
		}
	}
	if got, _ := svc.Status(ctx, "old-failed"); got.LastError != "HTTP 500" || got.Webhook != failed.Webhook {
		t.Errorf("Status(old-failed) = %+v, want the previous datastore's failed record", got)
	}
	if _, err := svc.Status(ctx, "never"); !errors.Is(err, dispatcher.ErrNotFound) {
		t.Errorf("Status(unknown to both) = %v, want ErrNotFound", err)
	}

	oldMR.Close() // the previous datastore is gone
	svc.EnqueueTimeout = time.Second
	if err := svc.Enqueue(ctx, testDelivery("new-2")); !errors.Is(err, dispatcher.ErrUnavailable) {
		t.Errorf("Enqueue with the previous datastore down = %v, want ErrUnavailable", err)
	}
	if _, err := svc.Inspector.GetTaskInfo(layout.Route("new-2"), "new-2"); !isNotFound(err) {
		t.Errorf("new-2 was accepted although the previous datastore could not be asked (GetTaskInfo err %v)", err)
	}
	for _, err := range svc.EnqueueBatch(ctx, []dispatcher.Delivery{testDelivery("new-3")}) {
		if !errors.Is(err, dispatcher.ErrUnavailable) {
			t.Errorf("EnqueueBatch with the previous datastore down = %v, want ErrUnavailable", err)
		}
	}
	if _, err := svc.Inspector.GetTaskInfo(layout.Route("new-3"), "new-3"); !isNotFound(err) {
		t.Errorf("new-3 was accepted by a batch although the previous datastore could not be asked (GetTaskInfo err %v)", err)
	}
	if _, err := svc.Status(ctx, "never"); !errors.Is(err, dispatcher.ErrUnavailable) {
		t.Errorf("Status(unknown) with the previous datastore down = %v, want ErrUnavailable", err)
	}
	if got, err := svc.Status(ctx, "new-1"); err != nil || got.State != dispatcher.StatePending {
		t.Errorf("Status(new-1) with the previous datastore down = %q, %v; want pending from the new one", got.State, err)
	}
}
