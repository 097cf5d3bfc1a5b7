package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/artificialstudio/webhook-dispatcher/dispatcher"
	"github.com/artificialstudio/webhook-dispatcher/dispatcher/api"
	"github.com/artificialstudio/webhook-dispatcher/dispatcher/queue"
	"github.com/artificialstudio/webhook-dispatcher/dispatcher/store"
	"github.com/artificialstudio/webhook-dispatcher/urlguard"
)

func checkURLCommand(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) != 1 {
		return errUsage{errors.New("usage: dispatcher check-url URL")}
	}
	allow, err := urlguard.ParseAllowList(getenv("URLGUARD_ALLOW_CIDRS"))
	if err != nil {
		return fmt.Errorf("config: URLGUARD_ALLOW_CIDRS: %w", err)
	}
	if err := urlguard.New(allow...).CheckURL(args[0]); err != nil {
		fmt.Fprintf(stdout, "refused: %v\n", err)
		return errRefused
	}
	fmt.Fprintln(stdout, "ok: the URL may be registered (its addresses are checked again at every connection)")
	return nil
}

// openService connects the operator commands to REDIS_URL.
func openService(getenv func(string) string, redisURL string) (*queue.Service, func(), error) {
	if redisURL == "" {
		redisURL = getenv("REDIS_URL")
	}
	if redisURL == "" {
		return nil, nil, errors.New("REDIS_URL (or --redis-url) is required")
	}
	opt, err := asynq.ParseRedisURI(redisURL)
	if err != nil {
		return nil, nil, errors.New("REDIS_URL is not a valid redis URI")
	}
	rdb, ok := opt.MakeRedisClient().(redis.UniversalClient)
	if !ok {
		return nil, nil, errors.New("redis: unexpected client type")
	}
	client := asynq.NewClientFromRedisClient(rdb)
	svc := &queue.Service{
		Client:    client,
		Inspector: asynq.NewInspectorFromRedisClient(rdb),
		Store:     store.New(rdb, 0),
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

func deliveriesCommand(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errUsage{errors.New("usage: dispatcher deliveries list|show|redeliver ...")}
	}
	sub, args := args[0], args[1:]
	if sub == "purge" {
		return purgeCommand(ctx, args, getenv, stdout, stderr)
	}
	fs := flag.NewFlagSet("deliveries "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	redisURL := fs.String("redis-url", "", "Redis URI (default $REDIS_URL)")
	state := fs.String("state", "failed", "state to list (only failed)")
	limit := fs.Int("limit", 50, "deliveries per page")
	cursor := fs.String("cursor", "", "cursor from the previous page")
	since := fs.String("since", "", "redeliver every delivery that failed at or after this RFC 3339 time")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args); err != nil {
		return errUsage{err}
	}
	svc, closeSvc, err := openService(getenv, *redisURL)
	if err != nil {
		return err
	}
	defer closeSvc()

	switch sub {
	case "list":
		if dispatcher.State(*state) != dispatcher.StateFailed {
			return errUsage{errors.New("--state: only \"failed\" can be listed")}
		}
		list, next, err := svc.ListFailed(ctx, *cursor, *limit)
		if err != nil {
			return err
		}
		if *asJSON {
			return printJSON(stdout, map[string]any{"deliveries": list, "nextCursor": next})
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tFAILED AT\tWEBHOOK HOST\tLAST ERROR")
		for _, d := range list {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", d.ID, d.FailedAt.Format(time.RFC3339), hostOf(d.Webhook), oneLine(d.LastError, 80))
		}
		tw.Flush()
		fmt.Fprintf(stdout, "%d shown", len(list))
		if next != "" {
			fmt.Fprintf(stdout, "; next page: dispatcher deliveries list --cursor %s", next)
		}
		fmt.Fprintln(stdout)
		return nil
	case "show":
		if fs.NArg() != 1 {
			return errUsage{errors.New("usage: dispatcher deliveries show ID")}
		}
		st, err := svc.Status(ctx, fs.Arg(0))
		if err != nil {
			return err
		}
		return printJSON(stdout, st)
	case "redeliver":
		switch {
		case *since != "" && fs.NArg() == 0:
			t, err := time.Parse(time.RFC3339Nano, *since)
			if err != nil {
				return errUsage{fmt.Errorf("--since: want an RFC 3339 time such as 2024-01-15T00:00:00Z: %w", err)}
			}
			n, err := svc.RedeliverFailedSince(ctx, t)
			fmt.Fprintf(stdout, "queued %d failed deliveries again\n", n)
			return err
		case *since == "" && fs.NArg() == 1:
			if err := svc.Redeliver(ctx, fs.Arg(0)); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "queued %s again for a fresh cycle of attempts\n", fs.Arg(0))
			return nil
		default:
			return errUsage{errors.New("usage: dispatcher deliveries redeliver ID | --since RFC3339")}
		}
	default:
		return errUsage{fmt.Errorf("unknown deliveries command %q (list, show, redeliver)", sub)}
	}
}

// enqueueCommand streams a JSON-lines file to POST /v1/deliveries/batch.
func enqueueCommand(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("enqueue", flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("file", "", "JSON-lines file, one {\"webhook\":…,\"generation\":{…}} per line; - for stdin")
	apiURL := fs.String("api", envOr(getenv, "API_URL", "http://127.0.0.1:8080"), "API base URL (env API_URL)")
	batchSize := fs.Int("batch", 100, "deliveries per request (at most 500)")
	if err := fs.Parse(args); err != nil {
		return errUsage{err}
	}
	token := getenv("API_TOKEN")
	if *file == "" || token == "" {
		return errUsage{errors.New("usage: API_TOKEN=… dispatcher enqueue --file deliveries.jsonl [--api URL]")}
	}
	if *batchSize < 1 || *batchSize > api.MaxBatchItems {
		return errUsage{fmt.Errorf("--batch must be 1..%d", api.MaxBatchItems)}
	}
	var in io.Reader = os.Stdin
	if *file != "-" {
		f, err := os.Open(*file)
		if err != nil {
			return err
		}
		defer f.Close()
		in = f
	}

	var sum struct{ accepted, duplicate, refused, invalid, failed, lines int }
	client := &http.Client{Timeout: 60 * time.Second}
	var lineNo []int // line number of each batch item, for messages
	send := func(batch []json.RawMessage, firstLine int) error {
		body, err := json.Marshal(map[string]any{"deliveries": batch})
		if err != nil {
			return fmt.Errorf("lines %d–%d: %w", firstLine, lineNo[len(lineNo)-1], err)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(*apiURL, "/")+"/v1/deliveries/batch", bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := client.Do(req)
		if err != nil {
			return fmt.Errorf("lines %d–%d: %w", firstLine, lineNo[len(lineNo)-1], err)
		}
		defer resp.Body.Close()
		var out struct {
			Results []api.BatchResult `json:"results"`
			Error   string            `json:"error"`
		}
		if err := json.NewDecoder(io.LimitReader(resp.Body, 8<<20)).Decode(&out); err != nil || resp.StatusCode != http.StatusOK {
			return fmt.Errorf("lines %d–%d: API answered %s %s", firstLine, lineNo[len(lineNo)-1], resp.Status, out.Error)
		}
		if len(out.Results) != len(batch) {
			return fmt.Errorf("lines %d–%d: API answered %d results for %d items", firstLine, lineNo[len(lineNo)-1], len(out.Results), len(batch))
		}
		for i, r := range out.Results {
			switch r.Status {
			case http.StatusAccepted:
				sum.accepted++
				continue
			case http.StatusConflict:
				sum.duplicate++
				continue
			case http.StatusUnprocessableEntity:
				sum.refused++
			case http.StatusBadRequest:
				sum.invalid++
			default:
				sum.failed++
			}
			fmt.Fprintf(stderr, "line %d (%s): %d %s\n", lineNo[i], r.ID, r.Status, r.Error)
		}
		return nil
	}

	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), api.MaxRequestBytes)
	var batch []json.RawMessage
	first := 1
	lastProgress := time.Now()
	for sc.Scan() {
		sum.lines++
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		if !json.Valid(line) {
			// The API would reject the whole batch envelope; report the line here.
			sum.invalid++
			fmt.Fprintf(stderr, "line %d: not valid JSON\n", sum.lines)
			continue
		}
		if len(batch) == 0 {
			first = sum.lines
		}
		lineNo = append(lineNo, sum.lines)
		batch = append(batch, json.RawMessage(bytes.Clone(line)))
		if len(batch) == *batchSize {
			if err := send(batch, first); err != nil {
				return err
			}
			batch, lineNo = batch[:0], lineNo[:0]
			if time.Since(lastProgress) > time.Second {
				fmt.Fprintf(stderr, "progress: %d lines, %d accepted\n", sum.lines, sum.accepted)
				lastProgress = time.Now()
			}
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read %s: %w", *file, err)
	}
	if len(batch) > 0 {
		if err := send(batch, first); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "%d lines: %d accepted, %d duplicate, %d refused by the URL guard, %d invalid, %d failed (resend these)\n",
		sum.lines, sum.accepted, sum.duplicate, sum.refused, sum.invalid, sum.failed)
	if sum.failed > 0 {
		return fmt.Errorf("%d deliveries were not stored", sum.failed)
	}
	return nil
}

func healthcheckCommand(ctx context.Context, args []string) error {
	if len(args) != 1 {
		return errUsage{errors.New("usage: dispatcher healthcheck URL")}
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, args[0], nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s answered %s", args[0], resp.Status)
	}
	return nil
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

func envOr(getenv func(string) string, key, def string) string {
	if v := getenv(key); v != "" {
		return v
	}
	return def
}

func hostOf(raw string) string {
	if i := strings.Index(raw, "://"); i >= 0 {
		raw = raw[i+3:]
	}
	if i := strings.IndexAny(raw, "/?#"); i >= 0 {
		raw = raw[:i]
	}
	return raw
}

func oneLine(s string, max int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > max {
		return s[:max] + "…"
	}
	return s
}
