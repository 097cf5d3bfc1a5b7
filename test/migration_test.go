package test

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/artificialstudio/webhook-dispatcher/test/testenv"
)

// perPath answers 500 for webhook paths starting with /fail, 200 otherwise.
func perPath(w http.ResponseWriter, r *http.Request, _ int) {
	if strings.HasPrefix(r.URL.Path, "/fail") {
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// countPath is how many POSTs rc received for path.
func countPath(rc *testenv.Receiver, path string) int {
	n := 0
	for _, r := range rc.Requests() {
		if r.Path == path {
			n++
		}
	}
	return n
}

// TestMigrationToCluster moves from one Redis (QUEUE_SHARDS=1) to a 3-primary
// cluster (QUEUE_SHARDS=12) as the README's Redis Cluster section says: the
// old datastore holds ids in every state (pending with no worker, retrying,
// delivered within RETENTION, delivered after RETENTION with only its marker
// left, failed); the new API, with PREVIOUS_REDIS_URL pointing at the old
// one, answers 409 for each of them single and in a batch and GET from the
// old store, accepts new ids into the cluster (delivered once by the new
// worker), while an old worker drains the old store. With the old Redis
// SIGSTOPped an enqueue answers 503 (never 202) within the enqueue timeout.
func TestMigrationToCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Redis Cluster, a Redis and five dispatcher processes")
	}
	rc := testenv.NewReceiver(t, perPath)
	old := testenv.StartRedis(t, testenv.RedisOptions{})
	oldEnv := []string{"REDIS_URL=" + old.URL(), "WEBHOOK_CA_FILE=" + rc.CAFile}
	oldAPI := testenv.StartDispatcher(t, "api", oldEnv...)
	hook := func(path string) string { return rc.URL + path }

	// Delivered (kept by RETENTION), delivered with only the marker left, failed.
	fast := testenv.StartDispatcher(t, "worker", append(oldEnv, fastRetries)...)
	enqueueOK(t, oldAPI, hook("/ok/completed"), "old-completed")
	enqueueOK(t, oldAPI, hook("/ok/marker"), "old-marker")
	enqueueOK(t, oldAPI, hook("/fail/failed"), "old-failed")
	oldAPI.WaitState(t, "old-completed", "delivered", 30*time.Second)
	oldAPI.WaitState(t, "old-marker", "delivered", 30*time.Second)
	oldAPI.WaitState(t, "old-failed", "failed", 60*time.Second)
	fast.Kill()
	// RETENTION passes for old-marker: asynq's janitor drops the task, the marker stays.
	if got := redisDo(t, old, "ZREM", asynqKey("completed"), "old-marker"); got != ":1" {
		t.Fatalf("ZREM completed old-marker: %s, want :1", got)
	}
	redisDo(t, old, "DEL", asynqKey("t:old-marker"))
	if got := redisDo(t, old, "EXISTS", asynqKey("t:old-failed")); got != ":1" {
		t.Fatalf("old-failed not archived in asynq: EXISTS %s", got)
	}
	// Also a failed delivery whose archived task asynq has trimmed: the failed record alone.
	enqueueOK(t, oldAPI, hook("/fail/record"), "old-record")
	fast2 := testenv.StartDispatcher(t, "worker", append(oldEnv, fastRetries)...)
	oldAPI.WaitState(t, "old-record", "failed", 60*time.Second)
	fast2.Kill()
	redisDo(t, old, "ZREM", asynqKey("archived"), "old-record")
	redisDo(t, old, "DEL", asynqKey("t:old-record"))

	// Retrying: one failed attempt, the next an hour away.
	slow := testenv.StartDispatcher(t, "worker", append(oldEnv, "RETRY_SCHEDULE=1h,1h,1h,1h,1h,1h,1h,1h,1h")...)
	enqueueOK(t, oldAPI, hook("/fail/retrying"), "old-retrying")
	oldAPI.WaitState(t, "old-retrying", "retrying", 30*time.Second)
	slow.Kill()
	// Pending: no old worker runs now.
	enqueueOK(t, oldAPI, hook("/ok/pending"), "old-pending")
	oldAPI.WaitState(t, "old-pending", "pending", 10*time.Second)
	oldAPI.Kill() // the old API stops taking traffic once the new one does

	c := testenv.StartCluster(t, 3, 0)
	newAPI := testenv.StartDispatcher(t, "all", "REDIS_URL="+c.URL(), "QUEUE_SHARDS=12", "WEBHOOK_CA_FILE="+rc.CAFile,
		"PREVIOUS_REDIS_URL="+old.URL(), "PREVIOUS_QUEUE_SHARDS=1")

	oldStates := map[string]string{
		"old-completed": "delivered", "old-marker": "delivered", "old-failed": "failed",
		"old-record": "failed", "old-retrying": "retrying", "old-pending": "pending",
	}
	for id, state := range oldStates {
		if resp := newAPI.Call(t, http.MethodPost, "/v1/deliveries", testenv.Delivery(hook("/ok/resent"), id)); resp.Status != http.StatusConflict {
			t.Errorf("resend of %s (%s in the old store) to the new API: %d %s, want 409", id, state, resp.Status, resp.Body)
		}
		// Status polls keep working: GET answers from the old store.
		var st map[string]any
		if resp := newAPI.Call(t, http.MethodGet, "/v1/deliveries/"+id, nil); resp.Status != http.StatusOK {
			t.Errorf("GET %s through the new API: %d %s, want 200", id, resp.Status, resp.Body)
		} else if resp.JSON(t, &st); st["state"] != state {
			t.Errorf("GET %s through the new API: state %v, want %s (the old store's)", id, st["state"], state)
		}
	}
	items := []any{testenv.Delivery(hook("/ok/new-batch"), "new-batch")}
	for id := range oldStates {
		items = append(items, testenv.Delivery(hook("/ok/resent"), id))
	}
	status, results := postBatch(t, newAPI, items)
	if status != http.StatusOK || len(results) != len(items) {
		t.Fatalf("batch: status %d, %d results for %d items", status, len(results), len(items))
	}
	for _, r := range results {
		want := http.StatusConflict
		if r.ID == "new-batch" {
			want = http.StatusAccepted
		}
		if r.Status != want {
			t.Errorf("batch item %s: %d (%s), want %d", r.ID, r.Status, r.Error, want)
		}
	}

	enqueueOK(t, newAPI, hook("/ok/new-single"), "new-single")
	newAPI.WaitState(t, "new-single", "delivered", 30*time.Second)
	newAPI.WaitState(t, "new-batch", "delivered", 30*time.Second)

	// The old worker drains the old store meanwhile; its ids stay taken.
	drain := testenv.StartDispatcher(t, "worker", oldEnv...)
	newAPI.WaitState(t, "old-pending", "delivered", 30*time.Second) // read from the old store
	if resp := newAPI.Call(t, http.MethodPost, "/v1/deliveries", testenv.Delivery(hook("/ok/resent"), "old-pending")); resp.Status != http.StatusConflict {
		t.Errorf("resend of old-pending after the old worker delivered it: %d, want 409", resp.Status)
	}
	if n, err := old.Do("EXISTS", "asynq:{webhooks}:t:new-single"); err != nil || n != int64(0) {
		t.Errorf("new-single in the old store: EXISTS %v %v, want 0", n, err)
	}

	// The old store stops answering: enqueues answer 503, never 202, and
	// ids the new store holds still answer GET.
	if err := old.Pause(); err != nil {
		t.Fatal(err)
	}
	resumed := sync.OnceFunc(func() { old.Resume() })
	t.Cleanup(resumed)
	start := time.Now()
	if resp := newAPI.Call(t, http.MethodPost, "/v1/deliveries", testenv.Delivery(hook("/ok/stopped"), "new-stopped")); resp.Status != http.StatusServiceUnavailable {
		t.Errorf("enqueue with the old store stopped: %d %s, want 503", resp.Status, resp.Body)
	}
	t.Logf("503 with the old store SIGSTOPped after %s (enqueue timeout 3s)", time.Since(start).Round(time.Millisecond))
	status, results = postBatch(t, newAPI, []any{testenv.Delivery(hook("/ok/stopped-batch"), "new-stopped-batch")})
	if status != http.StatusOK || len(results) != 1 || results[0].Status != http.StatusServiceUnavailable {
		t.Errorf("batch with the old store stopped: status %d results %+v, want one item answered 503", status, results)
	}
	if resp := newAPI.Call(t, http.MethodGet, "/v1/deliveries/new-single", nil); resp.Status != http.StatusOK {
		t.Errorf("GET of a new id with the old store stopped: %d, want 200", resp.Status)
	}
	resumed()
	// Refused means not stored: the resend is accepted once the old store answers.
	if resp := newAPI.Call(t, http.MethodGet, "/v1/deliveries/new-stopped", nil); resp.Status != http.StatusNotFound {
		t.Errorf("GET new-stopped after its 503: %d %s, want 404", resp.Status, resp.Body)
	}
	enqueueOK(t, newAPI, hook("/ok/stopped"), "new-stopped")
	newAPI.WaitState(t, "new-stopped", "delivered", 30*time.Second)

	// Exactly once each: new ids by the new worker, old-pending by the old one.
	drain.Kill()
	for path, want := range map[string]int{
		"/ok/new-single": 1, "/ok/new-batch": 1, "/ok/stopped": 1, "/ok/stopped-batch": 0,
		"/ok/pending": 1, "/ok/resent": 0, "/ok/completed": 1, "/ok/marker": 1,
	} {
		if got := countPath(rc, path); got != want {
			t.Errorf("%s received %d POSTs, want %d", path, got, want)
		}
	}
	if n := countPath(rc, "/fail/retrying"); n != 1 {
		t.Errorf("old-retrying was attempted %d times, want 1 (its retry is an hour away)", n)
	}
}

// TestMigrationEnqueueCost measures what PREVIOUS_REDIS_URL costs an enqueue:
// two APIs on the same new Redis, one asking the previous Redis too,
// enqueue alternately (single requests, then batches of 100); it logs the
// median single-enqueue latency and the batch rate of each. It checks that
// the previous Redis is asked once per id (its command count grows) and is
// never written to (its key count stays), and that every id is accepted.
func TestMigrationEnqueueCost(t *testing.T) {
	if testing.Short() {
		t.Skip("a latency measurement")
	}
	rc := testenv.NewReceiver(t, nil)
	old, cur := testenv.StartRedis(t, testenv.RedisOptions{}), testenv.StartRedis(t, testenv.RedisOptions{})
	env := []string{"REDIS_URL=" + cur.URL(), "WEBHOOK_CA_FILE=" + rc.CAFile}
	plain := testenv.StartDispatcher(t, "api", env...)
	migrating := testenv.StartDispatcher(t, "api", append(env, "PREVIOUS_REDIS_URL="+old.URL())...)
	oldKeys := redisDo(t, old, "DBSIZE")
	statsBefore, err := old.Info("stats")
	if err != nil {
		t.Fatal(err)
	}

	const singles, batches, batchSize = 400, 10, 100
	lat := map[*testenv.Dispatcher][]time.Duration{}
	for i := range 2 * singles {
		d := []*testenv.Dispatcher{plain, migrating}[i%2]
		id := "cost-" + strconv.Itoa(i)
		start := time.Now()
		resp := d.Call(t, http.MethodPost, "/v1/deliveries", testenv.Delivery(rc.URL, id))
		lat[d] = append(lat[d], time.Since(start))
		if resp.Status != http.StatusAccepted {
			t.Fatalf("enqueue %s: %d %s", id, resp.Status, resp.Body)
		}
	}
	took := map[*testenv.Dispatcher]time.Duration{}
	for b := range 2 * batches {
		d := []*testenv.Dispatcher{plain, migrating}[b%2]
		items := make([]any, batchSize)
		for i := range items {
			items[i] = testenv.Delivery(rc.URL, "cost-b"+strconv.Itoa(b)+"-"+strconv.Itoa(i))
		}
		start := time.Now()
		status, results := postBatch(t, d, items)
		took[d] += time.Since(start)
		if status != http.StatusOK || len(results) != batchSize {
			t.Fatalf("batch %d: status %d, %d results", b, status, len(results))
		}
		for _, r := range results {
			if r.Status != http.StatusAccepted {
				t.Fatalf("batch %d item %s: %d %s", b, r.ID, r.Status, r.Error)
			}
		}
	}

	statsAfter, err := old.Info("stats")
	if err != nil {
		t.Fatal(err)
	}
	before, _ := strconv.Atoi(statsBefore["total_commands_processed"])
	after, _ := strconv.Atoi(statsAfter["total_commands_processed"])
	if asked := singles + batches*batchSize; after-before < asked {
		t.Errorf("the previous Redis processed %d commands for %d enqueues: not asked once per id", after-before, asked)
	}
	if got := redisDo(t, old, "DBSIZE"); got != oldKeys {
		t.Errorf("the previous Redis was written to: DBSIZE %s, was %s", got, oldKeys)
	}
	median := func(ds []time.Duration) time.Duration {
		s := slices.Clone(ds)
		slices.Sort(s)
		return s[len(s)/2]
	}
	t.Logf("single enqueue, median of %d: %s without PREVIOUS_REDIS_URL, %s with it; batches of %d: %.0f/s without, %.0f/s with; previous Redis: %.1f commands per id",
		singles, median(lat[plain]), median(lat[migrating]), batchSize,
		float64(batches*batchSize)/took[plain].Seconds(), float64(batches*batchSize)/took[migrating].Seconds(),
		float64(after-before)/float64(singles+batches*batchSize))
}
