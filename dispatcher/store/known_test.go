package store

import (
	"context"
	"testing"
	"time"

	"github.com/artificialstudio/webhook-dispatcher/dispatcher"
)

// TestKnown: an id is known by its asynq task hash in its queue, its failed
// record or a delivered marker within the window, with untagged keys and
// with its shard's hash tag; nothing else makes it known, and a marker
// older than the window does not.
func TestKnown(t *testing.T) {
	ctx := context.Background()
	for _, q := range []string{"webhooks", "webhooks:3:5"} {
		s, mr := newMarkerStore(t)
		s.Dedupe(48*time.Hour, 16, 0)
		if q != "webhooks" {
			s.UseShards(func(string) string { return "{" + q + "}" }, []string{"{" + q + "}"})
		}
		known := func(id string) bool {
			t.Helper()
			ok, err := s.Known(ctx, q, id)
			if err != nil {
				t.Fatalf("%s: Known(%s): %v", q, id, err)
			}
			return ok
		}
		mr.HSet("asynq:{"+q+"}:t:task", "state", "pending")
		mr.HSet("asynq:{other}:t:elsewhere", "state", "pending") // another queue's task
		if err := s.MarkFailed(ctx, dispatcher.FailedRecord{Delivery: dispatcher.Delivery{ID: "failed"}, FailedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
		if err := s.MarkDelivered(ctx, "delivered", time.Now().Add(-time.Hour)); err != nil {
			t.Fatal(err)
		}
		if err := s.MarkDelivered(ctx, "long-ago", time.Now().Add(-72*time.Hour)); err != nil {
			t.Fatal(err)
		}
		for id, want := range map[string]bool{"task": true, "failed": true, "delivered": true, "long-ago": false, "elsewhere": false, "never": false} {
			if got := known(id); got != want {
				t.Errorf("%s: Known(%s) = %v, want %v", q, id, got, want)
			}
		}
		mr.Close()
		gone, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		_, err := s.Known(gone, q, "never")
		cancel()
		if err == nil {
			t.Errorf("%s: Known with Redis gone = nil error", q)
		}
	}
}
