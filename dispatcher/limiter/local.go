package limiter

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/artificialstudio/webhook-dispatcher/dispatcher"
)

// Local caps concurrent attempts per destination within one worker process, so one customer's slow or dead endpoint can hold
// at most max of the worker's slots and everyone else's webhooks keep flowing.
//
// It also remembers how long each destination's recent attempts took, so that
// a busy but healthy destination is worth a short wait for a slot while a dead
// one (attempts ending in the timeout) is not. A nil *Local imposes no cap.
type Local struct {
	max   int
	mu    sync.Mutex
	hosts map[string]*hostSlots
}

type hostSlots struct {
	sem     chan struct{}
	waiters int           // callers blocked in wait
	avg     time.Duration // moving average of attempt durations; 0 before the first
	created time.Time
	// nextFree is a virtual clock: when the next deferred task can expect a
	// free slot. Each deferral books one slot-time (avg/max) on it, so a
	// backlog for a slow destination comes back spread out at the rate the
	// destination drains instead of all of it every second.
	nextFree time.Time
}

// idleSweepAt is the number of remembered destinations above which idle ones
// are forgotten, bounding memory on a worker that sees many customers.
const idleSweepAt = 4096

// NewLocal returns a limiter allowing max (>= 1) concurrent attempts per
// destination in this process.
func NewLocal(max int) *Local {
	return &Local{max: max, hosts: make(map[string]*hostSlots)}
}

var _ Limiter = (*Local)(nil)

// Acquire takes a slot for dest. When they are all taken it waits briefly if
// the destination answers fast (a slot frees up soon), and otherwise returns
// a *dispatcher.DeferError with the wait booked for the task. A final attempt
// cannot be deferred (asynq archives a task that errors on its last attempt,
// deferral or not), so it waits for its slot until ctx ends.
func (l *Local) Acquire(ctx context.Context, dest string, final bool) (Slot, error) {
	if release, ok := l.TryAcquire(dest); ok {
		return Slot{Dest: dest, release: release}, nil
	}
	if final {
		release, err := l.wait(ctx, dest)
		if err != nil {
			return Slot{}, err
		}
		return Slot{Dest: dest, release: release}, nil
	}
	if wait := l.WorthWaiting(dest, SlotWaitBudget); wait > 0 {
		wctx, cancel := context.WithTimeout(ctx, wait)
		release, err := l.wait(wctx, dest)
		cancel()
		if err == nil {
			return Slot{Dest: dest, release: release}, nil
		}
		if ctx.Err() != nil {
			return Slot{}, ctx.Err()
		}
	}
	return Slot{}, fmt.Errorf("acquire %s: %w", dest, &dispatcher.DeferError{Delay: l.DeferFor(dest)})
}

// Release frees s and records how long its attempt took.
func (l *Local) Release(s Slot, took time.Duration) {
	if s.release == nil {
		return
	}
	l.Observe(s.Dest, took)
	s.release()
}

// Max returns the per-destination cap.
func (l *Local) Max() int { return l.max }

// slots returns host's entry; the caller holds l.mu.
func (l *Local) slots(host string) *hostSlots {
	s := l.hosts[host]
	if s == nil {
		if len(l.hosts) >= idleSweepAt {
			for h, e := range l.hosts {
				if len(e.sem) == 0 && e.waiters == 0 {
					delete(l.hosts, h)
				}
			}
		}
		s = &hostSlots{sem: make(chan struct{}, l.max), created: time.Now()}
		l.hosts[host] = s
	}
	return s
}

// TryAcquire takes a slot for host without waiting; ok is false when all of
// the host's slots are taken. Call release exactly once when ok.
func (l *Local) TryAcquire(host string) (release func(), ok bool) {
	l.mu.Lock()
	s := l.slots(host)
	l.mu.Unlock()
	select {
	case s.sem <- struct{}{}:
		if len(s.sem) < cap(s.sem) {
			// Spare capacity: nothing is queued behind this destination.
			l.mu.Lock()
			s.nextFree = time.Time{}
			l.mu.Unlock()
		}
		return releaser(s), true
	default:
		return nil, false
	}
}

// wait waits for a slot for host until ctx ends.
func (l *Local) wait(ctx context.Context, host string) (release func(), err error) {
	l.mu.Lock()
	s := l.slots(host)
	s.waiters++
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		s.waiters--
		l.mu.Unlock()
	}()
	select {
	case s.sem <- struct{}{}:
		return releaser(s), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// WorthWaiting returns how long to wait for one of host's slots, at most
// budget: budget when the host's recent attempts finish fast enough for a slot
// to free up within it, and 0 (do not wait) when they do not. Before any
// attempt to the host has finished, a new host is given the benefit of the
// doubt until budget has passed since its first attempt began.
func (l *Local) WorthWaiting(host string, budget time.Duration) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.hosts[host]
	if s == nil {
		return 0
	}
	// Bound the worker slots that wait for one destination: a destination
	// not measured yet (it may be dead) gets as many waiters as it has
	// slots, a measured fast one a few times that.
	if s.avg == 0 {
		if s.waiters >= l.max {
			return 0
		}
		return max(0, budget-time.Since(s.created))
	}
	if s.waiters >= 4*l.max {
		return 0
	}
	expected := s.avg * time.Duration(s.waiters+1) / time.Duration(l.max)
	if expected > budget {
		return 0
	}
	return budget
}

// Deferral bounds: a deferred task comes back after at least MinDefer (asynq
// keeps due times in whole seconds anyway) and at most MaxDefer.
const (
	MinDefer = time.Second
	MaxDefer = 5 * time.Minute
)

// DeferFor books a future slot for a task that found host busy and returns
// how long the task should wait for it: the destination's expected drain time
// for the tasks deferred before it, between MinDefer and MaxDefer.
func (l *Local) DeferFor(host string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.slots(host)
	now := time.Now()
	if s.nextFree.Before(now) {
		s.nextFree = now
	}
	slot := max(s.avg, SlotWaitBudget) / time.Duration(l.max)
	s.nextFree = s.nextFree.Add(slot)
	return min(max(s.nextFree.Sub(now), MinDefer), MaxDefer)
}

// Observe records how long an attempt to host took.
func (l *Local) Observe(host string, d time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.slots(host)
	if s.avg == 0 {
		s.avg = d
	} else {
		s.avg = (4*s.avg + d) / 5
	}
}

// InUse reports how many slots host holds now.
func (l *Local) InUse(host string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if s := l.hosts[host]; s != nil {
		return len(s.sem)
	}
	return 0
}

func releaser(s *hostSlots) func() {
	var once sync.Once
	return func() { once.Do(func() { <-s.sem }) }
}
