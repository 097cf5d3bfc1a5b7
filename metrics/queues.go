package metrics

import (
	"sync"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
)

// queuesCollector exports the queue collector's series for several queues
// (the shards of QUEUE_SHARDS), one queue label value each.
type queuesCollector struct {
	each []*queueCollector
}

// NewQueuesCollector is NewQueueCollector for every queue in queues (a fixed,
// bounded list: the dispatcher's shards), each read, cached and timed out on
// its own; a scrape reads them concurrently, so it takes at most one read's
// timeout, not one per queue. Register it in one process only (the API).
func NewQueuesCollector(insp *asynq.Inspector, queues []string) prometheus.Collector {
	c := &queuesCollector{}
	for _, q := range queues {
		c.each = append(c.each, newQueueCollector(insp, q, queueTimeout, queueMaxAge))
	}
	return c
}

// Describe implements prometheus.Collector.
func (c *queuesCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- queueTasksDesc
	ch <- queueAgeDesc
	ch <- queueUpDesc
	ch <- queueErrorsDesc
	ch <- queueAttemptsDesc
	ch <- queueFailedAttemptsDesc
}

// Collect implements prometheus.Collector.
func (c *queuesCollector) Collect(ch chan<- prometheus.Metric) {
	var wg sync.WaitGroup
	for _, q := range c.each {
		wg.Add(1)
		go func() {
			defer wg.Done()
			q.Collect(ch)
		}()
	}
	wg.Wait()
}
