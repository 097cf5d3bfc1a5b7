package test

import (
	"fmt"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/artificialstudio/webhook-dispatcher/test/testenv"
)

// usedMemory returns Redis' used_memory in bytes.
func usedMemory(t *testing.T, r *testenv.Redis) int64 {
	t.Helper()
	info, err := r.Info("memory")
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.ParseInt(info["used_memory"], 10, 64)
	if err != nil {
		t.Fatalf("used_memory %q", info["used_memory"])
	}
	return n
}

// TestMemoryPerDelivery measures Redis memory per delivery (a ~300-byte
// generation body): pending ≤ 1 KB, and retrying — the task in asynq's retry
// set plus one attempt-log entry — ≤ 2 KB (issue 16's budget for 1 billion
// webhooks a day).
func TestMemoryPerDelivery(t *testing.T) {
	if testing.Short() {
		t.Skip("enqueues thousands of deliveries")
	}
	redis := testenv.StartRedis(t, testenv.RedisOptions{})
	rc := testenv.NewReceiver(t, testenv.Status(http.StatusInternalServerError))
	env := []string{"REDIS_URL=" + redis.URL(), "WEBHOOK_CA_FILE=" + rc.CAFile,
		"RETRY_SCHEDULE=1h,1h,1h,1h,1h,1h,1h,1h,1h"}
	api := testenv.StartDispatcher(t, "api", env...)
	const n = 10000
	enqueue := func(prefix string) {
		for b := 0; b < n; b += 500 {
			var items []any
			for i := b; i < b+500; i++ {
				items = append(items, testenv.Delivery(rc.URL, fmt.Sprintf("%s-%d", prefix, i)))
			}
			if status, results := postBatch(t, api, items); status != http.StatusOK || results[len(results)-1].Status != http.StatusAccepted {
				t.Fatalf("batch: %d", status)
			}
		}
	}
	before := usedMemory(t, redis)
	enqueue("mem-pending")
	pending := float64(usedMemory(t, redis)-before) / n
	t.Logf("pending: %.0f bytes per delivery", pending)
	if pending > 1024 {
		t.Errorf("pending: %.0f bytes per delivery, want ≤ 1 KB", pending)
	}

	// Let a worker make the first attempt of every pending one (500: retry in 1 h).
	testenv.StartDispatcher(t, "worker", env...)
	rc.WaitCount(t, n, 120*time.Second)
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		got, err := redis.Do("ZCARD", "asynq:{webhooks}:retry")
		if err != nil {
			t.Fatal(err)
		}
		if got == int64(n) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%v of %d deliveries in the retry set after 60 s", got, n)
		}
	}
	retrying := float64(usedMemory(t, redis)-before) / n
	t.Logf("retrying (task + one attempt-log entry): %.0f bytes per delivery", retrying)
	if retrying > 2048 {
		t.Errorf("retrying: %.0f bytes per delivery, want ≤ 2 KB", retrying)
	}
}
