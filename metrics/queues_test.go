package metrics

import (
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestQueuesCollector: one series set per shard queue, in one registered
// collector; a shard that never held a task is up and empty.
func TestQueuesCollector(t *testing.T) {
	_, insp := startQueue(t, 2) // two pending and one scheduled in "webhooks"
	c := NewQueuesCollector(insp, []string{testQueue, "webhooks:1:7"})
	reg := prometheus.NewPedanticRegistry() // also checks Collect against Describe
	reg.MustRegister(c)
	err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP webhook_queue_tasks Tasks in the asynq queue, by state.
# TYPE webhook_queue_tasks gauge
webhook_queue_tasks{queue="webhooks",state="active"} 0
webhook_queue_tasks{queue="webhooks",state="archived"} 0
webhook_queue_tasks{queue="webhooks",state="completed"} 0
webhook_queue_tasks{queue="webhooks",state="pending"} 2
webhook_queue_tasks{queue="webhooks",state="retry"} 0
webhook_queue_tasks{queue="webhooks",state="scheduled"} 1
webhook_queue_tasks{queue="webhooks:1:7",state="active"} 0
webhook_queue_tasks{queue="webhooks:1:7",state="archived"} 0
webhook_queue_tasks{queue="webhooks:1:7",state="completed"} 0
webhook_queue_tasks{queue="webhooks:1:7",state="pending"} 0
webhook_queue_tasks{queue="webhooks:1:7",state="retry"} 0
webhook_queue_tasks{queue="webhooks:1:7",state="scheduled"} 0
# HELP webhook_queue_up 1 if the queue state could be read from Redis at this scrape, else 0 (and no queue_tasks are exported).
# TYPE webhook_queue_up gauge
webhook_queue_up{queue="webhooks"} 1
webhook_queue_up{queue="webhooks:1:7"} 1
`), "webhook_queue_tasks", "webhook_queue_up")
	if err != nil {
		t.Error(err)
	}
}

// countsInspector answers with fixed asynq counters per queue.
type countsInspector map[string]*asynq.QueueInfo

func (f countsInspector) GetQueueInfo(queue string) (*asynq.QueueInfo, error) {
	return f[queue], nil
}

func (f countsInspector) Queues() ([]string, error) { return slices.Collect(maps.Keys(f)), nil }

// TestQueueAttemptCounters: asynq's processed and failed counts per queue are
// exported as counters, the per-queue series the per-primary share panels join.
func TestQueueAttemptCounters(t *testing.T) {
	f := countsInspector{
		"webhooks:0:1": {Queue: "webhooks:0:1", ProcessedTotal: 120, FailedTotal: 20},
		"webhooks:1:4": {Queue: "webhooks:1:4", ProcessedTotal: 7},
	}
	reg := prometheus.NewPedanticRegistry()
	c := &queuesCollector{}
	for _, q := range []string{"webhooks:0:1", "webhooks:1:4"} {
		c.each = append(c.each, newQueueCollector(f, q, time.Second, 0))
	}
	reg.MustRegister(c)
	err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP webhook_queue_attempts_total Attempts on the queue's tasks that ended, delivered or failed (deferrals excluded): asynq's processed count, kept in Redis since the queue was created.
# TYPE webhook_queue_attempts_total counter
webhook_queue_attempts_total{queue="webhooks:0:1"} 120
webhook_queue_attempts_total{queue="webhooks:1:4"} 7
# HELP webhook_queue_failed_attempts_total Attempts on the queue's tasks that failed (retried or given up): asynq's failed count, kept in Redis since the queue was created.
# TYPE webhook_queue_failed_attempts_total counter
webhook_queue_failed_attempts_total{queue="webhooks:0:1"} 20
webhook_queue_failed_attempts_total{queue="webhooks:1:4"} 0
`), "webhook_queue_attempts_total", "webhook_queue_failed_attempts_total")
	if err != nil {
		t.Error(err)
	}
}
