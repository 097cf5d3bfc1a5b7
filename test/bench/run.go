package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/hibiken/asynq"

	"github.com/artificialstudio/webhook-dispatcher/test/testenv"
)

// The dispatcher's defaults (cmd/dispatcher/config.go); the bare baseline
// uses the same.
const (
	concurrency     = 100                    // WORKER_CONCURRENCY
	pollInterval    = 20 * time.Millisecond  // POLL_INTERVAL → TaskCheckInterval
	forwardInterval = 100 * time.Millisecond // FORWARD_INTERVAL → DelayedTaskCheckInterval
	firstRetry      = 5 * time.Second        // the published schedule's first step
)

// Options configure a run.
type Options struct {
	Mode   string // "quick" or "full"
	N      int    // deliveries per drain
	Repeat int    // repetitions per measurement; the median is reported

	LatencyWindow time.Duration // per offered rate
	EnqueueWindow time.Duration // per client concurrency
	MemoryK       int           // deliveries per memory measurement
	RSSN          int           // deliveries for the RSS run at concurrency 200
	// DrainDestinations spreads drain deliveries over this many receiver
	// ports (destinations for HOST_CONCURRENCY).
	DrainDestinations int

	// Only, when not empty, limits the run to these steps: drain, api, batch,
	// latency, memory, rss, isolation, scaleout, cluster, profile.
	// latency, memory, rss, isolation, scaleout, failover, profile.
	Only map[string]bool

	ProfileDir string    // when set, CPU profiles of the worker and the API are written here
	Env        []string  // extra KEY=VALUE settings for every dispatcher process (to compare settings)
	Log        io.Writer // progress; nil is quiet
}

// DefaultOptions returns the settings of mode.
func DefaultOptions(mode string) (Options, error) {
	switch mode {
	case "quick":
		return Options{Mode: mode, N: 400, Repeat: 1, LatencyWindow: time.Second, EnqueueWindow: 500 * time.Millisecond,
			MemoryK: 300, RSSN: 400, DrainDestinations: 4}, nil
	case "full":
		return Options{Mode: mode, N: 20000, Repeat: 3, LatencyWindow: 5 * time.Second, EnqueueWindow: 3 * time.Second,
			MemoryK: 2000, RSSN: 8000, DrainDestinations: 4}, nil
	}
	return Options{}, fmt.Errorf("mode must be quick or full, got %q", mode)
}

// bench is one run: its environment, options and report.
type bench struct {
	e   *env
	o   Options
	rep *Report
	ac  *asynq.Client // the bare baseline's client

	drainRate float64 // median dispatcher drain rate, for sizing the profile run
}

// Run measures every scenario and returns the report; the error joins every
// scenario's failure (the report holds whatever was measured).
func Run(ctx context.Context, o Options) (*Report, error) {
	if o.N < 2 || o.Repeat < 1 {
		return nil, errors.New("need N >= 2 and Repeat >= 1")
	}
	rep := newReport(o)
	start := time.Now()
	defer func() { rep.Seconds = time.Since(start).Seconds() }()
	e, err := newEnv(ctx, o.Log, o.Env)
	if err != nil {
		rep.Errors = append(rep.Errors, err.Error())
		return rep, err
	}
	defer e.close()
	rep.Settings = []string{
		fmt.Sprintf("WORKER_CONCURRENCY=%d (bare asynq Concurrency=%d)", concurrency, concurrency),
		fmt.Sprintf("POLL_INTERVAL=%s FORWARD_INTERVAL=%s (bare TaskCheckInterval/DelayedTaskCheckInterval the same)", pollInterval, forwardInterval),
		"HOST_CONCURRENCY=20 DELIVERY_TIMEOUT=5s LOG_LEVEL=info (defaults)",
		fmt.Sprintf("drain deliveries spread over %d receiver ports", o.DrainDestinations),
		fmt.Sprintf("latency window %s per rate, enqueue window %s per concurrency, memory K=%d, RSS run N=%d",
			o.LatencyWindow, o.EnqueueWindow, o.MemoryK, o.RSSN),
	}
	b := &bench{e: e, o: o, rep: rep}
	b.ac = asynq.NewClient(asynq.RedisClientOpt{Addr: e.redisAddr, PoolSize: 128})
	defer b.ac.Close()

	var errs []error
	for _, s := range b.steps() {
		if len(o.Only) > 0 && !o.Only[s.key] || s.key == "profile" && o.ProfileDir == "" {
			continue
		}
		if ctx.Err() != nil {
			errs = append(errs, ctx.Err())
			break
		}
		e.logf("== %s", s.name)
		t0 := time.Now()
		busy0, errB := e.machineBusy()
		own0, errO := e.ownCPU()
		if err := s.fn(ctx); err != nil {
			err = fmt.Errorf("%s: %w", s.name, err)
			e.logf("   FAILED: %v", err)
			rep.Errors = append(rep.Errors, err.Error())
			errs = append(errs, err)
		}
		e.rcv.cur.Store(nil)
		secs := time.Since(t0).Seconds()
		busy1, errB1 := e.machineBusy()
		own1, errO1 := e.ownCPU()
		other := 0.0
		if errB == nil && errO == nil && errB1 == nil && errO1 == nil {
			other = max(0, (busy1-busy0)-(own1-own0)) / secs
			rep.Background = append(rep.Background, StepLoad{Step: s.key, Seconds: secs, Cores: other})
		}
		e.logf("   (%.1fs; other processes used %.2f cores meanwhile)", secs, other)
	}
	rep.Duplicates, rep.Strays = e.rcv.dups.Load(), e.rcv.strays.Load()
	return rep, errors.Join(errs...)
}

type step struct {
	key, name string
	fn        func(context.Context) error
}

func (b *bench) steps() []step {
	return []step{
		{"drain", "drain (1, 2, 6)", b.drain},
		{"api", "API enqueue (3)", b.apiEnqueue},
		{"batch", "batch enqueue (4)", b.batchEnqueue},
		{"latency", "latency (5)", b.latency},
		{"memory", "memory (6)", b.memory},
		{"rss", "RSS at 200 (6)", b.rss},
		{"isolation", "isolation (7)", b.isolation},
		{"scaleout", "scale-out (8)", b.scaleOut},
		{"cluster", "Redis Cluster (9)", b.cluster},
		{"failover", "cluster failover (10)", b.failover},
		{"profile", "profiles", b.profiles},
	}
}

// StepKeys lists the names Options.Only accepts.
func StepKeys() []string {
	var keys []string
	for _, s := range (&bench{}).steps() {
		keys = append(keys, s.key)
	}
	return keys
}

// drainTimeout bounds the wait for n deliveries: generous, never unbounded.
func drainTimeout(n int) time.Duration {
	return max(30*time.Second, time.Duration(n)*10*time.Millisecond)
}

// drainResult is one drain measurement.
type drainResult struct {
	rate      float64 // deliveries per second, unpause → Nth arrival
	workerCPU float64 // CPU seconds per 1,000 deliveries
	redisCPU  float64
	benchCPU  float64 // this process: receivers (+ the bare worker)
	peakRSS   int64
	// Redis commands and read events (≈ client round trips: one pipeline
	// is one) per delivery, from INFO stats; every client of the drain's
	// Redis counts, idle polling included.
	redisCmds, redisReads float64
}

// timedDrain unpauses the queue, waits for want arrivals of class 'a' and
// measures rate and CPU. pid is the worker process (0 for the in-process baseline).
func (b *bench) timedDrain(ctx context.Context, t *tally, want, pid int) (drainResult, error) {
	e := b.e
	var r drainResult
	cpu := func() (w, rd, self float64, err error) {
		if pid != 0 {
			if w, err = e.cpuSeconds(pid); err != nil {
				return
			}
		}
		if rd, err = e.cpuSeconds(e.redis.PID()); err != nil {
			return
		}
		self, err = selfCPU(e)
		return
	}
	w0, r0, s0, err := cpu()
	if err != nil {
		return r, err
	}
	c0, rd0, err := e.redisOps()
	if err != nil {
		return r, err
	}
	t0 := time.Now()
	if err := e.unpause(ctx); err != nil {
		return r, err
	}
	doneAt, err := t.wait('a', drainTimeout(want), ctx.Done())
	if err != nil {
		return r, err
	}
	w1, r1, s1, err := cpu()
	if err != nil {
		return r, err
	}
	c1, rd1, err := e.redisOps()
	if err != nil {
		return r, err
	}
	r.redisCmds, r.redisReads = float64(c1-c0)/float64(want), float64(rd1-rd0)/float64(want)
	per1k := 1000 / float64(want)
	r.rate = float64(want) / doneAt.Sub(t0).Seconds()
	r.workerCPU, r.redisCPU, r.benchCPU = (w1-w0)*per1k, (r1-r0)*per1k, (s1-s0)*per1k
	if pid != 0 {
		r.peakRSS, _ = testenv.PeakRSS(pid)
	}
	return r, nil
}

func selfCPU(e *env) (float64, error) { return e.cpuSeconds(os.Getpid()) }

// redisOps reads the drain Redis' total_commands_processed and
// total_reads_processed (INFO stats).
func (e *env) redisOps() (cmds, reads int64, err error) {
	info, err := e.redis.Info("stats")
	if err != nil {
		return 0, 0, fmt.Errorf("redis INFO stats: %w", err)
	}
	if cmds, err = strconv.ParseInt(info["total_commands_processed"], 10, 64); err != nil {
		return 0, 0, fmt.Errorf("total_commands_processed: %w", err)
	}
	if reads, err = strconv.ParseInt(info["total_reads_processed"], 10, 64); err != nil {
		return 0, 0, fmt.Errorf("total_reads_processed: %w", err)
	}
	return cmds, reads, nil
}

// bareDrain pre-enqueues n tasks with bare asynq and drains them with the
// in-process baseline worker.
func (b *bench) bareDrain(ctx context.Context, n int, opts ...func(id string) []asynq.Option) (drainResult, error) {
	e := b.e
	if err := e.flush(ctx); err != nil {
		return drainResult{}, err
	}
	if err := e.pause(ctx); err != nil {
		return drainResult{}, err
	}
	t := newTally()
	t.expect('a', n, false)
	e.rcv.cur.Store(t)
	dests := b.o.DrainDestinations
	if err := bareSet(ctx, b.ac, n, func(i int) string { return e.rcv.url(i % dests) },
		func(i int) string { return deliveryID(t.run, 'a', i, time.Now()) }, opts...); err != nil {
		return drainResult{}, fmt.Errorf("bare enqueue: %w", err)
	}
	srv, err := e.startBare(concurrency, firstRetry)
	if err != nil {
		return drainResult{}, err
	}
	defer srv.stop()
	return b.timedDrain(ctx, t, n, 0)
}

// dispatcherDrain enqueues n deliveries through the batch API while the queue
// is paused, starts `workers` worker processes and times the drain.
func (b *bench) dispatcherDrain(ctx context.Context, n, workers int, extra ...string) (drainResult, error) {
	e := b.e
	if err := e.flush(ctx); err != nil {
		return drainResult{}, err
	}
	if err := e.pause(ctx); err != nil {
		return drainResult{}, err
	}
	t := newTally()
	t.expect('a', n, false)
	e.rcv.cur.Store(t)
	dests := b.o.DrainDestinations
	if err := e.enqueueSet(ctx, n, func(i int) string { return e.rcv.url(i % dests) },
		func(i int) string { return deliveryID(t.run, 'a', i, time.Now()) }); err != nil {
		return drainResult{}, fmt.Errorf("API enqueue: %w", err)
	}
	var procs []*testenv.Dispatcher
	defer func() {
		for _, p := range procs {
			p.Kill()
		}
	}()
	for range workers {
		w, err := e.startDispatcher(ctx, "worker", extra...)
		if err != nil {
			return drainResult{}, err
		}
		procs = append(procs, w)
	}
	r, err := b.timedDrain(ctx, t, n, procs[0].PID())
	if err != nil {
		return r, procs[0].Failure(err)
	}
	return r, nil // with several workers, workerCPU is the first one's only
}
