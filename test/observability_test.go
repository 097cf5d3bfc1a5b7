package test

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/artificialstudio/webhook-dispatcher/test/testenv"
)

// TestDashboardAgainstRunningStack runs a real API and a real worker process,
// keeps deliveries of every kind flowing (delivered, retried, finally failed,
// deferred, batched, redelivered), has a real Prometheus scrape both, and runs
// every dashboard expression and alert rule on what it scraped. It also runs
// `promtool check metrics` on a real scrape of each process.
func TestDashboardAgainstRunningStack(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Prometheus; ~20 s")
	}
	redis := testenv.StartRedis(t, testenv.RedisOptions{})
	ok := testenv.NewReceiver(t, nil)
	failing := testenv.NewReceiver(t, testenv.Status(http.StatusInternalServerError))
	slow := testenv.NewReceiver(t, func(w http.ResponseWriter, _ *http.Request, _ int) {
		time.Sleep(300 * time.Millisecond)
		w.WriteHeader(http.StatusOK)
	})
	env := []string{"REDIS_URL=" + redis.URL(), "WEBHOOK_CA_FILE=" + ok.CAFile,
		"RETRY_SCHEDULE=20ms,20ms,20ms,20ms,20ms,20ms,20ms,20ms,20ms", "HOST_CONCURRENCY=1"}
	api := testenv.StartDispatcher(t, "api", env...)
	worker := testenv.StartDispatcher(t, "worker", env...)

	promtool := testenv.LookPath(t, "promtool")
	for name, url := range map[string]string{"api": api.MetricsURL, "worker": worker.MetricsURL} {
		resp := testenv.Call(t, http.MethodGet, url+"/metrics", "", nil)
		cmd := exec.Command(promtool, "check", "metrics")
		cmd.Stdin = strings.NewReader(string(resp.Body))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool check metrics on the %s: %v\n%s", name, err, out)
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var n atomic.Int64
	traffic := make(chan struct{})
	go func() {
		defer close(traffic)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for i := 0; i < 400; i++ { // bounded: at most 40 s
			id := n.Add(1)
			batch := []any{
				testenv.Delivery(ok.URL, fmt.Sprintf("obs-ok-%d", id)),
				testenv.Delivery(slow.URL, fmt.Sprintf("obs-slow-%d-a", id)),
				testenv.Delivery(slow.URL, fmt.Sprintf("obs-slow-%d-b", id)),
			}
			api.Call(t, http.MethodPost, "/v1/deliveries/batch", map[string]any{"deliveries": batch})
			api.Call(t, http.MethodPost, "/v1/deliveries", testenv.Delivery(failing.URL, fmt.Sprintf("obs-fail-%d", id)))
			api.Call(t, http.MethodPost, "/v1/deliveries", testenv.Delivery("https://10.1.2.3/", fmt.Sprintf("obs-refused-%d", id)))
			if id > 3 {
				api.Call(t, http.MethodPost, fmt.Sprintf("/v1/deliveries/obs-fail-%d/redeliver", id-3), nil)
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	defer func() { cancel(); <-traffic }()

	prom := testenv.StartPrometheus(t, testenv.PrometheusOptions{
		Targets:   []string{strings.TrimPrefix(api.MetricsURL, "http://"), strings.TrimPrefix(worker.MetricsURL, "http://")},
		RuleFiles: []string{filepath.Join(testenv.ModuleRoot(t), "metrics", "prometheus", "alerts.yml")},
	})
	prom.WaitScraped(t, 30*time.Second)
	time.Sleep(3 * time.Second) // a few more scrapes, so rate() spans real traffic

	exprs, err := testenv.DashboardExprs(filepath.Join(testenv.ModuleRoot(t), "metrics", "grafana", "dispatcher.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, expr := range exprs {
		samples, err := prom.Samples(ctx, expr)
		switch {
		case err != nil:
			t.Errorf("dashboard: %v", err)
		case len(samples) == 0:
			t.Errorf("dashboard: no data for %s", expr)
		case !slices.ContainsFunc(samples, func(s testenv.Sample) bool { return !math.IsNaN(s.Value) }):
			t.Errorf("dashboard: only NaN for %s", expr)
		}
	}
	rules, err := prom.Rules(ctx)
	if err != nil || len(rules) < 5 {
		t.Fatalf("rules: %v %v", rules, err)
	}
	for _, r := range rules {
		if _, _, err := prom.Query(ctx, r.Query); err != nil {
			t.Errorf("rule %s: %v", r.Name, err)
		}
	}
	t.Logf("%d dashboard expressions and %d rules evaluated against a running API and worker after %d rounds of traffic", len(exprs), len(rules), n.Load())
}
