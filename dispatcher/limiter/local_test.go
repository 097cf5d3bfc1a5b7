package limiter

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/artificialstudio/webhook-dispatcher/dispatcher"
)

func TestLocal(t *testing.T) {
	l := NewLocal(2)
	r1, ok1 := l.TryAcquire("a")
	r2, ok2 := l.TryAcquire("a")
	_, ok3 := l.TryAcquire("a")
	rb, okb := l.TryAcquire("b")
	if !ok1 || !ok2 || ok3 || !okb {
		t.Fatalf("TryAcquire = %v %v %v %v, want true true false true", ok1, ok2, ok3, okb)
	}
	if l.InUse("a") != 2 {
		t.Errorf("InUse(a) = %d", l.InUse("a"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := l.wait(ctx, "a"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Acquire on a full host = %v, want deadline", err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		r, err := l.wait(context.Background(), "a")
		if err != nil {
			t.Error(err)
			return
		}
		r()
	}()
	r1()
	r1() // release is idempotent
	wg.Wait()
	r2()
	rb()
	if l.InUse("a") != 0 || l.InUse("b") != 0 {
		t.Errorf("slots still held after release: a %d, b %d", l.InUse("a"), l.InUse("b"))
	}
	if _, ok := New(0).(Unlimited); !ok {
		t.Error("New(0) should impose no cap")
	}
	if s, err := New(0).Acquire(context.Background(), "a", false); err != nil || s.Dest != "a" {
		t.Errorf("Unlimited.Acquire = %+v, %v", s, err)
	}
}

func TestLocalWorthWaiting(t *testing.T) {
	l := NewLocal(2)
	budget := 250 * time.Millisecond
	if w := l.WorthWaiting("unseen", budget); w != 0 {
		t.Errorf("unseen host: wait %s, want 0", w)
	}
	r, _ := l.TryAcquire("new")
	if w := l.WorthWaiting("new", budget); w <= 0 || w > budget {
		t.Errorf("host whose first attempt just began: wait %s, want (0, %s]", w, budget)
	}
	r()
	l.Observe("fast", 5*time.Millisecond)
	if w := l.WorthWaiting("fast", budget); w != budget {
		t.Errorf("fast host: wait %s, want %s", w, budget)
	}
	l.Observe("dead", 5*time.Second)
	if w := l.WorthWaiting("dead", budget); w != 0 {
		t.Errorf("host whose attempts time out: wait %s, want 0", w)
	}
	for range 20 {
		l.Observe("recovering", time.Millisecond)
	}
	// A bounded number of tasks wait in worker slots for one destination:
	// as many as it has slots before it is measured, four times that after.
	fill := func(host string, waiters int) (stop func()) {
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for range waiters {
			wg.Add(1)
			go func() { defer wg.Done(); _, _ = l.wait(ctx, host) }()
		}
		for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
			l.mu.Lock()
			w := l.hosts[host].waiters
			l.mu.Unlock()
			if w == waiters {
				break
			}
		}
		return func() { cancel(); wg.Wait() }
	}
	held1, _ := l.TryAcquire("fast")
	held2, _ := l.TryAcquire("fast")
	stop := fill("fast", 7)
	if w := l.WorthWaiting("fast", budget); w != budget {
		t.Errorf("measured fast host with 7 waiters: wait %s, want %s", w, budget)
	}
	stop()
	stop = fill("fast", 8)
	if w := l.WorthWaiting("fast", budget); w != 0 {
		t.Errorf("measured fast host with 8 waiters (4 × 2 slots): wait %s, want 0", w)
	}
	stop()
	n1, _ := l.TryAcquire("unmeasured")
	n2, _ := l.TryAcquire("unmeasured")
	stop = fill("unmeasured", 2)
	if w := l.WorthWaiting("unmeasured", budget); w != 0 {
		t.Errorf("unmeasured host with 2 waiters: wait %s, want 0", w)
	}
	stop()
	n1()
	n2()
	held1()
	held2()
	if w := l.WorthWaiting("recovering", budget); w != budget {
		t.Errorf("moving average did not follow fast attempts: wait %s", w)
	}
}

// TestLocalDeferFor: deferrals to a slow destination are spread at the
// rate it drains, bounded, and the booking resets once it has spare slots.
func TestLocalDeferFor(t *testing.T) {
	l := NewLocal(2)
	l.Observe("dead", 5*time.Second) // one slot-time is 5s / 2 slots
	var last time.Duration
	for i := range 10 {
		d := l.DeferFor("dead")
		if i > 1 && d <= last {
			t.Fatalf("deferral %d: %s, not after the previous %s", i, d, last)
		}
		last = d
	}
	if last < 24*time.Second || last > 26*time.Second {
		t.Errorf("10th deferral waits %s, want ~25s (10 × 5s / 2 slots)", last)
	}
	for range 1000 {
		last = l.DeferFor("dead")
	}
	if last != MaxDefer {
		t.Errorf("deferral after a long backlog = %s, want the cap %s", last, MaxDefer)
	}
	l.Observe("fast", time.Millisecond)
	if d := l.DeferFor("fast"); d != MinDefer {
		t.Errorf("fast destination deferral = %s, want %s", d, MinDefer)
	}
	// A destination with a free slot again starts a fresh booking.
	r, ok := l.TryAcquire("dead")
	if !ok {
		t.Fatal("no slot")
	}
	r()
	if d := l.DeferFor("dead"); d > 3*time.Second {
		t.Errorf("deferral after spare capacity = %s, want a fresh booking (~2.5s)", d)
	}
}

// TestLocalAcquire: the two-method interface carries the whole policy: a free
// slot is taken, a full slow destination defers with a booked delay, a full
// fast one waits briefly, and a final attempt waits for its slot.
func TestLocalAcquire(t *testing.T) {
	ctx := context.Background()
	l := NewLocal(1)
	s, err := l.Acquire(ctx, "slow", false)
	if err != nil {
		t.Fatal(err)
	}
	l.Observe("slow", 5*time.Second)
	_, err = l.Acquire(ctx, "slow", false)
	var de *dispatcher.DeferError
	if !errors.As(err, &de) || !errors.Is(err, dispatcher.ErrDeferred) || de.Delay < MinDefer {
		t.Fatalf("Acquire on a full slow destination = %v, want a DeferError of at least %s", err, MinDefer)
	}
	done := make(chan error, 1)
	go func() {
		s2, err := l.Acquire(ctx, "slow", true)
		if err == nil {
			l.Release(s2, time.Millisecond)
		}
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("final Acquire returned %v while the slot was held", err)
	default:
	}
	l.Release(s, time.Second)
	if err := <-done; err != nil {
		t.Fatalf("final Acquire = %v", err)
	}
	if l.InUse("slow") != 0 {
		t.Errorf("InUse = %d after release", l.InUse("slow"))
	}
	l.Release(Slot{}, time.Second) // the zero Slot is a no-op

	fast := NewLocal(1)
	f1, _ := fast.Acquire(ctx, "fast", false)
	fast.Release(f1, time.Millisecond)
	f1, _ = fast.Acquire(ctx, "fast", false)
	go func() { time.Sleep(10 * time.Millisecond); fast.Release(f1, time.Millisecond) }()
	if f2, err := fast.Acquire(ctx, "fast", false); err != nil {
		t.Errorf("Acquire on a full fast destination = %v, want a short wait", err)
	} else {
		fast.Release(f2, time.Millisecond)
	}
}
