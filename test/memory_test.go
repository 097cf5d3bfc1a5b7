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

// clientMemory returns Redis' mem_clients_normal in bytes: the buffers of
// ordinary client connections.
func clientMemory(t *testing.T, r *testenv.Redis) int64 {
	t.Helper()
	info, err := r.Info("memory")
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.ParseInt(info["mem_clients_normal"], 10, 64)
	if err != nil {
		t.Fatalf("mem_clients_normal %q", info["mem_clients_normal"])
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
	enqueue := func(prefix string) { enqueueMany(t, api, rc.URL, prefix, n) }
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

// enqueueMany enqueues n deliveries with ids prefix-0 … prefix-(n-1) to
// webhook in batches of 500, failing t unless every one is accepted.
func enqueueMany(t *testing.T, api *testenv.Dispatcher, webhook, prefix string, n int) {
	t.Helper()
	for b := 0; b < n; b += 500 {
		var items []any
		for i := b; i < min(b+500, n); i++ {
			items = append(items, testenv.Delivery(webhook, fmt.Sprintf("%s-%d", prefix, i)))
		}
		if status, results := postBatch(t, api, items); status != http.StatusOK || results[len(results)-1].Status != http.StatusAccepted {
			t.Fatalf("batch: %d", status)
		}
	}
}

// TestMemoryPerDeliveredID measures what a delivered delivery costs in Redis
// at each stage of its life (10,000 deliveries, ~300-byte bodies, ids of 24
// characters like the provider's generation ids): within RETENTION (asynq's
// completed task, the attempt log, the marker), after RETENTION (asynq's
// janitor has deleted the completed task; the log is still kept), and after
// ATTEMPT_LOG_RETENTION, when only the delivered marker is left: ≤ 64 B per
// id (issue 16's budget for a DEDUPE_WINDOW of 1 billion webhooks a day).
func TestMemoryPerDeliveredID(t *testing.T) {
	if testing.Short() {
		t.Skip("delivers thousands of webhooks")
	}
	redis := testenv.StartRedis(t, testenv.RedisOptions{})
	rc := testenv.NewReceiver(t, testenv.Status(http.StatusOK))
	env := []string{"REDIS_URL=" + redis.URL(), "WEBHOOK_CA_FILE=" + rc.CAFile, "ATTEMPT_LOG_RETENTION=2s"}
	api := testenv.StartDispatcher(t, "api", env...)
	testenv.StartDispatcher(t, "worker", env...)
	const n = 10000
	ids := make([]string, n)
	var items []any
	before, clientsBefore := usedMemory(t, redis), clientMemory(t, redis)
	for i := range ids {
		ids[i] = fmt.Sprintf("507f1f77bcf86cd7%08x", i*7919)
		items = append(items, testenv.Delivery(rc.URL, ids[i]))
		if len(items) == 500 {
			if status, results := postBatch(t, api, items); status != http.StatusOK || results[len(results)-1].Status != http.StatusAccepted {
				t.Fatalf("batch: %d", status)
			}
			items = nil
		}
	}
	rc.WaitCount(t, n, 120*time.Second)
	waitCard := func(key string, want int64) {
		t.Helper()
		for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			got, err := redis.Do("ZCARD", key)
			if err != nil {
				t.Fatal(err)
			}
			if got == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s holds %v, want %d after 60 s", key, got, want)
			}
		}
	}
	waitCard(asynqKey("completed"), n)
	// Per id: the growth of used_memory less that of the connection buffers
	// (mem_clients_normal: the dispatcher's pooled connections' query and
	// reply buffers, ~1.5 MB after the burst here), which scale with
	// connections, not with what Redis stores.
	perID := func() float64 {
		used, clients := usedMemory(t, redis), clientMemory(t, redis)
		t.Logf("used_memory grew %d B, of which connection buffers %d B", used-before, clients-clientsBefore)
		return float64((used-before)-(clients-clientsBefore)) / n
	}
	within := perID()
	t.Logf("delivered, within RETENTION (completed task, attempt log, marker): %.0f bytes per delivery", within)

	// RETENTION passes: delete the completed tasks as asynq's janitor does
	// (the task hash, then its entry in the completed set).
	for b := 0; b < n; b += 500 {
		args := []string{"DEL"}
		for _, id := range ids[b : b+500] {
			args = append(args, asynqKey("t:"+id))
		}
		if _, err := redis.Do(args...); err != nil {
			t.Fatal(err)
		}
		if _, err := redis.Do(append([]string{"ZREM", asynqKey("completed")}, ids[b:b+500]...)...); err != nil {
			t.Fatal(err)
		}
	}
	waitCard(asynqKey("completed"), 0)
	afterRetention := perID()
	t.Logf("delivered, after RETENTION (attempt log, marker): %.0f bytes per delivery", afterRetention)

	// ATTEMPT_LOG_RETENTION (2 s here) passes: the logs expire. Redis frees
	// an expired key when its sampling finds it or when it is touched, so
	// once every log reads as gone, an EXISTS of each frees the rest.
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		keys, err := redis.Do("KEYS", "webhook:attempts:*")
		if err != nil {
			t.Fatal(err)
		}
		if l, _ := keys.([]any); len(l) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("attempt logs of delivered deliveries still there 60 s after ATTEMPT_LOG_RETENTION")
		}
	}
	for b := 0; b < n; b += 500 {
		args := []string{"EXISTS"}
		for _, id := range ids[b : b+500] {
			args = append(args, "webhook:attempts:"+id)
		}
		if got, err := redis.Do(args...); err != nil || got != int64(0) {
			t.Fatalf("EXISTS of expired attempt logs: %v %v", got, err)
		}
	}
	residual := perID()
	t.Logf("delivered, after ATTEMPT_LOG_RETENTION: used_memory %.0f bytes per id above the start (markers plus Redis' fixed overheads)", residual)
	// The markers are what is left, and they still reserve every id.
	for _, i := range []int{0, n / 2, n - 1} {
		if resp := api.Call(t, http.MethodPost, "/v1/deliveries", testenv.Delivery(rc.URL, ids[i])); resp.Status != http.StatusConflict {
			t.Errorf("resend of %s after retention: %d, want 409", ids[i], resp.Status)
		}
	}

	// Nothing per id is left but the markers: a handful of asynq's own keys
	// and one hash per bucket (DELIVERED_MARKER_BUCKETS, 1024).
	markers, err := redis.Do("KEYS", "webhook:delivered:*")
	if err != nil {
		t.Fatal(err)
	}
	keys := markers.([]any)
	if size, err := redis.Do("DBSIZE"); err != nil || size.(int64) > int64(len(keys))+20 {
		t.Errorf("DBSIZE %v with %d marker hashes: more than markers left per id", size, len(keys))
	}
	// What the markers cost is what deleting them frees.
	full := usedMemory(t, redis)
	args := []string{"DEL"}
	for _, k := range keys {
		args = append(args, k.(string))
	}
	if _, err := redis.Do(args...); err != nil {
		t.Fatal(err)
	}
	marker := float64(full-usedMemory(t, redis)) / n
	t.Logf("delivered, after ATTEMPT_LOG_RETENTION (marker only): %.0f bytes per id in %d hashes", marker, len(keys))
	if marker > 64 {
		t.Errorf("delivered id after retention: %.0f bytes, want ≤ 64", marker)
	}
}

// TestMemoryPerFailedDelivery measures what a failed delivery costs in Redis
// while it stays listed and redeliverable (FAILED_RETENTION, 30 days by
// default): asynq's archived task, the failed record and its index entry, and
// the attempt log of its ten attempts (2,000 deliveries, ~300-byte bodies,
// 24-character ids, a receiver answering 500 with a short body). The issue
// sets no budget for failed deliveries; the README's "Scale" section sizes
// the failed set at 6 KB each, measured here at ~5.2 KB: the attempt log
// (~270 B per JSON entry) is half of it.
func TestMemoryPerFailedDelivery(t *testing.T) {
	if testing.Short() {
		t.Skip("makes 20,000 failing attempts")
	}
	redis := testenv.StartRedis(t, testenv.RedisOptions{})
	rc := testenv.NewReceiver(t, testenv.Status(http.StatusInternalServerError))
	env := []string{"REDIS_URL=" + redis.URL(), "WEBHOOK_CA_FILE=" + rc.CAFile,
		"RETRY_SCHEDULE=1s,1s,1s,1s,1s,1s,1s,1s,1s"}
	api := testenv.StartDispatcher(t, "api", env...)
	const n = 2000
	before, clientsBefore := usedMemory(t, redis), clientMemory(t, redis)
	var items []any
	for i := range n {
		items = append(items, testenv.Delivery(rc.URL, fmt.Sprintf("507f1f77bcf86cd7%08x", i*7919)))
		if len(items) == 500 {
			if status, results := postBatch(t, api, items); status != http.StatusOK || results[len(results)-1].Status != http.StatusAccepted {
				t.Fatalf("batch: %d", status)
			}
			items = nil
		}
	}
	testenv.StartDispatcher(t, "worker", env...)
	for deadline := time.Now().Add(240 * time.Second); ; time.Sleep(250 * time.Millisecond) {
		got, err := redis.Do("ZCARD", "webhook:failed")
		if err != nil {
			t.Fatal(err)
		}
		if got == int64(n) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%v of %d deliveries failed after 240 s", got, n)
		}
	}
	if got := len(rc.Requests()); got != n*10 {
		t.Fatalf("receiver saw %d POSTs, want %d (ten attempts each)", got, n*10)
	}
	// Where one failed delivery's bytes are, key by key (MEMORY USAGE).
	id := fmt.Sprintf("507f1f77bcf86cd7%08x", 0)
	for _, key := range []string{asynqKey("t:" + id), "webhook:failed:" + id, "webhook:attempts:" + id} {
		got, err := redis.Do("MEMORY", "USAGE", key)
		if err != nil || got == nil {
			t.Fatalf("MEMORY USAGE %s: %v %v", key, got, err)
		}
		t.Logf("MEMORY USAGE %s: %v B", key, got)
	}
	used, clients := usedMemory(t, redis), clientMemory(t, redis)
	t.Logf("used_memory grew %d B, of which connection buffers %d B", used-before, clients-clientsBefore)
	perID := float64((used-before)-(clients-clientsBefore)) / n
	t.Logf("failed (archived task, failed record and index entry, ten-entry attempt log): %.0f bytes per delivery", perID)
	if perID > 6144 {
		t.Errorf("failed: %.0f bytes per delivery, want ≤ 6 KB", perID)
	}
}
