package store

import (
	"context"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/artificialstudio/webhook-dispatcher/dispatcher"
	"github.com/artificialstudio/webhook-dispatcher/payload/signature"
)

// TestSecretLifetime: a delivery's secret lives exactly as long as its
// attempt log: LogTTL after it is stored, without expiry while a failed
// record exists, LogTTL again after a redelivery clears the record.
func TestSecretLifetime(t *testing.T) {
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { rdb.Close() })
	s := New(rdb, time.Hour)
	ctx := context.Background()
	sec, err := signature.GenerateSecret(nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, err := s.Secret(ctx, "gen.1"); ok || err != nil {
		t.Fatalf("Secret before SetSecret = %v, %v; want none", ok, err)
	}
	if err := s.SetSecret(ctx, "gen.1", signature.Secret{}); err == nil {
		t.Error("SetSecret took the zero Secret")
	}
	if err := s.SetSecret(ctx, "gen.1", sec); err != nil {
		t.Fatal(err)
	}
	got, ok, err := s.Secret(ctx, "gen.1")
	if err != nil || !ok || got.Reveal() != sec.Reveal() {
		t.Fatalf("Secret = %v, %v; want the stored one", ok, err)
	}
	key := defaultKeyspace.secret("", "gen.1")
	if ttl := mr.TTL(key); ttl != time.Hour {
		t.Errorf("TTL after SetSecret = %s, want the log TTL 1h", ttl)
	}
	if err := s.MarkFailed(ctx, dispatcher.FailedRecord{Delivery: dispatcher.Delivery{ID: "gen.1", Webhook: "https://a.example/", Body: []byte(`{}`)}, FailedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if ttl := mr.TTL(key); ttl != 0 {
		t.Errorf("TTL while failed = %s, want none (kept with the failed record)", ttl)
	}
	mr.FastForward(2 * time.Hour)
	if _, ok, _ := s.Secret(ctx, "gen.1"); !ok {
		t.Fatal("secret of a failed delivery expired")
	}
	if err := s.ClearFailed(ctx, "gen.1"); err != nil {
		t.Fatal(err)
	}
	if ttl := mr.TTL(key); ttl != time.Hour {
		t.Errorf("TTL after redelivery = %s, want 1h", ttl)
	}
	mr.FastForward(time.Hour + time.Second)
	if _, ok, _ := s.Secret(ctx, "gen.1"); ok {
		t.Error("secret outlived its delivery")
	}
	if err := s.SetSecret(ctx, "gen.2", sec); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteSecret(ctx, "gen.2"); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.Secret(ctx, "gen.2"); ok {
		t.Error("DeleteSecret left the secret")
	}
}
