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
	"github.com/artificialstudio/webhook-dispatcher/dispatcher/limiter"
	"github.com/artificialstudio/webhook-dispatcher/dispatcher/queue"
	"github.com/artificialstudio/webhook-dispatcher/dispatcher/store"
	"github.com/artificialstudio/webhook-dispatcher/dispatcher/worker"
	"github.com/artificialstudio/webhook-dispatcher/metrics"
	"github.com/artificialstudio/webhook-dispatcher/payload"
	"github.com/artificialstudio/webhook-dispatcher/urlguard"
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

	redisOpt, stopRedis, err := connectRedis(cfg, log)
	if err != nil {
		return err
	}
	defer stopRedis()
	rdb, ok := redisOpt.MakeRedisClient().(redis.UniversalClient)
	if !ok {
		return errors.New("redis: unexpected client type")
	}
	defer rdb.Close()
	// go-redis ignores context deadlines on socket reads and writes unless
	// told otherwise: a stalled Redis (SIGSTOP, a long command, a full
	// network buffer) then held an enqueue or /readyz for the read timeout
	// plus the dial timeout, 5–8 s, instead of the caller's 3 s or 1 s.
	if c, ok := rdb.(*redis.Client); ok {
		c.Options().ContextTimeoutEnabled = true
	}

	reg := prometheus.NewRegistry()
	m := metrics.New(reg, metrics.BuildInfo{Version: version, Commit: commit, GoVersion: runtime.Version()})
	guard := urlguard.New(cfg.AllowCIDRs...)
	st := store.New(rdb, cfg.logTTL())
	defer st.Close() // after the workers have stopped (below), before rdb.Close
	inspector := asynq.NewInspectorFromRedisClient(rdb)
	client := asynq.NewClientFromRedisClient(rdb)
	svc := &queue.Service{
		Client: client, Inspector: inspector, Store: st,
		Retention: cfg.Retention, Schedule: cfg.Schedule,
		TaskTimeout: cfg.DeliveryTimeout + 30*time.Second,
		MinReplicas: cfg.MinReplicas,
	}

	policy := &redisPolicy{store: st, log: log, m: m, allow: cfg.AllowEvicting}
	if cfg.RedisURL != "" { // the embedded development Redis is exempt
		if err := policy.start(ctx); err != nil {
			return err
		}
		svc.Unsafe = policy.Err
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
	start("redis ping", func() error { pingLoop(ctx, rdb, m, log); return nil })
	if cfg.RedisURL != "" {
		start("redis policy", func() error { policy.run(ctx, cfg.reconcileInterval()); return nil })
	}

	if runAPI {
		// Queue gauges are read in exactly one process type: the API.
		reg.MustRegister(metrics.NewQueueCollector(inspector, queue.DefaultQueue))
		mon := asynqmon.New(asynqmon.Options{
			RootPath:     "/monitoring",
			RedisConnOpt: redisOpt,
			ReadOnly:     true,
		})
		defer mon.Close()
		server := &api.API{Service: svc, Guard: guard, Token: cfg.APIToken, Log: log, Metrics: m, Monitoring: mon}
		srv := newHTTPServer(server.Handler(), log)
		ln, err := net.Listen("tcp", cfg.APIAddr)
		if err != nil {
			return fmt.Errorf("api: %w", err)
		}
		log.Info("api listening", "addr", ln.Addr().String())
		start("api", func() error { return serveHTTP(ctx, srv, ln) })
	}

	var srv *asynq.Server
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
			Limiter:   limiter.New(cfg.HostConcurrency),
			Log:       log,
			Metrics:   m,
		}
		rec := newReconciler(cfg, st, inspector, svc, log, m)
		srv = asynq.NewServerFromRedisClient(rdb, worker.ServerConfig(worker.ServerOptions{
			Concurrency:     cfg.Concurrency,
			Schedule:        cfg.Schedule,
			PollInterval:    cfg.PollInterval,
			ForwardInterval: cfg.ForwardInterval,
			ShutdownTimeout: cfg.ShutdownTimeout,
			Logger:          asynqLogger{log: log, moveFailed: rec.Nudge},
			LogLevel:        asynq.WarnLevel,
		}))
		mux := asynq.NewServeMux()
		mux.Handle(dispatcher.TypeDeliver, handler)
		if err := srv.Start(mux); err != nil {
			return fmt.Errorf("worker: %w", err)
		}
		start("reconcile", func() error { rec.Run(ctx); return nil })
		log.Info("worker started", "concurrency", cfg.Concurrency, "host_concurrency", cfg.HostConcurrency,
			"delivery_timeout", cfg.DeliveryTimeout.String(), "queue", queue.DefaultQueue)
	}

	if cfg.MetricsAddr != "" && !(runAPI && cfg.MetricsAddr == cfg.APIAddr) {
		mux := http.NewServeMux()
		mux.Handle("/metrics", metrics.Handler(reg))
		mux.HandleFunc("/healthz", api.Healthz)
		mux.Handle("/readyz", api.Readyz(func(ctx context.Context) error {
			if err := policy.Err(); err != nil {
				return err
			}
			return rdb.Ping(ctx).Err()
		}))
		if cfg.Pprof {
			mux.HandleFunc("/debug/pprof/", pprof.Index)
			mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
			mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
			mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
			mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		}
		ln, err := net.Listen("tcp", cfg.MetricsAddr)
		if err != nil {
			if srv != nil {
				srv.Shutdown()
			}
			return fmt.Errorf("metrics: %w", err)
		}
		log.Info("metrics listening", "addr", ln.Addr().String(), "pprof", cfg.Pprof)
		start("metrics", func() error { return serveHTTP(ctx, newHTTPServer(mux, log), ln) })
	}

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case runErr = <-errc:
		log.Error("stopping after error", "error", runErr)
	}
	cancel()
	if srv != nil {
		srv.Shutdown() // waits ShutdownTimeout, then hands unfinished tasks back
	}
	wg.Wait()
	client.Close()
	log.Info("stopped")
	return runErr
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

// connectRedis parses REDIS_URL, or starts the embedded in-memory Redis under
// `all` when it is empty.
func connectRedis(cfg config, log *slog.Logger) (asynq.RedisConnOpt, func(), error) {
	if cfg.RedisURL != "" {
		opt, err := asynq.ParseRedisURI(cfg.RedisURL)
		if err != nil {
			// The URI may hold a password: never echo it.
			return nil, nil, errors.New("config: REDIS_URL is not a valid redis://, rediss:// or redis-sentinel:// URI")
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
