package metrics

import (
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Topology kinds, the values of the topology label: the Redis deployment
// behind REDIS_URL.
const (
	TopologySingle   = "single"
	TopologySentinel = "sentinel"
	TopologyCluster  = "cluster"
)

// Topology is one successful read of the Redis layout, as the process's
// topology watcher hands it to SetTopology.
type Topology struct {
	Kind           string // TopologySingle, TopologySentinel or TopologyCluster
	Primaries      int    // primaries serving slots (1 outside a cluster)
	WithoutReplica int    // primaries without a healthy replica
	// QueuePrimary maps each queue (shard) to the host:port of the primary
	// serving its slot. Bounded: QUEUE_SHARDS keys, values among the
	// primaries' addresses. A queue whose slot no primary serves is left out.
	QueuePrimary map[string]string
}

var (
	topoPrimariesDesc = prometheus.NewDesc(namespace+"_redis_primaries",
		"Redis primaries serving the data, as the last successful layout read found them (1 outside a cluster).",
		[]string{"topology"}, nil)
	topoNoReplicaDesc = prometheus.NewDesc(namespace+"_redis_primaries_without_replica",
		"Redis primaries with no healthy replica at the last successful layout read: their loss loses acknowledged deliveries not yet replicated.",
		[]string{"topology"}, nil)
	topoQueueDesc = prometheus.NewDesc(namespace+"_queue_primary",
		"1 for the Redis primary (host:port) serving each queue shard's slot at the last successful layout read; join per-queue series with * on(queue) group_left(primary).",
		[]string{"queue", "primary"}, nil)
	topoErrorsDesc = prometheus.NewDesc(namespace+"_redis_topology_errors_total",
		"Failed or timed-out reads of the Redis layout (CLUSTER SHARDS, or INFO replication outside a cluster).",
		nil, nil)
	topoLastDesc = prometheus.NewDesc(namespace+"_redis_topology_last_success_timestamp_seconds",
		"Unix time of the last successful read of the Redis layout; 0 before the first.",
		nil, nil)
)

// topologyCollector exports the last topology reading. It holds a snapshot
// swapped whole under a lock, so a scrape never sees half of a change (a
// shard moving from one primary to another is one series replacing another).
type topologyCollector struct {
	mu     sync.Mutex
	last   *Topology // nil before the first successful read
	at     time.Time
	errors float64
}

func (c *topologyCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- topoPrimariesDesc
	ch <- topoNoReplicaDesc
	ch <- topoQueueDesc
	ch <- topoErrorsDesc
	ch <- topoLastDesc
}

func (c *topologyCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	last, at, errs := c.last, c.at, c.errors
	c.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(topoErrorsDesc, prometheus.CounterValue, errs)
	ts := 0.0
	if !at.IsZero() {
		ts = float64(at.UnixNano()) / 1e9
	}
	ch <- prometheus.MustNewConstMetric(topoLastDesc, prometheus.GaugeValue, ts)
	if last == nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(topoPrimariesDesc, prometheus.GaugeValue, float64(last.Primaries), last.Kind)
	ch <- prometheus.MustNewConstMetric(topoNoReplicaDesc, prometheus.GaugeValue, float64(last.WithoutReplica), last.Kind)
	queues := make([]string, 0, len(last.QueuePrimary))
	for q := range last.QueuePrimary {
		queues = append(queues, q)
	}
	sort.Strings(queues)
	for _, q := range queues {
		ch <- prometheus.MustNewConstMetric(topoQueueDesc, prometheus.GaugeValue, 1, q, last.QueuePrimary[q])
	}
}

// SetTopology records a successful read of the Redis layout made at at.
// Until the first call only the error counter and a zero timestamp are
// exported. An unknown Kind is exported as is (the callers pass the three
// constants).
func (m *Metrics) SetTopology(t Topology, at time.Time) {
	if m == nil {
		return
	}
	qp := make(map[string]string, len(t.QueuePrimary))
	for q, p := range t.QueuePrimary {
		qp[q] = p
	}
	t.QueuePrimary = qp
	m.topology.mu.Lock()
	defer m.topology.mu.Unlock()
	m.topology.last, m.topology.at = &t, at
}

// TopologyReadFailed counts one failed read of the Redis layout; the last
// successful reading stays exported (its timestamp tells its age).
func (m *Metrics) TopologyReadFailed() {
	if m == nil {
		return
	}
	m.topology.mu.Lock()
	defer m.topology.mu.Unlock()
	m.topology.errors++
}
