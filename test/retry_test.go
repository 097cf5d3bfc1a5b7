package test

import (
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/artificialstudio/webhook-dispatcher/test/testenv"
)

func TestTenAttemptsThenFailedThenRedeliver(t *testing.T) {
	var healthy atomic.Bool
	_, rc, d := startStack(t, func(w http.ResponseWriter, _ *http.Request, _ int) {
		if healthy.Load() {
			w.WriteHeader(http.StatusOK)
			return
		}
		w.WriteHeader(http.StatusInternalServerError)
	}, "RETRY_SCHEDULE=50ms,60ms,70ms,80ms,90ms,100ms,110ms,120ms,130ms")

	if resp := d.Call(t, http.MethodPost, "/v1/deliveries", testenv.Delivery(rc.URL, "gen-fail-1")); resp.Status != http.StatusAccepted {
		t.Fatalf("enqueue: %d %s", resp.Status, resp.Body)
	}
	st := d.WaitState(t, "gen-fail-1", "failed", 30*time.Second)
	time.Sleep(time.Second) // an 11th attempt would show up here
	reqs := rc.Requests()
	if len(reqs) != 10 {
		t.Fatalf("receiver got %d POSTs, want exactly 10", len(reqs))
	}
	// Spaced in schedule order: each gap at least its step.
	for i := 1; i < len(reqs); i++ {
		step := time.Duration(40+10*i) * time.Millisecond
		if gap := reqs[i].At.Sub(reqs[i-1].At); gap < step {
			t.Errorf("gap before attempt %d = %s, want >= %s", i+1, gap, step)
		}
	}
	attempts := st["attempts"].([]any)
	if len(attempts) != 10 {
		t.Fatalf("attempt log holds %d entries, want 10", len(attempts))
	}
	for i, a := range attempts {
		a := a.(map[string]any)
		if a["attempt"] != float64(i+1) || a["outcome"] != "http_status" || a["status"] != float64(500) {
			t.Errorf("attempt %d = %v", i+1, a)
		}
	}
	if st["failedAt"] == nil {
		t.Errorf("failedAt missing: %v", st)
	}

	var list struct {
		Deliveries []map[string]any `json:"deliveries"`
	}
	d.Call(t, http.MethodGet, "/v1/deliveries?state=failed", nil).JSON(t, &list)
	if len(list.Deliveries) != 1 || list.Deliveries[0]["id"] != "gen-fail-1" {
		t.Fatalf("failed list = %v", list.Deliveries)
	}

	healthy.Store(true)
	if resp := d.Call(t, http.MethodPost, "/v1/deliveries/gen-fail-1/redeliver", nil); resp.Status != http.StatusAccepted {
		t.Fatalf("redeliver: %d %s", resp.Status, resp.Body)
	}
	rc.WaitCount(t, 11, 10*time.Second)
	st = d.WaitState(t, "gen-fail-1", "delivered", 10*time.Second)
	if n := len(st["attempts"].([]any)); n != 11 {
		t.Errorf("attempt log after redelivery holds %d entries, want 11 (earlier ones kept)", n)
	}
	if reqs := rc.Requests(); string(reqs[10].Body) != string(reqs[0].Body) {
		t.Errorf("redelivery sent different bytes")
	}
	d.Call(t, http.MethodGet, "/v1/deliveries?state=failed", nil).JSON(t, &list)
	if len(list.Deliveries) != 0 {
		t.Errorf("failed list after redelivery = %v, want empty", list.Deliveries)
	}
	if resp := d.Call(t, http.MethodPost, "/v1/deliveries/nope/redeliver", nil); resp.Status != http.StatusNotFound {
		t.Errorf("redeliver unknown = %d, want 404", resp.Status)
	}
}

func TestRedeliverInProgressConflicts(t *testing.T) {
	_, rc, d := startStack(t, testenv.Status(http.StatusInternalServerError), "RETRY_SCHEDULE=1h,1h,1h,1h,1h,1h,1h,1h,1h")
	if resp := d.Call(t, http.MethodPost, "/v1/deliveries", testenv.Delivery(rc.URL, "gen-busy")); resp.Status != http.StatusAccepted {
		t.Fatalf("enqueue: %d", resp.Status)
	}
	st := d.WaitState(t, "gen-busy", "retrying", 10*time.Second)
	if st["nextAttemptAt"] == nil {
		t.Errorf("retrying delivery has no nextAttemptAt: %v", st)
	}
	if resp := d.Call(t, http.MethodPost, "/v1/deliveries/gen-busy/redeliver", nil); resp.Status != http.StatusConflict {
		t.Errorf("redeliver while retrying = %d %s, want 409", resp.Status, resp.Body)
	}
}

func TestEveryNon200IsAFailure(t *testing.T) {
	redis := testenv.StartRedis(t, testenv.RedisOptions{})
	type kind struct {
		name    string
		respond func(http.ResponseWriter, *http.Request, int)
		outcome string
		status  int
	}
	kinds := []kind{
		{"201", testenv.Status(201), "http_status", 201},
		{"204", testenv.Status(204), "http_status", 204},
		{"301", func(w http.ResponseWriter, r *http.Request, _ int) {
			http.Redirect(w, r, "https://example.invalid/elsewhere", http.StatusMovedPermanently)
		}, "http_status", 301},
		{"404", testenv.Status(404), "http_status", 404},
		{"500", testenv.Status(500), "http_status", 500},
		{"503", testenv.Status(503), "http_status", 503},
		{"slow", func(w http.ResponseWriter, r *http.Request, _ int) {
			select {
			case <-r.Context().Done():
			case <-time.After(3 * time.Second):
			}
			w.WriteHeader(200)
		}, "timeout", 0},
	}
	receivers := make([]*testenv.Receiver, len(kinds))
	env := []string{"REDIS_URL=" + redis.URL(), "DELIVERY_TIMEOUT=400ms", "RETRY_SCHEDULE=1h,1h,1h,1h,1h,1h,1h,1h,1h"}
	caFiles := ""
	for i, k := range kinds {
		receivers[i] = testenv.NewReceiver(t, k.respond)
		if i > 0 {
			caFiles += ","
		}
		caFiles += receivers[i].CAFile
	}
	// Every httptest server shares one CA certificate: any one file trusts all.
	env = append(env, "WEBHOOK_CA_FILE="+receivers[0].CAFile)
	d := testenv.StartDispatcher(t, "all", env...)

	closed := "https://127.0.0.1:" + strconv.Itoa(testenv.FreePort(t)) + "/hook"
	for i, k := range kinds {
		id := "kind-" + k.name
		if resp := d.Call(t, http.MethodPost, "/v1/deliveries", testenv.Delivery(receivers[i].URL, id)); resp.Status != http.StatusAccepted {
			t.Fatalf("%s: enqueue %d %s", k.name, resp.Status, resp.Body)
		}
	}
	if resp := d.Call(t, http.MethodPost, "/v1/deliveries", testenv.Delivery(closed, "kind-closed")); resp.Status != http.StatusAccepted {
		t.Fatalf("closed: enqueue %d %s", resp.Status, resp.Body)
	}
	kinds = append(kinds, kind{name: "closed", outcome: "connect"})
	for _, k := range kinds {
		st := d.WaitState(t, "kind-"+k.name, "retrying", 15*time.Second)
		a := st["attempts"].([]any)[0].(map[string]any)
		if a["outcome"] != k.outcome || int(num(a["status"])) != k.status {
			t.Errorf("%s: attempt = %v, want outcome %s status %d", k.name, a, k.outcome, k.status)
		}
	}
}

func num(v any) float64 {
	f, _ := v.(float64)
	return f
}

func TestFailThreeTimesThenDelivered(t *testing.T) {
	_, rc, d := startStack(t, func(w http.ResponseWriter, _ *http.Request, n int) {
		if n <= 3 {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		w.WriteHeader(http.StatusOK)
	}, fastRetries)
	if resp := d.Call(t, http.MethodPost, "/v1/deliveries", testenv.Delivery(rc.URL, "gen-4th")); resp.Status != http.StatusAccepted {
		t.Fatalf("enqueue: %d", resp.Status)
	}
	st := d.WaitState(t, "gen-4th", "delivered", 20*time.Second)
	attempts := st["attempts"].([]any)
	if len(attempts) != 4 {
		t.Fatalf("attempts = %d, want 4", len(attempts))
	}
	if last := attempts[3].(map[string]any); last["outcome"] != "delivered" || last["status"] != float64(200) {
		t.Errorf("last attempt = %v", last)
	}
	if st["deliveredAt"] == nil {
		t.Errorf("deliveredAt missing")
	}
}

// TestFirstRetryFidelity measures the real gap between attempt 1 and attempt 2
// on the production 5 s step against a real Redis: never early, at most 1 s late.
func TestFirstRetryFidelity(t *testing.T) {
	if testing.Short() {
		t.Skip("takes ~8 s")
	}
	_, rc, d := startStack(t, func(w http.ResponseWriter, r *http.Request, _ int) {
		if r.Header.Get("X-Media-Id") != "" && seen(r.Header.Get("X-Media-Id")) {
			w.WriteHeader(http.StatusOK)
			return
		}
		w.WriteHeader(http.StatusServiceUnavailable)
	}, "FORWARD_INTERVAL=100ms")
	const n = 6
	for i := range n {
		id := fmt.Sprintf("fidelity-%d", i)
		if resp := d.Call(t, http.MethodPost, "/v1/deliveries", testenv.Delivery(rc.URL, id)); resp.Status != http.StatusAccepted {
			t.Fatalf("enqueue: %d", resp.Status)
		}
		time.Sleep(137 * time.Millisecond) // spread the failures over the second
	}
	reqs := rc.WaitCount(t, 2*n, 14*time.Second)
	byID := map[string][]time.Time{}
	for _, r := range reqs {
		id := r.Header.Get("X-Media-Id")
		byID[id] = append(byID[id], r.At)
	}
	var gaps []time.Duration
	for id, at := range byID {
		if len(at) != 2 {
			t.Fatalf("%s: %d attempts, want 2", id, len(at))
		}
		gaps = append(gaps, at[1].Sub(at[0]))
	}
	sort.Slice(gaps, func(i, j int) bool { return gaps[i] < gaps[j] })
	t.Logf("first-retry gap over %d deliveries: min %s, median %s, max %s", n, gaps[0], gaps[len(gaps)/2], gaps[len(gaps)-1])
	if gaps[0] < 5*time.Second {
		t.Errorf("a retry started early: min gap %s < 5s", gaps[0])
	}
	if gaps[len(gaps)-1] > 6*time.Second {
		t.Errorf("a retry started late: max gap %s > 6s", gaps[len(gaps)-1])
	}
}

var seenIDs sync.Map

// seen reports whether id was seen before and marks it seen.
func seen(id string) bool {
	_, was := seenIDs.LoadOrStore(id, true)
	return was
}

// TestFailedSurvivesArchiveTrim trims asynq's archive the way asynq does
// (by age and by count, here with the count made tiny) and checks the failed
// delivery is still listed, readable and redeliverable.
func TestFailedSurvivesArchiveTrim(t *testing.T) {
	var healthy atomic.Bool
	redis, rc, d := startStack(t, func(w http.ResponseWriter, _ *http.Request, _ int) {
		if healthy.Load() {
			w.WriteHeader(200)
			return
		}
		w.WriteHeader(500)
	}, fastRetries)
	for _, id := range []string{"trim-a", "trim-b", "trim-c"} {
		if resp := d.Call(t, http.MethodPost, "/v1/deliveries", testenv.Delivery(rc.URL, id)); resp.Status != http.StatusAccepted {
			t.Fatalf("enqueue: %d", resp.Status)
		}
	}
	for _, id := range []string{"trim-a", "trim-b", "trim-c"} {
		d.WaitState(t, id, "failed", 30*time.Second)
	}
	// asynq's archive script runs ZREMRANGEBYSCORE (older than 90 days) and
	// ZREMRANGEBYRANK (beyond 10,000); with the limit made 1, two go.
	if out, err := redis.Do("ZREMRANGEBYRANK", "asynq:{webhooks}:archived", "0", "-2"); err != nil || out != int64(2) {
		t.Fatalf("trim archive: %v %v", out, err)
	}
	for _, id := range []string{"trim-a", "trim-b", "trim-c"} {
		_, _ = redis.Do("DEL", "asynq:{webhooks}:t:"+id) // asynq deletes the task hash of a trimmed task
	}
	if out, _ := redis.Do("ZCARD", "asynq:{webhooks}:archived"); out != int64(1) {
		t.Fatalf("archive holds %v tasks after trim, want 1", out)
	}
	var list struct {
		Deliveries []map[string]any `json:"deliveries"`
		Next       string           `json:"nextCursor"`
	}
	d.Call(t, http.MethodGet, "/v1/deliveries?state=failed&limit=2", nil).JSON(t, &list)
	got := len(list.Deliveries)
	if list.Next == "" {
		t.Fatalf("first page of 2 has no cursor: %+v", list)
	}
	d.Call(t, http.MethodGet, "/v1/deliveries?state=failed&limit=2&cursor="+list.Next, nil).JSON(t, &list)
	got += len(list.Deliveries)
	if got != 3 || list.Next != "" {
		t.Fatalf("listed %d failed deliveries over two pages (next %q), want 3", got, list.Next)
	}
	for _, id := range []string{"trim-a", "trim-b", "trim-c"} {
		st := d.WaitState(t, id, "failed", time.Second)
		if n := len(st["attempts"].([]any)); n != 10 {
			t.Errorf("%s: %d attempts in the log, want 10", id, n)
		}
	}
	healthy.Store(true)
	var bulk struct {
		Queued int `json:"queued"`
	}
	resp := d.Call(t, http.MethodPost, "/v1/deliveries/redeliver", map[string]string{"state": "failed", "since": time.Now().Add(-time.Hour).Format(time.RFC3339)})
	resp.JSON(t, &bulk)
	if resp.Status != http.StatusOK || bulk.Queued != 3 {
		t.Fatalf("bulk redeliver: %d %s, want 3 queued", resp.Status, resp.Body)
	}
	for _, id := range []string{"trim-a", "trim-b", "trim-c"} {
		d.WaitState(t, id, "delivered", 10*time.Second)
	}
}
