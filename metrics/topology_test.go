package metrics

import (
	"bytes"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/artificialstudio/webhook-dispatcher/test/testenv"
)

var topologyNames = []string{
	"webhook_redis_primaries", "webhook_redis_primaries_without_replica", "webhook_queue_primary",
	"webhook_redis_topology_errors_total", "webhook_redis_topology_last_success_timestamp_seconds",
}

func TestTopologyBeforeFirstRead(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m := New(reg, BuildInfo{})
	m.TopologyReadFailed()
	want := `
# HELP webhook_redis_topology_errors_total Failed or timed-out reads of the Redis layout (CLUSTER SHARDS, or INFO replication outside a cluster).
# TYPE webhook_redis_topology_errors_total counter
webhook_redis_topology_errors_total 1
# HELP webhook_redis_topology_last_success_timestamp_seconds Unix time of the last successful read of the Redis layout; 0 before the first.
# TYPE webhook_redis_topology_last_success_timestamp_seconds gauge
webhook_redis_topology_last_success_timestamp_seconds 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), topologyNames...); err != nil {
		t.Error(err)
	}
}

func TestTopologyReadings(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m := New(reg, BuildInfo{})
	at := time.Unix(1700000000, 500_000_000)
	qp := map[string]string{"webhooks:0:1": "127.0.0.1:7000", "webhooks:1:4": "127.0.0.1:7001", "webhooks:2:0": "127.0.0.1:7001"}
	m.SetTopology(Topology{Kind: TopologyCluster, Primaries: 2, WithoutReplica: 1, QueuePrimary: qp}, at)
	qp["webhooks:0:1"] = "changed after the call" // the reading is copied, not shared
	m.TopologyReadFailed()
	m.TopologyReadFailed()
	want := `
# HELP webhook_queue_primary 1 for the Redis primary (host:port) serving each queue shard's slot at the last successful layout read; join per-queue series with * on(queue) group_left(primary).
# TYPE webhook_queue_primary gauge
webhook_queue_primary{primary="127.0.0.1:7000",queue="webhooks:0:1"} 1
webhook_queue_primary{primary="127.0.0.1:7001",queue="webhooks:1:4"} 1
webhook_queue_primary{primary="127.0.0.1:7001",queue="webhooks:2:0"} 1
# HELP webhook_redis_primaries Redis primaries serving the data, as the last successful layout read found them (1 outside a cluster).
# TYPE webhook_redis_primaries gauge
webhook_redis_primaries{topology="cluster"} 2
# HELP webhook_redis_primaries_without_replica Redis primaries with no healthy replica at the last successful layout read: their loss loses acknowledged deliveries not yet replicated.
# TYPE webhook_redis_primaries_without_replica gauge
webhook_redis_primaries_without_replica{topology="cluster"} 1
# HELP webhook_redis_topology_errors_total Failed or timed-out reads of the Redis layout (CLUSTER SHARDS, or INFO replication outside a cluster).
# TYPE webhook_redis_topology_errors_total counter
webhook_redis_topology_errors_total 2
# HELP webhook_redis_topology_last_success_timestamp_seconds Unix time of the last successful read of the Redis layout; 0 before the first.
# TYPE webhook_redis_topology_last_success_timestamp_seconds gauge
webhook_redis_topology_last_success_timestamp_seconds 1.7000000005e+09
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), topologyNames...); err != nil {
		t.Error(err)
	}

	// A failover: shard webhooks:0:1 moves to a promoted replica; its old series must go,
	// or a join on(queue) would find two primaries for one queue.
	m.SetTopology(Topology{Kind: TopologyCluster, Primaries: 2, QueuePrimary: map[string]string{
		"webhooks:0:1": "127.0.0.1:7003", "webhooks:1:4": "127.0.0.1:7001", "webhooks:2:0": "127.0.0.1:7001",
	}}, at.Add(5*time.Second))
	if n, err := testutil.GatherAndCount(reg, "webhook_queue_primary"); err != nil || n != 3 {
		t.Errorf("after the move: %d webhook_queue_primary series (err %v), want 3", n, err)
	}
	got, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range got {
		if mf.GetName() != "webhook_queue_primary" {
			continue
		}
		for _, s := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range s.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["queue"] == "webhooks:0:1" && labels["primary"] != "127.0.0.1:7003" {
				t.Errorf("webhooks:0:1 still on %s after the move", labels["primary"])
			}
		}
	}
	want = `
# HELP webhook_redis_primaries_without_replica Redis primaries with no healthy replica at the last successful layout read: their loss loses acknowledged deliveries not yet replicated.
# TYPE webhook_redis_primaries_without_replica gauge
webhook_redis_primaries_without_replica{topology="cluster"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "webhook_redis_primaries_without_replica"); err != nil {
		t.Error(err)
	}
}

func TestTopologyNil(t *testing.T) {
	var m *Metrics
	m.SetTopology(Topology{Kind: TopologySingle, Primaries: 1}, time.Now())
	m.TopologyReadFailed()
}

// TestPromtoolCheckTopologyMetrics lints the topology series with promtool, as
// TestPromtoolCheckMetrics does the rest.
func TestPromtoolCheckTopologyMetrics(t *testing.T) {
	promtool := testenv.LookPath(t, "promtool")
	reg := prometheus.NewRegistry()
	m := New(reg, BuildInfo{Version: "test", Commit: "none", GoVersion: "go"})
	m.SetTopology(Topology{Kind: TopologySentinel, Primaries: 1, QueuePrimary: map[string]string{"webhooks": "sentinel mymaster"}}, time.Now())
	m.TopologyReadFailed()
	srv := httptest.NewServer(Handler(reg))
	t.Cleanup(srv.Close)
	body := scrape(t, srv.URL)
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(body)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
	for _, name := range topologyNames {
		if !bytes.Contains(body, []byte("\n"+name)) {
			t.Errorf("scrape lacks %s", name)
		}
	}
}

// growingInspector is a shard whose workers keep working: each read finds ten more
// attempts, one of them failed, and two pending tasks, the oldest 30 s old.
type growingInspector struct{ reads atomic.Int64 }

func (g *growingInspector) GetQueueInfo(queue string) (*asynq.QueueInfo, error) {
	n := int(g.reads.Add(1))
	return &asynq.QueueInfo{Queue: queue, Pending: 2, Latency: 30 * time.Second, ProcessedTotal: 10 * n, FailedTotal: n}, nil
}

func (g *growingInspector) Queues() ([]string, error) { return nil, nil }
