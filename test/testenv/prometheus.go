package testenv

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Bounds on every wait of a Prometheus.
const (
	promStartTimeout = 30 * time.Second // Prometheus replays no WAL here; it is ready in ~1 s
	promPoll         = 200 * time.Millisecond
	promQueryTimeout = 10 * time.Second // per HTTP request to Prometheus
)

// Prometheus is a real Prometheus server, so PromQL that dashboards and alerts depend on
// is checked against what the code actually exports. It only ever listens on, and
// scrapes, loopback addresses.
type Prometheus struct {
	// URL is the base URL of the HTTP API, e.g. http://127.0.0.1:41234.
	URL string

	targets []string
	client  *http.Client
	proc    *Proc
	dir     string
	ownDir  bool
}

// PrometheusOptions configure NewPrometheus and StartPrometheus.
type PrometheusOptions struct {
	// Targets are host:port addresses to scrape at /metrics every second. Each host must be
	// a loopback address (127.0.0.0/8, ::1 or localhost). At least one is required.
	Targets []string
	// RuleFiles are rule files (alerting or recording) that Prometheus loads and evaluates
	// every second; see Prometheus.Rules. Relative paths are relative to the working
	// directory (a test's package directory).
	RuleFiles []string
	// Dir holds the config, data and log; empty means a new temp dir, which Close removes.
	// StartPrometheus uses a tb.TempDir.
	Dir string
}

// NewPrometheus runs the prometheus binary (found on PATH) on a free 127.0.0.1 port,
// scraping o.Targets every second, and waits until it is ready. Close stops it.
func NewPrometheus(ctx context.Context, o PrometheusOptions) (*Prometheus, error) {
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		return nil, err
	}
	if len(o.Targets) == 0 {
		return nil, errors.New("prometheus: no targets to scrape")
	}
	for _, t := range o.Targets {
		if err := checkLoopback(t); err != nil {
			return nil, fmt.Errorf("prometheus: %w", err)
		}
	}
	s := &Prometheus{targets: o.Targets, client: &http.Client{Timeout: promQueryTimeout}}
	if s.dir, s.ownDir, err = ownDir(o.Dir, "prometheus-"); err != nil {
		return nil, err
	}
	cfg := filepath.Join(s.dir, "prometheus.yml")
	if err := os.WriteFile(cfg, config(o), 0o644); err != nil {
		s.Close()
		return nil, err
	}
	for try := 1; ; try++ {
		err = s.start(ctx, bin, cfg, filepath.Join(s.dir, fmt.Sprintf("data%d", try)))
		if err == nil {
			return s, nil
		}
		// Another process may have taken the port between FindFreePort and Prometheus'
		// listen; a fresh port fixes that, nothing else would.
		if try == startTries || !strings.Contains(err.Error(), "address already in use") {
			s.Close()
			return nil, fmt.Errorf("start prometheus: %w", err)
		}
	}
}

// StartPrometheus is NewPrometheus in a tb.TempDir, stopped when the test ends, with its
// log shown if the test failed. It skips without the binary unless CI=true.
func StartPrometheus(tb testing.TB, o PrometheusOptions) *Prometheus {
	tb.Helper()
	LookPath(tb, "prometheus")
	if o.Dir == "" {
		o.Dir = tb.TempDir()
	}
	s, err := NewPrometheus(context.Background(), o)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		s.Close()
		if tb.Failed() {
			tb.Logf("prometheus output:\n%s", s.proc.Tail(8000))
		}
	})
	return s
}

// Close stops Prometheus and removes its dir if NewPrometheus created it.
func (s *Prometheus) Close() {
	s.proc.Kill()
	if s.ownDir {
		os.RemoveAll(s.dir)
	}
}

// start runs one Prometheus process and waits until it is ready. On error the process is
// already stopped.
func (s *Prometheus) start(ctx context.Context, bin, cfg, data string) error {
	port, err := FindFreePort()
	if err != nil {
		return err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	s.proc, err = StartProc(exec.Command(bin,
		"--config.file="+cfg,
		"--storage.tsdb.path="+data,
		"--web.listen-address="+addr,
		"--log.level=warn",
	), filepath.Join(s.dir, "prometheus.log"))
	if err != nil {
		return err
	}
	s.URL = "http://" + addr
	err = poll(ctx, promStartTimeout, promPoll, func() (bool, error) {
		if s.proc.Exited() {
			return false, giveUp{errors.New("prometheus exited")}
		}
		resp, err := s.client.Get(s.URL + "/-/ready")
		if err != nil {
			return false, err
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, fmt.Errorf("GET /-/ready: %s", resp.Status)
	})
	if err != nil {
		s.proc.Kill()
		return s.proc.Failure(fmt.Errorf("not ready at %s: %w", s.URL, err))
	}
	return nil
}

// WaitScraped waits until every target has been scraped successfully at least twice (what
// rate() needs) and fails tb after timeout, listing the targets' last errors.
func (s *Prometheus) WaitScraped(tb testing.TB, timeout time.Duration) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		pending, err := s.unscraped(context.Background())
		if err == nil && len(pending) == 0 {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("prometheus: targets %v not scraped twice within %v (last error: %v); targets: %s",
				pending, timeout, err, s.targetsState())
		}
		time.Sleep(promPoll)
	}
}

// unscraped returns the targets with fewer than two successful scrapes.
func (s *Prometheus) unscraped(ctx context.Context) ([]string, error) {
	var pending []string
	for _, t := range s.targets {
		// up is 1 per successful scrape, so its sum over time counts them.
		samples, err := s.Samples(ctx, fmt.Sprintf(`sum_over_time(up{instance=%q}[10m])`, t))
		if err != nil {
			return s.targets, err
		}
		if len(samples) != 1 || samples[0].Value < 2 {
			pending = append(pending, t)
		}
	}
	return pending, nil
}

// targetsState returns /api/v1/targets for failure messages.
func (s *Prometheus) targetsState() string {
	resp, err := s.client.Get(s.URL + "/api/v1/targets")
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<14))
	return string(b)
}

// Sample is one element of an instant vector.
type Sample struct {
	Metric map[string]string
	Value  float64
}

// Query runs an instant query at the current time. It returns the result type ("vector",
// "matrix", "scalar" or "string") and the number of elements (1 for a scalar or string),
// and an error if Prometheus reports one or any warning.
func (s *Prometheus) Query(ctx context.Context, expr string) (resultType string, n int, err error) {
	resultType, raw, err := s.query(ctx, expr)
	if err != nil {
		return "", 0, err
	}
	switch resultType {
	case "vector", "matrix":
		var elems []json.RawMessage
		if err := json.Unmarshal(raw, &elems); err != nil {
			return "", 0, fmt.Errorf("query %q: decode result: %w", expr, err)
		}
		return resultType, len(elems), nil
	default:
		return resultType, 1, nil
	}
}

// Samples runs an instant query whose result must be a vector and returns its elements.
// NaN and ±Inf values come back as such.
func (s *Prometheus) Samples(ctx context.Context, expr string) ([]Sample, error) {
	resultType, raw, err := s.query(ctx, expr)
	if err != nil {
		return nil, err
	}
	if resultType != "vector" {
		return nil, fmt.Errorf("query %q: result is a %s, not a vector", expr, resultType)
	}
	var elems []struct {
		Metric map[string]string `json:"metric"`
		Value  [2]any            `json:"value"` // [unix time, "value"]
	}
	if err := json.Unmarshal(raw, &elems); err != nil {
		return nil, fmt.Errorf("query %q: decode result: %w", expr, err)
	}
	out := make([]Sample, 0, len(elems))
	for _, e := range elems {
		str, _ := e.Value[1].(string)
		v, err := strconv.ParseFloat(str, 64)
		if err != nil {
			return nil, fmt.Errorf("query %q: value %q: %w", expr, str, err)
		}
		out = append(out, Sample{Metric: e.Metric, Value: v})
	}
	return out, nil
}

// query runs expr through /api/v1/query and returns the raw result.
func (s *Prometheus) query(ctx context.Context, expr string) (string, json.RawMessage, error) {
	u := s.URL + "/api/v1/query?" + url.Values{"query": {expr}}.Encode()
	var body struct {
		Status    string   `json:"status"`
		ErrorType string   `json:"errorType"`
		Error     string   `json:"error"`
		Warnings  []string `json:"warnings"`
		Data      struct {
			ResultType string          `json:"resultType"`
			Result     json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := s.getJSON(ctx, u, &body); err != nil {
		return "", nil, fmt.Errorf("query %q: %w", expr, err)
	}
	if body.Status != "success" {
		return "", nil, fmt.Errorf("query %q: %s: %s", expr, body.ErrorType, body.Error)
	}
	if len(body.Warnings) > 0 {
		return "", nil, fmt.Errorf("query %q: warnings: %s", expr, strings.Join(body.Warnings, "; "))
	}
	return body.Data.ResultType, body.Data.Result, nil
}

// Rule is one rule as Prometheus evaluates it.
type Rule struct {
	Group     string
	Name      string // alert name, or the recorded metric
	Type      string // "alerting" or "recording"
	Query     string
	Health    string // "ok", "err", or "unknown" before the first evaluation
	LastError string
	State     string            // alerts only: "inactive", "pending" or "firing"
	Labels    map[string]string // labels the rule adds, e.g. severity
	// Annotations are the alert's annotation templates (alerts only), unexpanded.
	Annotations map[string]string
}

// Rules returns the rules loaded from PrometheusOptions.RuleFiles, with the state of their latest
// evaluation.
func (s *Prometheus) Rules(ctx context.Context) ([]Rule, error) {
	var body struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Groups []struct {
				Name  string `json:"name"`
				Rules []struct {
					Name        string            `json:"name"`
					Type        string            `json:"type"`
					Query       string            `json:"query"`
					Health      string            `json:"health"`
					LastError   string            `json:"lastError"`
					State       string            `json:"state"`
					Labels      map[string]string `json:"labels"`
					Annotations map[string]string `json:"annotations"`
				} `json:"rules"`
			} `json:"groups"`
		} `json:"data"`
	}
	if err := s.getJSON(ctx, s.URL+"/api/v1/rules", &body); err != nil {
		return nil, fmt.Errorf("rules: %w", err)
	}
	if body.Status != "success" {
		return nil, fmt.Errorf("rules: %s", body.Error)
	}
	var rules []Rule
	for _, g := range body.Data.Groups {
		for _, r := range g.Rules {
			rules = append(rules, Rule{Group: g.Name, Name: r.Name, Type: r.Type, Query: r.Query,
				Health: r.Health, LastError: r.LastError, State: r.State,
				Labels: r.Labels, Annotations: r.Annotations})
		}
	}
	return rules, nil
}

// getJSON decodes the JSON body of a GET. Prometheus answers errors (400, 422, 503) with a
// JSON body too, so the body is decoded whatever the status, and the status only matters
// when the body is not JSON.
func (s *Prometheus) getJSON(ctx context.Context, u string, v any) error {
	ctx, cancel := context.WithTimeout(ctx, promQueryTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(b))
	}
	return nil
}

// config renders prometheus.yml. JSON is valid YAML, and encoding/json quotes paths safely.
func config(opts PrometheusOptions) []byte {
	type static struct {
		Targets []string `json:"targets"`
	}
	type scrape struct {
		JobName       string   `json:"job_name"`
		StaticConfigs []static `json:"static_configs"`
	}
	rules := make([]string, 0, len(opts.RuleFiles))
	for _, f := range opts.RuleFiles {
		if abs, err := filepath.Abs(f); err == nil {
			f = abs
		}
		rules = append(rules, f)
	}
	cfg := struct {
		Global        map[string]string `json:"global"`
		RuleFiles     []string          `json:"rule_files"`
		ScrapeConfigs []scrape          `json:"scrape_configs"`
	}{
		// scrape_timeout may not exceed scrape_interval.
		Global:        map[string]string{"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
		RuleFiles:     rules,
		ScrapeConfigs: []scrape{{JobName: "testenv", StaticConfigs: []static{{Targets: opts.Targets}}}},
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		panic(err) // only strings inside: cannot fail
	}
	return b
}

// checkLoopback returns an error unless target is host:port on a loopback address.
func checkLoopback(target string) error {
	host, _, err := net.SplitHostPort(target)
	if err != nil {
		return fmt.Errorf("target %q: %w", target, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("target %q: only loopback addresses may be scraped", target)
	}
	return nil
}
