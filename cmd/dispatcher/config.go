package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/artificialstudio/webhook-dispatcher/dispatcher/queue"
	"github.com/artificialstudio/webhook-dispatcher/schedule"
	"github.com/artificialstudio/webhook-dispatcher/urlguard"
)

// setting is one configuration value: an environment variable that is also a
// flag (the flag wins), with its documented default. Usage text shows value,
// the value's name, and never the current value of any setting.
type setting struct {
	env, def, value, help string
	// modes says which servers read it: 'a' api, 'w' worker (all reads both).
	modes string
}

// settings lists every option; the README's table mirrors it. Help texts
// hold no back quotes: the flag package would read a quoted word as the
// value's name.
var settings = []setting{
	{"REDIS_URL", "", "URI", "Redis URI (redis://, rediss://, redis-sentinel://, redis-cluster://[:password@]host:port,host:port,... or rediss-cluster:// for TLS); empty under all starts an embedded in-memory Redis. Holds the password: prefer REDIS_URL_FILE or the environment, a flag value is visible in ps", "aw"},
	{"REDIS_URL_FILE", "", "FILE", "file holding REDIS_URL (one line; the container-secret convention)", "aw"},
	{"QUEUE_SHARDS", "1", "N", "asynq queues deliveries are spread over by generation id (1 = the single queue webhooks; 48-64 on a Redis Cluster); fixed for the life of the data: every process must use the same value", "aw"},
	{"PREVIOUS_REDIS_URL", "", "URI", "MIGRATION: the datastore being moved away from (any REDIS_URL scheme), still drained by its old workers: an enqueue of an id it holds answers 409, GET answers from it for ids only it knows, and while it cannot be reached every enqueue answers 503. Holds the password: prefer PREVIOUS_REDIS_URL_FILE or the environment", "a"},
	{"PREVIOUS_REDIS_URL_FILE", "", "FILE", "file holding PREVIOUS_REDIS_URL (one line)", "a"},
	{"PREVIOUS_QUEUE_SHARDS", "1", "N", "QUEUE_SHARDS of the previous datastore (read with PREVIOUS_REDIS_URL only)", "a"},
	{"WORKER_SHARD_GROUPS", "0", "N", "asynq servers (fetch loops) per worker process, each polling a contiguous group of at most 8 shards; 0 means ceil(QUEUE_SHARDS/8)", "w"},
	{"WORKER_FETCH_LOOPS", "0", "N", "asynq servers (fetch loops) per shard group: one fetch loop dequeues one task per Redis round trip, more let one process drain faster (but see the README: after a Redis restart they leave deliveries in flight active until the reconciler recovers them); 0 means 1; WORKER_CONCURRENCY is split among all of a process's servers", "w"},
	{"API_ADDR", ":8080", "ADDR", "listen address of the enqueue API", "a"},
	{"METRICS_ADDR", ":9090", "ADDR", "listen address of /metrics, /healthz and /readyz; default :9091 for api, :9090 for worker and all, so both run side by side on one host", "aw"},
	{"API_TOKEN", "", "TOKEN", "bearer token for /v1/*; required by api; generated and printed once under all when empty. Prefer API_TOKEN_FILE or the environment: a flag value is visible in ps", "a"},
	{"API_TOKEN_FILE", "", "FILE", "file holding API_TOKEN (one line)", "a"},
	{"MONITORING_PASSWORD", "", "PASSWORD", "basic-auth password of the read-only asynqmon UI at /monitoring/ (any user name); empty leaves /monitoring/ unrouted. Not the API token: asynqmon shows whole webhook URLs", "a"},
	{"MONITORING_PASSWORD_FILE", "", "FILE", "file holding MONITORING_PASSWORD (one line)", "a"},
	{"API_MAX_INFLIGHT_BYTES", "67108864", "BYTES", "request body bytes the API holds at once (64 MiB); a request beyond it is answered 503 with Retry-After: 1; 0 disables the cap", "a"},
	{"WORKER_CONCURRENCY", "100", "N", "concurrent deliveries per worker process", "w"},
	{"HOST_CONCURRENCY", "20", "N", "concurrent attempts per destination (its registrable domain and port) across the fleet (HOST_CONCURRENCY_SCOPE); 0 disables the cap", "w"},
	{"HOST_CONCURRENCY_SCOPE", "fleet", "SCOPE", "fleet: one cap shared by every worker process (leases in Redis); process: a cap per worker process, held in memory", "w"},
	{"DELIVERY_TIMEOUT", "5s", "DURATION", "time limit of one attempt: connect, TLS, request and response", "aw"},
	{"POLL_INTERVAL", "20ms", "DURATION", "how often an idle worker asks Redis for work (asynq TaskCheckInterval)", "w"},
	{"FORWARD_INTERVAL", "100ms", "DURATION", "how often due retries are moved back to the queue (asynq DelayedTaskCheckInterval)", "w"},
	{"RETENTION", "1h", "DURATION", "how long asynq keeps a delivered delivery's task (body included): GET shows it in full and redeliver works within it; afterwards the delivered marker answers (DEDUPE_WINDOW)", "aw"},
	{"DEDUPE_WINDOW", "168h", "DURATION", "how long a delivered id stays reserved (a resend answers 409) and GET answers delivered with deliveredAt, from a ~40-byte marker", "aw"},
	{"DELIVERED_MARKER_BUCKETS", "1024", "N", "delivered-marker hashes per day over all shards (split evenly among them); about daily deliveries / 100 keeps each packed (~40 B per id); fixed for DEDUPE_WINDOW: every process must use the same value", "aw"},
	{"ATTEMPT_LOG_RETENTION", "24h", "DURATION", "how long a delivered delivery's attempt log is kept after delivery; failed deliveries keep theirs with the failed record", "w"},
	{"ENQUEUE_MIN_REPLICAS", "0", "N", "replicas that must hold each accepted delivery (Redis WAIT, up to 1s) before the API answers 202, else 503; 0 answers once the primary holds it (asynchronous replication: a failover may lose it)", "a"},
	{"RECONCILE_INTERVAL", "30s", "DURATION", "how often workers reconcile asynq's records (stuck, orphaned, archived-without-record deliveries) and every process re-checks the Redis eviction policy", "aw"},
	{"FAILED_RETENTION", "720h", "DURATION", "how long a failed delivery stays listed, redeliverable and its id reserved; 0 keeps it until purged", "aw"},
	{"ALLOW_EVICTING_REDIS", "false", "BOOL", "start even when Redis may evict keys (maxmemory-policy other than noeviction): ACCEPTED DELIVERIES CAN BE LOST", "aw"},
	{"SHUTDOWN_TIMEOUT", "", "DURATION", "how long SIGTERM waits for in-flight deliveries before handing them back; default DELIVERY_TIMEOUT+5s", "w"},
	{"LOG_LEVEL", "info", "LEVEL", "debug, info, warn or error", "aw"},
	{"PPROF", "false", "BOOL", "serve /debug/pprof/ (never the command line) on PPROF_ADDR", "aw"},
	{"PPROF_ADDR", "127.0.0.1:6060", "ADDR", "listen address of /debug/pprof/ when PPROF is on; loopback unless you choose otherwise (it has no authentication)", "aw"},
	{"SIGNING_KEY_FILE", "", "FILE", "file of v1a signing keys (whsk_…, one per line; all sign, for rotation; dispatcher signing-keygen makes one); empty: webhooks are not signed with a provider key", "aw"},
	{"URLGUARD_DENY_CIDRS", "", "CIDRS", "comma-separated CIDRs refused like private ranges at registration and at dial time: the provider's own public ranges (egress NAT, VPC IPv6, anything that allow-lists it); wins over URLGUARD_ALLOW_CIDRS", "aw"},
	{"URLGUARD_ALLOWED_PORTS", "", "PORTS", "comma-separated ports webhooks may use, e.g. 443,8443; empty allows every port", "aw"},
	{"URLGUARD_ALLOW_CIDRS", "", "CIDRS", "TESTS/STAGING ONLY: comma-separated CIDRs exempted from the URL guard; in split mode set it on the api too (registration) as well as the worker (dial)", "aw"},
	{"WEBHOOK_CA_FILE", "", "FILE", "TESTS/STAGING ONLY: PEM file of extra trusted root CAs for receivers", "w"},
	{"RETRY_SCHEDULE", "", "LIST", "TESTS/STAGING ONLY: nine comma-separated durations replacing the published retry schedule (set it on the api too: deliveries show and GET /v1/deliveries/{id} compute nextAttemptAt from it)", "aw"},
	{"RECONCILE_GRACE", "", "DURATION", "TESTS/STAGING ONLY: how long an active delivery without a lease waits before it is recovered; default DELIVERY_TIMEOUT+10s", "w"},
}

// modeDefaults are defaults that differ by mode, so that one api and one
// worker started with default settings on one host do not clash.
var modeDefaults = map[string]map[string]string{
	"api": {"METRICS_ADDR": ":9091"},
}

// relevant reports whether mode reads s (all reads everything).
func (s setting) relevant(mode string) bool {
	switch mode {
	case "api":
		return strings.ContainsRune(s.modes, 'a')
	case "worker":
		return strings.ContainsRune(s.modes, 'w')
	}
	return true
}

func (s setting) defaultFor(mode string) string {
	if d, ok := modeDefaults[mode][s.env]; ok {
		return d
	}
	return s.def
}

// config is the parsed configuration.
type config struct {
	RedisURL          string
	PreviousRedisURL  string // migration: the datastore being moved away from; "" when none
	PreviousShards    int
	APIAddr           string
	MetricsAddr       string
	APIToken          string
	Concurrency       int
	HostConcurrency   int
	HostScope         string
	QueueShards       int
	ShardGroups       int
	FetchLoops        int
	MinReplicas       int
	DeliveryTimeout   time.Duration
	PollInterval      time.Duration
	ForwardInterval   time.Duration
	Retention         time.Duration
	DedupeWindow      time.Duration
	MarkerBuckets     int
	DeliveredLogTTL   time.Duration
	ShutdownTimeout   time.Duration
	LogLevel          string
	Pprof             bool
	PprofAddr         string
	AllowCIDRs        []netip.Prefix
	DenyCIDRs         []netip.Prefix
	AllowedPorts      []uint16
	CAFile            string
	SigningKeyFile    string
	Schedule          schedule.Schedule
	ScheduleOverriden bool
	MonitorPassword   string
	MaxInflightBytes  int64 // -1: no cap
	ReconcileInterval time.Duration
	ReconcileGrace    time.Duration
	FailedRetention   time.Duration // 0 keeps failed deliveries until purged
	AllowEvicting     bool
}

func flagName(env string) string { return strings.ToLower(strings.ReplaceAll(env, "_", "-")) }

// modeSummaries head each server's usage.
var modeSummaries = map[string]string{
	"all":    "The enqueue API and the delivery workers in one process (the default command).",
	"api":    "The enqueue API only (plus asynqmon at /monitoring/ and the queue gauges).",
	"worker": "Delivery workers only; run as many as you like on one Redis.",
}

// printSettings writes mode's usage: the settings it reads, each with its
// value name, meaning, variable and documented default (never its current
// value, which may be a secret).
func printSettings(w io.Writer, mode string) {
	fmt.Fprintf(w, "usage: dispatcher %s [flags]\n\n%s\n\nEvery setting is an environment variable and also a flag of the same name in\nlower case with dashes; the flag wins. Exit status: 0 ok, 1 failure, 2 usage.\n\n", mode, modeSummaries[mode])
	for _, s := range settings {
		if !s.relevant(mode) {
			continue
		}
		def := ""
		if d := s.defaultFor(mode); d != "" {
			def = fmt.Sprintf("; default %q", d)
		}
		fmt.Fprintf(w, "  -%s %s\n    \t%s (env %s%s)\n", flagName(s.env), s.value, s.help, s.env, def)
	}
}

// errHelp means -h or --help was asked for: the caller prints the usage on
// stdout and exits 0.
var errHelp = errors.New("help requested")

// loadConfig reads the settings mode uses from args (flags) over getenv over
// defaults; the other settings come from getenv or their defaults. A
// *_FILE setting supplies its secret from a file. It returns errHelp for -h.
func loadConfig(mode string, args []string, getenv func(string) string) (config, []string, error) {
	fs := flag.NewFlagSet(mode, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are returned once; usage is printed on request only
	fs.Usage = func() {}
	flags := make(map[string]*string, len(settings))
	for _, s := range settings {
		if s.relevant(mode) {
			flags[s.env] = fs.String(flagName(s.env), "", s.help)
		}
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return config{}, nil, errHelp
		}
		return config{}, nil, errUsage{fmt.Errorf("%w (dispatcher %s -h lists the settings)", err, mode)}
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	values := make(map[string]string, len(settings))
	for _, s := range settings {
		v := getenv(s.env)
		if set[flagName(s.env)] {
			v = *flags[s.env]
		}
		values[s.env] = v
	}
	var errs []error
	for _, secret := range []string{"REDIS_URL", "PREVIOUS_REDIS_URL", "API_TOKEN", "MONITORING_PASSWORD"} {
		file := values[secret+"_FILE"]
		if set[flagName(secret)] {
			file = "" // the flag wins over the environment, files included
		}
		v, err := fromFile(secret, values[secret], file)
		if err != nil {
			errs = append(errs, err)
		}
		values[secret] = v
	}
	for _, s := range settings {
		if values[s.env] == "" {
			values[s.env] = s.defaultFor(mode)
		}
	}
	get := func(env string) string { return strings.TrimSpace(values[env]) }

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
		HostScope:       get("HOST_CONCURRENCY_SCOPE"),
		QueueShards:     intVal("QUEUE_SHARDS", 1),
		ShardGroups:     intVal("WORKER_SHARD_GROUPS", 0),
		FetchLoops:      intVal("WORKER_FETCH_LOOPS", 0),
		MinReplicas:     intVal("ENQUEUE_MIN_REPLICAS", 0),
		DeliveryTimeout: durVal("DELIVERY_TIMEOUT"),
		PollInterval:    durVal("POLL_INTERVAL"),
		ForwardInterval: durVal("FORWARD_INTERVAL"),
		Retention:       durVal("RETENTION"),
		ShutdownTimeout: durVal("SHUTDOWN_TIMEOUT"),
		LogLevel:        get("LOG_LEVEL"),
		PprofAddr:       get("PPROF_ADDR"),
		CAFile:          get("WEBHOOK_CA_FILE"),
		SigningKeyFile:  get("SIGNING_KEY_FILE"),
	}
	cfg.MonitorPassword = get("MONITORING_PASSWORD")
	if cfg.MaxInflightBytes = int64(intVal("API_MAX_INFLIGHT_BYTES", 0)); cfg.MaxInflightBytes == 0 {
		cfg.MaxInflightBytes = -1
	}
	cfg.ReconcileInterval = durVal("RECONCILE_INTERVAL")
	cfg.DedupeWindow = durVal("DEDUPE_WINDOW")
	cfg.MarkerBuckets = intVal("DELIVERED_MARKER_BUCKETS", 1)
	cfg.DeliveredLogTTL = durVal("ATTEMPT_LOG_RETENTION")
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
	if cfg.QueueShards > queue.MaxShards {
		errs = append(errs, fmt.Errorf("QUEUE_SHARDS: want at most %d, got %d", queue.MaxShards, cfg.QueueShards))
	}
	cfg.PreviousRedisURL, cfg.PreviousShards = get("PREVIOUS_REDIS_URL"), intVal("PREVIOUS_QUEUE_SHARDS", 1)
	errs = append(errs, cfg.checkPrevious()...)
	switch cfg.HostScope {
	case "fleet", "process":
	default:
		errs = append(errs, fmt.Errorf("HOST_CONCURRENCY_SCOPE: want fleet or process, got %q", cfg.HostScope))
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
	if cfg.DenyCIDRs, err = urlguard.ParseDenyList(get("URLGUARD_DENY_CIDRS")); err != nil {
		errs = append(errs, fmt.Errorf("URLGUARD_DENY_CIDRS: %w", err))
	}
	if cfg.AllowedPorts, err = urlguard.ParsePortList(get("URLGUARD_ALLOWED_PORTS")); err != nil {
		errs = append(errs, fmt.Errorf("URLGUARD_ALLOWED_PORTS: %w", err))
	}
	cfg.Schedule, err = schedule.Parse(get("RETRY_SCHEDULE"))
	if err != nil {
		errs = append(errs, fmt.Errorf("RETRY_SCHEDULE: %w", err))
	}
	cfg.ScheduleOverriden = get("RETRY_SCHEDULE") != ""
	if cfg.Retention > 0 && cfg.Retention < time.Hour {
		errs = append(errs, fmt.Errorf("RETENTION: want at least 1h, got %s", cfg.Retention))
	}
	if cfg.DedupeWindow > 0 && cfg.Retention > 0 && cfg.DedupeWindow < cfg.Retention {
		errs = append(errs, fmt.Errorf("DEDUPE_WINDOW: want at least RETENTION (%s), got %s", cfg.Retention, cfg.DedupeWindow))
	}
	if len(errs) > 0 {
		return config{}, nil, errors.Join(errs...)
	}
	return cfg, fs.Args(), nil
}

// guard is the URL guard the configuration describes.
func (c config) guard() *urlguard.Guard {
	return urlguard.NewWithOptions(urlguard.Options{Allow: c.AllowCIDRs, Deny: c.DenyCIDRs, AllowedPorts: c.AllowedPorts})
}

// fromFile returns value, or the trimmed content of file when value is
// empty; both set is an error (which one would win is a guess). Errors never
// hold the secret.
func fromFile(name, value, file string) (string, error) {
	file = strings.TrimSpace(file)
	if file == "" {
		return value, nil
	}
	if value != "" {
		return "", fmt.Errorf("%s and %s_FILE are both set: set one", name, name)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("%s_FILE: %w", name, err)
	}
	v := strings.TrimSpace(string(b))
	if v == "" {
		return "", fmt.Errorf("%s_FILE: %s is empty", name, file)
	}
	return v, nil
}

// secretFromEnv reads name from the environment or from name_FILE.
func secretFromEnv(getenv func(string) string, name string) (string, error) {
	return fromFile(name, getenv(name), getenv(name+"_FILE"))
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
