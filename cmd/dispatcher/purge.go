package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/artificialstudio/webhook-dispatcher/dispatcher"
)

// purgeCommand is `dispatcher deliveries purge --state failed --before T
// [--dry-run]`: it deletes failed deliveries that failed before T (their
// failed record, asynq's archived task and the attempt log) and frees their
// ids, or with --dry-run only counts them. Deliveries back in progress are
// skipped.
func purgeCommand(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("deliveries purge", flag.ContinueOnError)
	fs.SetOutput(stderr)
	redisURL := fs.String("redis-url", "", "Redis `URI` (default $REDIS_URL; visible in ps: prefer the environment or REDIS_URL_FILE)")
	state := fs.String("state", "", "`state` to purge (only failed)")
	before := fs.String("before", "", "purge deliveries that failed before this RFC 3339 `time`")
	dryRun := fs.Bool("dry-run", false, "only count what would be purged")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return errUsage{err}
	}
	if dispatcher.State(*state) != dispatcher.StateFailed || *before == "" || fs.NArg() != 0 {
		return errUsage{errors.New("usage: dispatcher deliveries purge --state failed --before RFC3339 [--dry-run]")}
	}
	t, err := time.Parse(time.RFC3339Nano, *before)
	if err != nil {
		return errUsage{fmt.Errorf("--before: want an RFC 3339 time such as 2024-01-15T00:00:00Z: %w", err)}
	}
	svc, closeSvc, err := openService(getenv, *redisURL)
	if err != nil {
		return err
	}
	defer closeSvc()
	n, err := svc.PurgeFailed(ctx, t, *dryRun)
	if *dryRun {
		fmt.Fprintf(stdout, "would purge %d failed deliveries (failed before %s)\n", n, t.UTC().Format(time.RFC3339))
	} else {
		fmt.Fprintf(stdout, "purged %d failed deliveries (failed before %s)\n", n, t.UTC().Format(time.RFC3339))
	}
	return err
}
