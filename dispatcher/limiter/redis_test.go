package limiter

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/artificialstudio/webhook-dispatcher/dispatcher"
)

func fleetKey(dest string) string { return "test:cap:{" + dest + "}" }

// TestFleetCapAcrossProcesses: two limiters on one Redis (two worker
// processes) share one cap; a slot comes back on Release, and a holder that
// never releases (a killed worker) is counted free once its lease ends.
func TestFleetCapAcrossProcesses(t *testing.T) {
	mr := miniredis.RunT(t)
	mr.SetTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { rdb.Close() })
	const dest = "https://slow.example:443"
	a := NewFleet(rdb, fleetKey, 3, 10*time.Second)
	b := NewFleet(rdb, fleetKey, 3, 10*time.Second)
	ctx := context.Background()

	var held []Slot
	for i, l := range []*Fleet{a, a, b} {
		s, err := l.Acquire(ctx, dest, false)
		if err != nil {
			t.Fatalf("acquire %d: %v", i, err)
		}
		held = append(held, s)
	}
	if n, err := a.Held(ctx, dest); err != nil || n != 3 {
		t.Fatalf("Held = %d, %v; want 3", n, err)
	}
	// b holds one slot in process, but the fleet's three are taken.
	_, err := b.Acquire(ctx, dest, false)
	var de *dispatcher.DeferError
	if !errors.As(err, &de) || de.Delay < MinDefer {
		t.Fatalf("fourth acquire across processes = %v, want a deferral of at least %s", err, MinDefer)
	}
	if got := b.local.InUse(dest); got != 1 {
		t.Errorf("after the deferral b holds %d in-process slots, want 1 (the deferred one given back)", got)
	}
	b.Release(held[2], 50*time.Millisecond)
	s, err := b.Acquire(ctx, dest, false)
	if err != nil {
		t.Fatalf("acquire after a release: %v", err)
	}
	// Process a dies holding two slots: they come back when their lease ends.
	if _, err := b.Acquire(ctx, dest, false); err == nil {
		t.Fatal("acquire while a's two slots are leased: want a deferral")
	}
	mr.SetTime(time.Date(2026, 1, 1, 0, 0, 11, 0, time.UTC)) // past the 10 s lease
	if n, _ := a.Held(ctx, dest); n != 0 {
		t.Errorf("Held after every lease ended = %d, want 0", n)
	}
	s2, err := b.Acquire(ctx, dest, false)
	if err != nil {
		t.Fatalf("acquire after a's leases ended: %v", err)
	}
	b.Release(s, time.Millisecond)
	b.Release(s2, time.Millisecond)
}

// TestFleetFinalWaits: a final attempt cannot be deferred; it waits for a
// fleet slot until ctx ends.
func TestFleetFinalWaits(t *testing.T) {
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { rdb.Close() })
	const dest = "https://slow.example:443"
	a := NewFleet(rdb, fleetKey, 1, time.Minute)
	b := NewFleet(rdb, fleetKey, 1, time.Minute)
	ctx := context.Background()
	s, err := a.Acquire(ctx, dest, false)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() {
		s, err := b.Acquire(ctx, dest, true)
		if err == nil {
			b.Release(s, time.Millisecond)
		}
		got <- err
	}()
	select {
	case err := <-got:
		t.Fatalf("final acquire returned %v while the fleet's slot is held", err)
	case <-time.After(200 * time.Millisecond):
	}
	a.Release(s, time.Millisecond)
	select {
	case err := <-got:
		if err != nil {
			t.Fatalf("final acquire: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("final acquire still waiting 10 s after the slot was released")
	}
	cctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	s, _ = a.Acquire(ctx, dest, false)
	if _, err := b.Acquire(cctx, dest, true); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("final acquire with ctx ending = %v, want ctx's error", err)
	}
	a.Release(s, time.Millisecond)
}
