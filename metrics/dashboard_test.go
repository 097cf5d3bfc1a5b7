package metrics

import (
	"context"
	"encoding/json"
	"math"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/artificialstudio/webhook-dispatcher/test/testenv"
)

const (
	dashboardPath = "grafana/dispatcher.json"
	alertsPath    = "prometheus/alerts.yml"
)

// metricName finds metric names in PromQL: ours, and the runtime ones the dashboard uses.
var metricName = regexp.MustCompile(`\b(?:webhook|go|process)_[a-z_]+\b`)

// TestDashboardAgainstPrometheus scrapes this package's metrics with a real Prometheus and
// runs every dashboard query and every alert rule on it, so a renamed metric or label, or
// broken PromQL, fails here instead of showing an empty panel in production.
func TestDashboardAgainstPrometheus(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg, BuildInfo{Version: "test", Commit: "none", GoVersion: "go"})
	_, insp := startQueue(t, 3)
	// A second shard whose workers keep delivering (asynq's counters grow at each read) and
	// the layout that maps both shards to primaries, for the per-primary panels.
	reg.MustRegister(&queuesCollector{each: []*queueCollector{
		newQueueCollector(insp, testQueue, queueTimeout, queueMaxAge),
		newQueueCollector(&growingInspector{}, "webhooks:1:7", time.Second, 0),
	}})
	m.SetTopology(Topology{Kind: TopologyCluster, Primaries: 2, WithoutReplica: 1, QueuePrimary: map[string]string{
		testQueue: "127.0.0.1:7000", "webhooks:1:7": "127.0.0.1:7001",
	}}, time.Now())
	m.TopologyReadFailed()
	srv := httptest.NewServer(Handler(reg)) // 127.0.0.1
	t.Cleanup(srv.Close)

	// Keep traffic flowing while Prometheus scrapes, so that rate() and the quantiles
	// over it are real numbers, not 0 and NaN.
	ctx := t.Context()
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			simulate(m)
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(func() { <-done })

	prom := testenv.StartPrometheus(t, testenv.PrometheusOptions{
		Targets:   []string{strings.TrimPrefix(srv.URL, "http://")},
		RuleFiles: []string{alertsPath},
	})
	prom.WaitScraped(t, 30*time.Second)

	exprs, err := testenv.DashboardExprs(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	if len(exprs) < 20 {
		t.Fatalf("found %d dashboard exprs, want every panel's (20+)", len(exprs))
	}
	for _, expr := range exprs {
		samples, err := prom.Samples(ctx, expr)
		if err != nil {
			t.Errorf("dashboard: %v", err)
			continue
		}
		if len(samples) == 0 {
			t.Errorf("dashboard: no data for %s", expr)
			continue
		}
		if !slices.ContainsFunc(samples, func(s testenv.Sample) bool { return !math.IsNaN(s.Value) }) {
			t.Errorf("dashboard: only NaN for %s: %v", expr, samples)
		}
		checkNamesExist(ctx, t, prom, "dashboard", expr)
	}

	rules := evaluatedRules(ctx, t, prom)
	var alerts []string
	for _, r := range rules {
		if r.Health != "ok" {
			t.Errorf("rule %s: health %q: %s", r.Name, r.Health, r.LastError)
		}
		// The alert needs no data to be valid, but must run as an instant query.
		if _, _, err := prom.Query(ctx, r.Query); err != nil {
			t.Errorf("rule %s: %v", r.Name, err)
		}
		checkNamesExist(ctx, t, prom, "rule "+r.Name, r.Query)
		if r.Type == "alerting" {
			alerts = append(alerts, r.Name)
			if r.Labels["severity"] == "" || r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("alert %s lacks a severity label or a summary or description annotation", r.Name)
			}
		}
	}
	want := []string{"WebhookBacklogAgeGrowing", "WebhookDeliveryFailureRatioHigh", "WebhookReconcilerRepairing",
		"WebhookRedisEvicting", "WebhookRedisPrimaryWithoutReplica", "WebhookRedisTopologyReadErrors",
		"WebhookRedisTopologyStale", "WebhookRedisUnreachable", "WebhookRetriesExhausting", "WebhookWorkersDown"}
	slices.Sort(alerts)
	if !slices.Equal(alerts, want) {
		t.Errorf("alerts loaded: %v, want %v", alerts, want)
	}
}

// checkNamesExist fails t for each metric name in expr that Prometheus has no series of.
func checkNamesExist(ctx context.Context, t *testing.T, prom *testenv.Prometheus, where, expr string) {
	t.Helper()
	for _, name := range metricName.FindAllString(expr, -1) {
		if _, n, err := prom.Query(ctx, `count({__name__="`+name+`"})`); err != nil || n == 0 {
			t.Errorf("%s: metric %s is not exported (err %v): %s", where, name, err, expr)
		}
	}
}

// evaluatedRules waits (up to 30 s) until Prometheus has evaluated every loaded rule once.
func evaluatedRules(ctx context.Context, t *testing.T, prom *testenv.Prometheus) []testenv.Rule {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		rules, err := prom.Rules(ctx)
		if err == nil && len(rules) > 0 && !slices.ContainsFunc(rules, func(r testenv.Rule) bool { return r.Health == "unknown" }) {
			return rules
		}
		if time.Now().After(deadline) {
			t.Fatalf("rules not all evaluated within 30s: %v %+v", err, rules)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestDashboardJSON checks the dashboard's structure, which Grafana only complains about
// at import time: unique panel ids, one datasource variable defaulting to the provisioned
// uid, every query on it, and unique refIds per panel.
func TestDashboardJSON(t *testing.T) {
	b, err := os.ReadFile(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	type target struct {
		RefID      string         `json:"refId"`
		Expr       string         `json:"expr"`
		Datasource map[string]any `json:"datasource"`
	}
	type panel struct {
		ID         int            `json:"id"`
		Type       string         `json:"type"`
		Title      string         `json:"title"`
		Datasource map[string]any `json:"datasource"`
		Targets    []target       `json:"targets"`
		Panels     []panel        `json:"panels"`
		GridPos    struct{ H, W int }
	}
	var dash struct {
		UID           string  `json:"uid"`
		Title         string  `json:"title"`
		SchemaVersion int     `json:"schemaVersion"`
		Panels        []panel `json:"panels"`
		Templating    struct {
			List []struct {
				Name, Type, Query string
				Current           struct{ Value string }
			}
		}
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatal(err)
	}
	if dash.UID == "" || dash.Title == "" || dash.SchemaVersion < 39 {
		t.Errorf("uid %q, title %q, schemaVersion %d: want both set and 39+", dash.UID, dash.Title, dash.SchemaVersion)
	}
	if l := dash.Templating.List; len(l) != 1 || l[0].Name != "datasource" || l[0].Type != "datasource" ||
		l[0].Query != "prometheus" || l[0].Current.Value != "prometheus" {
		t.Errorf("templating: %+v, want one prometheus datasource variable defaulting to uid prometheus", l)
	}

	ds, err := os.ReadFile("grafana/provisioning/datasources/prometheus.yml")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(ds), "\n    uid: prometheus\n") {
		t.Error("provisioned datasource must have uid prometheus, the dashboard's default")
	}

	ids := map[int]string{}
	var check func(panels []panel)
	check = func(panels []panel) {
		for _, p := range panels {
			if prev, ok := ids[p.ID]; ok || p.ID == 0 {
				t.Errorf("panel %q: id %d missing or also used by %q", p.Title, p.ID, prev)
			}
			ids[p.ID] = p.Title
			check(p.Panels)
			if p.Type == "row" {
				continue
			}
			if p.GridPos.W == 0 || p.GridPos.H == 0 || len(p.Targets) == 0 || p.Datasource["uid"] != "${datasource}" {
				t.Errorf("panel %q: needs a gridPos, targets and datasource ${datasource}", p.Title)
			}
			refs := map[string]bool{}
			for _, tg := range p.Targets {
				if tg.RefID == "" || refs[tg.RefID] || tg.Expr == "" || tg.Datasource["uid"] != "${datasource}" {
					t.Errorf("panel %q: target %q needs a unique refId, an expr and datasource ${datasource}", p.Title, tg.RefID)
				}
				refs[tg.RefID] = true
			}
		}
	}
	check(dash.Panels)
}
