package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/artificialstudio/webhook-dispatcher/dispatcher/reconcile"
)

// reconcileMetrics are what the reconciler and the Redis policy check report.
type reconcileMetrics struct {
	reconciled    *prometheus.CounterVec
	redisEvicting prometheus.Gauge
	redisEvicted  prometheus.Gauge
	redisPersist  prometheus.Gauge
}

func newReconcileMetrics(reg *prometheus.Registry) reconcileMetrics {
	r := reconcileMetrics{
		reconciled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "reconciled_total",
			Help: "Repairs of asynq's records made by the reconciler (and reruns the handler completed without a POST), by kind.",
		}, []string{"kind"}),
		redisEvicting: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "redis_evicting",
			Help: "1 if Redis may evict keys (a maxmemory limit with a policy other than noeviction): accepted deliveries can vanish.",
		}),
		redisEvicted: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "redis_evicted_keys",
			Help: "Redis INFO evicted_keys as last read (keys Redis dropped since it started).",
		}),
		redisPersist: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "redis_persistent",
			Help: "1 if Redis writes to disk (AOF or RDB snapshots), 0 if not, -1 if it cannot be told (CONFIG GET refused).",
		}),
	}
	reg.MustRegister(r.reconciled, r.redisEvicting, r.redisEvicted, r.redisPersist)
	for _, k := range reconcile.Kinds() {
		r.reconciled.WithLabelValues(k)
	}
	return r
}

// Reconciled counts one repair of kind (one of reconcile.Kinds; others count as "other").
func (m *Metrics) Reconciled(kind string) {
	if m == nil {
		return
	}
	known := false
	for _, k := range reconcile.Kinds() {
		known = known || k == kind
	}
	if !known {
		kind = "other"
	}
	m.reconcile.reconciled.WithLabelValues(kind).Inc()
}

// SetRedisPolicy records the last Redis policy check: whether Redis may
// evict, how many keys it has evicted, and whether it persists (known false:
// cannot be told).
func (m *Metrics) SetRedisPolicy(evicting bool, evictedKeys int64, persistent, known bool) {
	if m == nil {
		return
	}
	m.reconcile.redisEvicting.Set(b2f(evicting))
	m.reconcile.redisEvicted.Set(float64(evictedKeys))
	switch {
	case !known:
		m.reconcile.redisPersist.Set(-1)
	default:
		m.reconcile.redisPersist.Set(b2f(persistent))
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
