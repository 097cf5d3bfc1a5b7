package metrics

import (
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
)

// Defaults for NewQueueCollector. The timeout stays under a 1 s scrape interval (the one
// testenv.StartPrometheus uses) and far under Prometheus' default 10 s scrape timeout; the cache makes
// Prometheus, a second Prometheus and a curl at the same second cost one Redis call.
const (
	queueTimeout = 800 * time.Millisecond
	queueMaxAge  = time.Second
)

// errQueueTimeout is recorded when Redis did not answer within the collector's timeout.
var errQueueTimeout = errors.New("metrics: queue inspection timed out")

// queueInspector is the part of *asynq.Inspector the collector uses; tests fake it.
type queueInspector interface {
	GetQueueInfo(queue string) (*asynq.QueueInfo, error)
	Queues() ([]string, error)
}

var (
	queueTasksDesc = prometheus.NewDesc(namespace+"_queue_tasks",
		"Tasks in the asynq queue, by state.", []string{"queue", "state"}, nil)
	queueAgeDesc = prometheus.NewDesc(namespace+"_queue_oldest_pending_age_seconds",
		"Age of the oldest pending task (0 when none is pending).", []string{"queue"}, nil)
	queueUpDesc = prometheus.NewDesc(namespace+"_queue_up",
		"1 if the queue state could be read from Redis at this scrape, else 0 (and no queue_tasks are exported).",
		[]string{"queue"}, nil)
	queueErrorsDesc = prometheus.NewDesc(namespace+"_queue_inspect_errors_total",
		"Failed or timed-out reads of the queue state from Redis.", []string{"queue"}, nil)
	queueAttemptsDesc = prometheus.NewDesc(namespace+"_queue_attempts_total",
		"Attempts on the queue's tasks that ended, delivered or failed (deferrals excluded): asynq's processed count, kept in Redis since the queue was created.",
		[]string{"queue"}, nil)
	queueFailedAttemptsDesc = prometheus.NewDesc(namespace+"_queue_failed_attempts_total",
		"Attempts on the queue's tasks that failed (retried or given up): asynq's failed count, kept in Redis since the queue was created.",
		[]string{"queue"}, nil)
)

// queueCollector reads the queue state on scrape. At most one read runs at a time: scrapes
// that come while one runs wait for it (up to the timeout), and a result is reused for
// maxAge, so neither many scrapers nor a hung Redis pile up goroutines or Redis calls.
type queueCollector struct {
	insp    queueInspector
	queue   string
	timeout time.Duration
	maxAge  time.Duration
	now     func() time.Time

	mu      sync.Mutex
	last    queueSnapshot
	at      time.Time     // when last was taken; zero before the first read
	running chan struct{} // closed when the running read ends; nil if none runs
	late    chan struct{} // the running read once a scrape gave up on it (counted as an error)
	errors  float64       // count of failed reads, exported as a counter
}

// queueSnapshot is the outcome of one read; info is nil when err is set.
type queueSnapshot struct {
	info *asynq.QueueInfo
	err  error
}

// NewQueueCollector returns a collector that exports the state of queue, read with insp
// at scrape time:
//
//	webhook_queue_tasks{queue,state}                 state: pending active scheduled retry archived completed
//	webhook_queue_oldest_pending_age_seconds{queue}
//	webhook_queue_up{queue}                          0 when Redis failed or took over 800ms
//	webhook_queue_inspect_errors_total{queue}
//	webhook_queue_attempts_total{queue}              asynq's processed count: attempts that ended
//	webhook_queue_failed_attempts_total{queue}       asynq's failed count
//
// While the queue cannot be read only queue_up (0) and the error counter are exported:
// no stale numbers. A queue that has never held a task does not exist in Redis yet; it is
// reported as up and empty. Each read is one O(1) GetQueueInfo call (plus a small
// memory sample asynq takes); results are cached for a second.
//
// Register it in one process only (the API): every process would report the same numbers.
func NewQueueCollector(insp *asynq.Inspector, queue string) prometheus.Collector {
	return newQueueCollector(insp, queue, queueTimeout, queueMaxAge)
}

func newQueueCollector(insp queueInspector, queue string, timeout, maxAge time.Duration) *queueCollector {
	return &queueCollector{insp: insp, queue: queue, timeout: timeout, maxAge: maxAge, now: time.Now}
}

// Describe implements prometheus.Collector.
func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- queueTasksDesc
	ch <- queueAgeDesc
	ch <- queueUpDesc
	ch <- queueErrorsDesc
	ch <- queueAttemptsDesc
	ch <- queueFailedAttemptsDesc
}

// Collect implements prometheus.Collector.
func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	snap, errCount := c.snapshot()
	up := 0.0
	if snap.err == nil {
		up = 1
		info := snap.info
		for _, s := range []struct {
			state string
			n     int
		}{
			{"pending", info.Pending}, {"active", info.Active}, {"scheduled", info.Scheduled},
			{"retry", info.Retry}, {"archived", info.Archived}, {"completed", info.Completed},
		} {
			ch <- prometheus.MustNewConstMetric(queueTasksDesc, prometheus.GaugeValue, float64(s.n), c.queue, s.state)
		}
		ch <- prometheus.MustNewConstMetric(queueAgeDesc, prometheus.GaugeValue, info.Latency.Seconds(), c.queue)
		ch <- prometheus.MustNewConstMetric(queueAttemptsDesc, prometheus.CounterValue, float64(info.ProcessedTotal), c.queue)
		ch <- prometheus.MustNewConstMetric(queueFailedAttemptsDesc, prometheus.CounterValue, float64(info.FailedTotal), c.queue)
	}
	ch <- prometheus.MustNewConstMetric(queueUpDesc, prometheus.GaugeValue, up, c.queue)
	ch <- prometheus.MustNewConstMetric(queueErrorsDesc, prometheus.CounterValue, errCount, c.queue)
}

// snapshot returns a result at most maxAge old, starting a read if needed, and waits at
// most timeout for it. A read that outlives the timeout keeps running in the background
// (asynq's Inspector takes no context); later scrapes wait on it instead of starting another.
func (c *queueCollector) snapshot() (queueSnapshot, float64) {
	c.mu.Lock()
	if !c.at.IsZero() && c.now().Sub(c.at) < c.maxAge {
		defer c.mu.Unlock()
		return c.last, c.errors
	}
	done := c.running
	if done == nil {
		done = make(chan struct{})
		c.running = done
		go c.read(done)
	}
	c.mu.Unlock()

	timer := time.NewTimer(c.timeout)
	defer timer.Stop()
	select {
	case <-done:
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.last, c.errors
	case <-timer.C:
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.running == done && c.late != done { // count a hung read once, not per scrape
			c.late = done
			c.errors++
		}
		if c.running == done { // else the read ended just now: its result is fresher
			c.last, c.at = queueSnapshot{err: errQueueTimeout}, c.now()
		}
		return c.last, c.errors
	}
}

// read runs one inspection and stores its result, then closes done.
func (c *queueCollector) read(done chan struct{}) {
	info, err := c.insp.GetQueueInfo(c.queue)
	if err != nil {
		// asynq reports a queue with no task ever enqueued as an error of an internal
		// type; tell it apart from a Redis failure by asking which queues exist.
		if qs, qerr := c.insp.Queues(); qerr == nil && !slices.Contains(qs, c.queue) {
			info, err = &asynq.QueueInfo{Queue: c.queue}, nil
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil && c.late != done {
		c.errors++
	}
	c.last, c.at, c.running = queueSnapshot{info: info, err: err}, c.now(), nil
	close(done)
}
