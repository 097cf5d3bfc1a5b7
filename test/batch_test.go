package test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/artificialstudio/webhook-dispatcher/test/testenv"
)

type batchResult struct {
	ID     string `json:"id"`
	Status int    `json:"status"`
	State  string `json:"state"`
	Error  string `json:"error"`
}

func postBatch(t *testing.T, d *testenv.Dispatcher, items []any) (int, []batchResult) {
	t.Helper()
	resp := d.Call(t, http.MethodPost, "/v1/deliveries/batch", map[string]any{"deliveries": items})
	var out struct {
		Results []batchResult `json:"results"`
	}
	if resp.Status == http.StatusOK {
		resp.JSON(t, &out)
	}
	return resp.Status, out.Results
}

func TestBatchMixedResults(t *testing.T) {
	_, rc, d := startStack(t, nil)
	if resp := d.Call(t, http.MethodPost, "/v1/deliveries", testenv.Delivery(rc.URL, "existing-1")); resp.Status != http.StatusAccepted {
		t.Fatalf("seed: %d", resp.Status)
	}
	rc.WaitCount(t, 1, 10*time.Second)

	badType := testenv.Delivery(rc.URL, "bad-type")
	badType["generation"].(map[string]any)["type"] = "hologram"
	items := []any{
		testenv.Delivery(rc.URL, "ok-1"),
		badType,
		testenv.Delivery("https://10.0.0.5/hook", "guarded-1"),
		testenv.Delivery(rc.URL, "ok-2"),
		testenv.Delivery(rc.URL, "ok-1"), // duplicate inside the batch
		testenv.Delivery(rc.URL, "existing-1"),
		json.RawMessage(`{"webhook":"` + rc.URL + `","generation":{"id":"dupkey","id":"x"}}`),
		json.RawMessage(`{"webhook":5}`),
		testenv.Delivery(rc.URL, "ok-3"),
	}
	status, results := postBatch(t, d, items)
	if status != http.StatusOK || len(results) != len(items) {
		t.Fatalf("batch: status %d, %d results for %d items", status, len(results), len(items))
	}
	want := []struct {
		id     string
		status int
	}{
		{"ok-1", 202}, {"bad-type", 400}, {"guarded-1", 422}, {"ok-2", 202}, {"ok-1", 409},
		{"existing-1", 409}, {"x", 400}, // encoding/json reads the last of duplicate keys
		{"", 400}, {"ok-3", 202},
	}
	for i, w := range want {
		if results[i].ID != w.id || results[i].Status != w.status {
			t.Errorf("item %d = %+v, want id %q status %d", i, results[i], w.id, w.status)
		}
		if w.status == 202 && results[i].State != "pending" {
			t.Errorf("item %d state = %q, want pending", i, results[i].State)
		}
		if w.status != 202 && results[i].Error == "" {
			t.Errorf("item %d has no error message", i)
		}
	}
	reqs := rc.WaitCount(t, 4, 10*time.Second)
	time.Sleep(500 * time.Millisecond)
	got := map[string]int{}
	for _, r := range rc.Requests() {
		got[r.Header.Get("X-Media-Id")]++
	}
	if len(reqs) > 0 && (got["ok-1"] != 1 || got["ok-2"] != 1 || got["ok-3"] != 1 || got["existing-1"] != 1 || len(got) != 4) {
		t.Errorf("receiver saw %v, want ok-1, ok-2, ok-3 and existing-1 once each", got)
	}
}

func TestBatchLimits(t *testing.T) {
	_, rc, d := startStack(t, nil)
	items := make([]any, 501)
	for i := range items {
		items[i] = testenv.Delivery(rc.URL, fmt.Sprintf("lim-%d", i))
	}
	if status, _ := postBatch(t, d, items); status != http.StatusRequestEntityTooLarge {
		t.Errorf("501 items: status %d, want 413", status)
	}
	big := testenv.Delivery(rc.URL, "big")
	big["generation"].(map[string]any)["tool"] = strings.Repeat("x", 1100<<10)
	if status, _ := postBatch(t, d, []any{big}); status != http.StatusRequestEntityTooLarge {
		t.Errorf("over 1 MiB: status %d, want 413", status)
	}
	if status, _ := postBatch(t, d, []any{}); status != http.StatusBadRequest {
		t.Errorf("empty batch: status %d, want 400", status)
	}
	if rc.Count() != 0 {
		t.Errorf("refused batches reached the receiver")
	}
}

// TestBatchRedisKilledMidBatch: every item answered 202 is in Redis afterwards,
// the rest are answered 503 (never 202), and resending the batch is safe.
func TestBatchRedisKilledMidBatch(t *testing.T) {
	redis := testenv.StartRedis(t, testenv.RedisOptions{AOF: true, Extra: []string{"--appendfsync", "always"}})
	rc := testenv.NewReceiver(t, nil)
	// An API alone: nothing drains the queue, so what Redis holds is countable.
	d := testenv.StartDispatcher(t, "api", "REDIS_URL="+redis.URL())

	var mu sync.Mutex
	accepted := map[string]bool{}
	unavailable := 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		for b := range 12 {
			items := make([]any, 500)
			for i := range items {
				items[i] = testenv.Delivery(rc.URL, fmt.Sprintf("kill-%d-%d", b, i))
			}
			status, results := postBatch(t, d, items)
			if status != http.StatusOK {
				t.Errorf("batch %d: status %d", b, status)
				return
			}
			mu.Lock()
			for _, r := range results {
				switch r.Status {
				case http.StatusAccepted:
					accepted[r.ID] = true
				case http.StatusServiceUnavailable:
					unavailable++
				default:
					t.Errorf("item %s: status %d %s, want 202 or 503", r.ID, r.Status, r.Error)
				}
			}
			mu.Unlock()
		}
	}()
	// Kill Redis in the middle of the third batch: watch the queue grow.
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		out, err := redis.Do("LLEN", "asynq:{webhooks}:pending")
		if n, _ := out.(int64); err == nil && n >= 1250 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	redis.Kill()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("batches did not finish after the kill")
	}
	if unavailable == 0 || len(accepted)%500 == 0 {
		t.Logf("the kill fell between batches this time (accepted %d)", len(accepted))
	}
	if unavailable == 0 {
		t.Fatalf("no item was answered 503: Redis was not killed mid-stream (accepted %d)", len(accepted))
	}
	redis.Start(t)
	t.Logf("%d items answered 202 and %d answered 503 around the kill", len(accepted), unavailable)
	missing := 0
	for id := range accepted {
		if out, err := redis.Do("EXISTS", "asynq:{webhooks}:t:"+id); err != nil || out != int64(1) {
			missing++
		}
	}
	if missing > 0 {
		t.Fatalf("%d of %d items answered 202 are missing after the Redis restart", missing, len(accepted))
	}
}

// TestEnqueueCommand streams a JSON-lines file through the batch endpoint.
func TestEnqueueCommand(t *testing.T) {
	_, rc, d := startStack(t, nil)
	var lines []string
	for i := range 250 {
		raw, _ := json.Marshal(testenv.Delivery(rc.URL, fmt.Sprintf("file-%d", i)))
		lines = append(lines, string(raw))
	}
	raw, _ := json.Marshal(testenv.Delivery("http://insecure.example/hook", "file-refused"))
	lines = append(lines, string(raw), `{"webhook":`, lines[0])
	file := filepath.Join(t.TempDir(), "deliveries.jsonl")
	if err := os.WriteFile(file, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(testenv.Binary(t), "enqueue", "--file", file, "--api", d.APIURL, "--batch", "100")
	cmd.Env = []string{"API_TOKEN=" + testenv.Token}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("enqueue: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "253 lines: 250 accepted, 1 duplicate, 1 refused by the URL guard, 1 invalid, 0 failed") {
		t.Errorf("summary:\n%s", out)
	}
	rc.WaitCount(t, 250, 20*time.Second)
}
