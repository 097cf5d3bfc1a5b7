package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"runtime"
	"sync"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/hibiken/asynq"
	"github.com/hibiken/asynqmon"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/artificialstudio/webhook-dispatcher/dispatcher"
	"github.com/artificialstudio/webhook-dispatcher/dispatcher/api"
	"github.com/artificialstudio/webhook-dispatcher/dispatcher/queue"
	"github.com/artificialstudio/webhook-dispatcher/dispatcher/store"
	"github.com/artificialstudio/webhook-dispatcher/dispatcher/worker"
	"github.com/artificialstudio/webhook-dispatcher/metrics"
	"github.com/artificialstudio/webhook-dispatcher/payload"
)

// serve runs the API, the workers or both until ctx ends, then stops
// gracefully: the API stops taking requests, workers finish in-flight
// deliveries (bounded by SHUTDOWN_TIMEOUT) and hand the rest back to Redis.
func serve(ctx context.Context, mode string, cfg config, stdout, stderr io.Writer) error {
	log := newLogger(stdout, cfg.LogLevel).With("mode", mode)
	runAPI, runWorker := mode != "worker", mode != "api"

	if cfg.RedisURL == "" && mode != "all" {
		return fmt.Errorf("config: REDIS_URL is required for %q (only `all` may run on the embedded in-memory Redis)", mode)
	}
	if runAPI && cfg.APIToken == "" {
		if mode == "api" {
			return errors.New("config: API_TOKEN is required for `api`")
		}
		cfg.APIToken = randomToken()
		// Printed once, outside the JSON log, so it is never shipped to log storage.
		fmt.Fprintf(stderr, "API_TOKEN was empty; generated for this run only: %s\n", cfg.APIToken)
	}
	warnTestSettings(log, cfg)
	routeRedisLogs(log)
	if len(cfg.DenyCIDRs) > 0 || len(cfg.AllowedPorts) > 0 {
		denied := make([]string, len(cfg.DenyCIDRs))
		for i, p := range cfg.DenyCIDRs {
			denied[i] = p.String()
		}
		log.Info("url guard: extra refusals", "deny_cidrs", denied, "allowed_ports", cfg.AllowedPorts)
	}

	redisOpt, rdb, stopRedis, err := connectRedis(cfg, log)
	if err != nil {
		return err
	}
	defer stopRedis()
	defer rdb.Close()
	_, sentinel := redisOpt.(asynq.RedisFailoverClientOpt)
	if err := logTopology(ctx, log, rdb, sentinel); err != nil {
		return err
	}
	_, cluster := rdb.(*redis.ClusterClient)
	layout, err := queue.NewLayout(cfg.QueueShards, cluster)
	if err != nil {
		return fmt.Errorf("config: QUEUE_SHARDS: %w", err)
	}

	var signing signingKeys
	if cfg.SigningKeyFile != "" {
		if signing, err = loadSigningKeys(cfg.SigningKeyFile); err != nil {
			return fmt.Errorf("config: %w", err)
		}
		ids := make([]string, len(signing.keys))
		for i, k := range signing.keys {
			ids[i] = k.ID()
		}
		log.Info("webhooks are signed (v1a)", "key_ids", ids)
	}

	reg := prometheus.NewRegistry()
	m := metrics.New(reg, metrics.BuildInfo{Version: version, Commit: commit, GoVersion: runtime.Version()})
	guard := cfg.guard()
	st := store.New(rdb, cfg.logTTL())
	st.UseShards(layout.Tag, layout.Tags())
	st.Dedupe(cfg.DedupeWindow, cfg.MarkerBuckets, cfg.DeliveredLogTTL)
	defer st.Close() // after the workers have stopped (below), before rdb.Close
	inspector := asynq.NewInspectorFromRedisClient(rdb)
	client := asynq.NewClientFromRedisClient(rdb)
	svc := &queue.Service{
		Client: client, Inspector: inspector, Store: st, Layout: layout,
		Retention: cfg.Retention, Schedule: cfg.Schedule,
		TaskTimeout: cfg.DeliveryTimeout + 30*time.Second,
		MinReplicas: cfg.MinReplicas,
	}
	if runAPI { // migration: the API refuses ids the previous datastore holds
		prev, closePrev, err := connectPrevious(ctx, cfg, log)
		if err != nil {
			return err
		}
		defer closePrev()
		svc.Previous = prev
	}

	policy := &redisPolicy{store: st, log: log, m: m, allow: cfg.AllowEvicting}
	if cfg.RedisURL != "" { // the embedded development Redis is exempt
		if err := policy.start(ctx); err != nil {
			return err
		}
		svc.Unsafe = policy.Err
	}
	// Every port is bound before anything starts or logs "started": a clash
	// fails here and names the setting to change.
	var apiLn, metricsLn, pprofLn net.Listener
	defer func() {
		for _, ln := range []net.Listener{apiLn, metricsLn, pprofLn} {
			if ln != nil {
				ln.Close() // no-op once served; closes what a failed start left open
			}
		}
	}()
	if runAPI {
		if apiLn, err = listen("API_ADDR", cfg.APIAddr); err != nil {
			return err
		}
	}
	if cfg.MetricsAddr != "" && !(runAPI && cfg.MetricsAddr == cfg.APIAddr) {
		if metricsLn, err = listen("METRICS_ADDR", cfg.MetricsAddr); err != nil {
			return err
		}
	}
	if cfg.Pprof {
		if pprofLn, err = listen("PPROF_ADDR", cfg.PprofAddr); err != nil {
			return err
		}
	}

	var wg sync.WaitGroup
	errc := make(chan error, 4)
	start := func(name string, fn func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(); err != nil {
				errc <- fmt.Errorf("%s: %w", name, err)
			}
		}()
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	// Redis liveness for the gauge and the log, every few seconds.
	start("redis ping", func() error { pingLoop(ctx, rdb, m, log.With("redis_addr", redisAddr(redisOpt))); return nil })
	if cfg.RedisURL != "" {
		start("redis policy", func() error { policy.run(ctx, cfg.reconcileInterval()); return nil })
		topo := newTopologyWatcher(redisOpt, st, layout.NamesInOrder(), m, log)
		start("redis topology", func() error { topo.run(ctx, topologyInterval); return nil })
	}

	if runAPI {
		// Queue gauges are read in exactly one process type: the API.
		reg.MustRegister(metrics.NewQueuesCollector(inspector, layout.NamesInOrder()))
		mon := asynqmon.New(asynqmon.Options{
			RootPath:     "/monitoring",
			RedisConnOpt: redisOpt,
			ReadOnly:     true,
		})
		defer mon.Close()
		tester, err := newTester(cfg, guard, signing)
		if err != nil {
			return err
		}
		// Without MONITORING_PASSWORD the API leaves /monitoring/ unrouted.
		server := &api.API{Service: svc, Guard: guard, Token: cfg.APIToken, Log: log, Metrics: m, Monitoring: mon,
			MonitoringPassword: cfg.MonitorPassword, MaxInflightBytes: cfg.MaxInflightBytes,
			SigningKeys: signing.list(), Tester: tester}
		srv := newHTTPServer(server.Handler(), log)
		log.Info("api listening", "addr", apiLn.Addr().String())
		start("api", func() error { return serveHTTP(ctx, srv, apiLn) })
	}

	var servers []*asynq.Server
	readyTags := []string(nil) // every shard: the API enqueues to all of them
	if runWorker {
		roots, err := worker.LoadCertPool(cfg.CAFile)
		if err != nil {
			return fmt.Errorf("config: WEBHOOK_CA_FILE: %w", err)
		}
		m.SetConcurrency(cfg.Concurrency)
		handler := &worker.Handler{
			Client:    worker.NewClient(worker.ClientOptions{Guard: guard, RootCAs: roots, Concurrency: cfg.Concurrency}),
			Store:     st,
			Schedule:  cfg.Schedule,
			Timeout:   cfg.DeliveryTimeout,
			UserAgent: payload.UserAgent(version),
			Limiter:   newLimiter(cfg, rdb),
			Log:       log,
			Metrics:   m,
			Signer:    signing.signer(),
		}
		rec := newReconciler(cfg, st, inspector, svc, log, m)
		mux := asynq.NewServeMux()
		mux.Handle(dispatcher.TypeDeliver, handler)
		// WORKER_FETCH_LOOPS asynq servers (one fetch loop each) per group
		// of at most 8 shards, sharing the handler, its store and its
		// limiter, and WORKER_CONCURRENCY among them.
		groups := layout.Groups(cfg.ShardGroups)
		loops := fetchLoops(cfg.FetchLoops, len(groups), cfg.Concurrency)
		shares := splitConcurrency(cfg.Concurrency, len(groups)*loops)
		var queues []string
		for i, g := range fetchGroups(groups, loops) {
			srv := asynq.NewServerFromRedisClient(rdb, worker.ServerConfig(worker.ServerOptions{
				Concurrency:     shares[i],
				Queues:          g,
				Schedule:        cfg.Schedule,
				PollInterval:    cfg.PollInterval,
				ForwardInterval: cfg.ForwardInterval,
				ShutdownTimeout: cfg.ShutdownTimeout,
				Logger:          asynqLogger{log: log, moveFailed: rec.Nudge},
				LogLevel:        asynq.WarnLevel,
			}))
			if err := srv.Start(mux); err != nil {
				shutdownAll(servers)
				return fmt.Errorf("worker: %w", err)
			}
			servers = append(servers, srv)
			if i%loops == 0 { // a group's queues once
				for q := range g {
					queues = append(queues, q)
				}
			}
		}
		if !runAPI {
			readyTags = layout.TagsOf(queues)
		}
		start("reconcile", func() error { rec.Run(ctx); return nil })
		log.Info("worker started", "concurrency", cfg.Concurrency, "host_concurrency", cfg.HostConcurrency,
			"host_concurrency_scope", cfg.HostScope, "delivery_timeout", cfg.DeliveryTimeout.String(),
			"queue_shards", layout.Shards(), "servers", len(servers), "queues", len(queues))
	}

	if metricsLn != nil {
		mux := http.NewServeMux()
		mux.Handle("/metrics", metrics.Handler(reg))
		mux.HandleFunc("/healthz", api.Healthz)
		mux.Handle("/readyz", api.Readyz(func(ctx context.Context) error {
			if err := policy.Err(); err != nil {
				return err
			}
			return st.Ready(ctx, readyTags)
		}))
		log.Info("metrics listening", "addr", metricsLn.Addr().String())
		start("metrics", func() error { return serveHTTP(ctx, newHTTPServer(mux, log), metricsLn) })
	}
	if pprofLn != nil {
		log.Warn("pprof listening (no authentication)", "addr", pprofLn.Addr().String())
		start("pprof", func() error { return serveHTTP(ctx, newHTTPServer(pprofMux(), log), pprofLn) })
	}

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case runErr = <-errc:
		log.Error("stopping after error", "error", runErr)
	}
	cancel()
	shutdownAll(servers) // waits ShutdownTimeout, then hands unfinished tasks back
	wg.Wait()
	client.Close()
	log.Info("stopped")
	return runErr
}

// listen binds addr for the setting env, or says which setting to change.
func listen(env, addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("config: %s=%s cannot be used (%w): set %s (or -%s) to a free address", env, addr, err, env, flagName(env))
	}
	return ln, nil
}

// pprofMux serves the runtime profiles. /debug/pprof/cmdline is left out on
// purpose: the command line may hold a secret passed as a flag.
func pprofMux() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/debug/pprof/cmdline" {
			http.NotFound(w, r)
			return
		}
		pprof.Index(w, r)
	})
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// newHTTPServer sets the timeouts a public-facing server needs.
func newHTTPServer(h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    32 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// serveHTTP serves until ctx ends, then drains for up to 10 s.
func serveHTTP(ctx context.Context, srv *http.Server, ln net.Listener) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return err
	}
	return nil
}

func pingLoop(ctx context.Context, rdb redis.UniversalClient, m *metrics.Metrics, log *slog.Logger) {
	ticker := time.NewTicker(2 * time.Second)
	defer ticker.Stop()
	up := true
	for {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		err := rdb.Ping(pctx).Err()
		cancel()
		if ctx.Err() != nil {
			return
		}
		m.SetRedisUp(err == nil)
		if (err == nil) != up {
			up = err == nil
			if up {
				log.Info("redis reachable again")
			} else {
				log.Error("redis unreachable", "error", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// connectRedis returns the one Redis client of the process, shared by
// asynq's client, inspector and servers and the store, and the connection
// option asynqmon needs, from REDIS_URL or the embedded Redis.
func connectRedis(cfg config, log *slog.Logger) (asynq.RedisConnOpt, redis.UniversalClient, func(), error) {
	opt, stop, err := redisConnOpt(cfg, log)
	if err != nil {
		return nil, nil, nil, err
	}
	if o, ok := opt.(asynq.RedisClusterClientOpt); ok {
		return opt, clusterClient(o, cfg.Concurrency+32), stop, nil
	}
	rdb, ok := opt.MakeRedisClient().(redis.UniversalClient)
	if !ok {
		stop()
		return nil, nil, nil, errors.New("redis: unexpected client type")
	}
	// go-redis ignores context deadlines on socket reads and writes unless
	// told otherwise: a stalled Redis (SIGSTOP, a long command, a full
	// network buffer) then held an enqueue or /readyz for the read timeout
	// plus the dial timeout, 5–8 s, instead of the caller's 3 s or 1 s.
	if c, ok := rdb.(*redis.Client); ok {
		c.Options().ContextTimeoutEnabled = true
	}
	return opt, rdb, stop, nil
}

// redisConnOpt parses REDIS_URL, or starts the embedded in-memory Redis under
// `all` when it is empty.
func redisConnOpt(cfg config, log *slog.Logger) (asynq.RedisConnOpt, func(), error) {
	if isClusterURL(cfg.RedisURL) {
		opt, err := parseClusterURL(cfg.RedisURL)
		if err != nil {
			return nil, nil, err
		}
		return opt, func() {}, nil
	}
	if cfg.RedisURL != "" {
		opt, err := asynq.ParseRedisURI(cfg.RedisURL)
		if err != nil {
			// The URI may hold a password: never echo it.
			return nil, nil, errors.New("config: REDIS_URL is not a valid redis://, rediss://, redis-sentinel:// or redis-cluster:// URI")
		}
		return withPoolSize(opt, cfg.Concurrency+32), func() {}, nil
	}
	mr := miniredis.NewMiniRedis()
	if err := mr.StartAddr("127.0.0.1:0"); err != nil {
		return nil, nil, fmt.Errorf("embedded redis: %w", err)
	}
	log.Warn("REDIS_URL is empty: using an EMBEDDED IN-MEMORY Redis. Nothing survives a restart; for development only.", "addr", mr.Addr())
	// miniredis expires keys only when told; advance its clock with ours so
	// asynq's leases, heartbeats and retention behave.
	stop := make(chan struct{})
	go func() {
		last := time.Now()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case now := <-t.C:
				mr.FastForward(now.Sub(last))
				last = now
			}
		}
	}()
	return asynq.RedisClientOpt{Addr: mr.Addr(), PoolSize: cfg.Concurrency + 32}, func() { close(stop); mr.Close() }, nil
}

// withPoolSize sizes the connection pool to the worker: every in-flight
// delivery may hold a connection for its attempt-log write.
func withPoolSize(opt asynq.RedisConnOpt, n int) asynq.RedisConnOpt {
	switch o := opt.(type) {
	case asynq.RedisClientOpt:
		if o.PoolSize == 0 {
			o.PoolSize = n
		}
		return o
	case asynq.RedisFailoverClientOpt:
		if o.PoolSize == 0 {
			o.PoolSize = n
		}
		return o
	case asynq.RedisClusterClientOpt:
		return o
	}
	return opt
}

func warnTestSettings(log *slog.Logger, cfg config) {
	if len(cfg.AllowCIDRs) > 0 {
		allowed := make([]string, len(cfg.AllowCIDRs))
		for i, p := range cfg.AllowCIDRs {
			allowed[i] = p.String()
		}
		log.Warn("URLGUARD_ALLOW_CIDRS is set: the URL guard lets these ranges through (tests/staging only)", "cidrs", allowed)
	}
	if cfg.CAFile != "" {
		log.Warn("WEBHOOK_CA_FILE is set: receivers are also trusted with these roots (tests/staging only)", "file", cfg.CAFile)
	}
	if cfg.ScheduleOverriden {
		log.Warn("RETRY_SCHEDULE is set: not the published retry schedule (tests/staging only)", "schedule", cfg.Schedule.String())
	}
}

func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l}))
}

func randomToken() string {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return hex.EncodeToString(b)
}

// shutdownAll stops the worker's asynq servers together, so SIGTERM waits
// SHUTDOWN_TIMEOUT once, not once per server.
func shutdownAll(servers []*asynq.Server) {
	var wg sync.WaitGroup
	for _, srv := range servers {
		wg.Add(1)
		go func() { defer wg.Done(); srv.Shutdown() }()
	}
	wg.Wait()
}
