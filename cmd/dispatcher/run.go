package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
)

const usage = `usage: dispatcher [command] [flags]

Commands:
  all                 enqueue API and delivery workers in one process (default)
  api                 enqueue API only
  worker              delivery workers only
  check-url URL       print the URL guard's verdict; exit 1 when refused
  deliveries list     list failed deliveries (--state failed --limit N --cursor C)
  deliveries show ID  show one delivery with its attempt log
  deliveries redeliver ID | --since RFC3339
                      queue failed deliveries again for a fresh cycle of attempts
  deliveries purge --state failed --before RFC3339 [--dry-run]
                      delete failed deliveries that failed before the time; frees their ids
  enqueue --file F    send a JSON-lines file of deliveries to the API in batches
  healthcheck URL     GET URL, exit 0 on 200 (container health checks)
  version             print the version

Every setting is an environment variable and also a flag: run
"dispatcher all -h" for the list with defaults.
`

// run dispatches the command line; it returns when the command is done or,
// for the servers, when ctx ends.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cmd := "all"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "all", "api", "worker":
		cfg, rest, err := loadConfig(cmd, args, getenv, stderr)
		if err != nil {
			return fmt.Errorf("config: %w", err)
		}
		if len(rest) > 0 {
			return errUsage{fmt.Errorf("%s takes no arguments, got %q", cmd, rest)}
		}
		return serve(ctx, cmd, cfg, stdout, stderr)
	case "check-url":
		return checkURLCommand(args, getenv, stdout, stderr)
	case "deliveries":
		return deliveriesCommand(ctx, args, getenv, stdout, stderr)
	case "enqueue":
		return enqueueCommand(ctx, args, getenv, stdout, stderr)
	case "healthcheck":
		return healthcheckCommand(ctx, args)
	case "version":
		fmt.Fprintf(stdout, "dispatcher %s (commit %s)\n", version, commit)
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return errUsage{fmt.Errorf("unknown command %q", cmd)}
	}
}

// errRefused makes check-url exit 1 without printing a second message.
var errRefused = errors.New("refused")

func exitCode(err error) int {
	var u errUsage
	if errors.As(err, &u) {
		return 2
	}
	return 1
}
