package store_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/artificialstudio/webhook-dispatcher/dispatcher/queue"
	"github.com/artificialstudio/webhook-dispatcher/dispatcher/store"
)

// TestMarkerBucketsSpreadWithinShards: with the queue layout's shards, the
// delivered markers of each shard spread over all of its buckets (its share
// of DELIVERED_MARKER_BUCKETS), so a day's
// hashes stay small enough for Redis to pack them (~40 B per id instead of
// ~90). Marking 600 ids per shard with 64 buckets, each shard must use
// nearly every bucket (a uniform spread leaves 64·e^-9.4 ≈ 0.005 empty); the
// marker bucket once shared its low bits with the shard hash and used 4 of 64
// with 48 shards.
func TestMarkerBucketsSpreadWithinShards(t *testing.T) {
	for _, shards := range []int{1, 3, 16, 48, 64} {
		t.Run(fmt.Sprint(shards), func(t *testing.T) {
			const buckets, perShard = 64, 600
			mr := miniredis.RunT(t)
			rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
			t.Cleanup(func() { rdb.Close() })
			st := store.New(rdb, time.Hour)
			t.Cleanup(st.Close)
			layout, err := queue.NewLayout(shards, true)
			if err != nil {
				t.Fatal(err)
			}
			st.UseShards(layout.Tag, layout.Tags())
			st.Dedupe(0, buckets*shards, 0) // DELIVERED_MARKER_BUCKETS counts all shards' hashes
			ctx := context.Background()
			at := time.Now()
			for i := range shards * perShard {
				if err := st.MarkDelivered(ctx, fmt.Sprintf("507f1f77bcf86cd7%08x", i*7919), at); err != nil {
					t.Fatal(err)
				}
			}
			used := map[string]int{} // marker hashes per shard tag
			for _, k := range mr.Keys() {
				if !strings.Contains(k, ":delivered:") {
					continue
				}
				tag, _, _ := strings.Cut(k, ":delivered:")
				used[tag]++
			}
			if len(used) != shards {
				t.Fatalf("markers in %d shards' keys, want %d", len(used), shards)
			}
			for tag, n := range used {
				if n < buckets-1 {
					t.Errorf("shard %s: markers in %d of %d buckets", tag, n, buckets)
				}
			}
		})
	}
}
