package test

import (
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/artificialstudio/webhook-dispatcher/dispatcher/queue"
	"github.com/artificialstudio/webhook-dispatcher/test/testenv"
)

// TestClusterEndToEnd runs the whole API and worker path on a 3+3 Redis
// Cluster with 12 shards: enqueue single and batch, dedupe of an id across
// the batch and the single path, retries to failure, the failed list, GET
// for every id, redelivery and the CLI listing. Before sharding and tagging,
// GET answered 503 (MOVED) for most ids and failed records were never
// written (CROSSSLOT).
func TestClusterEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 6-node Redis Cluster")
	}
	c := testenv.StartCluster(t, 3, 1)
	var healthy atomic.Bool
	rc := testenv.NewReceiver(t, func(w http.ResponseWriter, r *http.Request, _ int) {
		if strings.HasPrefix(r.URL.Path, "/fail") && !healthy.Load() {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	const shards = 12
	env := []string{"REDIS_URL=" + c.URL(), "QUEUE_SHARDS=" + fmt.Sprint(shards)}
	d := testenv.StartDispatcher(t, "all", append(env, "WEBHOOK_CA_FILE="+rc.CAFile, fastRetries, "ENQUEUE_MIN_REPLICAS=1")...)
	if logs := d.Logs(); !strings.Contains(logs, `"topology":"cluster","primaries":3`) {
		t.Errorf("no start-up log of a 3-primary cluster:\n%s", logs)
	}

	// The shards' queues are spread evenly: 4 on each primary.
	perNode := map[int]int{}
	for k := range shards {
		node, err := c.NodeForKey("asynq:{" + queue.ShardName(k, shards) + "}:pending")
		if err != nil {
			t.Fatal(err)
		}
		perNode[node.Port]++
	}
	if len(perNode) != 3 {
		t.Errorf("shards on %d primaries, want 3: %v", len(perNode), perNode)
	}
	for port, n := range perNode {
		if n != shards/3 {
			t.Errorf("primary :%d holds %d shards, want %d", port, n, shards/3)
		}
	}

	var metrics []byte // the metrics server starts after the API's /healthz answers
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if resp, err := http.Get(d.MetricsURL + "/metrics"); err == nil {
			metrics, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
			break
		}
	}
	for k := range shards {
		if want := `webhook_queue_up{queue="` + queue.ShardName(k, shards) + `"} 1`; !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	var ids []string
	for i := range 30 {
		id := fmt.Sprintf("cl-single-%d", i)
		ids = append(ids, id)
		if resp := d.Call(t, http.MethodPost, "/v1/deliveries", testenv.Delivery(rc.URL+"/ok", id)); resp.Status != http.StatusAccepted {
			t.Fatalf("enqueue %s: %d %s", id, resp.Status, resp.Body)
		}
	}
	var items []any
	for i := range 30 {
		id := fmt.Sprintf("cl-batch-%d", i)
		ids = append(ids, id)
		items = append(items, testenv.Delivery(rc.URL+"/ok", id))
	}
	items = append(items, testenv.Delivery(rc.URL+"/ok", "cl-single-7")) // already enqueued
	status, results := postBatch(t, d, items)
	if status != http.StatusOK || len(results) != len(items) {
		t.Fatalf("batch: status %d, %d results", status, len(results))
	}
	for i, r := range results {
		want := http.StatusAccepted
		if i == len(results)-1 {
			want = http.StatusConflict
		}
		if r.Status != want {
			t.Errorf("batch item %d (%s): status %d, want %d", i, r.ID, r.Status, want)
		}
	}
	for _, id := range []string{"cl-batch-3", "cl-single-29"} {
		if resp := d.Call(t, http.MethodPost, "/v1/deliveries", testenv.Delivery(rc.URL+"/ok", id)); resp.Status != http.StatusConflict {
			t.Errorf("resend of %s: %d, want 409", id, resp.Status)
		}
	}
	failing := []string{"cl-fail-0", "cl-fail-1", "cl-fail-2"}
	for _, id := range failing {
		if resp := d.Call(t, http.MethodPost, "/v1/deliveries", testenv.Delivery(rc.URL+"/fail", id)); resp.Status != http.StatusAccepted {
			t.Fatalf("enqueue %s: %d %s", id, resp.Status, resp.Body)
		}
	}
	for _, id := range ids {
		d.WaitState(t, id, "delivered", 30*time.Second)
	}
	for _, id := range failing {
		st := d.WaitState(t, id, "failed", 60*time.Second)
		if n := len(st["attempts"].([]any)); n != 10 {
			t.Errorf("%s: attempt log holds %d entries, want 10", id, n)
		}
	}
	var list struct {
		Deliveries []map[string]any `json:"deliveries"`
	}
	d.Call(t, http.MethodGet, "/v1/deliveries?state=failed", nil).JSON(t, &list)
	if len(list.Deliveries) != len(failing) {
		t.Fatalf("failed list = %v, want %v", list.Deliveries, failing)
	}
	// Newest first at the failed index's resolution (Unix ms; equal
	// milliseconds order by id). RFC 3339 strings with trimmed fractions do
	// not compare as text, so the times are parsed.
	failedMs := func(d map[string]any) int64 {
		at, err := time.Parse(time.RFC3339Nano, d["failedAt"].(string))
		if err != nil {
			t.Fatalf("failedAt %v: %v", d["failedAt"], err)
		}
		return at.UnixMilli()
	}
	for i := 1; i < len(list.Deliveries); i++ {
		if failedMs(list.Deliveries[i-1]) < failedMs(list.Deliveries[i]) {
			t.Errorf("failed list not newest first: %v", list.Deliveries)
		}
	}

	cmd := exec.Command(testenv.Binary(t), "deliveries", "list", "--state", "failed")
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "3 shown") {
		t.Errorf("CLI list on the cluster: %v\n%s", err, out)
	}

	healthy.Store(true)
	if resp := d.Call(t, http.MethodPost, "/v1/deliveries/cl-fail-1/redeliver", nil); resp.Status != http.StatusAccepted {
		t.Fatalf("redeliver: %d %s", resp.Status, resp.Body)
	}
	st := d.WaitState(t, "cl-fail-1", "delivered", 30*time.Second)
	if n := len(st["attempts"].([]any)); n != 11 {
		t.Errorf("attempt log after redelivery holds %d entries, want 11", n)
	}
	d.Call(t, http.MethodGet, "/v1/deliveries?state=failed", nil).JSON(t, &list)
	if len(list.Deliveries) != 2 {
		t.Errorf("failed list after one redelivery: %d entries, want 2", len(list.Deliveries))
	}
	time.Sleep(500 * time.Millisecond) // a duplicate POST would show up here
	if got, want := rc.Count(), len(ids)+3*10+1; got != want {
		t.Errorf("receiver got %d POSTs, want %d (each delivered once, 10 per failed, 1 redelivery)", got, want)
	}
}

// TestClusterURLRequired: a redis:// URL pointed at a cluster node stops the
// dispatcher at start with a message naming redis-cluster://, instead of
// answering 503 (MOVED) with no word about clusters.
func TestClusterURLRequired(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 6-node Redis Cluster")
	}
	c := testenv.StartCluster(t, 3, 0)
	cmd := exec.Command(testenv.Binary(t), "api")
	cmd.Env = []string{"REDIS_URL=redis://" + c.Nodes[0].Addr(), "API_TOKEN=" + testenv.Token, "API_ADDR=127.0.0.1:0", "METRICS_ADDR="}
	var mu sync.Mutex
	done := make(chan struct{})
	var out []byte
	var err error
	go func() {
		o, e := cmd.CombinedOutput()
		mu.Lock()
		out, err = o, e
		mu.Unlock()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatal("dispatcher still running 30 s after start with redis:// at a cluster node")
	}
	mu.Lock()
	defer mu.Unlock()
	if err == nil || !strings.Contains(string(out), "redis-cluster://") {
		t.Errorf("exit %v, output:\n%s\nwant a failure naming redis-cluster://", err, out)
	}
}
