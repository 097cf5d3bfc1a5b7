// Command bench measures the webhook dispatcher against bare asynq on this
// machine. It starts its own redis-server, HTTPS receivers and dispatcher
// processes, on 127.0.0.1 only, and kills them all when it ends (also on
// error or SIGINT; children also get SIGKILL from the kernel if it dies).
//
//	go run ./test/bench [-mode quick|full] [-json out.json] [-n N] [-repeat R]
//	                    [-dests D] [-window D] [-only STEPS] [-profile DIR]
//
// Every figure is the median of R repetitions and is compared with a baseline
// taken in the same run, interleaved with it: the machine is shared, and
// absolute numbers drift between runs. The rows:
//
//  1. bare asynq drain: asynq.Server (the dispatcher's concurrency and poll
//     settings) in this process, one HTTPS POST per task with a shared client.
//  2. dispatcher drain: N deliveries enqueued through the batch API while the
//     queue is paused, then one `dispatcher worker`; unpause → Nth arrival.
//  3. API enqueue: accepted POST /v1/deliveries per second at client
//     concurrency 1, 16, 64, against asynq.Client.Enqueue at the same.
//  4. batch enqueue: accepted items per second in batches of 100 at
//     concurrency 1, 4, 16, against asynq.Client.Enqueue; target ≥ 0.8×.
//  5. latency: enqueue → receiver arrival at 500/s and 2,000/s offered open
//     loop (API + worker processes against bare asynq); the enqueue time is
//     stamped in the delivery id.
//  6. cost: worker and redis-server CPU seconds per 1,000 deliveries during
//     the drain (/proc/PID/stat); Redis commands and read events (≈ round
//     trips) per delivery during the drain (INFO stats); worker peak RSS
//     (VmHWM); Redis bytes per pending and per retrying delivery (INFO
//     used_memory delta).
//  7. isolation: the drain and 500/s latency with every other delivery to an
//     endpoint that never answers, against the same load with that half going
//     to a second healthy endpoint; targets ≥ 0.8× and ≤ 2×.
//  8. scale-out: the drain with two worker processes against one.
//  9. Redis Cluster: the drain with QUEUE_SHARDS 1, 16, 48 on one Redis and
//     16, 48 on a 3-primary cluster (no replicas) against one Redis with one
//     shard; each primary's share of the commands (INFO stats) and Redis CPU
//     per 1k deliveries per node (INFO cpu); the fleet cap against a cap per
//     process on both.
//  10. failover (full mode, or -only failover): a 3+3 Redis Cluster, 48
//     shards, the primary holding the most shards SIGKILLed mid-drain:
//     live primaries' groups' rate during the outage, time from promotion
//     back to 0.9× the rate before, acknowledged deliveries lost.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := runMain(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		stop()
		os.Exit(1)
	}
}

func runMain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	mode := fs.String("mode", "quick", "quick (CI smoke run, well under a minute) or full (~10 minutes)")
	jsonPath := fs.String("json", "", "also write the results as JSON to this file")
	n := fs.Int("n", 0, "deliveries per drain (default: 400 quick, 20000 full)")
	repeat := fs.Int("repeat", 0, "repetitions per measurement, median reported (default: 1 quick, 3 full)")
	dests := fs.Int("dests", 0, "receiver ports (destinations) the drains spread over (default 4)")
	only := fs.String("only", "", "comma-separated steps to run (default all): "+strings.Join(StepKeys(), ","))
	window := fs.Duration("window", 0, "latency window per offered rate (default 1s quick, 5s full)")
	profile := fs.String("profile", "", "write CPU profiles of the worker (during a drain) and the API (during batch enqueue) into this directory")
	var env []string
	fs.Func("env", "KEY=VALUE setting for every dispatcher process, repeatable (e.g. -env LOG_LEVEL=warn)", func(v string) error {
		if !strings.Contains(v, "=") {
			return fmt.Errorf("want KEY=VALUE, got %q", v)
		}
		env = append(env, v)
		return nil
	})
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	o, err := DefaultOptions(*mode)
	if err != nil {
		return err
	}
	if *n > 0 {
		o.N = *n
	}
	if *repeat > 0 {
		o.Repeat = *repeat
	}
	if *window > 0 {
		o.LatencyWindow = *window
	}
	if *dests > 0 {
		o.DrainDestinations = min(*dests, healthyDestinations)
	}
	if *only != "" {
		o.Only = map[string]bool{}
		valid := strings.Join(StepKeys(), ",")
		for _, k := range strings.Split(*only, ",") {
			if !strings.Contains(","+valid+",", ","+k+",") {
				return fmt.Errorf("-only: unknown step %q (want some of %s)", k, valid)
			}
			o.Only[k] = true
		}
	}
	o.ProfileDir = *profile
	o.Env = env
	o.Log = stderr

	rep, runErr := Run(ctx, o)
	if rep != nil {
		rep.printTable(stdout)
		if *jsonPath != "" {
			if err := rep.writeJSON(*jsonPath); err != nil {
				return errors.Join(runErr, fmt.Errorf("write %s: %w", *jsonPath, err))
			}
		}
	}
	return runErr
}
