package store

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/artificialstudio/webhook-dispatcher/dispatcher"
)

// TestStoreShardedListFailed spreads failed records over four shard tags:
// the merged pages keep one global order (newest first, ids descending within
// a millisecond) and neither skip nor repeat; counts and FailedSince cover
// every shard; each record's keys carry its own tag.
func TestStoreShardedListFailed(t *testing.T) {
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { rdb.Close() })
	s := New(rdb, time.Hour)
	tags := []string{"{s0}", "{s1}", "{s2}", "{s3}"}
	tagOf := func(id string) string { return tags[int(id[len(id)-1]-'0')%4] }
	s.UseShards(tagOf, tags)
	ctx := context.Background()
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i, ms := range []int{1, 2, 2, 2, 3, 4, 5, 5, 6, 7} {
		id := fmt.Sprintf("f%d", i)
		if err := s.AppendAttempt(ctx, id, dispatcher.Attempt{Attempt: 1}); err != nil {
			t.Fatal(err)
		}
		r := dispatcher.FailedRecord{Delivery: dispatcher.Delivery{ID: id, Webhook: "https://a.example/", Body: []byte(`{}`)},
			FailedAt: base.Add(time.Duration(ms) * time.Millisecond)}
		if err := s.MarkFailed(ctx, r); err != nil {
			t.Fatal(err)
		}
		for _, key := range []string{"webhook:" + tagOf(id) + ":failed:" + id, "webhook:" + tagOf(id) + ":attempts:" + id} {
			if !mr.Exists(key) {
				t.Fatalf("key %s missing; keys: %v", key, mr.Keys())
			}
		}
	}
	s.Close()
	for _, page := range []int{1, 2, 3, 20} {
		var got []string
		cursor := ""
		for n := 0; n < 20; n++ {
			recs, next, err := s.ListFailed(ctx, cursor, page)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range recs {
				got = append(got, r.ID)
			}
			if next == "" {
				break
			}
			cursor = next
		}
		if want := "f9,f8,f7,f6,f5,f4,f3,f2,f1,f0"; strings.Join(got, ",") != want {
			t.Errorf("pages of %d = %s, want %s", page, strings.Join(got, ","), want)
		}
	}
	if n, err := s.CountFailed(ctx); err != nil || n != 10 {
		t.Errorf("CountFailed = %d, %v; want 10", n, err)
	}
	ids, err := s.FailedSince(ctx, base.Add(5*time.Millisecond))
	if err != nil || strings.Join(ids, ",") != "f6,f7,f8,f9" {
		t.Errorf("FailedSince = %v, %v; want f6,f7,f8,f9 (oldest first)", ids, err)
	}
	if err := s.ClearFailed(ctx, "f7"); err != nil {
		t.Fatal(err)
	}
	if n, _ := s.CountFailed(ctx); n != 9 {
		t.Errorf("after ClearFailed: CountFailed = %d, want 9", n)
	}
	if err := s.Ready(ctx, nil); err != nil {
		t.Fatal(err)
	}
	for _, tag := range tags {
		if !mr.Exists("webhook:" + tag + ":readyz") {
			t.Errorf("Ready wrote no key in shard %s", tag)
		}
	}
}
