package store

import (
	"context"
	"testing"
	"time"

	"github.com/artificialstudio/webhook-dispatcher/dispatcher"
)

// TestAppendDeliveredWritesLogAndMarker: the delivered attempt's log entry
// and its marker are written by one call (one group-committed pipeline), and
// the log then lives the delivered logs' lifetime, as after MarkDelivered.
func TestAppendDeliveredWritesLogAndMarker(t *testing.T) {
	s, mr := newMarkerStore(t)
	s.Dedupe(48*time.Hour, 16, 10*time.Minute)
	ctx := context.Background()
	const id = "507f1f77bcf86cd799439012"
	at := time.Now().Add(-time.Second).Truncate(time.Millisecond).UTC()
	a := dispatcher.Attempt{Attempt: 1, Outcome: dispatcher.OutcomeDelivered, StartedAt: at.Add(-time.Millisecond), EndedAt: at}
	if err := s.AppendDelivered(ctx, id, a); err != nil {
		t.Fatal(err)
	}
	last, ok, err := s.LastAttempt(ctx, id)
	if err != nil || !ok || last.Outcome != dispatcher.OutcomeDelivered || !last.EndedAt.Equal(at) {
		t.Fatalf("LastAttempt = %+v, %v, %v; want the delivered attempt", last, ok, err)
	}
	got, ok, err := s.Delivered(ctx, id)
	if err != nil || !ok || !got.Equal(at) {
		t.Fatalf("Delivered = %v, %v, %v; want %v", got, ok, err, at)
	}
	if r, err := s.Reserved(ctx, id); err != nil || !r {
		t.Errorf("Reserved = %v, %v; want reserved by its marker", r, err)
	}
	if ttl := mr.TTL(s.keys.attempts("", id)); ttl != 10*time.Minute {
		t.Errorf("attempt log TTL = %s, want 10m (the delivered logs' lifetime)", ttl)
	}
	// A plain AppendAttempt writes no marker.
	if err := s.AppendAttempt(ctx, "not-delivered", dispatcher.Attempt{Attempt: 1, Outcome: dispatcher.OutcomeTimeout, EndedAt: at}); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := s.Delivered(ctx, "not-delivered"); err != nil || ok {
		t.Errorf("Delivered after AppendAttempt = %v, %v; want no marker", ok, err)
	}
	if ttl := mr.TTL(s.keys.attempts("", "not-delivered")); ttl != time.Hour {
		t.Errorf("attempt log TTL = %s, want the store's 1h", ttl)
	}
}
