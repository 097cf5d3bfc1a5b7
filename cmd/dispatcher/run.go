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
  deliveries list     list deliveries by state, host and time (--state S --host H --since T --json)
  deliveries show ID  show one delivery with its attempt log
  deliveries redeliver ID | --since T [--until T] [--host H] [--dry-run]
                      queue failed deliveries again for a fresh cycle of attempts
  deliveries cancel ID | --host H [--since T] [--until T] [--dry-run]
                      stop pending, scheduled or retrying deliveries (they end failed, "cancelled")
  queue stats         counts per state, oldest pending age, top destinations by backlog
  deliveries purge --state failed --before RFC3339 [--dry-run]
                      delete failed deliveries that failed before the time; frees their ids
  enqueue --file F    send a JSON-lines file of deliveries to the API in batches
  healthcheck URL     GET URL, exit 0 on 200 (container health checks)
  signing-keygen      print a new v1a signing key, to append to SIGNING_KEY_FILE
  signing-keys        list the public keys of SIGNING_KEY_FILE, to publish (--json)
  test-send URL       one real, signed, guarded test webhook to URL now; prints the result
  version, --version  print the version

"dispatcher COMMAND -h" prints a command's flags; "dispatcher all -h" (or api,
worker) lists every setting with its default.

Exit status: 0 success, 1 failure (including a refused URL or an unreachable
Redis), 2 usage error (unknown command or flag, missing argument).
`

// run dispatches the command line; it returns when the command is done or,
// for the servers, when ctx ends.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	err := dispatch(ctx, args, getenv, stdout, stderr)
	if errors.Is(err, errHelp) {
		return nil // the usage went to stdout: help is success
	}
	return err
}

func dispatch(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cmd := "all"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	} else if len(args) > 0 {
		switch args[0] {
		case "-h", "-help", "--help":
			fmt.Fprint(stdout, usage)
			return nil
		case "-version", "--version":
			cmd, args = "version", args[1:]
		}
	}
	switch cmd {
	case "all", "api", "worker":
		cfg, rest, err := loadConfig(cmd, args, getenv)
		if errors.Is(err, errHelp) {
			printSettings(stdout, cmd)
			return nil
		}
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
	case "queue":
		return queueCommand(ctx, args, getenv, stdout, stderr)
	case "enqueue":
		return enqueueCommand(ctx, args, getenv, stdout, stderr)
	case "signing-keygen":
		return signingKeygenCommand(args, stdout, stderr)
	case "signing-keys":
		return signingKeysCommand(args, getenv, stdout, stderr)
	case "test-send":
		return testSendCommand(ctx, args, getenv, stdout, stderr)
	case "healthcheck":
		return healthcheckCommand(ctx, args)
	case "version":
		fmt.Fprintf(stdout, "dispatcher %s (commit %s)\n", version, commit)
		return nil
	case "help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return errUsage{fmt.Errorf("unknown command %q", cmd)}
	}
}

// errRefused makes check-url exit 1 without printing a second message.
var errRefused = errors.New("refused")

// exitCode is the documented exit status: 2 for usage errors, 1 for any
// other failure.
func exitCode(err error) int {
	var u errUsage
	if errors.As(err, &u) {
		return 2
	}
	return 1
}

// errorLine is the one line main prints for err: "dispatcher: " once, even
// when the error text starts with a package prefix of the same name.
func errorLine(err error) string {
	return "dispatcher: " + strings.TrimPrefix(err.Error(), "dispatcher: ")
}
