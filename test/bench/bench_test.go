package main

import (
	"context"
	"math"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/artificialstudio/webhook-dispatcher/test/testenv"
)

// TestQuick runs the benchmark's quick mode as a pipeline check. It fails on
// errors, lost deliveries or a scenario that produced no numbers, never on a
// timing target: CI machines are too noisy for those.
func TestQuick(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-server and dispatcher processes; skipped under -short")
	}
	testenv.LookPath(t, "redis-server") // skips, or fails under CI=true
	testenv.LookPath(t, "redis-cli")    // the cluster step's redis-cli --cluster create
	if os.Getenv("DISPATCHER_BIN") == "" {
		testenv.LookPath(t, "go") // builds ./cmd/dispatcher
	}

	o, err := DefaultOptions("quick")
	if err != nil {
		t.Fatal(err)
	}
	var progress strings.Builder
	o.Log = &progress
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	rep, err := Run(ctx, o)
	if rep != nil {
		var table strings.Builder
		rep.printTable(&table)
		t.Log(table.String())
	}
	if err != nil {
		t.Logf("progress:\n%s", progress.String())
		t.Fatalf("bench pipeline broken: %v", err)
	}

	// Every scenario must have produced numbers.
	want := map[string]int{"1": 1, "2": 1, "3": 3, "4": 3, "5": 4, "6": 8, "7": 3, "8": 1, "9": 22}
	got := map[string]int{}
	for _, row := range rep.Rows {
		got[row.Scenario]++
		if math.IsNaN(row.Value) || math.IsInf(row.Value, 0) || len(row.Samples) != o.Repeat {
			t.Errorf("scenario %s %q: value %v from %d samples", row.Scenario, row.What, row.Value, len(row.Samples))
		}
		if row.Value <= 0 && row.Unit != unitCPU { // a short drain may round to 0 CPU ticks
			t.Errorf("scenario %s %q: value %v, want > 0", row.Scenario, row.What, row.Value)
		}
		if row.Baseline != nil && (math.IsNaN(*row.Baseline) || len(row.BaselineSamples) != o.Repeat) {
			t.Errorf("scenario %s %q: baseline %v from %d samples", row.Scenario, row.What, *row.Baseline, len(row.BaselineSamples))
		}
	}
	for s, n := range want {
		if got[s] != n {
			t.Errorf("scenario %s produced %d rows, want %d", s, got[s], n)
		}
	}

	// The JSON output is written and holds the rows.
	path := t.TempDir() + "/bench.json"
	if err := rep.writeJSON(path); err != nil {
		t.Fatal(err)
	}
	if raw, err := os.ReadFile(path); err != nil || !strings.Contains(string(raw), `"rows"`) {
		t.Errorf("JSON output: %v %.200s", err, raw)
	}
}
