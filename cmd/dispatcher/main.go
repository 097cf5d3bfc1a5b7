// Command dispatcher runs the webhook delivery dispatcher: the enqueue API, the
// delivery workers, or both, plus operator commands. See the README.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

// Set at build time with -ldflags "-X main.version=… -X main.commit=…".
var (
	version = "dev"
	commit  = "unknown"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, errRefused) { // check-url has printed its verdict
			fmt.Fprintln(os.Stderr, errorLine(err))
		}
		os.Exit(exitCode(err))
	}
}
