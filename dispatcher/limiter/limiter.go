// Package limiter caps concurrent delivery attempts per destination, so that
// one customer's slow or dead endpoint holds a bounded share of the workers
// and everyone else's webhooks keep flowing.
//
// The whole policy (when to wait for a slot, when to defer and for how long)
// lives behind Limiter's two methods; the worker only calls them. Local is the
// in-process implementation. This package touches no Redis and no HTTP.
package limiter

import (
	"context"
	"time"
)

// Limiter is the per-destination concurrency cap.
type Limiter interface {
	// Acquire takes a slot for the destination key dest. It returns an error
	// wrapping a *dispatcher.DeferError (errors.Is ErrDeferred) when the task
	// should come back later instead, without spending an attempt; final
	// (the cycle's last attempt, which asynq cannot defer) waits for a slot
	// until ctx ends instead. Any other error is ctx's.
	Acquire(ctx context.Context, dest string, final bool) (Slot, error)
	// Release frees a slot taken by Acquire, reporting how long the attempt
	// took (the limiter's measure of the destination's speed). Releasing
	// the zero Slot does nothing.
	Release(s Slot, took time.Duration)
}

// Slot is one taken slot. The zero Slot holds nothing.
type Slot struct {
	Dest    string
	release func()
}

// Unlimited is a Limiter that never waits nor defers.
type Unlimited struct{}

// Acquire always succeeds at once.
func (Unlimited) Acquire(_ context.Context, dest string, _ bool) (Slot, error) {
	return Slot{Dest: dest}, nil
}

// Release does nothing.
func (Unlimited) Release(Slot, time.Duration) {}

// New returns Local(max) for max >= 1 and Unlimited for max <= 0 (no cap).
func New(max int) Limiter {
	if max <= 0 {
		return Unlimited{}
	}
	return NewLocal(max)
}

// SlotWaitBudget is the longest a task waits in a worker slot for a busy
// destination's slot before it is deferred instead.
const SlotWaitBudget = 250 * time.Millisecond
