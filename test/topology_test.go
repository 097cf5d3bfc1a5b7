package test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/artificialstudio/webhook-dispatcher/dispatcher/queue"
	"github.com/artificialstudio/webhook-dispatcher/test/testenv"
)

// scrapeSeries reads url (a /metrics endpoint) and returns every sample by
// its series as printed (name{label="value",...}, labels sorted by name),
// or nil when the endpoint does not answer.
func scrapeSeries(t *testing.T, url string) map[string]float64 {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return nil
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("scrape %s: bad line %q", url, line)
		}
		out[line[:i]] = v
	}
	return out
}

// waitSeries polls url every 250 ms until cond holds for a scrape, and
// returns that scrape; it fails t after timeout with what it saw last.
func waitSeries(t *testing.T, url string, timeout time.Duration, what string, cond func(map[string]float64) bool) map[string]float64 {
	t.Helper()
	var last map[string]float64
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
		if last = scrapeSeries(t, url); last != nil && cond(last) {
			return last
		}
	}
	t.Fatalf("%s: not seen within %v; last scrape's topology series:\n%s", what, timeout, topologyDump(last))
	return nil
}

func topologyDump(s map[string]float64) string {
	var b strings.Builder
	for k, v := range s {
		if strings.HasPrefix(k, "webhook_redis_") || strings.HasPrefix(k, "webhook_queue_primary") {
			fmt.Fprintf(&b, "%s %v\n", k, v)
		}
	}
	return b.String()
}

// TestClusterTopologyMetrics runs an API on a 3+3 cluster with 12 shards and
// checks the topology watcher's series on its /metrics: 3 primaries, each
// shard mapped to the primary CLUSTER KEYSLOT puts its keys on, a primary
// counted as replica-less once its replica is SIGKILLed, and the error
// counter rising (and the last good read standing still) while every node is
// frozen with SIGSTOP.
func TestClusterTopologyMetrics(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 6-node Redis Cluster")
	}
	c := testenv.StartCluster(t, 3, 1)
	const shards = 12
	d := testenv.StartDispatcher(t, "api", "REDIS_URL="+c.URL(), "QUEUE_SHARDS="+strconv.Itoa(shards))
	url := d.MetricsURL + "/metrics"

	// A replica of a new, idle cluster reports health "loading" (replication offset 0)
	// until its primary's first replication ping (repl-ping-replica-period, 10 s).
	s := waitSeries(t, url, 60*time.Second, "3 primaries, each with a replica", func(s map[string]float64) bool {
		v, ok := s[`webhook_redis_primaries_without_replica{topology="cluster"}`]
		return s[`webhook_redis_primaries{topology="cluster"}`] == 3 && ok && v == 0
	})
	if v := s["webhook_redis_topology_errors_total"]; v != 0 {
		t.Errorf("healthy cluster: %v topology read errors, want 0", v)
	}
	if ts := s["webhook_redis_topology_last_success_timestamp_seconds"]; time.Since(time.Unix(int64(ts), 0)) > time.Minute {
		t.Errorf("last successful read at %v, want within the last minute", ts)
	}
	mapped := 0
	for k := range s {
		if strings.HasPrefix(k, "webhook_queue_primary{") {
			mapped++
		}
	}
	if mapped != shards {
		t.Errorf("%d webhook_queue_primary series, want one per shard (%d)", mapped, shards)
	}
	for k := range shards {
		name := queue.ShardName(k, shards)
		node, err := c.NodeForKey("asynq:{" + name + "}:pending")
		if err != nil {
			t.Fatal(err)
		}
		if want := `webhook_queue_primary{primary="` + node.Addr() + `",queue="` + name + `"}`; s[want] != 1 {
			t.Errorf("shard %s: want %s 1 (CLUSTER KEYSLOT puts it there)", name, want)
		}
	}

	// SIGKILL one primary's only replica: that primary has none left.
	primaries, err := c.Primaries()
	if err != nil {
		t.Fatal(err)
	}
	replicas, err := c.ReplicasOf(primaries[0])
	if err != nil || len(replicas) != 1 {
		t.Fatalf("replicas of %s: %v, %v", primaries[0].Addr(), replicas, err)
	}
	replicas[0].Kill()
	waitSeries(t, url, 60*time.Second, "1 primary without a replica", func(s map[string]float64) bool {
		return s[`webhook_redis_primaries_without_replica{topology="cluster"}`] == 1 &&
			s[`webhook_redis_primaries{topology="cluster"}`] == 3
	})

	// Freeze every node: the layout cannot be read. Bounded: resumed after at most 20 s
	// (a read every 5 s, each given up after 2 s: the first error comes within ~7 s).
	before := scrapeSeries(t, url)
	var paused []*testenv.Redis
	resume := func() {
		for _, n := range paused {
			if err := n.Resume(); err != nil {
				t.Errorf("resume %s: %v", n.Addr(), err)
			}
		}
		paused = nil
	}
	t.Cleanup(resume)
	for _, n := range c.Nodes {
		if n.Running() {
			if err := n.Pause(); err != nil {
				t.Fatal(err)
			}
			paused = append(paused, n)
		}
	}
	frozenAt := time.Now()
	during := waitSeries(t, url, 20*time.Second, "topology read errors while every node is frozen", func(s map[string]float64) bool {
		return s["webhook_redis_topology_errors_total"] > before["webhook_redis_topology_errors_total"]
	})
	if last := during["webhook_redis_topology_last_success_timestamp_seconds"]; last > float64(frozenAt.Unix())+3 {
		t.Errorf("last successful read at %v, after every node was frozen (%v)", last, frozenAt.Unix())
	}
	resume()
	resumedAt := time.Now()
	waitSeries(t, url, 60*time.Second, "a successful read after the nodes resumed", func(s map[string]float64) bool {
		return s["webhook_redis_topology_last_success_timestamp_seconds"] >= float64(resumedAt.Unix())
	})
	t.Logf("topology errors: %v before the freeze, %v during (frozen %v)", before["webhook_redis_topology_errors_total"],
		during["webhook_redis_topology_errors_total"], resumedAt.Sub(frozenAt).Round(time.Second))
}

// TestSingleRedisTopologyMetrics: on one Redis the watcher reports topology
// single, 1 primary, every queue on it, and its replicas from INFO
// replication: none, then one once a replica has synced.
func TestSingleRedisTopologyMetrics(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Redis twice and the binary")
	}
	primary := testenv.StartRedis(t, testenv.RedisOptions{})
	d := testenv.StartDispatcher(t, "api", "REDIS_URL="+primary.URL())
	url := d.MetricsURL + "/metrics"
	s := waitSeries(t, url, 30*time.Second, "1 single primary", func(s map[string]float64) bool {
		return s[`webhook_redis_primaries{topology="single"}`] == 1
	})
	if v, ok := s[`webhook_redis_primaries_without_replica{topology="single"}`]; !ok || v != 1 {
		t.Errorf("primaries_without_replica = %v (exported %v), want 1: no replica yet", v, ok)
	}
	if want := `webhook_queue_primary{primary="` + primary.Addr() + `",queue="webhooks"}`; s[want] != 1 {
		t.Errorf("want %s 1; got:\n%s", want, topologyDump(s))
	}
	replica := testenv.StartRedis(t, testenv.RedisOptions{Extra: []string{"--replicaof", "127.0.0.1", strconv.Itoa(primary.Port)}})
	replica.WaitReplicaSynced(t, 30*time.Second)
	waitSeries(t, url, 30*time.Second, "the replica counted", func(s map[string]float64) bool {
		return s[`webhook_redis_primaries_without_replica{topology="single"}`] == 0
	})
}

// TestSentinelTopologyMetrics: behind Sentinel the watcher reports topology
// sentinel, 1 primary named by its master name, and the primary's replicas:
// one, then none once it is SIGKILLed.
func TestSentinelTopologyMetrics(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Redis, a replica, three sentinels and the binary")
	}
	_, replicas, sentinels := startReplicated(t, 1)
	d := testenv.StartDispatcher(t, "api", "REDIS_URL="+sentinels.URL())
	url := d.MetricsURL + "/metrics"
	s := waitSeries(t, url, 30*time.Second, "1 sentinel primary with a replica", func(s map[string]float64) bool {
		v, ok := s[`webhook_redis_primaries_without_replica{topology="sentinel"}`]
		return s[`webhook_redis_primaries{topology="sentinel"}`] == 1 && ok && v == 0
	})
	if want := `webhook_queue_primary{primary="sentinel master ` + sentinels.Name + `",queue="webhooks"}`; s[want] != 1 {
		t.Errorf("want %s 1; got:\n%s", want, topologyDump(s))
	}
	replicas[0].Kill()
	waitSeries(t, url, 30*time.Second, "the primary without its replica", func(s map[string]float64) bool {
		return s[`webhook_redis_primaries_without_replica{topology="sentinel"}`] == 1
	})
}
