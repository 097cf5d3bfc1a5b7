package dispatcher

import (
	"context"
	"sync"
)

// HostLimiter caps concurrent attempts per destination (scheme, host and port)
// within one worker process, so one customer's slow or dead endpoint can hold
// at most max of the worker's slots and everyone else's webhooks keep flowing.
// A nil *HostLimiter imposes no cap.
type HostLimiter struct {
	max   int
	mu    sync.Mutex
	hosts map[string]*hostSlots
}

type hostSlots struct {
	sem  chan struct{}
	refs int // holders and waiters; the entry is dropped at zero
}

// NewHostLimiter returns a limiter allowing max concurrent attempts per
// destination; max <= 0 returns nil (no cap).
func NewHostLimiter(max int) *HostLimiter {
	if max <= 0 {
		return nil
	}
	return &HostLimiter{max: max, hosts: make(map[string]*hostSlots)}
}

// Max returns the per-destination cap, 0 for none.
func (l *HostLimiter) Max() int {
	if l == nil {
		return 0
	}
	return l.max
}

func (l *HostLimiter) ref(host string) *hostSlots {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.hosts[host]
	if s == nil {
		s = &hostSlots{sem: make(chan struct{}, l.max)}
		l.hosts[host] = s
	}
	s.refs++
	return s
}

func (l *HostLimiter) unref(host string, s *hostSlots) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s.refs--
	if s.refs == 0 {
		delete(l.hosts, host)
	}
}

// TryAcquire takes a slot for host without waiting; ok is false when all of
// the host's slots are taken. Call release exactly once when ok.
func (l *HostLimiter) TryAcquire(host string) (release func(), ok bool) {
	if l == nil {
		return func() {}, true
	}
	s := l.ref(host)
	select {
	case s.sem <- struct{}{}:
		return l.releaser(host, s), true
	default:
		l.unref(host, s)
		return nil, false
	}
}

// Acquire waits for a slot for host until ctx ends.
func (l *HostLimiter) Acquire(ctx context.Context, host string) (release func(), err error) {
	if l == nil {
		return func() {}, nil
	}
	s := l.ref(host)
	select {
	case s.sem <- struct{}{}:
		return l.releaser(host, s), nil
	case <-ctx.Done():
		l.unref(host, s)
		return nil, ctx.Err()
	}
}

// InUse reports how many slots host holds now.
func (l *HostLimiter) InUse(host string) int {
	if l == nil {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if s := l.hosts[host]; s != nil {
		return len(s.sem)
	}
	return 0
}

func (l *HostLimiter) releaser(host string, s *hostSlots) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			<-s.sem
			l.unref(host, s)
		})
	}
}
