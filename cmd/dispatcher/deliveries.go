package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/artificialstudio/webhook-dispatcher/dispatcher"
	"github.com/artificialstudio/webhook-dispatcher/dispatcher/api"
	"github.com/artificialstudio/webhook-dispatcher/dispatcher/queue"
	"github.com/artificialstudio/webhook-dispatcher/dispatcher/store"
	"github.com/artificialstudio/webhook-dispatcher/schedule"
)

// The queue service is the API's operator side too.
var _ api.Operations = (*queue.Service)(nil)

// parseFlags parses args with fs and returns the positional arguments.
// Flags may follow positional ones ("deliveries show ID --json"); "--" ends
// the flags. -h prints fs's usage on stdout and returns errHelp (exit 0);
// a bad flag returns a usage error (exit 2) naming the help command.
func parseFlags(fs *flag.FlagSet, args []string, stdout io.Writer) ([]string, error) {
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fs.SetOutput(stdout)
				fmt.Fprintf(stdout, "usage: dispatcher %s\n\nFlags:\n", fs.Name())
				fs.PrintDefaults()
				return nil, errHelp
			}
			return nil, errUsage{fmt.Errorf("%w (dispatcher %s -h lists the flags)", err, fs.Name())}
		}
		rest := fs.Args()
		consumed := len(args) - len(rest)
		if consumed > 0 && args[consumed-1] == "--" {
			return append(pos, rest...), nil
		}
		if len(rest) == 0 {
			return pos, nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// openService connects the operator commands to REDIS_URL (or the
// --redis-url flag, or REDIS_URL_FILE), with RETRY_SCHEDULE and RETENTION as
// the servers read them.
func openService(getenv func(string) string, redisURL string) (*queue.Service, func(), error) {
	if redisURL == "" {
		var err error
		if redisURL, err = secretFromEnv(getenv, "REDIS_URL"); err != nil {
			return nil, nil, errUsage{err}
		}
	}
	if redisURL == "" {
		return nil, nil, errUsage{errors.New("REDIS_URL (or REDIS_URL_FILE, or --redis-url) is required")}
	}
	sched, err := schedule.Parse(getenv("RETRY_SCHEDULE"))
	if err != nil {
		return nil, nil, errUsage{fmt.Errorf("RETRY_SCHEDULE: %w", err)}
	}
	var rdb redis.UniversalClient
	if isClusterURL(redisURL) {
		opt, err := parseClusterURL(redisURL)
		if err != nil {
			return nil, nil, errUsage{err}
		}
		rdb = clusterClient(opt, 10)
	} else {
		opt, err := asynq.ParseRedisURI(redisURL)
		if err != nil {
			return nil, nil, errUsage{errors.New("REDIS_URL is not a valid redis URI")}
		}
		var ok bool
		if rdb, ok = opt.MakeRedisClient().(redis.UniversalClient); !ok {
			return nil, nil, errors.New("redis: unexpected client type")
		}
	}
	shards := 1
	if s := getenv("QUEUE_SHARDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			rdb.Close()
			return nil, nil, errUsage{fmt.Errorf("QUEUE_SHARDS: want an integer, got %q", s)}
		}
		shards = n
	}
	_, cluster := rdb.(*redis.ClusterClient)
	layout, err := queue.NewLayout(shards, cluster)
	if err != nil {
		rdb.Close()
		return nil, nil, errUsage{fmt.Errorf("QUEUE_SHARDS: %w", err)}
	}
	// A command reports its own error once; go-redis's retry chatter (plain
	// text on stderr by default) would only repeat it.
	routeRedisLogs(slog.New(slog.DiscardHandler))
	client := asynq.NewClientFromRedisClient(rdb)
	st := store.New(rdb, 0)
	st.UseShards(layout.Tag, layout.Tags())
	window, _ := time.ParseDuration(getenv("DEDUPE_WINDOW"))
	buckets, _ := strconv.Atoi(getenv("DELIVERED_MARKER_BUCKETS"))
	st.Dedupe(window, buckets, 0) // unset or unreadable: the defaults
	svc := &queue.Service{
		Client:    client,
		Inspector: asynq.NewInspectorFromRedisClient(rdb),
		Store:     st,
		Layout:    layout,
		Schedule:  sched,
	}
	if n, err := strconv.Atoi(getenv("ENQUEUE_MIN_REPLICAS")); err == nil && n > 0 {
		svc.MinReplicas = n
	}
	if s := getenv("RETENTION"); s != "" {
		if d, err := time.ParseDuration(s); err == nil {
			svc.Retention = d
		}
	}
	return svc, func() { client.Close(); rdb.Close() }, nil
}

const deliveriesUsage = `usage: dispatcher deliveries COMMAND [flags]

Commands:
  list [--state S] [--host H] [--since T] [--limit N] [--cursor C] [--json]
        deliveries in state S: pending, scheduled, active, retrying, delivered, failed (default failed)
  show ID
        one delivery with its attempt log (JSON)
  redeliver ID | [--host H] [--since T] [--until T] [--dry-run]
        queue failed deliveries again for a fresh cycle of attempts
  cancel ID | --host H [--since T] [--until T] [--dry-run]
        stop pending, scheduled or retrying deliveries: they end failed, lastError "cancelled"
  purge --state failed --before T [--dry-run]
        delete failed deliveries that failed before T and free their ids (counts first with --dry-run)

Times are RFC 3339 (2024-01-15T00:00:00Z). Every command reads REDIS_URL (or
REDIS_URL_FILE, or --redis-url). "dispatcher deliveries COMMAND -h" lists its flags.
`

func deliveriesCommand(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, deliveriesUsage)
		return errUsage{errors.New("deliveries: missing command (list, show, redeliver, cancel, purge)")}
	}
	sub, args := args[0], args[1:]
	switch sub {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, deliveriesUsage)
		return nil
	case "purge":
		return purgeCommand(ctx, args, getenv, stdout, stderr)
	case "list", "show", "redeliver", "cancel":
	default:
		fmt.Fprint(stderr, deliveriesUsage)
		return errUsage{fmt.Errorf("unknown deliveries command %q (list, show, redeliver, cancel, purge)", sub)}
	}
	fs := flag.NewFlagSet("deliveries "+sub, flag.ContinueOnError)
	redisURL := fs.String("redis-url", "", "Redis `URI` (default $REDIS_URL; visible in ps: prefer the environment or REDIS_URL_FILE)")
	var (
		state, host, since, until, cursor *string
		limit                             *int
		asJSON, dryRun                    *bool
	)
	switch sub {
	case "list":
		state = fs.String("state", "failed", "list deliveries in this `state`: pending, scheduled, active, retrying, delivered or failed")
		limit = fs.Int("limit", 50, "deliveries per `page` (1-1000)")
		cursor = fs.String("cursor", "", "the `cursor` printed after the previous page")
		asJSON = fs.Bool("json", false, "print JSON")
	case "show":
		asJSON = fs.Bool("json", true, "print JSON (the only format)")
	case "redeliver", "cancel":
		until = fs.String("until", "", "only deliveries enqueued (redeliver: failed) before this RFC 3339 `time`")
		dryRun = fs.Bool("dry-run", false, "print how many deliveries match; change nothing")
	}
	if sub != "show" {
		host = fs.String("host", "", "only deliveries whose webhook goes to this `host` (any case, no port)")
		since = fs.String("since", "", "only deliveries enqueued (redeliver and failed: failed) at or after this RFC 3339 `time`")
	}
	pos, err := parseFlags(fs, args, stdout)
	if err != nil {
		return err
	}
	f := dispatcher.Filter{}
	if host != nil {
		f.Host = *host
	}
	if since != nil {
		if f.Since, err = flagTime("--since", *since); err != nil {
			return err
		}
	}
	if until != nil {
		if f.Until, err = flagTime("--until", *until); err != nil {
			return err
		}
	}
	switch sub {
	case "list":
		f.State = dispatcher.State(*state)
		if !validState(f.State) {
			return errUsage{fmt.Errorf("--state: want one of pending, scheduled, active, retrying, delivered, failed; got %q", *state)}
		}
		if len(pos) > 0 {
			return errUsage{fmt.Errorf("deliveries list takes no arguments, got %q", pos)}
		}
		if *limit < 1 || *limit > api.MaxListLimit {
			return errUsage{fmt.Errorf("--limit: want 1 to %d, got %d", api.MaxListLimit, *limit)}
		}
	case "show":
		if len(pos) != 1 {
			return errUsage{errors.New("usage: dispatcher deliveries show ID")}
		}
	case "redeliver":
		if len(pos) > 1 || (len(pos) == 1) == (f != dispatcher.Filter{} || *dryRun) || (len(pos) == 0 && f == dispatcher.Filter{}) {
			return errUsage{errors.New("usage: dispatcher deliveries redeliver ID | --since T [--until T] [--host H] [--dry-run]")}
		}
	case "cancel":
		if len(pos) > 1 || (len(pos) == 1) == (f != dispatcher.Filter{} || *dryRun) || (len(pos) == 0 && f.Host == "") {
			return errUsage{errors.New("usage: dispatcher deliveries cancel ID | --host H [--since T] [--until T] [--dry-run]")}
		}
	}

	svc, closeSvc, err := openService(getenv, *redisURL)
	if err != nil {
		return err
	}
	defer closeSvc()

	switch sub {
	case "list":
		list, next, err := svc.List(ctx, f, *cursor, *limit)
		if err != nil {
			if errors.Is(err, dispatcher.ErrBadCursor) {
				return errUsage{err}
			}
			return err
		}
		if *asJSON {
			return printJSON(stdout, map[string]any{"deliveries": list, "nextCursor": next})
		}
		printList(stdout, f.State, list)
		fmt.Fprintf(stdout, "%d shown", len(list))
		if next != "" {
			fmt.Fprintf(stdout, "; next page: dispatcher deliveries list --state %s --cursor %s", f.State, next)
		}
		fmt.Fprintln(stdout)
		return nil
	case "show":
		st, err := svc.Status(ctx, pos[0])
		if err != nil {
			return err
		}
		return printJSON(stdout, st)
	case "redeliver":
		if len(pos) == 1 {
			if err := svc.Redeliver(ctx, pos[0]); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "queued %s again for a fresh cycle of attempts\n", pos[0])
			return nil
		}
		res, err := svc.RedeliverFailed(ctx, f, *dryRun, progressPrinter(stderr, "redelivered"))
		if res.DryRun {
			fmt.Fprintf(stdout, "dry run: %d failed deliveries match; nothing changed\n", res.Matched)
			return err
		}
		fmt.Fprintf(stdout, "queued %d failed deliveries again (%d matched, %d skipped: moved on meanwhile)\n", res.Done, res.Matched, res.Skipped)
		return err
	default: // cancel
		if len(pos) == 1 {
			if err := svc.Cancel(ctx, pos[0]); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "cancelled %s: failed with lastError %q, redeliverable\n", pos[0], dispatcher.ReasonCancelled)
			return nil
		}
		res, err := svc.CancelMatching(ctx, f, *dryRun, progressPrinter(stderr, "cancelled"))
		if res.DryRun {
			fmt.Fprintf(stdout, "dry run: %d pending, scheduled or retrying deliveries match; nothing changed\n", res.Matched)
			return err
		}
		fmt.Fprintf(stdout, "cancelled %d deliveries (%d matched, %d skipped: moved on meanwhile)\n", res.Done, res.Matched, res.Skipped)
		return err
	}
}

func validState(s dispatcher.State) bool {
	for _, st := range dispatcher.States() {
		if s == st {
			return true
		}
	}
	return false
}

func flagTime(name, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, errUsage{fmt.Errorf("%s: want an RFC 3339 time such as 2024-01-15T00:00:00Z, got %q", name, s)}
	}
	return t, nil
}

// progressPrinter reports a long bulk action on w at most once a second,
// and always at the end.
func progressPrinter(w io.Writer, verb string) func(done, total int) {
	last := time.Now()
	return func(done, total int) {
		if done == total || time.Since(last) >= time.Second {
			fmt.Fprintf(w, "progress: %s %d of %d\n", verb, done, total)
			last = time.Now()
		}
	}
}

func printList(w io.Writer, state dispatcher.State, list []dispatcher.Status) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	switch state {
	case dispatcher.StateFailed:
		fmt.Fprintln(tw, "ID\tFAILED AT\tWEBHOOK HOST\tLAST ERROR")
		for _, d := range list {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", d.ID, fmtTime(d.FailedAt), dispatcher.CanonicalHost(d.Webhook), oneLine(d.LastError, 80))
		}
	case dispatcher.StateDelivered:
		fmt.Fprintln(tw, "ID\tENQUEUED AT\tDELIVERED AT\tWEBHOOK HOST\tATTEMPTS")
		for _, d := range list {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\n", d.ID, fmtTime(d.EnqueuedAt), fmtTime(d.DeliveredAt), dispatcher.CanonicalHost(d.Webhook), d.AttemptCount)
		}
	default:
		fmt.Fprintln(tw, "ID\tENQUEUED AT\tWEBHOOK HOST\tATTEMPTS\tNEXT ATTEMPT\tLAST ERROR")
		for _, d := range list {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", d.ID, fmtTime(d.EnqueuedAt), dispatcher.CanonicalHost(d.Webhook), d.AttemptCount, fmtTime(d.NextAttemptAt), oneLine(d.LastError, 60))
		}
	}
	tw.Flush()
}

func fmtTime(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.UTC().Format("2006-01-02T15:04:05.000Z")
}

const queueUsage = `usage: dispatcher queue stats [--top N] [--json]

Counts per state, the oldest pending delivery's age, and the destinations with
the largest backlog (pending + retrying) with their latest attempt's outcome.
Reads REDIS_URL (or REDIS_URL_FILE, or --redis-url).
`

// queueCommand runs "queue stats".
func queueCommand(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, queueUsage)
		return errUsage{errors.New("queue: missing command (stats)")}
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, queueUsage)
		return nil
	case "stats":
	default:
		fmt.Fprint(stderr, queueUsage)
		return errUsage{fmt.Errorf("unknown queue command %q (stats)", args[0])}
	}
	fs := flag.NewFlagSet("queue stats", flag.ContinueOnError)
	redisURL := fs.String("redis-url", "", "Redis `URI` (default $REDIS_URL; visible in ps: prefer the environment or REDIS_URL_FILE)")
	top := fs.Int("top", 10, "how many `destinations` to rank")
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := parseFlags(fs, args[1:], stdout)
	if err != nil {
		return err
	}
	if len(pos) > 0 || *top < 1 || *top > 100 {
		return errUsage{errors.New("usage: dispatcher queue stats [--top 1-100] [--json]")}
	}
	svc, closeSvc, err := openService(getenv, *redisURL)
	if err != nil {
		return err
	}
	defer closeSvc()
	st, err := svc.Stats(ctx, *top)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(stdout, st)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STATE\tDELIVERIES")
	for _, s := range dispatcher.States() {
		fmt.Fprintf(tw, "%s\t%d\n", s, st.Counts[s])
	}
	tw.Flush()
	fmt.Fprintf(stdout, "oldest pending: %s\n\n", (time.Duration(st.OldestPendingSeconds * float64(time.Second))).Round(time.Millisecond))
	scope := fmt.Sprintf("all %d pending and retrying deliveries scanned", st.Scanned)
	if !st.Complete {
		scope = fmt.Sprintf("only the first %d pending and retrying deliveries scanned (limit %d): the ranking covers those", st.Scanned, st.ScanLimit)
	}
	fmt.Fprintf(stdout, "top destinations by backlog (%s):\n", scope)
	tw = tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tBACKLOG\tPENDING\tRETRYING\tLAST OUTCOME\tLAST STATUS\tLAST ATTEMPT")
	for _, d := range st.TopDestinations {
		status := "-"
		if d.LastStatus != 0 {
			status = strconv.Itoa(d.LastStatus)
		}
		outcome := string(d.LastOutcome)
		if outcome == "" {
			outcome = "-"
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\t%s\t%s\n", d.Host, d.Backlog, d.Pending, d.Retrying, outcome, status, fmtTime(d.LastAttemptAt))
	}
	tw.Flush()
	return nil
}
