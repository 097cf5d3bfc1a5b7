package testenv

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// TestCluster starts a 3+3 Redis Cluster, checks that every slot is served, kills the
// primary of a key and waits for its replica to take over with the key, then restarts
// the old primary (it rejoins as a replica) and pauses it.
func TestCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts six redis-servers and waits for a failover; ~10 s")
	}
	start := time.Now()
	c := StartCluster(t, 3, 1)
	t.Logf("cluster up in %s: %s", time.Since(start).Round(time.Millisecond), c.URL())

	for _, n := range c.Nodes {
		info, err := n.Do("CLUSTER", "INFO")
		if s, _ := info.(string); err != nil || !strings.Contains(s, "cluster_slots_assigned:16384\r\n") ||
			!strings.Contains(s, "cluster_slots_ok:16384\r\n") || !strings.Contains(s, "cluster_known_nodes:6\r\n") {
			t.Fatalf("%s: CLUSTER INFO = %q, %v; want 16384 slots assigned and ok, 6 nodes", n.Addr(), info, err)
		}
	}
	primaries, err1 := c.Primaries()
	replicas, err2 := c.Replicas()
	if len(primaries) != 3 || len(replicas) != 3 || err1 != nil || err2 != nil {
		t.Fatalf("%d primaries (%v), %d replicas (%v); want 3 and 3", len(primaries), err1, len(replicas), err2)
	}

	const key = "testenv:cluster"
	old, err := c.NodeForKey(key)
	if err != nil {
		t.Fatal(err)
	}
	var other *Redis
	for _, n := range c.Nodes {
		if n != old {
			other = n
			break
		}
	}
	var moved ErrReply
	if _, err := other.Do("GET", key); !errors.As(err, &moved) || !strings.HasPrefix(string(moved), "MOVED ") {
		t.Errorf("GET %s on %s (not its owner): %v, want a MOVED error", key, other.Addr(), err)
	}
	if reply, err := old.Do("SET", key, "v1"); err != nil || reply != "OK" {
		t.Fatalf("SET on the owner: %v %v", reply, err)
	}
	reps, err := c.ReplicasOf(old)
	if err != nil || len(reps) != 1 {
		t.Fatalf("replicas of %s: %v %v, want one", old.Addr(), reps, err)
	}

	// The key must reach the replica before the kill: WAIT would not tell, as Command
	// sends every command on a new connection.
	deadline := time.Now().Add(5 * time.Second)
	for n, _ := reps[0].Do("DBSIZE"); n != int64(1); n, _ = reps[0].Do("DBSIZE") {
		if time.Now().After(deadline) {
			t.Fatalf("replica %s holds %v keys, want 1", reps[0].Addr(), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	old.Kill()
	promoted, took := c.WaitFailover(t, old, 30*time.Second)
	t.Logf("primary %s killed: %s promoted after %s", old.Addr(), promoted.Addr(), took.Round(time.Millisecond))
	if promoted != reps[0] {
		t.Errorf("promoted %s, want %s, the killed primary's replica", promoted.Addr(), reps[0].Addr())
	}
	if owner, err := c.NodeForKey(key); err != nil || owner != promoted {
		t.Errorf("key served by %v (%v), want %s", owner, err, promoted.Addr())
	}
	if v, err := promoted.Do("GET", key); err != nil || v != "v1" {
		t.Errorf("GET on the promoted replica: %v %v, want v1", v, err)
	}

	old.Start(t)
	c.WaitHealthy(t, 30*time.Second)
	if reps, err := c.ReplicasOf(promoted); err != nil || len(reps) != 1 || reps[0] != old {
		t.Errorf("after restart, replicas of %s: %v %v, want the old primary %s", promoted.Addr(), reps, err, old.Addr())
	}

	if err := old.Pause(); err != nil {
		t.Fatal(err)
	}
	c.WaitHealthy(t, 30*time.Second) // the others see the paused node failed
	if err := old.Resume(); err != nil {
		t.Fatal(err)
	}
	c.WaitHealthy(t, 30*time.Second)
	t.Logf("whole test %s", time.Since(start).Round(time.Millisecond))
}
