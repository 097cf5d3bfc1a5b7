package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// clusterSlots is the number of hash slots of a Redis Cluster.
const clusterSlots = 16384

// clusterReadyTimeout bounds the wait for a new cluster to be healthy.
const clusterReadyTimeout = 60 * time.Second

// ClusterOptions configure NewCluster; zero fields take the defaults.
type ClusterOptions struct {
	Primaries int // default 3, the least redis-cli accepts
	Replicas  int // replicas per primary; default 0
	// NodeTimeout is cluster-node-timeout: how long a node may be unreachable before it is
	// failed over. Default 1s, so a failover takes a few seconds.
	NodeTimeout time.Duration
	// Dir holds one folder per node (data, nodes.conf, redis.log); empty means a new temp
	// dir, which Close removes. StartCluster uses a tb.TempDir.
	Dir string
}

// Cluster is a Redis Cluster of redis-server processes on loopback. Its nodes are
// ordinary *Redis values: Kill, Restart (the node rejoins from its nodes.conf, a former
// primary as a replica), Pause and Resume them one at a time. Which nodes are primaries
// changes with failovers, so ask Primaries, Replicas and NodeForKey rather than assume.
type Cluster struct {
	Nodes []*Redis // in the order given to redis-cli, which makes the first Primaries primaries

	primaries int
	dir       string
	ownDir    bool
}

// NewCluster starts o.Primaries*(1+o.Replicas) cluster-enabled redis-servers (found on
// PATH) on free loopback ports, joins them with `redis-cli --cluster create`, and waits
// until the cluster is Healthy. Close stops them.
func NewCluster(ctx context.Context, o ClusterOptions) (c *Cluster, err error) {
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		return nil, err
	}
	if o.Primaries == 0 {
		o.Primaries = 3
	}
	if o.Primaries < 3 || o.Replicas < 0 {
		return nil, fmt.Errorf("cluster of %d primaries with %d replicas each: want 3+ primaries", o.Primaries, o.Replicas)
	}
	if o.NodeTimeout == 0 {
		o.NodeTimeout = time.Second
	}
	c = &Cluster{primaries: o.Primaries}
	if c.dir, c.ownDir, err = ownDir(o.Dir, "cluster-"); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	for i := range o.Primaries * (1 + o.Replicas) {
		node, err := c.startNode(ctx, filepath.Join(c.dir, "node-"+strconv.Itoa(i)), o.NodeTimeout)
		if err != nil {
			return c, err
		}
		c.Nodes = append(c.Nodes, node)
	}
	args := append([]string{"--cluster", "create"}, c.Addrs()...)
	args = append(args, "--cluster-replicas", strconv.Itoa(o.Replicas), "--cluster-yes")
	cctx, cancel := context.WithTimeout(ctx, clusterReadyTimeout)
	defer cancel()
	if out, err := exec.CommandContext(cctx, cli, args...).CombinedOutput(); err != nil {
		return c, fmt.Errorf("redis-cli --cluster create: %v\n%s", err, out)
	}
	if err := poll(ctx, clusterReadyTimeout, 50*time.Millisecond, c.Healthy); err != nil {
		return c, fmt.Errorf("cluster not healthy: %w", err)
	}
	return c, nil
}

// startNode starts one cluster-enabled server in dir. The cluster bus port is chosen too
// (cluster-port), as port+10000 may not exist.
func (c *Cluster) startNode(ctx context.Context, dir string, nodeTimeout time.Duration) (*Redis, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	for try := 1; ; try++ {
		busPort, err := FindFreePort()
		if err != nil {
			return nil, err
		}
		r, err := NewRedis(ctx, RedisOptions{Dir: dir, Extra: []string{
			"--cluster-enabled", "yes",
			"--cluster-config-file", filepath.Join(dir, "nodes.conf"),
			"--cluster-port", strconv.Itoa(busPort),
			"--cluster-node-timeout", strconv.FormatInt(nodeTimeout.Milliseconds(), 10),
			// A replica may take over however long it was cut off (it may have been paused).
			"--cluster-replica-validity-factor", "0",
			"--repl-diskless-sync-delay", "0", // a replica syncs at once, not after 5 s
		}})
		if err == nil || try == startTries || !strings.Contains(err.Error(), "Address already in use") {
			return r, err
		}
	}
}

// StartCluster is NewCluster with primaries primaries, replicasPerPrimary replicas each
// and the default 1 s node timeout, in a tb.TempDir, stopped when the test ends. It
// skips without redis-server or redis-cli unless CI=true.
func StartCluster(tb testing.TB, primaries, replicasPerPrimary int) *Cluster {
	tb.Helper()
	LookPath(tb, "redis-server")
	LookPath(tb, "redis-cli")
	c, err := NewCluster(context.Background(), ClusterOptions{
		Primaries: primaries, Replicas: replicasPerPrimary, Dir: tb.TempDir(),
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(c.Close)
	return c
}

// Close kills every node and removes Dir if NewCluster created it.
func (c *Cluster) Close() {
	for _, n := range c.Nodes {
		n.Close()
	}
	if c.ownDir {
		os.RemoveAll(c.dir)
	}
}

// Addrs are the nodes' host:port addresses.
func (c *Cluster) Addrs() []string {
	out := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		out[i] = n.Addr()
	}
	return out
}

// URL is the REDIS_URL for a cluster client seeded with every node:
// redis-cluster://127.0.0.1:p1,127.0.0.1:p2,…
func (c *Cluster) URL() string { return "redis-cluster://" + strings.Join(c.Addrs(), ",") }

// clusterNode is one line of CLUSTER NODES.
type clusterNode struct {
	id, master string // master is the primary's id for a replica, "-" for a primary
	port       int
	flags      []string
	epoch      int64
	slots      [][2]int // inclusive ranges
}

func (n clusterNode) has(flag string) bool { return slices.Contains(n.flags, flag) }

// failed reports whether the node is (or may be) down in the view it came from.
func (n clusterNode) failed() bool { return n.has("fail") || n.has("fail?") || n.has("noaddr") }

func (n clusterNode) primary() bool { return n.has("master") && !n.failed() && len(n.slots) > 0 }

func (n clusterNode) owns(slot int) bool {
	return slices.ContainsFunc(n.slots, func(r [2]int) bool { return r[0] <= slot && slot <= r[1] })
}

// parseClusterNodes parses a CLUSTER NODES reply.
func parseClusterNodes(text string) ([]clusterNode, error) {
	var out []clusterNode
	for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 {
			return nil, fmt.Errorf("CLUSTER NODES line %q: too few fields", line)
		}
		addr, _, _ := strings.Cut(f[1], "@") // ip:port@cport[,hostname]
		port, err := strconv.Atoi(addr[strings.LastIndexByte(addr, ':')+1:])
		if err != nil {
			return nil, fmt.Errorf("CLUSTER NODES line %q: address: %w", line, err)
		}
		epoch, err := strconv.ParseInt(f[6], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("CLUSTER NODES line %q: config epoch: %w", line, err)
		}
		n := clusterNode{id: f[0], master: f[3], port: port, flags: strings.Split(f[2], ","), epoch: epoch}
		for _, s := range f[8:] {
			if strings.HasPrefix(s, "[") { // a slot being imported or migrated
				continue
			}
			lo, hi, isRange := strings.Cut(s, "-")
			if !isRange {
				hi = lo
			}
			a, err1 := strconv.Atoi(lo)
			b, err2 := strconv.Atoi(hi)
			if err1 != nil || err2 != nil {
				return nil, fmt.Errorf("CLUSTER NODES line %q: slots %q", line, s)
			}
			n.slots = append(n.slots, [2]int{a, b})
		}
		out = append(out, n)
	}
	return out, nil
}

// running are the nodes started and not paused: the ones that answer.
func (c *Cluster) running() []*Redis {
	var out []*Redis
	for _, n := range c.Nodes {
		if n.Running() {
			out = append(out, n)
		}
	}
	return out
}

// view returns CLUSTER NODES as the first running node that answers sees it.
func (c *Cluster) view() ([]clusterNode, error) {
	err := errors.New("no node is running")
	for _, n := range c.running() {
		var text string
		if text, err = commandString(n.Addr(), "CLUSTER", "NODES"); err == nil {
			return parseClusterNodes(text)
		}
	}
	return nil, err
}

// node returns the Cluster's node on port.
func (c *Cluster) node(port int) (*Redis, error) {
	for _, n := range c.Nodes {
		if n.Port == port {
			return n, nil
		}
	}
	return nil, fmt.Errorf("no node of this cluster on port %d", port)
}

// pick returns the nodes of the current view that keep says to.
func (c *Cluster) pick(keep func(clusterNode) bool) ([]*Redis, error) {
	nodes, err := c.view()
	if err != nil {
		return nil, err
	}
	var out []*Redis
	for _, cn := range nodes {
		if keep(cn) {
			n, err := c.node(cn.port)
			if err != nil {
				return nil, err
			}
			out = append(out, n)
		}
	}
	return out, nil
}

// Primaries are the nodes serving slots now, as a running node sees the cluster.
func (c *Cluster) Primaries() ([]*Redis, error) { return c.pick(clusterNode.primary) }

// Replicas are the replicas not marked failing, as a running node sees the cluster.
func (c *Cluster) Replicas() ([]*Redis, error) {
	return c.pick(func(n clusterNode) bool { return n.has("slave") && !n.failed() })
}

// ReplicasOf are the replicas of primary not marked failing.
func (c *Cluster) ReplicasOf(primary *Redis) ([]*Redis, error) {
	nodes, err := c.view()
	if err != nil {
		return nil, err
	}
	i := slices.IndexFunc(nodes, func(n clusterNode) bool { return n.port == primary.Port })
	if i < 0 {
		return nil, fmt.Errorf("%s is not in the cluster", primary.Addr())
	}
	id := nodes[i].id
	return c.pick(func(n clusterNode) bool { return n.has("slave") && !n.failed() && n.master == id })
}

// NodeForKey returns the primary that serves key's hash slot now.
func (c *Cluster) NodeForKey(key string) (*Redis, error) {
	run := c.running()
	if len(run) == 0 {
		return nil, errors.New("no node is running")
	}
	reply, err := Command(run[0].Addr(), "CLUSTER", "KEYSLOT", key)
	if err != nil {
		return nil, err
	}
	slot, ok := reply.(int64)
	if !ok {
		return nil, fmt.Errorf("CLUSTER KEYSLOT %q: reply %v", key, reply)
	}
	owners, err := c.pick(func(n clusterNode) bool { return n.primary() && n.owns(int(slot)) })
	if err != nil {
		return nil, err
	}
	if len(owners) != 1 {
		return nil, fmt.Errorf("slot %d of key %q has %d primaries", slot, key, len(owners))
	}
	return owners[0], nil
}

// Healthy reports whether every running node says cluster_state:ok with all 16384 slots
// served, and sees exactly the running nodes as up: the configured number of primaries,
// every other one a replica of an up primary; and every running replica has its
// replication link up with the initial sync done. If not, the error says what is not so
// yet.
func (c *Cluster) Healthy() (bool, error) {
	run := c.running()
	if len(run) == 0 {
		return false, errors.New("no node is running")
	}
	want := make([]int, len(run))
	for i, n := range run {
		want[i] = n.Port
	}
	slices.Sort(want)
	for _, n := range run {
		text, err := commandString(n.Addr(), "CLUSTER", "INFO")
		if err != nil {
			return false, err
		}
		info := parseInfo(text)
		if info["cluster_state"] != "ok" || info["cluster_slots_ok"] != strconv.Itoa(clusterSlots) {
			return false, fmt.Errorf("%s: cluster_state:%s cluster_slots_ok:%s", n.Addr(), info["cluster_state"], info["cluster_slots_ok"])
		}
		if text, err = commandString(n.Addr(), "CLUSTER", "NODES"); err != nil {
			return false, err
		}
		nodes, err := parseClusterNodes(text)
		if err != nil {
			return false, err
		}
		var up []int
		primaries := map[string]bool{}
		for _, cn := range nodes {
			if !cn.failed() {
				up = append(up, cn.port)
			}
			if cn.primary() {
				primaries[cn.id] = true
			}
		}
		slices.Sort(up)
		if !slices.Equal(up, want) || len(primaries) != c.primaries {
			return false, fmt.Errorf("%s sees nodes %v up and %d primaries, want %v and %d", n.Addr(), up, len(primaries), want, c.primaries)
		}
		for _, cn := range nodes {
			if !cn.failed() && !cn.primary() && !(cn.has("slave") && primaries[cn.master]) {
				return false, fmt.Errorf("%s sees node on port %d (%s) neither serving slots nor replicating an up primary", n.Addr(), cn.port, strings.Join(cn.flags, ","))
			}
			if cn.has("myself") && cn.has("slave") {
				repl, err := n.Info("replication")
				if err != nil {
					return false, err
				}
				if repl["master_link_status"] != "up" || repl["master_sync_in_progress"] != "0" {
					return false, fmt.Errorf("replica %s: link to its primary %s, sync in progress %s", n.Addr(), repl["master_link_status"], repl["master_sync_in_progress"])
				}
			}
		}
	}
	return true, nil
}

// WaitHealthy waits until Healthy, failing tb after timeout.
func (c *Cluster) WaitHealthy(tb testing.TB, timeout time.Duration) {
	tb.Helper()
	if err := poll(context.Background(), timeout, 50*time.Millisecond, c.Healthy); err != nil {
		tb.Fatalf("cluster not healthy: %v", err)
	}
}

// FailedOver returns the primary that replaced old, a primary that was killed or paused,
// once the cluster is Healthy and old serves no slots; until then, an error saying what is
// not so yet. The replacement is the primary with the newest config epoch, which is what
// the winner of the latest election gets.
func (c *Cluster) FailedOver(old *Redis) (*Redis, error) {
	if ok, err := c.Healthy(); !ok {
		return nil, err
	}
	nodes, err := c.view()
	if err != nil {
		return nil, err
	}
	var newest *clusterNode
	for i, cn := range nodes {
		if cn.port == old.Port && len(cn.slots) > 0 {
			return nil, fmt.Errorf("%s still serves slots", old.Addr())
		}
		if cn.primary() && (newest == nil || cn.epoch > newest.epoch) {
			newest = &nodes[i]
		}
	}
	if newest == nil {
		return nil, errors.New("no primary")
	}
	return c.node(newest.port)
}

// WaitFailover waits until FailedOver(old) and returns the promoted primary and how
// long the wait took, failing tb after timeout.
func (c *Cluster) WaitFailover(tb testing.TB, old *Redis, timeout time.Duration) (*Redis, time.Duration) {
	tb.Helper()
	start := time.Now()
	var promoted *Redis
	err := poll(context.Background(), timeout, 50*time.Millisecond, func() (bool, error) {
		var err error
		promoted, err = c.FailedOver(old)
		return err == nil, err
	})
	if err != nil {
		tb.Fatalf("no failover of %s: %v", old.Addr(), err)
	}
	return promoted, time.Since(start)
}
