package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/artificialstudio/webhook-dispatcher/test/testenv"
)

// drain is scenarios 1 (bare asynq drain), 2 (dispatcher drain) and the CPU
// part of 6, interleaved per repetition so both see the same machine.
func (b *bench) drain(ctx context.Context) error {
	e, n := b.e, b.o.N
	var bare, bareOpts, disp []drainResult
	for rep := range b.o.Repeat {
		br, err := b.bareDrain(ctx, n)
		if err != nil {
			return fmt.Errorf("bare drain: %w", err)
		}
		e.logf("   rep %d: bare asynq drain %s", rep+1, formatValue(br.rate, unitPerSec))
		bo, err := b.bareDrain(ctx, n, dispatcherOptions)
		if err != nil {
			return fmt.Errorf("bare drain with the dispatcher's task options: %w", err)
		}
		bareOpts = append(bareOpts, bo)
		e.logf("   rep %d: bare asynq drain, dispatcher's task options %s", rep+1, formatValue(bo.rate, unitPerSec))
		dr, err := b.dispatcherDrain(ctx, n, 1)
		if err != nil {
			return fmt.Errorf("dispatcher drain: %w", err)
		}
		e.logf("   rep %d: dispatcher drain %s (worker %.3f, redis %.3f cpu-s/1k; redis %.1f commands, %.1f reads per delivery)",
			rep+1, formatValue(dr.rate, unitPerSec), dr.workerCPU, dr.redisCPU, dr.redisCmds, dr.redisReads)
		bare, disp = append(bare, br), append(disp, dr)
	}
	pick := func(rs []drainResult, f func(drainResult) float64) []float64 {
		out := make([]float64, len(rs))
		for i, r := range rs {
			out[i] = f(r)
		}
		return out
	}
	rate := func(r drainResult) float64 { return r.rate }
	b.rep.add("1", "bare asynq drain (HTTPS POST per task)", unitPerSec, pick(bare, rate), nil, "", "",
		fmt.Sprintf("in-process asynq.Server, Concurrency %d, shared client; N=%d", concurrency, n))
	b.rep.add("1b", "bare asynq drain, the dispatcher's task options", unitPerSec, pick(bareOpts, rate), pick(bare, rate), "bare asynq", "",
		"as 1, with TaskID, MaxRetry(9) and Retention(7d) (completed tasks kept for GET /v1/deliveries/{id})")
	b.rep.add("2", "dispatcher drain (1 worker process)", unitPerSec, pick(disp, rate), pick(bare, rate), "bare asynq", ">=0.85",
		fmt.Sprintf("N=%d enqueued via batch API while paused; unpause → Nth arrival", n))
	b.rep.add("2b", "dispatcher drain vs bare with the same task options", unitPerSec, pick(disp, rate), pick(bareOpts, rate), "bare asynq, same options", "",
		"the dispatcher's own cost: attempt log, metrics, log line, URL guard dial, per-destination cap")
	b.drainRate = median(pick(disp, rate))

	// Bare worker CPU is estimated: this process's CPU in the bare drain
	// (worker + receivers) minus its CPU in the dispatcher drain (receivers).
	var bareWorker []float64
	for i := range bare {
		bareWorker = append(bareWorker, bare[i].benchCPU-disp[i].benchCPU)
	}
	b.rep.add("6", "worker CPU per 1k deliveries", unitCPU, pick(disp, func(r drainResult) float64 { return r.workerCPU }),
		bareWorker, "bare asynq, est.", "", "bare = bench-process CPU in the bare drain minus its receiver-only CPU in the dispatcher drain")
	b.rep.add("6", "redis-server CPU per 1k deliveries", unitCPU, pick(disp, func(r drainResult) float64 { return r.redisCPU }),
		pick(bare, func(r drainResult) float64 { return r.redisCPU }), "bare asynq", "", "")
	b.rep.add("6", "Redis commands per delivery, drain", unitPerOp, pick(disp, func(r drainResult) float64 { return r.redisCmds }),
		pick(bareOpts, func(r drainResult) float64 { return r.redisCmds }), "bare asynq, same options", "", "INFO stats total_commands_processed over the drain, idle polling included")
	b.rep.add("6", "Redis read events (≈ round trips) per delivery, drain", unitPerOp, pick(disp, func(r drainResult) float64 { return r.redisReads }),
		pick(bareOpts, func(r drainResult) float64 { return r.redisReads }), "bare asynq, same options", "", "INFO stats total_reads_processed: one per pipeline read, however many commands it holds")
	b.rep.add("6", "worker peak RSS (VmHWM), concurrency 100, drain", unitBytes,
		pick(disp, func(r drainResult) float64 { return float64(r.peakRSS) }), nil, "", "", "")
	return nil
}

// idFor is a unique delivery id for item of iteration iter of closed-loop worker.
func idFor(run string, worker, iter, item int) string {
	return deliveryID(run, 'a', worker*100_000_000+iter*1000+item, time.Now())
}

// apiEnqueue is scenario 3: POST /v1/deliveries at client concurrency 1, 16,
// 64 against bare asynq.Client.Enqueue at the same concurrency.
func (b *bench) apiEnqueue(ctx context.Context) error {
	e := b.e
	for _, c := range []int{1, 16, 64} {
		var api, bare []float64
		for rep := range b.o.Repeat {
			if err := e.flush(ctx); err != nil {
				return err
			}
			run := newTally().run
			r, _, err := closedLoop(ctx, c, b.o.EnqueueWindow, func(ctx context.Context, w, iter int) (int, error) {
				return 1, e.enqueueOne(ctx, e.rcv.url(iter), idFor(run, w, iter, 0))
			})
			if err != nil {
				return fmt.Errorf("API c=%d: %w", c, err)
			}
			if err := e.flush(ctx); err != nil {
				return err
			}
			br, _, err := closedLoop(ctx, c, b.o.EnqueueWindow, func(ctx context.Context, w, iter int) (int, error) {
				return 1, bareEnqueue(ctx, b.ac, e.rcv.url(iter), idFor(run, w, iter, 0))
			})
			if err != nil {
				return fmt.Errorf("bare c=%d: %w", c, err)
			}
			e.logf("   rep %d c=%d: API %s, bare %s", rep+1, c, formatValue(r, unitPerSec), formatValue(br, unitPerSec))
			api, bare = append(api, r), append(bare, br)
		}
		b.rep.add("3", fmt.Sprintf("API enqueue POST /v1/deliveries, c=%d", c), unitPerSec, api, bare, "asynq Enqueue", ">=0.5", "")
	}
	return e.flush(ctx)
}

const batchSize = 100

// batchOp posts one batch of batchSize deliveries.
func (b *bench) batchOp(run string) func(ctx context.Context, w, iter int) (int, error) {
	e := b.e
	return func(ctx context.Context, w, iter int) (int, error) {
		hooks, ids := make([]string, batchSize), make([]string, batchSize)
		for i := range batchSize {
			hooks[i], ids[i] = e.rcv.url(i), idFor(run, w, iter, i)
		}
		return e.enqueueBatch(ctx, hooks, ids)
	}
}

// batchEnqueue is scenario 4: batches of 100 at concurrency 1, 4, 16 against
// bare Enqueue at the same concurrency.
func (b *bench) batchEnqueue(ctx context.Context) error {
	e := b.e
	for _, c := range []int{1, 4, 16} {
		var api, bare []float64
		for rep := range b.o.Repeat {
			if err := e.flush(ctx); err != nil {
				return err
			}
			run := newTally().run
			r, _, err := closedLoop(ctx, c, b.o.EnqueueWindow, b.batchOp(run))
			if err != nil {
				return fmt.Errorf("batch c=%d: %w", c, err)
			}
			if err := e.flush(ctx); err != nil {
				return err
			}
			br, _, err := closedLoop(ctx, c, b.o.EnqueueWindow, func(ctx context.Context, w, iter int) (int, error) {
				return 1, bareEnqueue(ctx, b.ac, e.rcv.url(iter), idFor(run, w, iter, 0))
			})
			if err != nil {
				return fmt.Errorf("bare c=%d: %w", c, err)
			}
			e.logf("   rep %d c=%d: batch %s, bare %s", rep+1, c, formatValue(r, unitPerSec), formatValue(br, unitPerSec))
			api, bare = append(api, r), append(bare, br)
		}
		b.rep.add("4", fmt.Sprintf("batch enqueue (100/request), c=%d", c), unitPerSec, api, bare, "asynq Enqueue", ">=0.8", "")
	}
	return e.flush(ctx)
}

// latencyResult is one latency window.
type latencyResult struct {
	p50, p99    float64   // ms
	p99BySecond []float64 // ms, by the second of the window the delivery was enqueued in
	// enqP99BySecond is the same for the enqueue call alone (the API's answer
	// time, or asynq Enqueue's).
	enqP99BySecond []float64
	// otherBySecond is the CPU (cores) other processes used in each second.
	otherBySecond []float64
	achieved      float64 // offered rate actually sent
	n             int
	deferrals     float64 // the worker's webhook_delivery_deferrals_total at the end
}

// senders is the open-loop generator's concurrency.
const senders = 32

// latencyRun offers rate deliveries per second for the latency window and
// returns class 'a”s enqueue→arrival percentiles. Class 'a' goes to healthy
// destination 0. With bURL set, every other delivery is class 'b' and goes to
// bURL; countB says whether the receiver must see those too (false for the
// hanging endpoint). dispatcher picks API + worker process or bare asynq.
func (b *bench) latencyRun(ctx context.Context, rate float64, dispatcher bool, bURL string, countB bool, extra ...string) (latencyResult, error) {
	e := b.e
	if err := e.flush(ctx); err != nil {
		return latencyResult{}, err
	}
	total := int(rate * b.o.LatencyWindow.Seconds())
	split := bURL != ""
	t := newTally()
	wantA, wantB := total, 0
	if split {
		wantA, wantB = (total+1)/2, total/2
	}
	t.expect('a', wantA, true)
	if countB {
		t.expect('b', wantB, false)
	}
	e.rcv.cur.Store(t)
	var send func(ctx context.Context, seq int) error
	var w *testenv.Dispatcher
	if dispatcher {
		var err error
		if w, err = e.startDispatcher(ctx, "worker", extra...); err != nil {
			return latencyResult{}, err
		}
		defer w.Kill()
		send = func(ctx context.Context, seq int) error {
			class, url := byte('a'), e.rcv.url(0)
			if split && seq%2 == 1 {
				class, url = 'b', bURL
			}
			return e.enqueueOne(ctx, url, deliveryID(t.run, class, seq, time.Now()))
		}
	} else {
		srv, err := e.startBare(concurrency, firstRetry)
		if err != nil {
			return latencyResult{}, err
		}
		defer srv.stop()
		send = func(ctx context.Context, seq int) error {
			class, url := byte('a'), e.rcv.url(0)
			if split && seq%2 == 1 {
				class, url = 'b', bURL
			}
			return bareEnqueue(ctx, b.ac, url, deliveryID(t.run, class, seq, time.Now()))
		}
	}
	start := time.Now()
	var emu sync.Mutex
	enqBySecond := map[int][]time.Duration{}
	timed := func(ctx context.Context, seq int) error {
		t0 := time.Now()
		err := send(ctx, seq)
		d := time.Since(t0)
		emu.Lock()
		sec := int(t0.Sub(start) / time.Second)
		enqBySecond[sec] = append(enqBySecond[sec], d)
		emu.Unlock()
		return err
	}
	sampled := make(chan []float64, 1)
	stopSampling := make(chan struct{})
	go func() { sampled <- e.sampleOther(stopSampling) }()
	sent, achieved, err := paced(ctx, rate, b.o.LatencyWindow, senders, timed)
	close(stopSampling)
	other := <-sampled
	if err != nil {
		return latencyResult{}, fmt.Errorf("offered load: %w", err)
	}
	if sent != total {
		return latencyResult{}, fmt.Errorf("sent %d of %d", sent, total)
	}
	if _, err := t.wait('a', 30*time.Second, ctx.Done()); err != nil {
		return latencyResult{}, err
	}
	if countB {
		if _, err := t.wait('b', 30*time.Second, ctx.Done()); err != nil {
			return latencyResult{}, err
		}
	}
	samples := t.latencies('a')
	ms := func(d time.Duration) float64 { return float64(d) / 1e6 }
	var all []time.Duration
	var bySecond [][]time.Duration
	for _, s := range samples {
		all = append(all, s.d)
		sec := max(0, int(time.Unix(0, s.enq).Sub(start)/time.Second))
		for len(bySecond) <= sec {
			bySecond = append(bySecond, nil)
		}
		bySecond[sec] = append(bySecond[sec], s.d)
	}
	sortDurations(all)
	r := latencyResult{p50: ms(percentile(all, 0.50)), p99: ms(percentile(all, 0.99)), achieved: achieved, n: len(all), otherBySecond: other}
	for _, d := range bySecond {
		sortDurations(d)
		r.p99BySecond = append(r.p99BySecond, ms(percentile(d, 0.99)))
	}
	for sec := 0; sec < len(enqBySecond); sec++ {
		d := enqBySecond[sec]
		sortDurations(d)
		r.enqP99BySecond = append(r.enqP99BySecond, ms(percentile(d, 0.99)))
	}
	if w != nil {
		r.deferrals, _ = scrapeCounter(ctx, w.MetricsURL, "webhook_delivery_deferrals_total")
	}
	return r, nil
}

// scrapeCounter reads one unlabelled sample from a Prometheus /metrics page.
func scrapeCounter(ctx context.Context, metricsURL, name string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, metricsURL+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return 0, fmt.Errorf("%s not found", name)
}

// sampleOther returns, for each second until stop, the CPU (in cores) that
// processes other than this run's used; at most 10 minutes of samples.
func (e *env) sampleOther(stop <-chan struct{}) []float64 {
	var out []float64
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	busy0, err1 := e.machineBusy()
	own0, err2 := e.ownCPU()
	for range 600 {
		select {
		case <-stop:
			return out
		case <-tick.C:
		}
		busy1, err3 := e.machineBusy()
		own1, err4 := e.ownCPU()
		if err1 != nil || err2 != nil || err3 != nil || err4 != nil {
			return out
		}
		out = append(out, max(0, (busy1-busy0)-(own1-own0)))
		busy0, own0 = busy1, own1
	}
	return out
}

func scale(xs []float64, f float64) []float64 {
	out := make([]float64, len(xs))
	for i, x := range xs {
		out[i] = x * f
	}
	return out
}

// series formats per-second values for the progress log.
func series(xs []float64) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = strconv.FormatFloat(x, 'f', 0, 64)
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// latency is scenario 5: enqueue→arrival at 500/s and 2,000/s, the
// dispatcher (API + worker processes) against bare asynq in this process.
func (b *bench) latency(ctx context.Context) error {
	e := b.e
	for _, rate := range []float64{500, 2000} {
		var d50, d99, b50, b99 []float64
		var achieved, deferrals []float64
		for rep := range b.o.Repeat {
			dr, err := b.latencyRun(ctx, rate, true, "", false)
			if err != nil {
				return fmt.Errorf("dispatcher at %.0f/s: %w", rate, err)
			}
			br, err := b.latencyRun(ctx, rate, false, "", false)
			if err != nil {
				return fmt.Errorf("bare at %.0f/s: %w", rate, err)
			}
			e.logf("   rep %d %.0f/s: dispatcher p50 %.1f p99 %.1f ms · bare p50 %.1f p99 %.1f ms (sent at %.0f/s)",
				rep+1, rate, dr.p50, dr.p99, br.p50, br.p99, dr.achieved)
			e.logf("          p99 by second, ms: dispatcher %s (enqueue call alone %s), deferrals %.0f; bare %s (enqueue %s)",
				series(dr.p99BySecond), series(dr.enqP99BySecond), dr.deferrals, series(br.p99BySecond), series(br.enqP99BySecond))
			e.logf("          other processes' CPU by second, cores ×100: dispatcher run %s, bare run %s",
				series(scale(dr.otherBySecond, 100)), series(scale(br.otherBySecond, 100)))
			deferrals = append(deferrals, dr.deferrals)
			d50, d99, b50, b99 = append(d50, dr.p50), append(d99, dr.p99), append(b50, br.p50), append(b99, br.p99)
			achieved = append(achieved, dr.achieved)
		}
		note := fmt.Sprintf("one destination; worker deferrals (HOST_CONCURRENCY full) per repeat: %s", series(deferrals))
		if a := median(achieved); a < 0.95*rate {
			note += fmt.Sprintf("; offered load fell short: sent at %.0f/s", a)
		}
		b.rep.add("5", fmt.Sprintf("latency p50 @%.0f/s", rate), unitMs, d50, b50, "bare asynq", "", "")
		b.rep.add("5", fmt.Sprintf("latency p99 @%.0f/s", rate), unitMs, d99, b99, "bare asynq", "<=1.5", note)
	}
	return nil
}

// memory is scenario 6's Redis part: bytes per pending delivery and per
// scheduled (retrying) delivery with its attempt log, against bare asynq.
func (b *bench) memory(ctx context.Context) error {
	e, k := b.e, b.o.MemoryK
	var dp, bp, ds, bs []memResult
	for rep := range b.o.Repeat {
		pd, err := b.pendingBytes(ctx, true)
		if err != nil {
			return fmt.Errorf("pending, dispatcher: %w", err)
		}
		pb, err := b.pendingBytes(ctx, false)
		if err != nil {
			return fmt.Errorf("pending, bare: %w", err)
		}
		sd, err := b.scheduledBytes(ctx, true)
		if err != nil {
			return fmt.Errorf("scheduled, dispatcher: %w", err)
		}
		sb, err := b.scheduledBytes(ctx, false)
		if err != nil {
			return fmt.Errorf("scheduled, bare: %w", err)
		}
		e.logf("   rep %d: pending %.0f B (bare %.0f) · retrying %.0f B (bare %.0f) · keys alone: %.0f/%.0f · %.0f/%.0f B",
			rep+1, pd.used, pb.used, sd.used, sb.used, pd.keys, pb.keys, sd.keys, sb.keys)
		dp, bp, ds, bs = append(dp, pd), append(bp, pb), append(ds, sd), append(bs, sb)
	}
	used := func(rs []memResult) []float64 {
		out := make([]float64, len(rs))
		for i, r := range rs {
			out[i] = r.used
		}
		return out
	}
	keys := func(rs []memResult) float64 {
		out := make([]float64, len(rs))
		for i, r := range rs {
			out[i] = r.keys
		}
		return median(out)
	}
	b.rep.add("6", "Redis bytes per pending delivery", unitBytes, used(dp), used(bp), "bare asynq", "",
		fmt.Sprintf("INFO used_memory − mem_clients_normal, delta ÷ %d, connection pools warmed first; MEMORY USAGE of the keys alone: %.0f B (bare %.0f B)", k, keys(dp), keys(bp)))
	b.rep.add("6", "Redis bytes per retrying delivery (+ attempt log)", unitBytes, used(ds), used(bs), "bare asynq", "",
		fmt.Sprintf("receiver answers 500, all %d in the retry set (first retry 5 s); MEMORY USAGE of the keys alone: %.0f B (bare %.0f B)", k, keys(ds), keys(bs)))
	return e.flush(ctx)
}

// memResult is Redis memory per delivery: from INFO used_memory (minus client
// buffers) and from MEMORY USAGE summed over the keys.
type memResult struct{ used, keys float64 }

// keyBytes sums MEMORY USAGE over every key (bounded scan).
func (e *env) keyBytes(ctx context.Context) (int64, error) {
	var total int64
	var cursor uint64
	for range 10000 {
		keys, next, err := e.rdb.Scan(ctx, cursor, "*", 1000).Result()
		if err != nil {
			return 0, err
		}
		p := e.rdb.Pipeline()
		cmds := make([]interface{ Val() int64 }, len(keys))
		for i, k := range keys {
			cmds[i] = p.MemoryUsage(ctx, k, 0)
		}
		if len(keys) > 0 {
			if _, err := p.Exec(ctx); err != nil {
				return 0, err
			}
		}
		for _, c := range cmds {
			total += c.Val()
		}
		if cursor = next; cursor == 0 {
			return total, nil
		}
	}
	return 0, errors.New("SCAN did not finish")
}

// memSettle is how long memSnapshot waits first: Redis refreshes its
// per-client memory figures (mem_clients_normal) and shrinks idle query
// buffers in clientsCron, which visits every client about once a second.
const memSettle = 1200 * time.Millisecond

// memSnapshot reads both measures once client buffers have settled.
func (e *env) memSnapshot(ctx context.Context) (used, keys int64, err error) {
	select {
	case <-time.After(memSettle):
	case <-ctx.Done():
		return 0, 0, ctx.Err()
	}
	if used, err = e.dataMemory(ctx); err != nil {
		return 0, 0, err
	}
	keys, err = e.keyBytes(ctx)
	return used, keys, err
}

func perDelivery(u0, k0, u1, k1 int64, n int) memResult {
	return memResult{used: float64(u1-u0) / float64(n), keys: float64(k1-k0) / float64(n)}
}

// pendingBytes enqueues K deliveries that nothing consumes. A first,
// unmeasured round grows the client's connection pool: Redis memory for new
// connections would otherwise be counted as data.
func (b *bench) pendingBytes(ctx context.Context, dispatcher bool) (memResult, error) {
	e, k := b.e, b.o.MemoryK
	enqueue := func() error {
		run := newTally().run
		id := func(i int) string { return deliveryID(run, 'a', i, time.Now()) }
		if dispatcher {
			return e.enqueueSet(ctx, k, e.rcv.url, id)
		}
		return bareSet(ctx, b.ac, k, e.rcv.url, id)
	}
	if err := e.flush(ctx); err != nil {
		return memResult{}, err
	}
	if err := enqueue(); err != nil {
		return memResult{}, err
	}
	if err := e.flush(ctx); err != nil {
		return memResult{}, err
	}
	u0, k0, err := e.memSnapshot(ctx)
	if err != nil {
		return memResult{}, err
	}
	if err := enqueue(); err != nil {
		return memResult{}, err
	}
	u1, k1, err := e.memSnapshot(ctx)
	if err != nil {
		return memResult{}, err
	}
	return perDelivery(u0, k0, u1, k1, k), e.flush(ctx)
}

// scheduledBytes sends K deliveries to a receiver answering 500 and measures
// Redis memory per delivery once all of them sit in the retry set. A first
// round answered 200 warms the worker's connection pool; FLUSHALL then clears
// the data but keeps the connections.
func (b *bench) scheduledBytes(ctx context.Context, dispatcher bool) (memResult, error) {
	e, k := b.e, b.o.MemoryK
	if err := e.flush(ctx); err != nil {
		return memResult{}, err
	}
	var worker *testenv.Dispatcher
	if dispatcher {
		w, err := e.startDispatcher(ctx, "worker")
		if err != nil {
			return memResult{}, err
		}
		defer w.Kill()
		worker = w
	} else {
		srv, err := e.startBare(concurrency, firstRetry)
		if err != nil {
			return memResult{}, err
		}
		defer srv.stop()
	}
	round := func(status int) (*tally, error) {
		t := newTally()
		t.status = status
		t.expect('a', k, false)
		e.rcv.cur.Store(t)
		id := func(i int) string { return deliveryID(t.run, 'a', i, time.Now()) }
		if dispatcher {
			return t, e.enqueueSet(ctx, k, e.rcv.url, id)
		}
		return t, bareSet(ctx, b.ac, k, e.rcv.url, id)
	}
	fail := func(err error) error {
		if worker != nil {
			return worker.Failure(err)
		}
		return err
	}
	// Warm-up round.
	t, err := round(http.StatusOK)
	if err != nil {
		return memResult{}, fail(err)
	}
	if _, err := t.wait('a', drainTimeout(k), ctx.Done()); err != nil {
		return memResult{}, fail(err)
	}
	time.Sleep(100 * time.Millisecond) // last completions land
	if err := e.flush(ctx); err != nil {
		return memResult{}, err
	}
	u0, k0, err := e.memSnapshot(ctx)
	if err != nil {
		return memResult{}, err
	}
	start := time.Now()
	if _, err := round(http.StatusInternalServerError); err != nil {
		return memResult{}, fail(err)
	}
	// The first failures come back after 4–5 s (due times are whole seconds):
	// every task must be in the retry set before that.
	for {
		p, a, r, err := e.queueCounts(ctx)
		if err != nil {
			return memResult{}, err
		}
		if p == 0 && a == 0 && r == int64(k) {
			break
		}
		if time.Since(start) > 3500*time.Millisecond || ctx.Err() != nil {
			return memResult{}, fail(fmt.Errorf("after %s: pending %d, active %d, retry %d of %d",
				time.Since(start).Round(time.Millisecond), p, a, r, k))
		}
		time.Sleep(20 * time.Millisecond)
	}
	u1, k1, err := e.memSnapshot(ctx)
	if err != nil {
		return memResult{}, err
	}
	if _, _, r, err := e.queueCounts(ctx); err != nil || r != int64(k) {
		return memResult{}, fail(fmt.Errorf("retry set changed while measuring: %d of %d (%v)", r, k, err))
	}
	return perDelivery(u0, k0, u1, k1, k), nil
}

// rss is scenario 6's RSS part: the worker's peak RSS at WORKER_CONCURRENCY=200
// with every slot busy (receivers answer after 100 ms, 16 destinations so the
// per-destination cap of 20 does not bind).
func (b *bench) rss(ctx context.Context) error {
	e, n := b.e, b.o.RSSN
	var peaks []float64
	top := 0
	for rep := range b.o.Repeat {
		if err := e.flush(ctx); err != nil {
			return err
		}
		if err := e.pause(ctx); err != nil {
			return err
		}
		t := newTally()
		t.delay = 100 * time.Millisecond
		t.expect('a', n, false)
		e.rcv.cur.Store(t)
		if err := e.enqueueSet(ctx, n, e.rcv.url, func(i int) string { return deliveryID(t.run, 'a', i, time.Now()) }); err != nil {
			return err
		}
		w, err := e.startDispatcher(ctx, "worker", "WORKER_CONCURRENCY=200")
		if err != nil {
			return err
		}
		r, err := b.timedDrain(ctx, t, n, w.PID())
		w.Kill()
		if err != nil {
			return w.Failure(err)
		}
		top = max(top, t.maxInFlight())
		e.logf("   rep %d: peak RSS %s, %s, max in flight %d", rep+1, formatValue(float64(r.peakRSS), unitBytes), formatValue(r.rate, unitPerSec), t.maxInFlight())
		peaks = append(peaks, float64(r.peakRSS))
	}
	b.rep.add("6", "worker peak RSS (VmHWM), concurrency 200 under load", unitBytes, peaks, nil, "", "",
		fmt.Sprintf("%d deliveries over %d destinations, receiver answers after 100 ms; most in flight at the receivers: %d", n, healthyDestinations, top))
	return nil
}

// isolation is scenario 7: the same drain and latency load where every other
// delivery goes to an endpoint that never answers, against the clean run in
// which that half goes to a second healthy destination. "Healthy" is the half
// that goes to healthy destination 0 in both runs.
func (b *bench) isolation(ctx context.Context) error {
	e, n := b.e, b.o.N
	var clean, dead []float64
	for rep := range b.o.Repeat {
		c, err := b.splitDrain(ctx, n, false)
		if err != nil {
			return fmt.Errorf("clean drain: %w", err)
		}
		d, err := b.splitDrain(ctx, n, true)
		if err != nil {
			return fmt.Errorf("drain with dead endpoint: %w", err)
		}
		e.logf("   rep %d: healthy half drains at %s clean, %s with the other half dead", rep+1, formatValue(c, unitPerSec), formatValue(d, unitPerSec))
		clean, dead = append(clean, c), append(dead, d)
	}
	b.rep.add("7", "healthy deliveries/s, other half to a dead endpoint", unitPerSec, dead, clean, "clean", ">=0.8",
		fmt.Sprintf("N=%d, every other delivery to an endpoint that holds the request; clean = that half to a 2nd healthy port; DELIVERY_TIMEOUT=5s", n))

	const rate = 500
	var c50, c99, d50, d99 []float64
	var trend string
	held := e.rcv.held.Load()
	for rep := range b.o.Repeat {
		c, err := b.latencyRun(ctx, rate, true, e.rcv.url(1), true)
		if err != nil {
			return fmt.Errorf("clean latency: %w", err)
		}
		d, err := b.latencyRun(ctx, rate, true, e.rcv.hangURL(), false)
		if err != nil {
			return fmt.Errorf("latency with dead endpoint: %w", err)
		}
		e.logf("   rep %d: healthy p50/p99 %.1f/%.1f ms clean, %.1f/%.1f ms with the other half dead", rep+1, c.p50, c.p99, d.p50, d.p99)
		e.logf("          p99 by second of the window (ms): clean %s, half dead %s; deferrals %.0f, %.0f", series(c.p99BySecond), series(d.p99BySecond), c.deferrals, d.deferrals)
		c50, c99, d50, d99 = append(c50, c.p50), append(c99, c.p99), append(d50, d.p50), append(d99, d.p99)
		if n := len(d.p99BySecond); n > 0 {
			trend = fmt.Sprintf("; last repeat: healthy p99 of deliveries enqueued in the first second %.0f ms, in the last %.0f ms (clean %.0f, %.0f), worker deferrals %.0f",
				d.p99BySecond[0], d.p99BySecond[n-1], c.p99BySecond[0], c.p99BySecond[len(c.p99BySecond)-1], d.deferrals)
		}
	}
	b.rep.add("7", "healthy latency p50 @500/s, half dead", unitMs, d50, c50, "clean", "", "")
	b.rep.add("7", "healthy latency p99 @500/s, half dead", unitMs, d99, c99, "clean", "<=2",
		fmt.Sprintf("window %s at 500/s, every other delivery to the dead endpoint (%d attempts reached it)%s",
			b.o.LatencyWindow, e.rcv.held.Load()-held, trend))
	return nil
}

// splitDrain drains n deliveries, every other one ('b') to destination 1 or,
// when dead, to the hanging endpoint, and returns the healthy half's rate.
func (b *bench) splitDrain(ctx context.Context, n int, dead bool) (float64, error) {
	e := b.e
	if err := e.flush(ctx); err != nil {
		return 0, err
	}
	if err := e.pause(ctx); err != nil {
		return 0, err
	}
	t := newTally()
	healthy := (n + 1) / 2
	t.expect('a', healthy, false)
	if !dead {
		t.expect('b', n/2, false)
	}
	e.rcv.cur.Store(t)
	err := e.enqueueSet(ctx, n,
		func(i int) string {
			switch {
			case i%2 == 0:
				return e.rcv.url(0)
			case dead:
				return e.rcv.hangURL()
			default:
				return e.rcv.url(1)
			}
		},
		func(i int) string {
			class := byte('a')
			if i%2 == 1 {
				class = 'b'
			}
			return deliveryID(t.run, class, i, time.Now())
		})
	if err != nil {
		return 0, err
	}
	w, err := e.startDispatcher(ctx, "worker")
	if err != nil {
		return 0, err
	}
	defer w.Kill()
	r, err := b.timedDrain(ctx, t, healthy, w.PID())
	if err != nil {
		return 0, w.Failure(err)
	}
	return r.rate, nil
}

// scaleOut is scenario 8: the same drain with one and with two worker
// processes on one Redis.
func (b *bench) scaleOut(ctx context.Context) error {
	e, n := b.e, b.o.N
	var one, two []float64
	for rep := range b.o.Repeat {
		r1, err := b.dispatcherDrain(ctx, n, 1)
		if err != nil {
			return fmt.Errorf("1 worker: %w", err)
		}
		r2, err := b.dispatcherDrain(ctx, n, 2)
		if err != nil {
			return fmt.Errorf("2 workers: %w", err)
		}
		e.logf("   rep %d: 1 worker %s, 2 workers %s", rep+1, formatValue(r1.rate, unitPerSec), formatValue(r2.rate, unitPerSec))
		one, two = append(one, r1.rate), append(two, r2.rate)
	}
	b.rep.add("8", "drain with 2 worker processes", unitPerSec, two, one, "1 worker", "",
		"both workers, Redis, receivers and the bench share this machine's CPUs")
	return nil
}

// profiles writes CPU profiles of a worker during a drain and of the API
// during batch enqueue, when Options.ProfileDir is set.
func (b *bench) profiles(ctx context.Context) error {
	dir := b.o.ProfileDir
	if dir == "" {
		return nil
	}
	e := b.e
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	const seconds = 5
	// Worker: enough deliveries for ~7 s at the measured rate.
	n := int(min(max(b.drainRate*7, 5000), 100000))
	if err := e.flush(ctx); err != nil {
		return err
	}
	if err := e.pause(ctx); err != nil {
		return err
	}
	t := newTally()
	t.expect('a', n, false)
	e.rcv.cur.Store(t)
	dests := b.o.DrainDestinations
	if err := e.enqueueSet(ctx, n, func(i int) string { return e.rcv.url(i % dests) },
		func(i int) string { return deliveryID(t.run, 'a', i, time.Now()) }); err != nil {
		return err
	}
	w, err := e.startDispatcher(ctx, "worker", "PPROF=true")
	if err != nil {
		return err
	}
	defer w.Kill()
	workerFile := filepath.Join(dir, "worker-drain.pprof")
	profErr := make(chan error, 1)
	go func() { profErr <- fetchProfile(ctx, w.PprofURL, seconds, workerFile) }()
	time.Sleep(50 * time.Millisecond) // the profile starts when the request arrives
	if _, err := b.timedDrain(ctx, t, n, w.PID()); err != nil {
		return w.Failure(err)
	}
	if err := <-profErr; err != nil {
		return fmt.Errorf("worker profile: %w", err)
	}
	w.Kill()
	b.rep.Profiles = append(b.rep.Profiles, fmt.Sprintf("%s (worker, %ds of a %d-delivery drain)", workerFile, seconds, n))

	// API: batch enqueue at concurrency 16 for a little longer than the profile.
	if err := e.flush(ctx); err != nil {
		return err
	}
	apiFile := filepath.Join(dir, "api-batch.pprof")
	go func() { profErr <- fetchProfile(ctx, e.api.PprofURL, seconds, apiFile) }()
	if _, _, err := closedLoop(ctx, 16, (seconds+1)*time.Second, b.batchOp(newTally().run)); err != nil {
		return err
	}
	if err := <-profErr; err != nil {
		return fmt.Errorf("api profile: %w", err)
	}
	b.rep.Profiles = append(b.rep.Profiles, fmt.Sprintf("%s (api, %ds of batch enqueue at c=16)", apiFile, seconds))

	// API: single POSTs at concurrency 64.
	if err := e.flush(ctx); err != nil {
		return err
	}
	singleFile := filepath.Join(dir, "api-single.pprof")
	go func() { profErr <- fetchProfile(ctx, e.api.PprofURL, seconds, singleFile) }()
	run := newTally().run
	if _, _, err := closedLoop(ctx, 64, (seconds+1)*time.Second, func(ctx context.Context, w, iter int) (int, error) {
		return 1, e.enqueueOne(ctx, e.rcv.url(iter), idFor(run, w, iter, 0))
	}); err != nil {
		return err
	}
	if err := <-profErr; err != nil {
		return fmt.Errorf("api profile: %w", err)
	}
	b.rep.Profiles = append(b.rep.Profiles, fmt.Sprintf("%s (api, %ds of POST /v1/deliveries at c=64)", singleFile, seconds))
	return e.flush(ctx)
}

func fetchProfile(ctx context.Context, pprofURL string, seconds int, file string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Duration(seconds+30)*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, pprofURL+"/debug/pprof/profile?seconds="+strconv.Itoa(seconds), nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET profile: %s", resp.Status)
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
