package metrics

import (
	"errors"
	"maps"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

const testQueue = "webhooks"

// startQueue runs miniredis with pending tasks in testQueue and one scheduled for later,
// and returns it with an Inspector on it.
func startQueue(tb testing.TB, pending int) (*miniredis.Miniredis, *asynq.Inspector) {
	tb.Helper()
	mr := miniredis.RunT(tb)
	opt := asynq.RedisClientOpt{Addr: mr.Addr()}
	client := asynq.NewClient(opt)
	tb.Cleanup(func() { client.Close() })
	for range pending {
		if _, err := client.Enqueue(asynq.NewTask("webhook:deliver", []byte(`{}`)), asynq.Queue(testQueue)); err != nil {
			tb.Fatal(err)
		}
	}
	if _, err := client.Enqueue(asynq.NewTask("webhook:deliver", []byte(`{}`)), asynq.Queue(testQueue), asynq.ProcessIn(time.Hour)); err != nil {
		tb.Fatal(err)
	}
	insp := asynq.NewInspector(opt)
	tb.Cleanup(func() { insp.Close() })
	return mr, insp
}

func TestQueueCollector(t *testing.T) {
	_, insp := startQueue(t, 3)
	c := NewQueueCollector(insp, testQueue)
	err := testutil.CollectAndCompare(c, strings.NewReader(`
# HELP webhook_queue_tasks Tasks in the asynq queue, by state.
# TYPE webhook_queue_tasks gauge
webhook_queue_tasks{queue="webhooks",state="active"} 0
webhook_queue_tasks{queue="webhooks",state="archived"} 0
webhook_queue_tasks{queue="webhooks",state="completed"} 0
webhook_queue_tasks{queue="webhooks",state="pending"} 3
webhook_queue_tasks{queue="webhooks",state="retry"} 0
webhook_queue_tasks{queue="webhooks",state="scheduled"} 1
# HELP webhook_queue_up 1 if the queue state could be read from Redis at this scrape, else 0 (and no queue_tasks are exported).
# TYPE webhook_queue_up gauge
webhook_queue_up{queue="webhooks"} 1
# HELP webhook_queue_inspect_errors_total Failed or timed-out reads of the queue state from Redis.
# TYPE webhook_queue_inspect_errors_total counter
webhook_queue_inspect_errors_total{queue="webhooks"} 0
`), "webhook_queue_tasks", "webhook_queue_up", "webhook_queue_inspect_errors_total")
	if err != nil {
		t.Error(err)
	}
	reg := prometheus.NewPedanticRegistry() // also checks Collect against Describe
	reg.MustRegister(c)
	if age := values(t, reg, "webhook_queue_oldest")["webhook_queue_oldest_pending_age_seconds{queue=\"webhooks\"}"]; age < 0 || age > 60 {
		t.Errorf("oldest pending age = %v s, want a few seconds at most", age)
	}
}

// TestQueueCollectorUnusedQueue: before the first enqueue asynq has no such queue; that is
// an empty queue, not an outage.
func TestQueueCollectorUnusedQueue(t *testing.T) {
	mr := miniredis.RunT(t)
	insp := asynq.NewInspector(asynq.RedisClientOpt{Addr: mr.Addr()})
	t.Cleanup(func() { insp.Close() })
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewQueueCollector(insp, testQueue))
	want := map[string]float64{`webhook_queue_up{queue="webhooks"}`: 1} // and every count 0
	if got := values(t, reg, "webhook_queue"); !maps.Equal(got, want) {
		t.Errorf("got %s\nwant %s", dump(got), dump(want))
	}
	if n, _ := testutil.GatherAndCount(reg, "webhook_queue_tasks"); n != 6 {
		t.Errorf("%d webhook_queue_tasks series, want 6 (at 0)", n)
	}
}

// TestQueueCollectorRedisDown: without Redis only queue_up=0 and the error count remain;
// the last known counts are not exported as if current.
func TestQueueCollectorRedisDown(t *testing.T) {
	mr, insp := startQueue(t, 2)
	// No cache, so every scrape reads; a short timeout, as go-redis retries its dials for seconds.
	c := newQueueCollector(insp, testQueue, 200*time.Millisecond, 0)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	if got := values(t, reg, "webhook_queue_tasks")[`webhook_queue_tasks{queue="webhooks",state="pending"}`]; got != 2 {
		t.Fatalf("pending = %v before the outage, want 2", got)
	}

	mr.Close()
	want := map[string]float64{`webhook_queue_inspect_errors_total{queue="webhooks"}`: 1} // up is 0
	if got := values(t, reg, "webhook_queue"); !maps.Equal(got, want) {
		t.Errorf("with Redis gone: got %s\nwant %s", dump(got), dump(want))
	}
	for _, name := range []string{"webhook_queue_tasks", "webhook_queue_oldest_pending_age_seconds"} {
		if n, _ := testutil.GatherAndCount(reg, name); n != 0 {
			t.Errorf("with Redis gone: %d %s series, want none", n, name)
		}
	}
	if n, _ := testutil.GatherAndCount(reg, "webhook_queue_up"); n != 1 {
		t.Errorf("with Redis gone: %d webhook_queue_up series, want 1 (at 0)", n)
	}
}

// fakeInspector answers GetQueueInfo after release is closed (at once if nil), counting calls.
type fakeInspector struct {
	calls   atomic.Int32
	release chan struct{}
	err     error
}

func (f *fakeInspector) GetQueueInfo(queue string) (*asynq.QueueInfo, error) {
	f.calls.Add(1)
	if f.release != nil {
		<-f.release
	}
	if f.err != nil {
		return nil, f.err
	}
	return &asynq.QueueInfo{Queue: queue, Pending: 5, Latency: 90 * time.Second}, nil
}

func (f *fakeInspector) Queues() ([]string, error) { return []string{testQueue}, nil }

func TestQueueCollectorCache(t *testing.T) {
	tests := []struct {
		name      string
		maxAge    time.Duration
		wantCalls int32
	}{
		{"cached", time.Hour, 1},
		{"uncached", 0, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeInspector{}
			c := newQueueCollector(f, testQueue, time.Second, tt.maxAge)
			for range 3 {
				testutil.CollectAndCount(c)
			}
			if got := f.calls.Load(); got != tt.wantCalls {
				t.Errorf("3 scrapes made %d reads, want %d", got, tt.wantCalls)
			}
		})
	}
}

// TestQueueCollectorConcurrentScrapes: scrapes arriving together share one read.
func TestQueueCollectorConcurrentScrapes(t *testing.T) {
	f := &fakeInspector{release: make(chan struct{})}
	c := newQueueCollector(f, testQueue, 5*time.Second, 0)
	var wg sync.WaitGroup
	ups := make([]float64, 8)
	for i := range ups {
		wg.Go(func() {
			reg := prometheus.NewRegistry()
			reg.MustRegister(c)
			ups[i] = values(t, reg, "webhook_queue_up")[`webhook_queue_up{queue="webhooks"}`]
		})
	}
	waitFor(t, func() bool { return f.calls.Load() == 1 })
	time.Sleep(20 * time.Millisecond) // let the other scrapes reach the wait; a bug shows as calls > 1
	close(f.release)
	wg.Wait()
	if got := f.calls.Load(); got != 1 {
		t.Errorf("8 concurrent scrapes made %d reads, want 1", got)
	}
	for i, up := range ups {
		if up != 1 {
			t.Errorf("scrape %d: up = %v, want 1", i, up)
		}
	}
}

// TestQueueCollectorTimeout: a hung Redis costs each scrape at most the timeout, is counted
// as one error, and never starts a second read while the first hangs.
func TestQueueCollectorTimeout(t *testing.T) {
	f := &fakeInspector{release: make(chan struct{})}
	c := newQueueCollector(f, testQueue, 50*time.Millisecond, 0)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	wantDown := map[string]float64{`webhook_queue_inspect_errors_total{queue="webhooks"}`: 1}
	for i := range 3 {
		start := time.Now()
		if got := values(t, reg, "webhook_queue"); !maps.Equal(got, wantDown) {
			t.Errorf("scrape %d while hung: got %s\nwant %s", i, dump(got), dump(wantDown))
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("scrape %d took %v with a 50ms timeout", i, d)
		}
	}
	if got := f.calls.Load(); got != 1 {
		t.Errorf("reads while hung = %d, want 1", got)
	}

	close(f.release) // Redis answers again
	wantUp := map[string]float64{
		`webhook_queue_up{queue="webhooks"}`:                         1,
		`webhook_queue_tasks{queue="webhooks",state="pending"}`:      5,
		`webhook_queue_oldest_pending_age_seconds{queue="webhooks"}`: 90,
		`webhook_queue_inspect_errors_total{queue="webhooks"}`:       1,
	}
	waitFor(t, func() bool { return maps.Equal(values(t, reg, "webhook_queue"), wantUp) })
}

// TestQueueCollectorError: a failing read is counted once per read.
func TestQueueCollectorError(t *testing.T) {
	f := &fakeInspector{err: errors.New("LOADING Redis is loading the dataset in memory")}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(newQueueCollector(f, testQueue, time.Second, 0))
	values(t, reg, "webhook_queue")
	got := values(t, reg, "webhook_queue")
	want := map[string]float64{`webhook_queue_inspect_errors_total{queue="webhooks"}`: 2}
	if !maps.Equal(got, want) {
		t.Errorf("got %s\nwant %s", dump(got), dump(want))
	}
}

// waitFor polls cond every 5 ms for up to 5 s.
func waitFor(tb testing.TB, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatal("condition not met within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
