package store

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/artificialstudio/webhook-dispatcher/dispatcher"
)

func newMarkerStore(t *testing.T) (*Store, *miniredis.Miniredis) {
	t.Helper()
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { rdb.Close() })
	s := New(rdb, time.Hour)
	t.Cleanup(s.Close)
	return s, mr
}

func TestDeliveredMarkerWriteReadExpire(t *testing.T) {
	s, mr := newMarkerStore(t)
	s.Dedupe(48*time.Hour, 16, 10*time.Minute)
	ctx := context.Background()
	const id = "507f1f77bcf86cd799439011"

	if _, ok, err := s.Delivered(ctx, id); err != nil || ok {
		t.Fatalf("before any marker: ok=%v err=%v", ok, err)
	}
	if r, err := s.Reserved(ctx, id); err != nil || r {
		t.Fatalf("reserved before any marker: %v %v", r, err)
	}
	if err := s.AppendAttempt(ctx, id, dispatcher.Attempt{Attempt: 1, Outcome: dispatcher.OutcomeDelivered}); err != nil {
		t.Fatal(err)
	}
	at := time.Now().Add(-time.Second).Truncate(time.Millisecond).UTC()
	if err := s.MarkDelivered(ctx, id, at); err != nil {
		t.Fatal(err)
	}
	got, ok, err := s.Delivered(ctx, id)
	if err != nil || !ok || !got.Equal(at) {
		t.Fatalf("Delivered = %v, %v, %v; want %v", got, ok, err, at)
	}
	if r, err := s.Reserved(ctx, id); err != nil || !r {
		t.Fatalf("reserved with a marker: %v %v", r, err)
	}
	if r, err := s.Reserved(ctx, "other"); err != nil || r {
		t.Fatalf("another id reserved: %v %v", r, err)
	}
	// The delivered delivery's attempt log now lives ATTEMPT_LOG_RETENTION, not the store's 1h.
	if ttl := mr.TTL(s.keys.attempts("", id)); ttl != 10*time.Minute {
		t.Errorf("attempt log TTL = %s, want 10m", ttl)
	}
	// One hash per day and bucket, expiring at most the window plus a day from now.
	keys := mr.Keys()
	var marker string
	for _, k := range keys {
		if strings.HasPrefix(k, "webhook:delivered:") {
			marker = k
		}
	}
	if marker == "" {
		t.Fatalf("no marker hash among %v", keys)
	}
	if ttl := mr.TTL(marker); ttl < 48*time.Hour || ttl > 72*time.Hour {
		t.Errorf("marker hash TTL = %s, want between the window (48h) and the window plus a day", ttl)
	}

	mr.FastForward(10*time.Minute + time.Second)
	if mr.Exists(s.keys.attempts("", id)) {
		t.Error("delivered attempt log still there after ATTEMPT_LOG_RETENTION")
	}
	if _, ok, _ := s.Delivered(ctx, id); !ok {
		t.Error("marker gone with the attempt log")
	}
	mr.FastForward(72 * time.Hour)
	if _, ok, err := s.Delivered(ctx, id); err != nil || ok {
		t.Errorf("marker after the window and a day: ok=%v err=%v", ok, err)
	}
	if r, err := s.Reserved(ctx, id); err != nil || r {
		t.Errorf("reserved after the window: %v %v", r, err)
	}
}

// A marker older than the window does not count even while its day's hash
// still exists (the hash outlives its oldest markers by up to a day).
func TestDeliveredMarkerWindowIsExact(t *testing.T) {
	s, _ := newMarkerStore(t)
	s.Dedupe(48*time.Hour, 4, 0)
	ctx := context.Background()
	now := time.Now()
	if err := s.MarkDelivered(ctx, "old", now.Add(-48*time.Hour-time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkDelivered(ctx, "recent", now.Add(-48*time.Hour+time.Minute)); err != nil {
		t.Fatal(err)
	}
	if r, err := s.Reserved(ctx, "old"); err != nil || r {
		t.Errorf("marker older than the window reserves: %v %v", r, err)
	}
	if r, err := s.Reserved(ctx, "recent"); err != nil || !r {
		t.Errorf("marker within the window does not reserve: %v %v", r, err)
	}
	// A redelivery's later marker wins.
	later := now.Truncate(time.Millisecond).UTC()
	if err := s.MarkDelivered(ctx, "recent", later); err != nil {
		t.Fatal(err)
	}
	if at, ok, err := s.Delivered(ctx, "recent"); err != nil || !ok || !at.Equal(later) {
		t.Errorf("after a second delivery: %v %v %v, want %v", at, ok, err, later)
	}
}

// Markers carry the id's shard tag, so the marker, the attempt log and the
// task share a cluster slot.
func TestDeliveredMarkerTagged(t *testing.T) {
	s, mr := newMarkerStore(t)
	s.UseShards(func(string) string { return "{webhooks:3:5}" }, []string{"{webhooks:3:5}"})
	ctx := context.Background()
	if err := s.MarkDelivered(ctx, "x", time.Now()); err != nil {
		t.Fatal(err)
	}
	keys := mr.Keys()
	if len(keys) != 1 || !strings.HasPrefix(keys[0], "webhook:{webhooks:3:5}:delivered:") {
		t.Fatalf("keys = %v, want one tagged marker hash", keys)
	}
	if r, err := s.Reserved(ctx, "x"); err != nil || !r {
		t.Errorf("tagged marker does not reserve: %v %v", r, err)
	}
}
