package metrics

import (
	"bytes"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/artificialstudio/webhook-dispatcher/dispatcher"
	"github.com/artificialstudio/webhook-dispatcher/test/testenv"
)

// Simulated deliveries, as the worker will report them. Each is one task's whole life.
func deliverOK(m *Metrics) {
	m.InFlight(1)
	m.ObserveAttempt(dispatcher.OutcomeDelivered, 200, 1, 120*time.Millisecond)
	m.InFlight(-1)
	m.ObserveDelivered(150 * time.Millisecond)
}

func deliverAfterRetry(m *Metrics) {
	m.InFlight(1)
	m.ObserveAttempt(dispatcher.OutcomeHTTPStatus, 500, 1, 80*time.Millisecond)
	m.InFlight(-1)
	m.InFlight(1)
	m.ObserveAttempt(dispatcher.OutcomeDelivered, 204, 2, 90*time.Millisecond)
	m.InFlight(-1)
	m.ObserveDelivered(5200 * time.Millisecond) // includes the 5 s retry delay
}

// deliverBlocked is a destination urlguard refuses at dial time: one attempt, no response.
func deliverBlocked(m *Metrics) {
	m.InFlight(1)
	m.ObserveAttempt(dispatcher.OutcomeBlocked, 0, 1, time.Millisecond)
	m.InFlight(-1)
}

// deliverNever times out on all 10 scheduled attempts, then is given up.
func deliverNever(m *Metrics) {
	for n := 1; n <= 10; n++ {
		m.InFlight(1)
		m.ObserveAttempt(dispatcher.OutcomeTimeout, 0, n, 10*time.Second)
		m.InFlight(-1)
	}
	m.Failed()
}

func TestDeliveryScenarios(t *testing.T) {
	tests := []struct {
		name string
		run  func(*Metrics)
		want map[string]float64 // every nonzero webhook_deliver* value afterwards
	}{
		{"delivered", deliverOK, map[string]float64{
			`webhook_delivery_attempts_total{outcome="delivered",status_class="2xx"}`: 1,
			`webhook_delivery_attempts_by_number_total{attempt="1"}`:                  1,
			`webhook_delivery_attempt_duration_seconds_count{result="success"}`:       1,
			`webhook_delivery_latency_seconds_count`:                                  1,
		}},
		{"500 then 204", deliverAfterRetry, map[string]float64{
			`webhook_delivery_attempts_total{outcome="http_status",status_class="5xx"}`: 1,
			`webhook_delivery_attempts_total{outcome="delivered",status_class="2xx"}`:   1,
			`webhook_delivery_attempts_by_number_total{attempt="1"}`:                    1,
			`webhook_delivery_attempts_by_number_total{attempt="2"}`:                    1,
			`webhook_delivery_attempt_duration_seconds_count{result="success"}`:         1,
			`webhook_delivery_attempt_duration_seconds_count{result="failure"}`:         1,
			`webhook_delivery_latency_seconds_count`:                                    1,
		}},
		{"blocked", deliverBlocked, map[string]float64{
			`webhook_delivery_attempts_total{outcome="blocked",status_class="none"}`: 1,
			`webhook_delivery_attempts_by_number_total{attempt="1"}`:                 1,
			`webhook_delivery_attempt_duration_seconds_count{result="failure"}`:      1,
		}},
		{"10 timeouts then failed", deliverNever, map[string]float64{
			`webhook_delivery_attempts_total{outcome="timeout",status_class="none"}`: 10,
			`webhook_delivery_attempts_by_number_total{attempt="1"}`:                 1,
			`webhook_delivery_attempts_by_number_total{attempt="2"}`:                 1,
			`webhook_delivery_attempts_by_number_total{attempt="3"}`:                 1,
			`webhook_delivery_attempts_by_number_total{attempt="4"}`:                 1,
			`webhook_delivery_attempts_by_number_total{attempt="5"}`:                 1,
			`webhook_delivery_attempts_by_number_total{attempt="6"}`:                 1,
			`webhook_delivery_attempts_by_number_total{attempt="7"}`:                 1,
			`webhook_delivery_attempts_by_number_total{attempt="8"}`:                 1,
			`webhook_delivery_attempts_by_number_total{attempt="9"}`:                 1,
			`webhook_delivery_attempts_by_number_total{attempt="10"}`:                1,
			`webhook_delivery_attempt_duration_seconds_count{result="failure"}`:      10,
			`webhook_deliveries_failed_total`:                                        1,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := prometheus.NewPedanticRegistry()
			tt.run(New(reg, BuildInfo{}))
			// In-flight is back at 0, so it must not be among the nonzero values either.
			got := values(t, reg, "webhook_deliver")
			if !maps.Equal(got, tt.want) {
				t.Errorf("after %s:\n got %s\nwant %s", tt.name, dump(got), dump(tt.want))
			}
		})
	}
}

func TestStatusClass(t *testing.T) {
	tests := []struct {
		status int
		want   string
	}{
		{0, "none"}, // no response
		{100, "other"},
		{200, "2xx"},
		{299, "2xx"},
		{301, "3xx"},
		{404, "4xx"},
		{503, "5xx"},
		{599, "5xx"},
		{600, "other"},
		{-1, "other"},
	}
	for _, tt := range tests {
		if got := statusClass(tt.status); got != tt.want {
			t.Errorf("statusClass(%d) = %q, want %q", tt.status, got, tt.want)
		}
	}
}

func TestAttemptLabel(t *testing.T) {
	tests := []struct {
		n    int
		want string
	}{
		{-3, "1"}, // programming error: counted, not dropped
		{0, "1"},
		{1, "1"},
		{10, "10"}, // last scheduled attempt
		{11, "11+"},
		{250, "11+"}, // many manual redeliveries
	}
	for _, tt := range tests {
		if got := attemptLabel(tt.n); got != tt.want {
			t.Errorf("attemptLabel(%d) = %q, want %q", tt.n, got, tt.want)
		}
	}
}

func TestEnqueued(t *testing.T) {
	tests := []struct {
		result dispatcher.Result
		want   string // the label value counted
	}{
		{dispatcher.ResultAccepted, "accepted"},
		{dispatcher.ResultDuplicate, "duplicate"},
		{dispatcher.ResultInvalid, "invalid"},
		{dispatcher.ResultRefused, "refused"},
		{dispatcher.ResultUnavailable, "unavailable"},
		{"Accepted", "invalid"}, // unknown values are a bug, counted as invalid
		{"", "invalid"},
	}
	for _, tt := range tests {
		m := New(prometheus.NewRegistry(), BuildInfo{})
		m.Enqueued(tt.result)
		if got := testutil.ToFloat64(m.enqueued.WithLabelValues(tt.want)); got != 1 {
			t.Errorf("Enqueued(%q): result=%q is %v, want 1", tt.result, tt.want, got)
		}
		if n := testutil.CollectAndCount(m.enqueued); n != len(dispatcher.Results()) {
			t.Errorf("Enqueued(%q) made %d series, want %d", tt.result, n, len(dispatcher.Results()))
		}
	}
}

func TestUnknownOutcome(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m := New(reg, BuildInfo{})
	m.ObserveAttempt("weird", 418, 1, time.Second)
	want := map[string]float64{
		`webhook_delivery_attempts_total{outcome="other",status_class="4xx"}`: 1,
		`webhook_delivery_attempts_by_number_total{attempt="1"}`:              1,
		`webhook_delivery_attempt_duration_seconds_count{result="failure"}`:   1,
	}
	if got := values(t, reg, "webhook_deliver"); !maps.Equal(got, want) {
		t.Errorf("got %s\nwant %s", dump(got), dump(want))
	}
}

func TestGaugesAndCounters(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m := New(reg, BuildInfo{Version: "v1.2.3", Commit: "abc123", GoVersion: "go1.26.8"})
	m.ObserveBatch(7)
	m.ObserveBatch(-1) // recorded as 0
	m.Redelivered(3)
	m.Redelivered(0)
	m.Redelivered(-2)
	m.Deferred()
	m.Deferred()
	m.InFlight(3)
	m.InFlight(-1)
	m.SetConcurrency(50)
	m.SetRedisUp(false)
	m.SetRedisUp(true)
	want := map[string]float64{
		`webhook_build_info{commit="abc123",goversion="go1.26.8",version="v1.2.3"}`: 1,
		`webhook_enqueue_batch_size_count`:                                          2,
		`webhook_redeliveries_total`:                                                3,
		`webhook_delivery_deferrals_total`:                                          2,
		`webhook_deliveries_in_flight`:                                              2,
		`webhook_worker_concurrency`:                                                50,
		`webhook_redis_up`:                                                          1,
	}
	got := values(t, reg, "webhook_")
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP webhook_enqueue_batch_size Deliveries per enqueue request.
# TYPE webhook_enqueue_batch_size histogram
webhook_enqueue_batch_size_bucket{le="1"} 1
webhook_enqueue_batch_size_bucket{le="5"} 1
webhook_enqueue_batch_size_bucket{le="10"} 2
webhook_enqueue_batch_size_bucket{le="25"} 2
webhook_enqueue_batch_size_bucket{le="50"} 2
webhook_enqueue_batch_size_bucket{le="100"} 2
webhook_enqueue_batch_size_bucket{le="250"} 2
webhook_enqueue_batch_size_bucket{le="500"} 2
webhook_enqueue_batch_size_bucket{le="+Inf"} 2
webhook_enqueue_batch_size_sum 7
webhook_enqueue_batch_size_count 2
`), "webhook_enqueue_batch_size"); err != nil {
		t.Error(err)
	}
}

// TestLatencyBuckets checks that a delivery on the last scheduled attempt (43h21m20s after
// enqueue, plus the attempt) lands in a finite bucket, so quantiles stay meaningful.
func TestLatencyBuckets(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m := New(reg, BuildInfo{})
	m.ObserveDelivered(43*time.Hour + 21*time.Minute + 20*time.Second + 30*time.Second)
	var pb dto.Metric
	if err := m.latency.Write(&pb); err != nil {
		t.Fatal(err)
	}
	var first float64 // upper bound of the first bucket that holds the observation
	for _, b := range pb.Histogram.Bucket {
		if b.GetCumulativeCount() == 1 {
			first = b.GetUpperBound()
			break
		}
	}
	if first != 48*3600 {
		t.Errorf("a delivery after 43h21m50s fell in bucket le=%v, want le=172800 (48h)", first)
	}
}

// TestSeriesExistAtStart checks the zero-valued series New creates, which rate() and the
// dashboard need before the first event of each kind.
func TestSeriesExistAtStart(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	New(reg, BuildInfo{})
	for name, want := range map[string]int{
		"webhook_enqueued_total":                    5,
		"webhook_delivery_attempts_total":           9,
		"webhook_delivery_attempts_by_number_total": 11,
		"webhook_delivery_attempt_duration_seconds": 2,
		"webhook_build_info":                        1,
		"webhook_redis_up":                          1,
		"go_goroutines":                             1,
	} {
		if n, err := testutil.GatherAndCount(reg, name); err != nil || n != want {
			t.Errorf("%s: %d series (err %v), want %d", name, n, err, want)
		}
	}
}

func TestNilMetrics(t *testing.T) {
	var m *Metrics
	m.Enqueued(dispatcher.ResultAccepted)
	m.ObserveBatch(3)
	m.ObserveAttempt(dispatcher.OutcomeDelivered, 200, 1, time.Second)
	m.ObserveDelivered(time.Second)
	m.Failed()
	m.Redelivered(2)
	m.Deferred()
	m.InFlight(1)
	m.SetConcurrency(8)
	m.SetRedisUp(true)
}

// TestNewTwicePanics documents that one registry holds one Metrics.
func TestNewTwicePanics(t *testing.T) {
	reg := prometheus.NewRegistry()
	New(reg, BuildInfo{})
	defer func() {
		if recover() == nil {
			t.Error("second New on one registry did not panic")
		}
	}()
	New(reg, BuildInfo{})
}

// TestPromtoolCheckMetrics runs promtool's linter over a real scrape after every kind of
// delivery, so names, units and help texts follow Prometheus conventions.
func TestPromtoolCheckMetrics(t *testing.T) {
	promtool := testenv.LookPath(t, "promtool")
	reg := prometheus.NewRegistry()
	m := New(reg, BuildInfo{Version: "test", Commit: "none", GoVersion: "go"})
	simulate(m)
	srv := httptest.NewServer(Handler(reg))
	t.Cleanup(srv.Close)

	body := scrape(t, srv.URL)
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(body)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
	for _, name := range []string{"webhook_delivery_attempts_total", "promhttp_metric_handler_requests_total"} {
		if !bytes.Contains(body, []byte("\n"+name+"{")) {
			t.Errorf("scrape lacks %s", name)
		}
	}
}

// TestHandlerTwice checks that two handlers on one registry don't panic on the
// promhttp self-metrics they both register.
func TestHandlerTwice(t *testing.T) {
	reg := prometheus.NewRegistry()
	New(reg, BuildInfo{})
	Handler(reg)
	srv := httptest.NewServer(Handler(reg))
	t.Cleanup(srv.Close)
	scrape(t, srv.URL)
}

// simulate runs every scenario once, plus the API side, on m.
func simulate(m *Metrics) {
	deliverOK(m)
	deliverAfterRetry(m)
	deliverBlocked(m)
	deliverNever(m)
	m.Enqueued(dispatcher.ResultAccepted)
	m.Enqueued(dispatcher.ResultRefused)
	m.ObserveBatch(2)
	m.Redelivered(1)
	m.Deferred()
	m.SetConcurrency(10)
	m.SetRedisUp(true)
}

// scrape GETs url and returns the body, failing tb on any error.
func scrape(tb testing.TB, url string) []byte {
	tb.Helper()
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		tb.Fatalf("scrape %s: %s, %v\n%s", url, resp.Status, err, body)
	}
	return body
}

// values gathers g and returns the nonzero values of the series whose name starts with
// prefix, keyed like PromQL selectors (labels sorted). Histograms contribute their _count.
func values(tb testing.TB, g prometheus.Gatherer, prefix string) map[string]float64 {
	tb.Helper()
	mfs, err := g.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	out := map[string]float64{}
	add := func(name string, labels []*dto.LabelPair, v float64) {
		if v == 0 || !strings.HasPrefix(name, prefix) {
			return
		}
		var parts []string
		for _, l := range labels {
			parts = append(parts, l.GetName()+`="`+l.GetValue()+`"`)
		}
		slices.Sort(parts)
		key := name
		if len(parts) > 0 {
			key += "{" + strings.Join(parts, ",") + "}"
		}
		out[key] = v
	}
	for _, mf := range mfs {
		name := mf.GetName()
		for _, m := range mf.GetMetric() {
			switch {
			case m.Counter != nil:
				add(name, m.Label, m.Counter.GetValue())
			case m.Gauge != nil:
				add(name, m.Label, m.Gauge.GetValue())
			case m.Histogram != nil:
				add(name+"_count", m.Label, float64(m.Histogram.GetSampleCount()))
			}
		}
	}
	return out
}

func dump(m map[string]float64) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(m)) {
		b.WriteString("\n\t" + k + " " + strconv.FormatFloat(m[k], 'g', -1, 64))
	}
	return b.String()
}
