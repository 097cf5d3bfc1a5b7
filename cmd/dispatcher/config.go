package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/artificialstudio/webhook-dispatcher/dispatcher/queue"
	"github.com/artificialstudio/webhook-dispatcher/schedule"
	"github.com/artificialstudio/webhook-dispatcher/urlguard"
)

// setting is one configuration value: an environment variable that is also a
// flag (the flag wins), with its documented default.
type setting struct {
	env, def, help string
}

// settings lists every option; the README's table mirrors it.
var settings = []setting{
	{"REDIS_URL", "", "Redis URI (redis://, rediss://, redis-sentinel://); empty under `all` starts an embedded in-memory Redis"},
	{"API_ADDR", ":8080", "listen address of the enqueue API"},
	{"METRICS_ADDR", ":9090", "listen address of /metrics, /healthz and (with PPROF) /debug/pprof"},
	{"API_TOKEN", "", "bearer token for /v1/*; required by `api`; generated and printed once under `all` when empty"},
	{"WORKER_CONCURRENCY", "100", "concurrent deliveries per worker process"},
	{"HOST_CONCURRENCY", "20", "concurrent attempts per destination (scheme://host:port) per worker process; 0 disables the cap"},
	{"DELIVERY_TIMEOUT", "5s", "time limit of one attempt: connect, TLS, request and response"},
	{"POLL_INTERVAL", "20ms", "how often an idle worker asks Redis for work (asynq TaskCheckInterval)"},
	{"FORWARD_INTERVAL", "100ms", "how often due retries are moved back to the queue (asynq DelayedTaskCheckInterval)"},
	{"RETENTION", "168h", "how long delivered deliveries stay queryable (and their ids reserved)"},
	{"ENQUEUE_MIN_REPLICAS", "0", "replicas that must hold each accepted delivery (Redis WAIT, up to 1s) before the API answers 202, else 503; 0 answers once the primary holds it (asynchronous replication: a failover may lose it)"},
	{"RECONCILE_INTERVAL", "30s", "how often workers reconcile asynq's records (stuck, orphaned, archived-without-record deliveries) and every process re-checks the Redis eviction policy"},
	{"FAILED_RETENTION", "720h", "how long a failed delivery stays listed, redeliverable and its id reserved; 0 keeps it until purged"},
	{"ALLOW_EVICTING_REDIS", "false", "start even when Redis may evict keys (maxmemory-policy other than noeviction): ACCEPTED DELIVERIES CAN BE LOST"},
	{"SHUTDOWN_TIMEOUT", "", "how long SIGTERM waits for in-flight deliveries before handing them back; default DELIVERY_TIMEOUT+5s"},
	{"LOG_LEVEL", "info", "debug, info, warn or error"},
	{"PPROF", "false", "serve /debug/pprof on METRICS_ADDR"},
	{"URLGUARD_ALLOW_CIDRS", "", "TESTS/STAGING ONLY: comma-separated CIDRs exempted from the URL guard"},
	{"WEBHOOK_CA_FILE", "", "TESTS/STAGING ONLY: PEM file of extra trusted root CAs for receivers"},
	{"RETRY_SCHEDULE", "", "TESTS/STAGING ONLY: nine comma-separated durations replacing the published retry schedule"},
	{"RECONCILE_GRACE", "", "TESTS/STAGING ONLY: how long an active delivery without a lease waits before it is recovered; default DELIVERY_TIMEOUT+10s"},
}

// config is the parsed configuration.
type config struct {
	RedisURL          string
	APIAddr           string
	MetricsAddr       string
	APIToken          string
	Concurrency       int
	HostConcurrency   int
	MinReplicas       int
	DeliveryTimeout   time.Duration
	PollInterval      time.Duration
	ForwardInterval   time.Duration
	Retention         time.Duration
	ShutdownTimeout   time.Duration
	LogLevel          string
	Pprof             bool
	AllowCIDRs        []netip.Prefix
	CAFile            string
	Schedule          schedule.Schedule
	ScheduleOverriden bool
	ReconcileInterval time.Duration
	ReconcileGrace    time.Duration
	FailedRetention   time.Duration // 0 keeps failed deliveries until purged
	AllowEvicting     bool
}

func flagName(env string) string { return strings.ToLower(strings.ReplaceAll(env, "_", "-")) }

// loadConfig reads the settings from args (flags) over getenv over defaults.
func loadConfig(name string, args []string, getenv func(string) string, stderr io.Writer) (config, []string, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	values := make(map[string]*string, len(settings))
	for _, s := range settings {
		v := getenv(s.env)
		if v == "" {
			v = s.def
		}
		values[s.env] = fs.String(flagName(s.env), v, s.help+" (env "+s.env+")")
	}
	if err := fs.Parse(args); err != nil {
		return config{}, nil, errUsage{err}
	}
	get := func(env string) string { return strings.TrimSpace(*values[env]) }

	var errs []error
	intVal := func(env string, min int) int {
		n, err := strconv.Atoi(get(env))
		if err != nil || n < min {
			errs = append(errs, fmt.Errorf("%s: want an integer >= %d, got %q", env, min, get(env)))
		}
		return n
	}
	durVal := func(env string) time.Duration {
		if get(env) == "" {
			return 0
		}
		d, err := time.ParseDuration(get(env))
		if err != nil || d <= 0 {
			errs = append(errs, fmt.Errorf("%s: want a positive duration such as 5s, got %q", env, get(env)))
		}
		return d
	}

	cfg := config{
		RedisURL:        get("REDIS_URL"),
		APIAddr:         get("API_ADDR"),
		MetricsAddr:     get("METRICS_ADDR"),
		APIToken:        get("API_TOKEN"),
		Concurrency:     intVal("WORKER_CONCURRENCY", 1),
		HostConcurrency: intVal("HOST_CONCURRENCY", 0),
		MinReplicas:     intVal("ENQUEUE_MIN_REPLICAS", 0),
		DeliveryTimeout: durVal("DELIVERY_TIMEOUT"),
		PollInterval:    durVal("POLL_INTERVAL"),
		ForwardInterval: durVal("FORWARD_INTERVAL"),
		Retention:       durVal("RETENTION"),
		ShutdownTimeout: durVal("SHUTDOWN_TIMEOUT"),
		LogLevel:        get("LOG_LEVEL"),
		CAFile:          get("WEBHOOK_CA_FILE"),
	}
	cfg.ReconcileInterval = durVal("RECONCILE_INTERVAL")
	cfg.ReconcileGrace = durVal("RECONCILE_GRACE")
	if cfg.ReconcileGrace == 0 {
		cfg.ReconcileGrace = cfg.DeliveryTimeout + 10*time.Second
	}
	if v := get("FAILED_RETENTION"); v != "0" {
		cfg.FailedRetention = durVal("FAILED_RETENTION")
	}
	cfg.AllowEvicting = boolVal(get("ALLOW_EVICTING_REDIS"), "ALLOW_EVICTING_REDIS", &errs)
	if cfg.ShutdownTimeout == 0 {
		cfg.ShutdownTimeout = cfg.DeliveryTimeout + 5*time.Second
	}
	switch strings.ToLower(get("PPROF")) {
	case "true", "1", "yes":
		cfg.Pprof = true
	case "false", "0", "no", "":
	default:
		errs = append(errs, fmt.Errorf("PPROF: want true or false, got %q", get("PPROF")))
	}
	switch cfg.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("LOG_LEVEL: want debug, info, warn or error, got %q", cfg.LogLevel))
	}
	allow, err := urlguard.ParseAllowList(get("URLGUARD_ALLOW_CIDRS"))
	if err != nil {
		errs = append(errs, fmt.Errorf("URLGUARD_ALLOW_CIDRS: %w", err))
	}
	cfg.AllowCIDRs = allow
	cfg.Schedule, err = schedule.Parse(get("RETRY_SCHEDULE"))
	if err != nil {
		errs = append(errs, fmt.Errorf("RETRY_SCHEDULE: %w", err))
	}
	cfg.ScheduleOverriden = get("RETRY_SCHEDULE") != ""
	if cfg.Retention > 0 && cfg.Retention < time.Hour {
		errs = append(errs, fmt.Errorf("RETENTION: want at least 1h, got %s", cfg.Retention))
	}
	if len(errs) > 0 {
		return config{}, nil, errors.Join(errs...)
	}
	return cfg, fs.Args(), nil
}

// logTTL keeps attempt logs for the retry window plus the retention, with a day's margin.
func (c config) logTTL() time.Duration {
	retention := c.Retention
	if retention <= 0 {
		retention = queue.DefaultRetention
	}
	return c.Schedule.Window() + retention + 24*time.Hour
}

// errUsage marks command-line mistakes (exit code 2).
type errUsage struct{ error }

func (e errUsage) Unwrap() error { return e.error }

// boolVal reads true/1/yes or false/0/no/""; anything else is an error in errs.
func boolVal(v, env string, errs *[]error) bool {
	switch strings.ToLower(v) {
	case "true", "1", "yes":
		return true
	case "false", "0", "no", "":
		return false
	}
	*errs = append(*errs, fmt.Errorf("%s: want true or false, got %q", env, v))
	return false
}
