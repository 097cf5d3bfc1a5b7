// Package metrics defines the Prometheus metrics of the webhook dispatcher: what the API
// counts at enqueue, what workers count per delivery attempt, and the queue state read from
// Redis at scrape time.
//
// Everything is registered on a *prometheus.Registry handed in by the caller, never on the
// global one, so each test and each process owns its metrics. Label values come only from
// the small fixed sets below (never URLs, hosts or IDs), so the number of series stays
// bounded whatever customers send.
//
// Every method is safe on a nil *Metrics and then does nothing, so callers that don't care
// about metrics (most unit tests) can pass nil.
package metrics

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/artificialstudio/webhook-dispatcher/dispatcher"
)

const namespace = "webhook"

// OutcomeOther is the outcome label under which an outcome outside
// dispatcher.Outcomes is counted. Passing one is a programming error; it is
// counted, not dropped, so the total stays right and the mistake shows on the
// dashboard instead of becoming a new series.
const OutcomeOther = "other"

// maxAttemptLabel is the highest attempt number with its own label value: the schedule
// allows 10 attempts; later ones only come from manual redeliveries and share "11+".
const maxAttemptLabel = 10

// Metrics holds the dispatcher's own metrics. Create it with New; a nil *Metrics is valid
// and records nothing.
type Metrics struct {
	enqueued         *prometheus.CounterVec
	batchSize        prometheus.Histogram
	attempts         *prometheus.CounterVec
	attemptsByNumber *prometheus.CounterVec
	attemptDuration  *prometheus.HistogramVec
	latency          prometheus.Histogram
	failed           prometheus.Counter
	redeliveries     prometheus.Counter
	deferrals        prometheus.Counter
	inFlight         prometheus.Gauge
	concurrency      prometheus.Gauge
	redisUp          prometheus.Gauge
	reconcile        reconcileMetrics
	topology         *topologyCollector
}

// BuildInfo is exported as the labels of webhook_build_info. Empty fields are exported as
// empty label values.
type BuildInfo struct{ Version, Commit, GoVersion string }

// New creates the dispatcher's metrics and registers them on reg, together with the Go
// runtime and process collectors and webhook_build_info. The API and the worker both call
// it, so each process exposes every name (the other side's stay at zero), which keeps
// dashboard queries free of job filters.
//
// It panics if reg is nil or already holds any of these metrics (call it once per registry).
func New(reg *prometheus.Registry, build BuildInfo) *Metrics {
	m := &Metrics{
		enqueued: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "enqueued_total",
			Help: "Delivery requests handled by the API, by result.",
		}, []string{"result"}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Name: "enqueue_batch_size",
			Help:    "Deliveries per enqueue request.",
			Buckets: []float64{1, 5, 10, 25, 50, 100, 250, 500},
		}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "delivery_attempts_total",
			Help: "Delivery attempts (HTTP POSTs tried), by outcome and HTTP status class.",
		}, []string{"outcome", "status_class"}),
		attemptsByNumber: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "delivery_attempts_by_number_total",
			Help: "Delivery attempts by attempt number (1 is the first try; 11+ only from redeliveries).",
		}, []string{"attempt"}),
		attemptDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "delivery_attempt_duration_seconds",
			Help: "Duration of one delivery attempt, dial to response, by success or failure.",
			// 5 ms (same-region receiver) to the longest sensible DELIVERY_TIMEOUT.
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"result"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Name: "delivery_latency_seconds",
			Help: "Time from enqueue to the successful POST, retries included.",
			// Up to 48h: the whole retry schedule (43h21m20s) must fall inside a bucket.
			Buckets: []float64{.01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600,
				6 * 3600, 12 * 3600, 24 * 3600, 48 * 3600},
		}),
		failed: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "deliveries_failed_total",
			Help: "Deliveries given up after the last scheduled attempt failed.",
		}),
		redeliveries: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "redeliveries_total",
			Help: "Deliveries queued again by a manual redelivery request.",
		}),
		deferrals: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "delivery_deferrals_total",
			Help: "Attempts postponed because the destination's concurrency cap was full; no attempt was spent.",
		}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "deliveries_in_flight",
			Help: "Delivery attempts running now in this process.",
		}),
		concurrency: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "worker_concurrency",
			Help: "Configured maximum of concurrent deliveries in this process (0 outside workers).",
		}),
		redisUp: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: namespace, Name: "redis_up",
			Help: "1 if the last Redis ping from this process succeeded, else 0.",
		}),
	}
	info := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "build_info",
		Help: "Always 1; the labels say which build is running.",
		ConstLabels: prometheus.Labels{
			"version": build.Version, "commit": build.Commit, "goversion": build.GoVersion,
		},
	})
	info.Set(1)

	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		info,
		m.enqueued, m.batchSize, m.attempts, m.attemptsByNumber, m.attemptDuration, m.latency,
		m.failed, m.redeliveries, m.deferrals, m.inFlight, m.concurrency, m.redisUp,
	)

	// Create the expected series at zero: a counter that appears only on its first
	// increment is invisible to rate() and increase() for that first step, and an absent
	// series cannot be told apart from a renamed one.
	for _, r := range dispatcher.Results() {
		m.enqueued.WithLabelValues(string(r))
	}
	for _, o := range dispatcher.Outcomes() {
		switch o {
		case dispatcher.OutcomeDelivered:
			m.attempts.WithLabelValues(string(o), "2xx")
		case dispatcher.OutcomeHTTPStatus:
			for _, class := range []string{"3xx", "4xx", "5xx"} {
				m.attempts.WithLabelValues(string(o), class)
			}
		default:
			m.attempts.WithLabelValues(string(o), "none")
		}
	}
	for n := 1; n <= maxAttemptLabel+1; n++ {
		m.attemptsByNumber.WithLabelValues(attemptLabel(n))
	}
	m.attemptDuration.WithLabelValues("success")
	m.attemptDuration.WithLabelValues("failure")
	m.reconcile = newReconcileMetrics(reg)
	m.topology = &topologyCollector{}
	reg.MustRegister(m.topology)
	return m
}

// Enqueued counts one delivery request handled by the API. result is one of
// dispatcher.Results; any other value is a programming error and is counted as
// dispatcher.ResultInvalid.
func (m *Metrics) Enqueued(result dispatcher.Result) {
	if m == nil {
		return
	}
	if !result.Valid() {
		result = dispatcher.ResultInvalid
	}
	m.enqueued.WithLabelValues(string(result)).Inc()
}

// ObserveBatch records how many deliveries one enqueue request carried. Sizes below 0 are
// recorded as 0.
func (m *Metrics) ObserveBatch(size int) {
	if m == nil {
		return
	}
	m.batchSize.Observe(float64(max(size, 0)))
}

// ObserveAttempt records one delivery attempt: outcome is one of dispatcher.Outcomes
// (others count as OutcomeOther), status is the HTTP status code or 0 when no response
// came, attempt is the 1-based attempt number (values below 1 count as 1), and d is how
// long the attempt took. Only dispatcher.OutcomeDelivered (exactly 200) counts as a
// success in the duration histogram.
func (m *Metrics) ObserveAttempt(outcome dispatcher.Outcome, status int, attempt int, d time.Duration) {
	if m == nil {
		return
	}
	label := string(outcome)
	if !outcome.Valid() {
		label = OutcomeOther
	}
	m.attempts.WithLabelValues(label, statusClass(status)).Inc()
	m.attemptsByNumber.WithLabelValues(attemptLabel(attempt)).Inc()
	result := "failure"
	if outcome == dispatcher.OutcomeDelivered {
		result = "success"
	}
	m.attemptDuration.WithLabelValues(result).Observe(d.Seconds())
}

// ObserveDelivered records the time from enqueue to the successful POST of one delivery.
func (m *Metrics) ObserveDelivered(endToEnd time.Duration) {
	if m == nil {
		return
	}
	m.latency.Observe(endToEnd.Seconds())
}

// Failed counts one delivery given up after its last scheduled attempt.
func (m *Metrics) Failed() {
	if m == nil {
		return
	}
	m.failed.Inc()
}

// Redelivered counts n deliveries queued again by hand; n <= 0 records nothing.
func (m *Metrics) Redelivered(n int) {
	if m == nil || n <= 0 {
		return
	}
	m.redeliveries.Add(float64(n))
}

// Deferred counts one attempt postponed because the destination's concurrency cap was full.
func (m *Metrics) Deferred() {
	if m == nil {
		return
	}
	m.deferrals.Inc()
}

// InFlight adds delta (+1 when an attempt starts, -1 when it ends) to the in-flight gauge.
func (m *Metrics) InFlight(delta int) {
	if m == nil {
		return
	}
	m.inFlight.Add(float64(delta))
}

// SetConcurrency records the worker's configured concurrency, the denominator of the
// dashboard's saturation panel.
func (m *Metrics) SetConcurrency(n int) {
	if m == nil {
		return
	}
	m.concurrency.Set(float64(n))
}

// SetRedisUp records the result of the latest Redis ping. The gauge starts at 0, so a
// process that never pings reports Redis as down (and WebhookRedisUnreachable fires).
func (m *Metrics) SetRedisUp(up bool) {
	if m == nil {
		return
	}
	v := 0.0
	if up {
		v = 1
	}
	m.redisUp.Set(v)
}

// Handler serves the metrics in reg in the Prometheus text format. Errors from single
// collectors don't fail the scrape; they are counted in promhttp_metric_handler_errors_total.
// It also adds promhttp_metric_handler_requests_total and _requests_in_flight to reg.
// reg must not be nil; calling Handler twice with one registry is fine.
func Handler(reg *prometheus.Registry) http.Handler {
	return promhttp.InstrumentMetricHandler(reg, promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorHandling: promhttp.ContinueOnError,
		Registry:      reg,
	}))
}

// statusClass maps an HTTP status code to a label value: "2xx".."5xx", "none" for 0 (no
// response), "other" for anything else (1xx, or nonsense).
func statusClass(status int) string {
	switch {
	case status == 0:
		return "none"
	case status >= 200 && status < 600:
		return strconv.Itoa(status/100) + "xx"
	default:
		return "other"
	}
}

// attemptLabel maps a 1-based attempt number to "1".."10", or "11+" beyond the schedule.
func attemptLabel(n int) string {
	switch {
	case n < 1:
		return "1"
	case n > maxAttemptLabel:
		return strconv.Itoa(maxAttemptLabel+1) + "+"
	default:
		return strconv.Itoa(n)
	}
}
