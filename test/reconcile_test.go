package test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/artificialstudio/webhook-dispatcher/test/testenv"
)

// The faults of issue 11, each injected for real into a real redis-server:
// asynq's three records of a task (active list, lease set, task hash) made
// to disagree, a worker killed on the last attempt, a trimmed archive, an
// evicting Redis, a completion write refused. Each ends delivered, or failed
// and listed, with the attempt count its log shows.

// asynqKey names a key of the dispatcher's asynq queue, as asynq v0.26 does.
func asynqKey(name string) string { return "asynq:{webhooks}:" + name }

// reconcileEnv is the environment of these tests: fast retries and a
// reconciler that runs every second with a 2 s grace.
func reconcileEnv(r *testenv.Redis, rc *testenv.Receiver, more ...string) []string {
	return append([]string{"REDIS_URL=" + r.URL(), "WEBHOOK_CA_FILE=" + rc.CAFile, faultRetries,
		"RECONCILE_INTERVAL=1s", "RECONCILE_GRACE=2s"}, more...)
}

// redisDo runs one command on r and fails the test on an error reply; it
// returns the reply as text (an integer reply n as ":n").
func redisDo(t *testing.T, r *testenv.Redis, args ...string) string {
	t.Helper()
	out, err := r.Do(args...)
	if err != nil {
		t.Fatalf("redis %v: %v", args, err)
	}
	if n, ok := out.(int64); ok {
		return ":" + strconv.FormatInt(n, 10)
	}
	return fmt.Sprint(out)
}

// perID returns a respond func that calls answer with the 1-based count of
// the requests for the delivery's id.
func perID(answer func(w http.ResponseWriter, r *http.Request, id string, n int)) func(http.ResponseWriter, *http.Request, int) {
	var mu sync.Mutex
	counts := map[string]int{}
	return func(w http.ResponseWriter, r *http.Request, _ int) {
		id := r.Header.Get("X-Media-Id")
		mu.Lock()
		counts[id]++
		n := counts[id]
		mu.Unlock()
		answer(w, r, id, n)
	}
}

// wantLog fails t unless st's attempt log is exactly outcomes, numbered from 1.
func wantLog(t *testing.T, id string, st map[string]any, outcomes ...string) {
	t.Helper()
	log := attemptLog(st)
	ok := len(log) == len(outcomes) && st["attemptCount"] == float64(len(outcomes))
	for i := 0; ok && i < len(log); i++ {
		ok = log[i]["attempt"] == float64(i+1) && log[i]["outcome"] == outcomes[i]
	}
	if !ok {
		t.Errorf("%s: attemptCount %v, attempt log %v; want attempts 1..%d with outcomes %v", id, st["attemptCount"], log, len(outcomes), outcomes)
	}
}

// TestActiveWithoutLeaseIsRecovered is case 1: a task in the active list,
// its hash saying active, and no lease, as a failover or a restore from a
// replica can leave it. asynq's recoverer never sees it; the reconciler
// gives it a lease, and once that expires puts it back in the queue without
// spending an attempt (its attempt never ran).
func TestActiveWithoutLeaseIsRecovered(t *testing.T) {
	t.Parallel()
	redis := testenv.StartRedis(t, testenv.RedisOptions{})
	rc := testenv.NewReceiver(t, nil)
	env := reconcileEnv(redis, rc)
	api := testenv.StartDispatcher(t, "api", env...)
	const id = "stuck-active-1"
	enqueueOK(t, api, rc.URL, id)
	if got := redisDo(t, redis, "LREM", asynqKey("pending"), "0", id); got != ":1" {
		t.Fatalf("LREM pending = %s, want :1", got)
	}
	redisDo(t, redis, "LPUSH", asynqKey("active"), id)
	redisDo(t, redis, "HSET", asynqKey("t:"+id), "state", "active")
	api.WaitState(t, id, "active", 5*time.Second)
	if resp := api.Call(t, http.MethodPost, "/v1/deliveries", testenv.Delivery(rc.URL, id)); resp.Status != http.StatusConflict {
		t.Fatalf("re-enqueue while stuck: %d, want 409", resp.Status)
	}

	started := time.Now()
	w := testenv.StartDispatcher(t, "worker", env...)
	st := api.WaitState(t, id, "delivered", 60*time.Second)
	t.Logf("active without a lease: delivered %.1f s after the worker started (grace 2 s, lease slack 5 s, interval 1 s)", time.Since(started).Seconds())
	wantLog(t, id, st, "delivered")
	if n := idsSeen(rc.Requests())[id]; n != 1 {
		t.Errorf("receiver got %d POSTs, want 1", n)
	}
	for _, kind := range []string{"active_without_lease", "lease_expired_not_run"} {
		if logLines(w.Logs(), `"msg":"reconciled"`, `"kind":"`+kind+`"`, id) == 0 {
			t.Errorf("worker logged no %s repair of %s", kind, id)
		}
	}
}

// TestLeaseSetLostDuringPost is case 2: the lease set is deleted while POSTs
// are in flight, between two reconciler passes (RECONCILE_INTERVAL=10s, so
// no pass restores the leases first). asynq's retry and completion then stop
// half way on NOT FOUND, leaving both tasks in no list with hashes saying
// active. asynq's report nudges the reconciler: the next pass walks the task
// hashes (without the nudge the walk would wait for the 10th pass, 100 s)
// and puts the orphans back. The 500 is retried; the 200 is not POSTed again.
func TestLeaseSetLostDuringPost(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for two 10 s reconciler passes")
	}
	t.Parallel()
	redis := testenv.StartRedis(t, testenv.RedisOptions{})
	rc := testenv.NewReceiver(t, perID(func(w http.ResponseWriter, _ *http.Request, id string, n int) {
		if n == 1 {
			time.Sleep(3 * time.Second)
		}
		if id == "lease-lost-500" && n == 1 {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	env := reconcileEnv(redis, rc, "RECONCILE_INTERVAL=10s")
	api := testenv.StartDispatcher(t, "api", env...)
	w := testenv.StartDispatcher(t, "worker", env...)
	enqueueOK(t, api, rc.URL, "lease-lost-500")
	enqueueOK(t, api, rc.URL, "lease-lost-200")
	rc.WaitCount(t, 2, 15*time.Second)
	lost := time.Now()
	redisDo(t, redis, "DEL", asynqKey("lease"))

	st := api.WaitState(t, "lease-lost-500", "delivered", 60*time.Second)
	wantLog(t, "lease-lost-500", st, "http_status", "delivered")
	st = api.WaitState(t, "lease-lost-200", "delivered", 60*time.Second)
	wantLog(t, "lease-lost-200", st, "delivered")
	t.Logf("lease set lost during the POSTs: both delivered %.1f s after", time.Since(lost).Seconds())
	seen := idsSeen(rc.Requests())
	if seen["lease-lost-500"] != 2 || seen["lease-lost-200"] != 1 {
		t.Errorf("receiver POSTs %v, want lease-lost-500 twice (500, then 200) and lease-lost-200 once", seen)
	}
	for _, id := range []string{"lease-lost-500", "lease-lost-200"} {
		if logLines(w.Logs(), `"msg":"reconciled"`, `"kind":"orphan"`, id) == 0 {
			t.Errorf("%s: no orphan repair logged (asynq's NOT FOUND path was not taken)", id)
		}
	}
}

// TestOrphanedTasksRecovered: task hashes saying active that no list holds,
// as asynq leaves them when a script stops on NOT FOUND after removing the
// task from the active list. One never ran; the other's attempt log already
// has its 200 (the completion write was lost): it completes without a POST.
func TestOrphanedTasksRecovered(t *testing.T) {
	t.Parallel()
	redis := testenv.StartRedis(t, testenv.RedisOptions{})
	rc := testenv.NewReceiver(t, nil)
	env := reconcileEnv(redis, rc)
	api := testenv.StartDispatcher(t, "api", env...)
	for _, id := range []string{"orphan-new", "orphan-done"} {
		enqueueOK(t, api, rc.URL, id)
		redisDo(t, redis, "LREM", asynqKey("pending"), "0", id)
		redisDo(t, redis, "HSET", asynqKey("t:"+id), "state", "active")
	}
	// orphan-done was delivered in this cycle; only the completion is missing.
	var st struct {
		EnqueuedAt time.Time `json:"enqueuedAt"`
	}
	api.Call(t, http.MethodGet, "/v1/deliveries/orphan-done", nil).JSON(t, &st)
	now := time.Now().UTC()
	entry, _ := json.Marshal(map[string]any{"attempt": 1, "cycle": st.EnqueuedAt, "startedAt": now, "endedAt": now,
		"durationMs": 1, "outcome": "delivered", "status": 200})
	redisDo(t, redis, "RPUSH", "webhook:attempts:orphan-done", string(entry))

	w := testenv.StartDispatcher(t, "worker", env...)
	got := api.WaitState(t, "orphan-new", "delivered", 60*time.Second)
	wantLog(t, "orphan-new", got, "delivered")
	got = api.WaitState(t, "orphan-done", "delivered", 60*time.Second)
	wantLog(t, "orphan-done", got, "delivered")
	seen := idsSeen(rc.Requests())
	if seen["orphan-new"] != 1 || seen["orphan-done"] != 0 {
		t.Errorf("receiver POSTs %v, want orphan-new once and orphan-done never", seen)
	}
	for _, kind := range []string{"orphan", "lease_expired_delivered"} {
		if logLines(w.Logs(), `"msg":"reconciled"`, `"kind":"`+kind+`"`, "orphan-done") == 0 {
			t.Errorf("worker logged no %s repair of orphan-done", kind)
		}
	}
	if logLines(w.Logs(), "already delivered in this cycle", "orphan-done") != 1 {
		t.Error("the handler did not complete orphan-done as already delivered")
	}
}

// TestWorkerKilledOnLastAttempt is case 3: the worker is SIGKILLed during
// the tenth attempt. The attempt left no log entry, so the reconciler hands
// the task back without spending it; the tenth attempt runs again, fails,
// and the delivery is failed and listed with 10 attempts.
func TestWorkerKilledOnLastAttempt(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the killed worker's lease to expire (~35 s)")
	}
	t.Parallel()
	redis := testenv.StartRedis(t, testenv.RedisOptions{})
	rc := testenv.NewReceiver(t, perID(func(w http.ResponseWriter, r *http.Request, _ string, n int) {
		if n == 10 {
			<-r.Context().Done() // hangs until the worker dies
			return
		}
		w.WriteHeader(http.StatusInternalServerError)
	}))
	env := reconcileEnv(redis, rc, "DELIVERY_TIMEOUT=60s")
	api := testenv.StartDispatcher(t, "api", env...)
	w1 := testenv.StartDispatcher(t, "worker", env...)
	const id = "last-attempt-kill"
	enqueueOK(t, api, rc.URL, id)
	rc.WaitCount(t, 10, 60*time.Second)
	w1.Kill()
	killed := time.Now()
	testenv.StartDispatcher(t, "worker", env...)

	st := api.WaitState(t, id, "failed", 120*time.Second)
	t.Logf("worker killed on the 10th attempt: failed and listed %.1f s after the kill", time.Since(killed).Seconds())
	outcomes := make([]string, 10)
	for i := range outcomes {
		outcomes[i] = "http_status"
	}
	wantLog(t, id, st, outcomes...)
	if n := rc.Count(); n != 11 {
		t.Errorf("receiver got %d POSTs, want 11 (the killed 10th attempt is POSTed again)", n)
	}
	wantListedFailed(t, api, id)
	if resp := api.Call(t, http.MethodPost, "/v1/deliveries", testenv.Delivery(rc.URL, id)); resp.Status != http.StatusConflict {
		t.Errorf("resend of a failed id: %d, want 409", resp.Status)
	}
}

// wantListedFailed fails t unless id is in GET /v1/deliveries?state=failed.
func wantListedFailed(t *testing.T, api *testenv.Dispatcher, id string) {
	t.Helper()
	var list struct {
		Deliveries []struct{ ID string } `json:"deliveries"`
	}
	api.Call(t, http.MethodGet, "/v1/deliveries?state=failed&limit=500", nil).JSON(t, &list)
	for _, d := range list.Deliveries {
		if d.ID == id {
			return
		}
	}
	t.Errorf("%s is not in the failed list: %+v", id, list.Deliveries)
}

// TestArchivedWithoutRecordIsListed: asynq's recoverer archives a task whose
// last attempt's worker died without calling the handler, so no failed
// record exists. The reconciler writes it: listed, counted, redeliverable
// in bulk, its id reserved.
func TestArchivedWithoutRecordIsListed(t *testing.T) {
	t.Parallel()
	redis := testenv.StartRedis(t, testenv.RedisOptions{})
	rc := testenv.NewReceiver(t, nil)
	env := reconcileEnv(redis, rc)
	api := testenv.StartDispatcher(t, "api", env...)
	const id = "archived-no-record"
	enqueueOK(t, api, rc.URL, id)
	redisDo(t, redis, "LREM", asynqKey("pending"), "0", id)
	redisDo(t, redis, "ZADD", asynqKey("archived"), strconv.FormatInt(time.Now().Unix(), 10), id)
	redisDo(t, redis, "HSET", asynqKey("t:"+id), "state", "archived")

	w := testenv.StartDispatcher(t, "worker", env...)
	deadline := time.Now().Add(30 * time.Second)
	for logLines(w.Logs(), `"kind":"archived_without_record"`, id) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no failed record written for %s", id)
		}
		time.Sleep(100 * time.Millisecond)
	}
	wantListedFailed(t, api, id)
	if resp := api.Call(t, http.MethodPost, "/v1/deliveries", testenv.Delivery(rc.URL, id)); resp.Status != http.StatusConflict {
		t.Errorf("resend of a failed id: %d, want 409", resp.Status)
	}
	var queued struct{ Queued int }
	api.Call(t, http.MethodPost, "/v1/deliveries/redeliver", map[string]any{"state": "failed"}).JSON(t, &queued)
	if queued.Queued != 1 {
		t.Errorf("bulk redeliver queued %d, want 1", queued.Queued)
	}
	api.WaitState(t, id, "delivered", 30*time.Second)
}

// TestFailedIDReservedAfterArchiveTrim is case 5: asynq trims its archive
// (10,000 tasks or 90 days); the failed record keeps the id reserved (409)
// and the delivery listed until it is deleted or purged.
func TestFailedIDReservedAfterArchiveTrim(t *testing.T) {
	t.Parallel()
	redis := testenv.StartRedis(t, testenv.RedisOptions{})
	rc := testenv.NewReceiver(t, func(w http.ResponseWriter, r *http.Request, _ int) {
		switch {
		case strings.HasSuffix(r.URL.Path, "/ok"):
			w.WriteHeader(http.StatusOK)
			return
		case strings.HasSuffix(r.URL.Path, "/slow"):
			time.Sleep(3 * time.Second)
		}
		w.WriteHeader(http.StatusInternalServerError)
	})
	env := reconcileEnv(redis, rc)
	api := testenv.StartDispatcher(t, "api", env...)
	testenv.StartDispatcher(t, "worker", env...)
	const id = "trimmed-failed"
	enqueueOK(t, api, rc.URL, id)
	api.WaitState(t, id, "failed", 60*time.Second)
	// Trim it from asynq's archive the way asynq's archive script does.
	redisDo(t, redis, "ZREM", asynqKey("archived"), id)
	redisDo(t, redis, "DEL", asynqKey("t:"+id))

	if resp := api.Call(t, http.MethodPost, "/v1/deliveries", testenv.Delivery(rc.URL, id)); resp.Status != http.StatusConflict {
		t.Fatalf("resend after the archive trim: %d %s, want 409", resp.Status, resp.Body)
	}
	st := api.WaitState(t, id, "failed", time.Second)
	if st["attemptCount"] != float64(10) {
		t.Errorf("attemptCount %v, want 10", st["attemptCount"])
	}
	wantListedFailed(t, api, id)

	// DELETE: 409 while in progress; 200 for the failed one, which frees its id.
	enqueueOK(t, api, rc.URL+"/slow", "delete-in-progress")
	if resp := api.Call(t, http.MethodDelete, "/v1/deliveries/delete-in-progress", nil); resp.Status != http.StatusConflict {
		t.Errorf("DELETE of a delivery in progress: %d %s, want 409", resp.Status, resp.Body)
	}
	if resp := api.Call(t, http.MethodDelete, "/v1/deliveries/"+id, nil); resp.Status != http.StatusOK || !strings.Contains(string(resp.Body), `"deleted":1`) {
		t.Fatalf("DELETE of a failed delivery: %d %s, want 200 deleted 1", resp.Status, resp.Body)
	}
	if resp := api.Call(t, http.MethodGet, "/v1/deliveries/"+id, nil); resp.Status != http.StatusNotFound {
		t.Errorf("GET after DELETE: %d, want 404", resp.Status)
	}
	if resp := api.Call(t, http.MethodPost, "/v1/deliveries", testenv.Delivery(rc.URL, id)); resp.Status != http.StatusAccepted {
		t.Errorf("resend after DELETE: %d, want 202", resp.Status)
	}
	// A delivered delivery can be deleted too, which frees its id.
	enqueueOK(t, api, rc.URL+"/ok", "delete-delivered")
	api.WaitState(t, "delete-delivered", "delivered", 30*time.Second)
	if resp := api.Call(t, http.MethodDelete, "/v1/deliveries/delete-delivered", nil); resp.Status != http.StatusOK {
		t.Errorf("DELETE of a delivered delivery: %d %s, want 200", resp.Status, resp.Body)
	}
	if resp := api.Call(t, http.MethodPost, "/v1/deliveries", testenv.Delivery(rc.URL+"/ok", "delete-delivered")); resp.Status != http.StatusAccepted {
		t.Errorf("resend after DELETE of a delivered delivery: %d, want 202", resp.Status)
	}
	if resp := api.Call(t, http.MethodDelete, "/v1/deliveries/never-was", nil); resp.Status != http.StatusNotFound {
		t.Errorf("DELETE of an unknown id: %d, want 404", resp.Status)
	}
}

// TestPurgeFailedCommand: `dispatcher deliveries purge --state failed
// --before T` counts (--dry-run) and deletes failed deliveries older than T.
func TestPurgeFailedCommand(t *testing.T) {
	t.Parallel()
	redis := testenv.StartRedis(t, testenv.RedisOptions{})
	rc := testenv.NewReceiver(t, testenv.Status(http.StatusInternalServerError))
	env := reconcileEnv(redis, rc)
	api := testenv.StartDispatcher(t, "api", env...)
	w := testenv.StartDispatcher(t, "worker", env...)
	for i := range 3 {
		enqueueOK(t, api, rc.URL, fmt.Sprintf("purge-%d", i))
	}
	for i := range 3 {
		api.WaitState(t, fmt.Sprintf("purge-%d", i), "failed", 60*time.Second)
	}
	w.Kill()
	before := time.Now().Add(time.Second).UTC().Format(time.RFC3339)
	cli := func(args ...string) string {
		cmd := exec.Command(testenv.Binary(t), append([]string{"deliveries", "purge", "--state", "failed", "--before", before}, args...)...)
		cmd.Env = []string{"REDIS_URL=" + redis.URL()}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("purge %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	if out := cli("--dry-run"); !strings.Contains(out, "would purge 3 failed deliveries") {
		t.Errorf("dry run: %q", out)
	}
	if resp := api.Call(t, http.MethodGet, "/v1/deliveries/purge-0", nil); resp.Status != http.StatusOK {
		t.Errorf("dry run removed purge-0: GET %d", resp.Status)
	}
	if out := cli(); !strings.Contains(out, "purged 3 failed deliveries") {
		t.Errorf("purge: %q", out)
	}
	for i := range 3 {
		if resp := api.Call(t, http.MethodGet, fmt.Sprintf("/v1/deliveries/purge-%d", i), nil); resp.Status != http.StatusNotFound {
			t.Errorf("purge-%d after purge: GET %d, want 404", i, resp.Status)
		}
	}
}

// TestEvictingRedisRefused is case 4: on a Redis that may evict keys the api
// and worker refuse to start unless ALLOW_EVICTING_REDIS=true; a policy
// changed at run time makes /readyz fail, and evicted keys show in the
// metrics and the log.
func TestEvictingRedisRefused(t *testing.T) {
	t.Parallel()
	evicting := testenv.StartRedis(t, testenv.RedisOptions{Extra: []string{"--maxmemory", "16mb", "--maxmemory-policy", "allkeys-lru"}})
	rc := testenv.NewReceiver(t, nil)
	for _, mode := range []string{"api", "worker"} {
		cmd := exec.Command(testenv.Binary(t), mode)
		cmd.Env = []string{"REDIS_URL=" + evicting.URL(), "API_TOKEN=" + testenv.Token, "API_ADDR=127.0.0.1:0", "METRICS_ADDR=127.0.0.1:0"}
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "maxmemory-policy") || !strings.Contains(string(out), "ALLOW_EVICTING_REDIS") {
			t.Errorf("%s on an evicting Redis: err %v, output %s; want a refusal naming maxmemory-policy and ALLOW_EVICTING_REDIS", mode, err, out)
		}
	}
	allowed := testenv.StartDispatcher(t, "api", "REDIS_URL="+evicting.URL(), "ALLOW_EVICTING_REDIS=true", "RECONCILE_INTERVAL=1s")
	if !strings.Contains(allowed.Logs(), "REDIS MAY EVICT KEYS") {
		t.Error("ALLOW_EVICTING_REDIS=true: no loud warning logged")
	}

	// A safe Redis whose policy is changed under a running API.
	redis := testenv.StartRedis(t, testenv.RedisOptions{Extra: []string{"--maxmemory", "16mb"}})
	api := testenv.StartDispatcher(t, "api", reconcileEnv(redis, rc)...)
	readyz := func() int { return testenv.Call(t, http.MethodGet, api.APIURL+"/readyz", "", nil).Status }
	if s := readyz(); s != http.StatusOK {
		t.Fatalf("/readyz on a noeviction Redis: %d", s)
	}
	if !strings.Contains(api.Logs(), "REDIS PERSISTENCE IS OFF") {
		t.Error("no loud warning for a Redis without AOF or snapshots")
	}
	redisDo(t, redis, "CONFIG", "SET", "maxmemory-policy", "allkeys-lru")
	waitFor(t, 10*time.Second, "/readyz 503 after the policy became evicting", func() bool { return readyz() == http.StatusServiceUnavailable })
	// ~24 MB of unrelated keys, as a shared cache would write.
	junk := strings.Repeat("x", 100<<10)
	for i := range 240 {
		if _, err := redis.Do("SET", fmt.Sprintf("cache:%d", i), junk); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "webhook_redis_evicted_keys > 0 and an error log", func() bool {
		m := testenv.Call(t, http.MethodGet, api.MetricsURL+"/metrics", "", nil)
		return !strings.Contains(string(m.Body), "webhook_redis_evicted_keys 0\n") &&
			strings.Contains(string(m.Body), "webhook_redis_evicted_keys ") &&
			strings.Contains(api.Logs(), "redis evicted keys")
	})
	redisDo(t, redis, "CONFIG", "SET", "maxmemory-policy", "noeviction")
	waitFor(t, 10*time.Second, "/readyz 200 once the policy is safe again", func() bool { return readyz() == http.StatusOK })
}

// waitFor polls cond every 100 ms until it holds, or fails t after timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestCompletionWriteRefusedNotPostedAgain is case 7: Redis refuses writes
// (min-replicas-to-write 1, the replica SIGSTOPped) just as receivers answer
// 200. The attempt log write is retried until Redis takes it, so the 200 is
// recorded; no delivery is POSTed twice and none spends a second attempt.
func TestCompletionWriteRefusedNotPostedAgain(t *testing.T) {
	if testing.Short() {
		t.Skip("pauses a replica")
	}
	t.Parallel()
	primary := testenv.StartRedis(t, testenv.RedisOptions{})
	replica := testenv.StartRedis(t, testenv.RedisOptions{Extra: []string{"--replicaof", "127.0.0.1", strconv.Itoa(primary.Port)}})
	replica.WaitReplicaSynced(t, 10*time.Second)
	redisDo(t, primary, "CONFIG", "SET", "min-replicas-max-lag", "1")
	redisDo(t, primary, "CONFIG", "SET", "min-replicas-to-write", "1")

	fault := newWriteRefusal(t, primary, replica, "probe")
	rc := testenv.NewReceiver(t, fault.hold)
	env := reconcileEnv(primary, rc)
	api := testenv.StartDispatcher(t, "api", env...)
	const n = 5
	for i := range n {
		enqueueOK(t, api, rc.URL, fmt.Sprintf("norep-%d", i))
	}
	w := testenv.StartDispatcher(t, "worker", env...)
	for i := range n {
		id := fmt.Sprintf("norep-%d", i)
		st := api.WaitState(t, id, "delivered", 120*time.Second)
		wantLog(t, id, st, "delivered")
	}
	if !fault.refused.Load() {
		t.Fatal("the primary never refused a write: the fault was not injected")
	}
	for id, c := range idsSeen(rc.Requests()) {
		if c != 1 {
			t.Errorf("%s POSTed %d times, want 1", id, c)
		}
	}
	if got := logLines(w.Logs(), `"msg":"delivery attempt"`); got != n {
		t.Errorf("worker logged %d attempts, want %d", got, n)
	}
}

// TestRedisKilledWithDeliveriesInFlight is case 6: Redis is SIGKILLed while
// 30 POSTs are in flight, the receiver answers 200 while Redis is down, and
// Redis is restarted on its AOF 2 s later. Each worker keeps trying its
// attempt-log write (up to 10 s), so the 200s are recorded once Redis is
// back and the tasks complete: the attempt count matches the log (one
// attempt, numbered 1). Re-sent POSTs are counted and reported.
func TestRedisKilledWithDeliveriesInFlight(t *testing.T) {
	t.Parallel()
	redis := testenv.StartRedis(t, testenv.RedisOptions{AOF: true})
	gate := make(chan struct{})
	rc := testenv.NewReceiver(t, func(w http.ResponseWriter, r *http.Request, _ int) {
		select {
		case <-gate:
		case <-r.Context().Done():
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	env := reconcileEnv(redis, rc, "DELIVERY_TIMEOUT=30s", "HOST_CONCURRENCY=0")
	api := testenv.StartDispatcher(t, "api", env...)
	testenv.StartDispatcher(t, "worker", env...)
	const n = 30
	for i := range n {
		enqueueOK(t, api, rc.URL, fmt.Sprintf("inflight-%02d", i))
	}
	rc.WaitCount(t, n, 15*time.Second)
	time.Sleep(1500 * time.Millisecond) // past appendfsync everysec
	redis.Kill()
	close(gate) // the receiver answers 200 while Redis is down
	time.Sleep(2 * time.Second)
	redis.Start(t)
	back := time.Now()
	var latest time.Duration
	for i := range n {
		id := fmt.Sprintf("inflight-%02d", i)
		st := api.WaitState(t, id, "delivered", 120*time.Second)
		latest = max(latest, time.Since(back))
		wantLog(t, id, st, "delivered")
	}
	dups := 0
	for _, c := range idsSeen(rc.Requests()) {
		dups += c - 1
	}
	t.Logf("Redis SIGKILLed with %d POSTs in flight, answered 200 while it was down, restarted on its AOF 2 s later: all delivered within %.1f s of the restart; %d POSTs sent again",
		n, latest.Seconds(), dups)
}

// writeRefusal makes primary refuse writes for about 2 s once, from the first
// POST a receiver holds: it SIGSTOPs replica (primary has
// min-replicas-to-write set), waits until a write of probe (a key in a slot
// of primary) answers NOREPLICAS, lets the held POSTs answer, and SIGCONTs
// the replica 2 s later. Refused reports whether the fault was injected.
type writeRefusal struct {
	primary, replica *testenv.Redis
	probe            string
	once             sync.Once
	refused          atomic.Bool
	refusing         chan struct{}
}

func newWriteRefusal(t *testing.T, primary, replica *testenv.Redis, probe string) *writeRefusal {
	t.Cleanup(func() { _ = replica.Signal(syscall.SIGCONT) })
	return &writeRefusal{primary: primary, replica: replica, probe: probe, refusing: make(chan struct{})}
}

// hold is a receiver handler: the first call starts the fault, and every call
// waits until the primary refuses writes (or 10 s), then answers 200.
func (f *writeRefusal) hold(w http.ResponseWriter, _ *http.Request, _ int) {
	f.once.Do(func() {
		go func() {
			_ = f.replica.Signal(syscall.SIGSTOP)
			deadline := time.Now().Add(10 * time.Second)
			for time.Now().Before(deadline) {
				if _, err := f.primary.Do("SET", f.probe, "1"); err != nil && strings.HasPrefix(err.Error(), "NOREPLICAS") {
					f.refused.Store(true)
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			close(f.refusing)
			time.Sleep(2 * time.Second)
			_ = f.replica.Signal(syscall.SIGCONT)
		}()
	})
	<-f.refusing
	w.WriteHeader(http.StatusOK)
}
