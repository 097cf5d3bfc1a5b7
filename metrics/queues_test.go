package metrics

import (
	"strings"
	"testing"

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
