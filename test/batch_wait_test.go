package test

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/artificialstudio/webhook-dispatcher/dispatcher/queue"
	"github.com/artificialstudio/webhook-dispatcher/test/testenv"
)

// waitCalls returns how many WAIT commands r has run (INFO commandstats).
func waitCalls(t *testing.T, r *testenv.Redis) int {
	t.Helper()
	info, err := r.Info("commandstats")
	if err != nil {
		t.Fatal(err)
	}
	stat := info["cmdstat_wait"] // "calls=3,usec=…"
	if stat == "" {
		return 0
	}
	calls, _, _ := strings.Cut(strings.TrimPrefix(stat, "calls="), ",")
	n, err := strconv.Atoi(calls)
	if err != nil {
		t.Fatalf("cmdstat_wait %q: %v", stat, err)
	}
	return n
}

func batchItems(url, prefix string, n int) []any {
	items := make([]any, n)
	for i := range items {
		items[i] = testenv.Delivery(url, fmt.Sprintf("%s-%d", prefix, i))
	}
	return items
}

// TestBatchWaitOncePerPrimary: with ENQUEUE_MIN_REPLICAS=1 a batch waits
// for its replica once (one WAIT for the whole batch, not one per item), and
// that one WAIT covers every item: each item answered 202 is on the replica
// when the answer comes. With the replica frozen every item answers 503; a
// resend once it is back is answered 409 or 202 for each, as single
// enqueues are.
func TestBatchWaitOncePerPrimary(t *testing.T) {
	if testing.Short() {
		t.Skip("pauses a replica")
	}
	primary := testenv.StartRedis(t, testenv.RedisOptions{})
	replica := testenv.StartRedis(t, testenv.RedisOptions{Extra: []string{"--replicaof", "127.0.0.1", strconv.Itoa(primary.Port)}})
	replica.WaitReplicaSynced(t, 10*time.Second)
	rc := testenv.NewReceiver(t, nil)
	d := testenv.StartDispatcher(t, "api", "REDIS_URL="+primary.URL(), "ENQUEUE_MIN_REPLICAS=1")

	const n = 200
	before := waitCalls(t, primary)
	status, results := postBatch(t, d, batchItems(rc.URL, "rep", n))
	if status != http.StatusOK || len(results) != n {
		t.Fatalf("batch: status %d, %d results", status, len(results))
	}
	for _, r := range results {
		if r.Status != http.StatusAccepted {
			t.Errorf("%s: %d %s, want 202", r.ID, r.Status, r.Error)
			continue
		}
		if out, err := replica.Do("EXISTS", "asynq:{webhooks}:t:"+r.ID); err != nil || out != int64(1) {
			t.Errorf("%s answered 202 but the replica does not hold it (%v, %v)", r.ID, out, err)
		}
	}
	if got := waitCalls(t, primary) - before; got != 1 {
		t.Errorf("a batch of %d on one primary ran %d WAITs, want 1", n, got)
	}

	if err := replica.Pause(); err != nil {
		t.Fatal(err)
	}
	frozen := batchItems(rc.URL, "frozen", 20)
	status, results = postBatch(t, d, frozen)
	if err := replica.Resume(); err != nil {
		t.Fatal(err)
	}
	if status != http.StatusOK || len(results) != len(frozen) {
		t.Fatalf("batch with the replica frozen: status %d, %d results", status, len(results))
	}
	for _, r := range results {
		if r.Status != http.StatusServiceUnavailable {
			t.Errorf("%s with the replica frozen: %d, want 503", r.ID, r.Status)
		}
	}
	replica.WaitReplicaSynced(t, 10*time.Second)
	status, results = postBatch(t, d, frozen)
	if status != http.StatusOK || len(results) != len(frozen) {
		t.Fatalf("resend: status %d, %d results", status, len(results))
	}
	for _, r := range results {
		// 409: the first try stored it (503 means "may not have been
		// stored"); 202: it had not; never 503 again.
		if r.Status != http.StatusConflict && r.Status != http.StatusAccepted {
			t.Errorf("%s resent once replicated: %d %s, want 409 or 202", r.ID, r.Status, r.Error)
		}
	}
}

// TestClusterBatchWaitOnShardPrimary: on a cluster a batch waits on the
// primary of each item's shard, once per primary. With one primary's
// replica frozen, the items of that primary's shards answer 503 and the
// others 202; each primary runs one WAIT for the batch.
func TestClusterBatchWaitOnShardPrimary(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 6-node Redis Cluster")
	}
	c := testenv.StartCluster(t, 3, 1)
	rc := testenv.NewReceiver(t, nil)
	const shards = 12
	d := testenv.StartDispatcher(t, "api", "REDIS_URL="+c.URL(), "QUEUE_SHARDS="+strconv.Itoa(shards),
		"WEBHOOK_CA_FILE="+rc.CAFile, "ENQUEUE_MIN_REPLICAS=1")
	layout, err := queue.NewLayout(shards, true) // the same routing as the dispatcher's
	if err != nil {
		t.Fatal(err)
	}
	primaries, err := c.Primaries()
	if err != nil || len(primaries) != 3 {
		t.Fatalf("primaries: %v, %v", primaries, err)
	}
	p, err := c.NodeForKey(queue.ShardName(0, shards))
	if err != nil {
		t.Fatal(err)
	}
	replicas, err := c.ReplicasOf(p)
	if err != nil || len(replicas) != 1 {
		t.Fatalf("replicas of %s: %v, %v", p.Addr(), replicas, err)
	}
	if err := replicas[0].Pause(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { replicas[0].Resume() })

	items := batchItems(rc.URL, "cwait", 60)
	onP := map[string]bool{}
	for i := range items {
		id := fmt.Sprintf("cwait-%d", i)
		node, err := c.NodeForKey(layout.Route(id))
		if err != nil {
			t.Fatal(err)
		}
		onP[id] = node == p
	}
	before := map[int]int{}
	for _, q := range primaries {
		before[q.Port] = waitCalls(t, q)
	}
	status, results := postBatch(t, d, items)
	if status != http.StatusOK || len(results) != len(items) {
		t.Fatalf("batch: status %d, %d results", status, len(results))
	}
	var held, accepted int
	for _, r := range results {
		want := http.StatusAccepted
		if onP[r.ID] {
			want = http.StatusServiceUnavailable
			held++
		} else {
			accepted++
		}
		if r.Status != want {
			t.Errorf("%s (on the frozen replica's primary: %v): %d, want %d", r.ID, onP[r.ID], r.Status, want)
		}
	}
	if held == 0 || accepted == 0 {
		t.Fatalf("the batch did not span both kinds of primary (%d on it, %d elsewhere)", held, accepted)
	}
	for _, q := range primaries {
		if got := waitCalls(t, q) - before[q.Port]; got != 1 {
			t.Errorf("primary %s ran %d WAITs for the batch, want 1", q.Addr(), got)
		}
	}
}
