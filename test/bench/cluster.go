package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	dqueue "github.com/artificialstudio/webhook-dispatcher/dispatcher/queue"
	"github.com/artificialstudio/webhook-dispatcher/dispatcher/store"
	"github.com/artificialstudio/webhook-dispatcher/test/testenv"
	"github.com/artificialstudio/webhook-dispatcher/urlguard"
)

// clusterPrimaries is the size of the cluster step's Redis Cluster: primaries
// only, no replicas, so it is compared with one Redis without a replica.
const clusterPrimaries = 3

// unitPct is a share in percent.
const unitPct = "%"

// datastore is where one configuration of the cluster step keeps its data:
// the run's single redis-server or the step's Redis Cluster.
type datastore struct {
	name  string // "one Redis", "cluster"
	url   string // REDIS_URL
	rdb   redis.UniversalClient
	nodes []*testenv.Redis // the primaries, in slot order
	slots []string         // each primary's slot ranges, for notes ("0-5460")
	// flushAll empties every primary.
	flushAll func(ctx context.Context) error
}

// node returns the index in nodes of the primary holding key's slot, -1 if
// none does (one Redis holds every key: 0).
func (d *datastore) node(key string) int {
	if len(d.nodes) == 1 {
		return 0
	}
	slot := dqueue.Slot(key)
	for i, s := range d.slots {
		for _, r := range strings.Split(s, ",") {
			lo, hi, _ := strings.Cut(r, "-")
			a, _ := strconv.Atoi(lo)
			b, _ := strconv.Atoi(hi)
			if a <= slot && slot <= b {
				return i
			}
		}
	}
	return -1
}

// reset empties the datastore and pauses the given queues, so deliveries
// enqueued next wait until resume. It also registers the names in
// asynq:queues, which asynq clients cache as published.
func (d *datastore) reset(ctx context.Context, names []string) error {
	if err := d.flushAll(ctx); err != nil {
		return fmt.Errorf("%s: flushall: %w", d.name, err)
	}
	now := time.Now().Unix()
	_, err := d.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, q := range names {
			p.SAdd(ctx, "asynq:queues", q)
			p.Set(ctx, "asynq:{"+q+"}:paused", now, 0)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("%s: pause: %w", d.name, err)
	}
	return nil
}

// resume unpauses the queues (one pipeline; on a cluster go-redis sends each
// node its part at once).
func (d *datastore) resume(ctx context.Context, names []string) error {
	_, err := d.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, q := range names {
			p.Del(ctx, "asynq:{"+q+"}:paused")
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("%s: unpause: %w", d.name, err)
	}
	return nil
}

// nodeStat is one primary's INFO counters at one moment.
type nodeStat struct {
	cpu  float64 // used_cpu_sys + used_cpu_user, seconds
	cmds float64 // total_commands_processed
}

// stats reads every primary's counters (INFO cpu and INFO stats).
func (d *datastore) stats() ([]nodeStat, error) {
	out := make([]nodeStat, len(d.nodes))
	for i, n := range d.nodes {
		cpu, err := n.Info("cpu")
		if err != nil {
			return nil, fmt.Errorf("%s: INFO cpu: %w", n.Addr(), err)
		}
		st, err := n.Info("stats")
		if err != nil {
			return nil, fmt.Errorf("%s: INFO stats: %w", n.Addr(), err)
		}
		sys, err1 := strconv.ParseFloat(cpu["used_cpu_sys"], 64)
		user, err2 := strconv.ParseFloat(cpu["used_cpu_user"], 64)
		cmds, err3 := strconv.ParseFloat(st["total_commands_processed"], 64)
		if err := errors.Join(err1, err2, err3); err != nil {
			return nil, fmt.Errorf("%s: INFO: %w", n.Addr(), err)
		}
		out[i] = nodeStat{cpu: sys + user, cmds: cmds}
	}
	return out, nil
}

// newClusterStore starts the step's Redis Cluster (3 primaries, no replicas)
// and a client for it. close stops both.
func (e *env) newClusterStore(ctx context.Context) (d *datastore, closeFn func(), err error) {
	c, err := testenv.NewCluster(ctx, testenv.ClusterOptions{Primaries: clusterPrimaries, Dir: filepath.Join(e.dir, "cluster")})
	if err != nil {
		return nil, nil, fmt.Errorf("start cluster: %w", err)
	}
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs(), PoolSize: 64})
	closeFn = func() { cc.Close(); c.Close() }
	defer func() {
		if err != nil {
			closeFn()
		}
	}()
	ranges, err := cc.ClusterSlots(ctx).Result()
	if err != nil {
		return nil, nil, fmt.Errorf("CLUSTER SLOTS: %w", err)
	}
	sort.Slice(ranges, func(i, j int) bool { return ranges[i].Start < ranges[j].Start })
	d = &datastore{name: "cluster", url: c.URL(), rdb: cc,
		flushAll: func(ctx context.Context) error {
			return cc.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error { return n.FlushAll(ctx).Err() })
		}}
	index := map[string]int{}
	for _, r := range ranges {
		if len(r.Nodes) == 0 {
			return nil, nil, fmt.Errorf("CLUSTER SLOTS: range %d-%d has no node", r.Start, r.End)
		}
		addr := r.Nodes[0].Addr
		i, seen := index[addr]
		if !seen {
			var node *testenv.Redis
			for _, n := range c.Nodes {
				if n.Addr() == addr {
					node = n
				}
			}
			if node == nil {
				return nil, nil, fmt.Errorf("CLUSTER SLOTS: %s is not a node of this cluster", addr)
			}
			i = len(d.nodes)
			index[addr] = i
			d.nodes, d.slots = append(d.nodes, node), append(d.slots, "")
		}
		if d.slots[i] != "" {
			d.slots[i] += ","
		}
		d.slots[i] += fmt.Sprintf("%d-%d", r.Start, r.End)
	}
	if len(d.nodes) != clusterPrimaries {
		return nil, nil, fmt.Errorf("cluster has %d primaries serving slots, want %d", len(d.nodes), clusterPrimaries)
	}
	return d, closeFn, nil
}

// singleStore is the run's one redis-server as a datastore.
func (e *env) singleStore() *datastore {
	return &datastore{name: "one Redis", url: e.redisURL(), rdb: e.rdb, nodes: []*testenv.Redis{e.redis}, slots: []string{"0-16383"},
		flushAll: func(ctx context.Context) error { return e.rdb.FlushAll(ctx).Err() }}
}

// shardCase is one drain configuration of the cluster step.
type shardCase struct {
	ds     *datastore
	shards int
	scope  string // HOST_CONCURRENCY_SCOPE
	api    *testenv.Dispatcher
}

func (c shardCase) String() string {
	return fmt.Sprintf("%s, QUEUE_SHARDS=%d, cap %s", c.ds.name, c.shards, c.scope)
}

// queueNames are the asynq queues of n shards (the dispatcher's queue.SetShards names).
func queueNames(n int) []string {
	if n == 1 {
		return []string{dqueue.DefaultQueue}
	}
	out := make([]string, n)
	for k := range n {
		out[k] = dqueue.ShardName(k, n)
	}
	return out
}

// shardResult is one drain of the cluster step.
type shardResult struct {
	rate      float64   // deliveries per second, unpause → Nth arrival
	workerCPU float64   // worker CPU seconds per 1,000 deliveries
	nodeCPU   []float64 // each primary's CPU seconds per 1,000 deliveries (INFO cpu)
	nodeCmds  []float64 // each primary's commands during the drain (INFO stats)
}

func (r shardResult) redisCPU() float64 {
	var s float64
	for _, c := range r.nodeCPU {
		s += c
	}
	return s
}

func (r shardResult) cmdsTotal() float64 {
	var s float64
	for _, c := range r.nodeCmds {
		s += c
	}
	return s
}

// shares are each primary's percentage of the drain's commands.
func (r shardResult) shares() []float64 {
	out := make([]float64, len(r.nodeCmds))
	if t := r.cmdsTotal(); t > 0 {
		for i, c := range r.nodeCmds {
			out[i] = 100 * c / t
		}
	}
	return out
}

// shardDrain enqueues n deliveries through c's API while c's queues are
// paused, starts one worker process with c's settings, unpauses and times
// the drain to the Nth arrival; Redis CPU and commands are INFO deltas over
// the same interval on every primary.
func (b *bench) shardDrain(ctx context.Context, c shardCase, n int) (shardResult, error) {
	e := b.e
	var r shardResult
	names := queueNames(c.shards)
	if err := c.ds.reset(ctx, names); err != nil {
		return r, err
	}
	t := newTally()
	t.expect('a', n, false)
	e.rcv.cur.Store(t)
	dests := b.o.DrainDestinations
	if err := e.enqueueVia(ctx, c.api, n, func(i int) string { return e.rcv.url(i % dests) },
		func(i int) string { return deliveryID(t.run, 'a', i, time.Now()) }); err != nil {
		return r, fmt.Errorf("API enqueue: %w", err)
	}
	w, err := e.startDispatcher(ctx, "worker", c.env()...)
	if err != nil {
		return r, err
	}
	defer w.Kill()
	w0, err := e.cpuSeconds(w.PID())
	if err != nil {
		return r, err
	}
	s0, err := c.ds.stats()
	if err != nil {
		return r, err
	}
	t0 := time.Now()
	if err := c.ds.resume(ctx, names); err != nil {
		return r, err
	}
	doneAt, err := t.wait('a', drainTimeout(n), ctx.Done())
	if err != nil {
		return r, w.Failure(err)
	}
	w1, err := e.cpuSeconds(w.PID())
	if err != nil {
		return r, err
	}
	s1, err := c.ds.stats()
	if err != nil {
		return r, err
	}
	per1k := 1000 / float64(n)
	r.rate = float64(n) / doneAt.Sub(t0).Seconds()
	r.workerCPU = (w1 - w0) * per1k
	for i := range s1 {
		r.nodeCPU = append(r.nodeCPU, (s1[i].cpu-s0[i].cpu)*per1k)
		r.nodeCmds = append(r.nodeCmds, s1[i].cmds-s0[i].cmds)
	}
	return r, nil
}

// env is the settings of c's dispatcher processes. They are explicit, so
// -env cannot blur the comparison.
func (c shardCase) env() []string {
	return []string{"REDIS_URL=" + c.ds.url, "QUEUE_SHARDS=" + strconv.Itoa(c.shards), "HOST_CONCURRENCY_SCOPE=" + c.scope}
}

// enqueueVia is enqueueSet through api instead of the run's long-lived API.
func (e *env) enqueueVia(ctx context.Context, api *testenv.Dispatcher, n int, webhook, id func(i int) string) error {
	saved := e.api
	e.api = api
	defer func() { e.api = saved }()
	return e.enqueueSet(ctx, n, webhook, id)
}

// cluster is scenario 9: the drain with QUEUE_SHARDS 1, 16 and 48 on one
// Redis and 16 and 48 on a 3-primary Redis Cluster (no replicas), per-primary
// command share and Redis CPU, and the fleet cap's overhead on both. Every
// configuration runs once per repetition (in an order rotated by one each
// time), so all of them see the same machine; the baseline is one Redis with
// QUEUE_SHARDS=1.
func (b *bench) cluster(ctx context.Context) error {
	e, n := b.e, b.o.N
	single := e.singleStore()
	cl, closeCluster, err := e.newClusterStore(ctx)
	if err != nil {
		return err
	}
	defer closeCluster()
	e.logf("   cluster: %d primaries, slots %s", len(cl.nodes), strings.Join(cl.slots, " · "))

	cases := []shardCase{
		{ds: single, shards: 1, scope: "fleet"},   // 0: the baseline
		{ds: single, shards: 1, scope: "process"}, // 1
		{ds: single, shards: 16, scope: "fleet"},  // 2
		{ds: single, shards: 48, scope: "fleet"},  // 3
		{ds: cl, shards: 16, scope: "fleet"},      // 4
		{ds: cl, shards: 48, scope: "fleet"},      // 5
		{ds: cl, shards: 48, scope: "process"},    // 6
	}
	// One API per datastore and shard count, started once: an idle API only
	// pings Redis every few seconds.
	apis := map[string]*testenv.Dispatcher{}
	defer func() {
		for _, a := range apis {
			a.Kill()
		}
	}()
	for i, c := range cases {
		k := c.ds.name + "/" + strconv.Itoa(c.shards)
		if apis[k] == nil {
			a, err := e.startDispatcher(ctx, "api", c.env()...)
			if err != nil {
				return fmt.Errorf("API for %s: %w", c, err)
			}
			apis[k] = a
		}
		cases[i].api = apis[k]
	}

	res := make([][]shardResult, len(cases))
	for rep := range b.o.Repeat {
		// Each repetition starts one configuration later, so drift on the
		// shared machine does not always favour the same ones.
		for j := range cases {
			i := (j + rep) % len(cases)
			c := cases[i]
			r, err := b.shardDrain(ctx, c, n)
			if err != nil {
				return fmt.Errorf("%s: %w", c, err)
			}
			e.logf("   rep %d: %-40s %s, worker %.3f, redis %.3f cpu-s/1k %s, %.1f commands/delivery, shares %s",
				rep+1, c.String(), formatValue(r.rate, unitPerSec), r.workerCPU, r.redisCPU(), pcts(r.nodeCPU, 3),
				r.cmdsTotal()/float64(n), pcts(r.shares(), 1))
			res[i] = append(res[i], r)
		}
	}
	if err := single.flushAll(ctx); err != nil {
		return err
	}
	if err := e.flush(ctx); err != nil { // the other steps' queue name
		return err
	}

	pick := func(i int, f func(shardResult) float64) []float64 {
		out := make([]float64, len(res[i]))
		for j, r := range res[i] {
			out[j] = f(r)
		}
		return out
	}
	rate := func(r shardResult) float64 { return r.rate }
	redisCPU := func(r shardResult) float64 { return r.redisCPU() }
	// costs summarises a case for a note: median worker CPU and commands per delivery.
	costs := func(i int) string {
		return fmt.Sprintf("worker %.3f cpu-s/1k, %.1f Redis commands/delivery", median(pick(i, func(r shardResult) float64 { return r.workerCPU })),
			median(pick(i, func(r shardResult) float64 { return r.cmdsTotal() / float64(n) })))
	}
	dests := b.o.DrainDestinations
	base, baseWhat := pick(0, rate), "one Redis, 1 shard"
	b.rep.add("9", "drain, one Redis, QUEUE_SHARDS=1", unitPerSec, base, nil, "", "",
		fmt.Sprintf("N=%d over %d destinations (receiver ports), 1 worker process, fleet cap; %s", n, dests, costs(0)))
	b.rep.add("9", "drain, one Redis, QUEUE_SHARDS=16", unitPerSec, pick(2, rate), base, baseWhat, "", "2 asynq servers (fetch loops); "+costs(2))
	b.rep.add("9", "drain, one Redis, QUEUE_SHARDS=48", unitPerSec, pick(3, rate), base, baseWhat, "", "6 asynq servers; "+costs(3))
	b.rep.add("9", "drain, 3-primary cluster, QUEUE_SHARDS=16", unitPerSec, pick(4, rate), base, baseWhat, "", costs(4))
	b.rep.add("9", "drain, 3-primary cluster, QUEUE_SHARDS=48", unitPerSec, pick(5, rate), base, baseWhat, ">=0.9",
		fmt.Sprintf("cluster of %d primaries without replicas on the same %d cores; %s", clusterPrimaries, b.rep.CPUs, costs(5)))
	b.rep.add("9", "drain, cluster vs one Redis, both QUEUE_SHARDS=48", unitPerSec, pick(5, rate), pick(3, rate), "one Redis, 48 shards", "",
		"the cluster's own cost, sharding aside")

	// Per-primary command share: busiest and quietest primary against an even split.
	even := make([]float64, b.o.Repeat)
	for i := range even {
		even[i] = 100.0 / clusterPrimaries
	}
	var capNodes []string
	for i := range dests {
		dk, err := urlguard.DestinationKey(e.rcv.url(i))
		if err != nil {
			return err
		}
		capNodes = append(capNodes, strconv.Itoa(cl.node(store.CapKey(dk))+1))
	}
	for _, i := range []int{5, 6} {
		scope, note := cases[i].scope, "cap per process: no cap keys in Redis"
		if scope == "fleet" {
			note = fmt.Sprintf("fleet cap: the %d destinations' cap keys are on primaries %s", dests, strings.Join(capNodes, ","))
		}
		var all []string
		for _, r := range res[i] {
			all = append(all, pcts(r.shares(), 1))
		}
		note += "; shares per repeat (primaries in slot order) " + strings.Join(all, " ")
		top := pick(i, func(r shardResult) float64 { return maxOf(r.shares()) })
		low := pick(i, func(r shardResult) float64 { return -maxOf(scale(r.shares(), -1)) })
		b.rep.add("9", "cluster 48 shards, cap "+scope+": busiest primary's command share", unitPct, top, even, "even split", "<=1.15", note)
		b.rep.add("9", "cluster 48 shards, cap "+scope+": quietest primary's command share", unitPct, low, even, "even split", ">=0.85", "")
	}

	// Redis CPU per delivery.
	baseCPU, baseCPUWhat := pick(0, redisCPU), "one Redis, 1 shard"
	b.rep.add("9", "Redis CPU per 1k, one Redis, QUEUE_SHARDS=1", unitCPU, baseCPU, nil, "", "", "INFO cpu used_cpu_sys+used_cpu_user deltas over the drain")
	b.rep.add("9", "Redis CPU per 1k, one Redis, QUEUE_SHARDS=16", unitCPU, pick(2, redisCPU), baseCPU, baseCPUWhat, "", "")
	b.rep.add("9", "Redis CPU per 1k, one Redis, QUEUE_SHARDS=48", unitCPU, pick(3, redisCPU), baseCPU, baseCPUWhat, "", "")
	b.rep.add("9", "Redis CPU per 1k, cluster 16 shards, all primaries", unitCPU, pick(4, redisCPU), baseCPU, baseCPUWhat, "", "")
	b.rep.add("9", "Redis CPU per 1k, cluster 48 shards, all primaries", unitCPU, pick(5, redisCPU), baseCPU, baseCPUWhat, "", "")
	for p := range cl.nodes {
		b.rep.add("9", fmt.Sprintf("Redis CPU per 1k, cluster 48 shards, primary %d", p+1), unitCPU,
			pick(5, func(r shardResult) float64 { return r.nodeCPU[p] }), baseCPU, baseCPUWhat, "", "slots "+cl.slots[p])
	}

	// The fleet cap's overhead: fleet against per-process scope, same run.
	b.rep.add("9", "drain, fleet cap vs per process, one Redis, 1 shard", unitPerSec, pick(0, rate), pick(1, rate), "cap per process", "", costs(1)+" per process")
	b.rep.add("9", "Redis CPU per 1k, fleet cap vs per process, one Redis", unitCPU, pick(0, redisCPU), pick(1, redisCPU), "cap per process", "", "")
	b.rep.add("9", "drain, fleet cap vs per process, cluster 48 shards", unitPerSec, pick(5, rate), pick(6, rate), "cap per process", "", costs(6)+" per process")
	b.rep.add("9", "Redis CPU per 1k, fleet cap vs per process, cluster 48", unitCPU, pick(5, redisCPU), pick(6, redisCPU), "cap per process", "", "all primaries")
	return nil
}

func maxOf(xs []float64) float64 {
	m := xs[0]
	for _, x := range xs[1:] {
		m = max(m, x)
	}
	return m
}

// pcts formats values for the progress log: "[33.1 33.5 33.4]".
func pcts(xs []float64, prec int) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = strconv.FormatFloat(x, 'f', prec, 64)
	}
	return "[" + strings.Join(parts, " ") + "]"
}
