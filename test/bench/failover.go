package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"math"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	shards "github.com/artificialstudio/webhook-dispatcher/dispatcher/queue"
	"github.com/artificialstudio/webhook-dispatcher/test/testenv"
)

// Failover step (issue 16's test 3 targets, measured here rather than asserted
// in a test): a 3-primary + 3-replica Redis Cluster on loopback, QUEUE_SHARDS=48
// in 6 groups of 8 (each group's shards on one primary), one API process with
// ENQUEUE_MIN_REPLICAS=1 and one worker process. A backlog is enqueued, the
// worker drains it, and the primary holding the most shards is SIGKILLed
// mid-drain. Arrivals are counted per second at the receivers by the primary
// that held the delivery's shard before the kill.
const (
	failoverShards = 48
	failoverGroups = 6
	// failoverBefore is the window before the kill whose rate is the baseline.
	failoverBefore = 4 * time.Second
	// failoverWarmup is how long the worker drains before that window opens.
	failoverWarmup = 2 * time.Second
	// failoverStragglers is how long the run waits without a new arrival
	// before it counts what has not arrived as lost: the tasks active on the
	// killed primary come back once their asynq lease (30 s) has expired and
	// the reconciler (RECONCILE_INTERVAL=1s) hands them back.
	failoverStragglers = 60 * time.Second
	// failoverMaxWait bounds the whole wait after the kill.
	failoverMaxWait = 10 * time.Minute
	// failoverRepeat caps the runs per variant (each drains a fresh backlog).
	failoverRepeat = 2
)

// failoverN is the backlog of one failover run: enough to drain through the
// warm-up, the baseline window, the outage and several seconds after the
// promotion at this machine's rate.
func failoverN(mode string) int {
	if mode == "full" {
		return 40000
	}
	return 20000
}

// foReceiver counts arrivals by the primary (port) that held each delivery's
// shard before the kill.
type foReceiver struct {
	servers  []*httptest.Server
	layout   shards.Layout  // the dispatcher's routing, to map an id to its shard
	primary  map[string]int // queue name → port of its primary before the kill
	mu       sync.Mutex
	arrivals map[int][]time.Time // by port
	seen     map[string]int      // id → POSTs
	dups     atomic.Int64
}

func newFoReceiver(n int, layout shards.Layout, primary map[string]int) *foReceiver {
	r := &foReceiver{layout: layout, primary: primary, arrivals: map[int][]time.Time{}, seen: map[string]int{}}
	quiet := log.New(io.Discard, "", 0)
	for range n {
		s := httptest.NewUnstartedServer(http.HandlerFunc(r.serve))
		s.Config.ErrorLog = quiet
		s.StartTLS() // httptest's one certificate: the run's CA file trusts it
		r.servers = append(r.servers, s)
	}
	return r
}

func (r *foReceiver) serve(w http.ResponseWriter, req *http.Request) {
	now := time.Now()
	_, _ = io.Copy(io.Discard, req.Body)
	id := req.Header.Get("X-Media-Id")
	port := r.primary[r.layout.Route(id)]
	r.mu.Lock()
	r.seen[id]++
	if r.seen[id] == 1 {
		r.arrivals[port] = append(r.arrivals[port], now)
	} else {
		r.dups.Add(1)
	}
	r.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

func (r *foReceiver) close() {
	for _, s := range r.servers {
		s.Close()
	}
}

func (r *foReceiver) url(i int) string { return r.servers[i%len(r.servers)].URL + "/hook" }

func (r *foReceiver) distinct() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.seen)
}

// count returns the first arrivals in [from, to) on the ports keep accepts.
func (r *foReceiver) count(from, to time.Time, keep func(port int) bool) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for port, ts := range r.arrivals {
		if !keep(port) {
			continue
		}
		for _, t := range ts {
			if !t.Before(from) && t.Before(to) {
				n++
			}
		}
	}
	return n
}

// failoverResult is one failover run.
type failoverResult struct {
	beforeAll, beforeLive float64 // deliveries/s in the window before the kill
	outageLive            float64 // live primaries' groups, kill → promotion
	promotion             float64 // s, kill → cluster healthy with the replica promoted
	recovery              float64 // s, promotion → total ≥ 0.9× before (+Inf: not within 30 s)
	victimBack            float64 // s, promotion → the killed primary's groups ≥ 0.9× their rate before (+Inf: not within 30 s)
	lost, dups            int
	series                string // per-second arrivals around the kill, all/live
}

// failover is issue 16's test 3 as a benchmark: run in full mode or when named
// with -only. It runs twice: with Redis' default cluster-require-full-coverage
// yes, under which every node answers CLUSTERDOWN from the moment the killed
// primary is marked failed until its replica is promoted (the live primaries
// stop too), and with it set to no, under which the live primaries keep
// serving their slots.
func (b *bench) failover(ctx context.Context) error {
	if b.o.Mode == "quick" && !b.o.Only["failover"] {
		b.e.logf("   skipped in quick mode (run -mode full, or -only failover)")
		return nil
	}
	run := 0 // numbers each run's cluster folder
	for _, v := range []struct {
		scenario     string
		fullCoverage bool
	}{{"10", true}, {"10b", false}} {
		var rs []failoverResult
		for rep := range min(b.o.Repeat, failoverRepeat) {
			run++
			r, err := b.failoverRun(ctx, run, v.fullCoverage)
			if err != nil {
				return fmt.Errorf("%s rep %d: %w", v.scenario, rep+1, err)
			}
			b.e.logf("   %s rep %d: before %s (live groups %s), live groups during the outage %s, promotion %.1fs, total back to 0.9× %.1fs after it, killed primary's groups %.1fs after it, lost %d, POSTed twice %d",
				v.scenario, rep+1, formatValue(r.beforeAll, unitPerSec), formatValue(r.beforeLive, unitPerSec), formatValue(r.outageLive, unitPerSec),
				r.promotion, r.recovery, r.victimBack, r.lost, r.dups)
			b.e.logf("   %s rep %d: arrivals per second from 3 s before the kill (all/live groups): %s", v.scenario, rep+1, r.series)
			rs = append(rs, r)
		}
		b.failoverRows(v.scenario, v.fullCoverage, rs)
	}
	return nil
}

// failoverRows adds the rows of one variant.
func (b *bench) failoverRows(scenario string, fullCoverage bool, rs []failoverResult) {
	pick := func(f func(failoverResult) float64) []float64 {
		out := make([]float64, len(rs))
		for i, r := range rs {
			out[i] = f(r)
		}
		return out
	}
	coverage := map[bool]string{true: "yes (Redis' default)", false: "no"}[fullCoverage]
	b.rep.add(scenario, "failover: cluster drain before the kill", unitPerSec, pick(func(r failoverResult) float64 { return r.beforeAll }), nil, "", "",
		fmt.Sprintf("3+3 cluster, cluster-node-timeout 1s, cluster-require-full-coverage %s; QUEUE_SHARDS=%d WORKER_SHARD_GROUPS=%d, 1 worker process, HOST_CONCURRENCY_SCOPE=process, backlog %d; rate over the 4 s before SIGKILL of the primary holding the most shards",
			coverage, failoverShards, failoverGroups, failoverN(b.o.Mode)))
	live := pick(func(r failoverResult) float64 { return r.outageLive / r.beforeLive })
	b.addChecked(scenario, "failover: live primaries' groups, kill → promotion, rate / before (target ≥ 0.8)", unitRatio, live, median(live) >= 0.8,
		"arrivals of deliveries whose shard is on a surviving primary, per run: their rate from the kill to the promotion over their rate in the 4 s before")
	b.rep.add(scenario, "failover: promotion (kill → replica serving)", "s", pick(func(r failoverResult) float64 { return r.promotion }), nil, "", "",
		"until every node sees the cluster healthy with 3 primaries (testenv AwaitFailover, 50 ms polls)")
	rec := pick(func(r failoverResult) float64 { return r.recovery })
	b.addChecked(scenario, "failover: promotion → total ≥ 0.9× before (target ≤ 2 s)", "s", rec, median(rec) <= 2,
		"first 1 s window starting at or after promotion (100 ms steps) with arrivals ≥ 0.9× the before rate")
	back := pick(func(r failoverResult) float64 { return r.victimBack })
	b.addChecked(scenario, "failover: promotion → killed primary's groups ≥ 0.9× their rate before (target ≤ 2 s)", "s", back, median(back) <= 2,
		"the shards that were on the killed primary, now on the promoted replica: what \"back at full throughput\" means for them")
	lost := pick(func(r failoverResult) float64 { return float64(r.lost) })
	b.addChecked(scenario, "failover: acknowledged deliveries lost (target 0)", "deliveries", lost, slices.Max(lost) == 0,
		fmt.Sprintf("every delivery answered 202 (ENQUEUE_MIN_REPLICAS=1) awaited until %s passed without a new arrival", failoverStragglers))
	b.rep.add(scenario, "failover: deliveries POSTed more than once", "deliveries", pick(func(r failoverResult) float64 { return float64(r.dups) }), nil, "", "",
		"at-least-once: a POST whose completion the killed primary took but never replicated is sent again")
}

// addChecked adds a row whose target is not a ratio: met says whether it holds.
func (b *bench) addChecked(scenario, what, unit string, samples []float64, met bool, note string) {
	b.rep.add(scenario, what, unit, samples, nil, "", "", note)
	b.rep.Rows[len(b.rep.Rows)-1].Met = &met
}

// failoverRun is one run (numbered run) on a fresh cluster.
func (b *bench) failoverRun(ctx context.Context, run int, fullCoverage bool) (res failoverResult, err error) {
	e := b.e
	c, err := testenv.NewCluster(ctx, testenv.ClusterOptions{Primaries: 3, Replicas: 1,
		Dir: filepath.Join(e.dir, "failover-"+strconv.Itoa(run))})
	if err != nil {
		return res, err
	}
	defer c.Close()
	if !fullCoverage {
		for _, n := range c.Nodes {
			if _, err := n.Do("CONFIG", "SET", "cluster-require-full-coverage", "no"); err != nil {
				return res, fmt.Errorf("%s: CONFIG SET cluster-require-full-coverage: %w", n.Addr(), err)
			}
		}
	}

	// Where each shard lives, and each group's primary: Groups must not
	// straddle primaries for "groups on live primaries" to mean anything.
	layout, err := shards.NewLayout(failoverShards, true)
	if err != nil {
		return res, err
	}
	primary := map[string]int{}
	perPort := map[int]int{}
	for k := range failoverShards {
		name := shards.ShardName(k, failoverShards)
		node, err := c.NodeForKey("asynq:{" + name + "}:pending")
		if err != nil {
			return res, err
		}
		primary[name] = node.Port
		perPort[node.Port]++
	}
	for i, g := range layout.Groups(failoverGroups) {
		ports := map[int]bool{}
		for q := range g {
			ports[primary[q]] = true
		}
		if len(ports) != 1 {
			return res, fmt.Errorf("shard group %d spans %d primaries", i, len(ports))
		}
	}
	victimPort := 0
	for port, n := range perPort {
		if victimPort == 0 || n > perPort[victimPort] {
			victimPort = port
		}
	}
	var victim *testenv.Redis
	for _, n := range c.Nodes {
		if n.Port == victimPort {
			victim = n
		}
	}
	live := func(port int) bool { return port != victimPort }
	all := func(int) bool { return true }
	dead := func(port int) bool { return port == victimPort }

	rcv := newFoReceiver(8, layout, primary)
	defer rcv.close()
	env := append([]string{"REDIS_URL=" + c.URL(), "WEBHOOK_CA_FILE=" + e.rcv.caFile,
		"QUEUE_SHARDS=" + strconv.Itoa(failoverShards), "WORKER_SHARD_GROUPS=" + strconv.Itoa(failoverGroups),
		"HOST_CONCURRENCY_SCOPE=process", "ENQUEUE_MIN_REPLICAS=1", "RECONCILE_INTERVAL=1s"}, e.extraEnv...)
	start := func(mode string) (*testenv.Dispatcher, error) {
		d, err := testenv.NewDispatcher(ctx, testenv.DispatcherOptions{Bin: e.bin, Mode: mode, Env: env, Dir: e.dir})
		if d != nil {
			e.mu.Lock()
			e.dispatchers = append(e.dispatchers, d)
			e.mu.Unlock()
		}
		return d, err
	}
	api, err := start("api")
	if err != nil {
		return res, err
	}
	defer api.Kill()

	n := failoverN(b.o.Mode)
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("fo%d.%d", run, i)
	}
	if err := foEnqueue(ctx, e.apiClient, api.APIURL, ids, rcv.url); err != nil {
		return res, fmt.Errorf("enqueue the backlog: %w", err)
	}
	w, err := start("worker")
	if err != nil {
		return res, err
	}
	defer w.Kill()
	t0 := time.Now()
	if err := sleepCtx(ctx, failoverWarmup+failoverBefore); err != nil {
		return res, err
	}
	if got := rcv.distinct(); got > n/2 {
		return res, fmt.Errorf("%d of the %d backlog delivered before the kill: the backlog is too small for this machine", got, n)
	}
	victim.Kill()
	killed := time.Now()
	_, took, err := c.AwaitFailover(ctx, victim, 60*time.Second)
	if err != nil {
		return res, w.Failure(err)
	}
	promoted := killed.Add(took)
	res.promotion = took.Seconds()

	// Wait for every acknowledged delivery: while the drain goes on, and then
	// failoverStragglers without a new arrival (asynq's 30 s lease and the
	// reconciler bring back what was active on the killed primary); at most
	// failoverMaxWait after the kill.
	last, lastAt := rcv.distinct(), time.Now()
	for deadline := killed.Add(failoverMaxWait); last < n && time.Now().Before(deadline) && time.Since(lastAt) < failoverStragglers; {
		if err := sleepCtx(ctx, 200*time.Millisecond); err != nil {
			return res, err
		}
		if got := rcv.distinct(); got > last {
			last, lastAt = got, time.Now()
		}
	}
	res.lost = n - rcv.distinct()
	res.dups = int(rcv.dups.Load())

	before := killed.Add(-failoverBefore)
	res.beforeAll = float64(rcv.count(before, killed, all)) / failoverBefore.Seconds()
	res.beforeLive = float64(rcv.count(before, killed, live)) / failoverBefore.Seconds()
	res.outageLive = float64(rcv.count(killed, promoted, live)) / took.Seconds()
	res.recovery = firstWindow(rcv, promoted, all, 0.9*res.beforeAll)
	beforeVictim := float64(rcv.count(before, killed, dead)) / failoverBefore.Seconds()
	res.victimBack = firstWindow(rcv, promoted, dead, 0.9*beforeVictim)
	if drained := rcv.count(t0, promoted.Add(3*time.Second), all); drained >= n-n/20 {
		return res, fmt.Errorf("%d of %d delivered within 3 s of the promotion: the backlog ran out before recovery could be measured", drained, n)
	}
	var parts []string
	for s := -3; s < int(took.Seconds())+6; s++ {
		from := killed.Add(time.Duration(s) * time.Second)
		parts = append(parts, fmt.Sprintf("%d/%d", rcv.count(from, from.Add(time.Second), all), rcv.count(from, from.Add(time.Second), live)))
	}
	res.series = strings.Join(parts, " ") + fmt.Sprintf(" (kill at the 4th, promotion %.1f s later)", took.Seconds())
	return res, nil
}

// firstWindow returns the seconds from at to the start of the first 1 s window
// (starting at at or later, in 100 ms steps, within 30 s) in which the ports
// keep accepts got at least rate arrivals; +Inf when none did.
func firstWindow(rcv *foReceiver, at time.Time, keep func(port int) bool, rate float64) float64 {
	for d := time.Duration(0); d < 30*time.Second; d += 100 * time.Millisecond {
		from := at.Add(d)
		if float64(rcv.count(from, from.Add(time.Second), keep)) >= rate {
			return d.Seconds()
		}
	}
	return math.Inf(1)
}

// foEnqueue posts ids through the batch API, 500 per request, 4 at a time;
// any item not answered 202 is an error.
func foEnqueue(ctx context.Context, client *http.Client, apiURL string, ids []string, webhook func(i int) string) error {
	const size, conc = 500, 4
	var next atomic.Int64
	errc := make(chan error, conc)
	for range conc {
		go func() {
			for {
				lo := int(next.Add(size)) - size
				if lo >= len(ids) || ctx.Err() != nil {
					errc <- ctx.Err()
					return
				}
				hi := min(lo+size, len(ids))
				hooks := make([]string, 0, hi-lo)
				for i := lo; i < hi; i++ {
					hooks = append(hooks, webhook(i))
				}
				if err := foPostBatch(ctx, client, apiURL, hooks, ids[lo:hi]); err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	var first error
	for range conc {
		if err := <-errc; err != nil && first == nil {
			first = err
		}
	}
	return first
}

func foPostBatch(ctx context.Context, client *http.Client, apiURL string, hooks, ids []string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, apiURL+"/v1/deliveries/batch", strings.NewReader(string(batchBody(hooks, ids))))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+testenv.Token)
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("POST /v1/deliveries/batch: %d %s", resp.StatusCode, clip(raw))
	}
	if got := strings.Count(string(raw), `"status":202`); got != len(ids) {
		return fmt.Errorf("batch: %d of %d items accepted: %s", got, len(ids), clip(raw))
	}
	return nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}
