package test

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/artificialstudio/webhook-dispatcher/dispatcher/queue"
	"github.com/artificialstudio/webhook-dispatcher/test/testenv"
)

// TestClusterCompletionWriteRefused is issue 16's test 5 on a 3+3 Redis
// Cluster: the primary that holds the test deliveries' shards refuses writes
// (min-replicas-to-write 1, its replica SIGSTOPped for 2 s) just as the
// receiver answers 200. asynq v0.26 retries a failed completion write with
// an already-cancelled context and re-runs the task ~60 s later; the guard
// (the attempt log written until Redis takes it, a rerun of a delivered
// cycle skipped) must hold on a cluster too: every delivery delivered, each
// POSTed once, one attempt logged and spent.
//
// cluster-node-timeout is 5 s here, so the 2 s pause of a replica marks
// nothing as failed and no failover mixes into the fault.
func TestClusterCompletionWriteRefused(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 6-node Redis Cluster and pauses a replica")
	}
	testenv.LookPath(t, "redis-server")
	testenv.LookPath(t, "redis-cli")
	c, err := testenv.NewCluster(context.Background(), testenv.ClusterOptions{
		Primaries: 3, Replicas: 1, NodeTimeout: 5 * time.Second, Dir: t.TempDir(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)

	const shards = 12
	layout, err := queue.NewLayout(shards, true) // the dispatcher's routing
	if err != nil {
		t.Fatal(err)
	}
	shard0 := queue.ShardName(0, shards)
	primary, err := c.NodeForKey(shard0)
	if err != nil {
		t.Fatal(err)
	}
	replicas, err := c.ReplicasOf(primary)
	if err != nil || len(replicas) != 1 {
		t.Fatalf("replicas of %s: %v, %v", primary.Addr(), replicas, err)
	}
	replica := replicas[0]
	const n = 5
	var ids []string
	for i := 0; len(ids) < n && i < 10000; i++ {
		id := fmt.Sprintf("cnorep-%d", i)
		node, err := c.NodeForKey(layout.Route(id))
		if err != nil {
			t.Fatal(err)
		}
		if node == primary {
			ids = append(ids, id)
		}
	}
	if len(ids) < n {
		t.Fatalf("only %d ids of the first 10,000 route to %s", len(ids), primary.Addr())
	}
	redisDo(t, primary, "CONFIG", "SET", "min-replicas-max-lag", "1")
	redisDo(t, primary, "CONFIG", "SET", "min-replicas-to-write", "1")

	probe := "{" + shard0 + "}:probe" // a key in a slot of that primary
	fault := newWriteRefusal(t, primary, replica, probe)
	rc := testenv.NewReceiver(t, fault.hold)
	env := []string{"REDIS_URL=" + c.URL(), "QUEUE_SHARDS=" + strconv.Itoa(shards), "WEBHOOK_CA_FILE=" + rc.CAFile,
		faultRetries, "RECONCILE_INTERVAL=1s", "RECONCILE_GRACE=2s"}
	api := testenv.StartDispatcher(t, "api", env...)
	for _, id := range ids {
		enqueueOK(t, api, rc.URL, id)
	}
	w := testenv.StartDispatcher(t, "worker", env...)
	for _, id := range ids {
		st := api.WaitState(t, id, "delivered", 120*time.Second)
		wantLog(t, id, st, "delivered")
	}
	if !fault.refused.Load() {
		t.Fatal("the primary never refused a write: the fault was not injected")
	}
	seen := idsSeen(rc.Requests())
	for _, id := range ids {
		if seen[id] != 1 {
			t.Errorf("%s POSTed %d times, want 1", id, seen[id])
		}
	}
	if got := logLines(w.Logs(), `"msg":"delivery attempt"`); got != n {
		t.Errorf("worker logged %d attempts, want %d", got, n)
	}
	t.Logf("primary %s refused writes for ~2 s; %d deliveries, each POSTed once; %d runs found their cycle already delivered and completed without a POST",
		primary.Addr(), n, logLines(w.Logs(), "already delivered in this cycle"))
}
