package queue

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/artificialstudio/webhook-dispatcher/dispatcher"
)

// TestDeliveredFromMarker: a delivered delivery that asynq no longer holds
// (its completed task dropped after RETENTION) answers from its marker:
// Status delivered with deliveredAt, Enqueue ErrDuplicate, Redeliver
// ErrNotFound (no body).
func TestDeliveredFromMarker(t *testing.T) {
	svc, st := newTestService(t)
	ctx := context.Background()
	const id = "q-delivered"
	at := time.Now().Add(-2 * time.Hour).Truncate(time.Millisecond).UTC()
	if err := st.AppendAttempt(ctx, id, dispatcher.Attempt{Attempt: 1, EndedAt: at, Outcome: dispatcher.OutcomeDelivered}); err != nil {
		t.Fatal(err)
	}
	if err := st.MarkDelivered(ctx, id, at); err != nil {
		t.Fatal(err)
	}
	got, err := svc.Status(ctx, id)
	if err != nil || got.State != dispatcher.StateDelivered || got.DeliveredAt == nil || !got.DeliveredAt.Equal(at) || got.AttemptCount != 1 {
		t.Fatalf("Status = %+v, %v; want delivered at %s with one attempt", got, err, at)
	}
	if err := svc.Enqueue(ctx, testDelivery(id)); !errors.Is(err, dispatcher.ErrDuplicate) {
		t.Errorf("Enqueue of a delivered id = %v, want ErrDuplicate", err)
	}
	if err := svc.Redeliver(ctx, id); !errors.Is(err, dispatcher.ErrNotFound) {
		t.Errorf("Redeliver without the body = %v, want ErrNotFound", err)
	}
	if err := svc.Enqueue(ctx, testDelivery("q-other")); err != nil {
		t.Errorf("Enqueue of another id = %v", err)
	}
	// DELETE forgets the marker too: the id is free again.
	if err := svc.Delete(ctx, id); err != nil {
		t.Fatalf("Delete of a delivered id after RETENTION = %v", err)
	}
	if _, err := svc.Status(ctx, id); !errors.Is(err, dispatcher.ErrNotFound) {
		t.Errorf("Status after Delete = %v, want ErrNotFound", err)
	}
	if err := svc.Enqueue(ctx, testDelivery(id)); err != nil {
		t.Errorf("Enqueue after Delete = %v, want nil", err)
	}
}
