// Package promtest runs a real Prometheus server for tests, so PromQL that dashboards and
// alerts depend on is checked against what the code actually exports. It is an ordinary
// package (not a _test file) so that any package's tests can import it.
//
// Prometheus here only ever listens on, and scrapes, loopback addresses.
//
// Without the prometheus (or promtool) binary on PATH, tests skip; under CI=true a missing
// binary fails the test instead, so CI cannot go green by skipping.
package promtest

import (
	"bytes"
	"context"
	"encoding/json"
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
	"sync"
	"testing"
	"time"
)

// Bounds on every wait in this package.
const (
	startTimeout = 30 * time.Second // Prometheus replays no WAL here; it is ready in ~1 s
	startTries   = 3                // new free port after "address already in use"
	pollInterval = 200 * time.Millisecond
	queryTimeout = 10 * time.Second // per HTTP request to Prometheus
)

// Server is a Prometheus started by Start. It lives until the test that started it ends.
type Server struct {
	// URL is the base URL of the HTTP API, e.g. http://127.0.0.1:41234.
	URL string

	targets []string
	client  *http.Client
	out     *syncBuffer // Prometheus' stdout and stderr, shown when the test fails
}

// Options configure StartWith.
type Options struct {
	// Targets are host:port addresses to scrape at /metrics every second. Each host must be
	// a loopback address (127.0.0.0/8, ::1 or localhost).
	Targets []string
	// RuleFiles are rule files (alerting or recording) that Prometheus loads and evaluates
	// every second; see Server.Rules. Relative paths are relative to the test's directory.
	RuleFiles []string
}

// Start runs the prometheus binary on a free 127.0.0.1 port, scraping targets (host:port,
// loopback only) every second, until tb ends. It skips without the binary unless CI=true.
func Start(tb testing.TB, targets ...string) *Server {
	tb.Helper()
	return StartWith(tb, Options{Targets: targets})
}

// StartWith is Start with rule files.
func StartWith(tb testing.TB, opts Options) *Server {
	tb.Helper()
	bin := LookPath(tb, "prometheus")
	if len(opts.Targets) == 0 {
		tb.Fatal("promtest: no targets to scrape")
	}
	for _, t := range opts.Targets {
		if err := checkLoopback(t); err != nil {
			tb.Fatalf("promtest: %v", err)
		}
	}
	dir := tb.TempDir()
	cfg := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfg, config(opts), 0o644); err != nil {
		tb.Fatal(err)
	}

	s := &Server{targets: opts.Targets, client: &http.Client{Timeout: queryTimeout}, out: &syncBuffer{}}
	var err error
	for try := 1; try <= startTries; try++ {
		if err = s.start(tb, bin, cfg, filepath.Join(dir, fmt.Sprintf("data%d", try))); err == nil {
			return s
		}
		// Another process may have taken the port between freePort and Prometheus'
		// listen; a fresh port fixes that, nothing else would.
		if !strings.Contains(s.out.String(), "address already in use") {
			break
		}
	}
	tb.Fatalf("promtest: start prometheus: %v\n%s", err, s.out)
	return nil
}

// start runs one Prometheus process and waits until it is ready. On error the process is
// already stopped.
func (s *Server) start(tb testing.TB, bin, cfg, data string) error {
	tb.Helper()
	port, err := freePort()
	if err != nil {
		return err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	cmd := exec.Command(bin,
		"--config.file="+cfg,
		"--storage.tsdb.path="+data,
		"--web.listen-address="+addr,
		"--log.level=warn",
	)
	cmd.Stdout, cmd.Stderr = s.out, s.out
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	stop := func() {
		cmd.Process.Kill()
		<-exited
	}

	s.URL = "http://" + addr
	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case <-exited:
			return fmt.Errorf("prometheus exited: %v", cmd.ProcessState)
		default:
		}
		if resp, err := s.client.Get(s.URL + "/-/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			stop()
			return fmt.Errorf("not ready at %s after %v", s.URL, startTimeout)
		}
		time.Sleep(pollInterval)
	}
	tb.Cleanup(func() {
		stop()
		if tb.Failed() {
			tb.Logf("prometheus output:\n%s", s.out)
		}
	})
	return nil
}

// WaitScraped waits until every target has been scraped successfully at least twice (what
// rate() needs) and fails tb after timeout, listing the targets' last errors.
func (s *Server) WaitScraped(tb testing.TB, timeout time.Duration) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		pending, err := s.unscraped(context.Background())
		if err == nil && len(pending) == 0 {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("promtest: targets %v not scraped twice within %v (last error: %v); targets: %s",
				pending, timeout, err, s.targetsState())
		}
		time.Sleep(pollInterval)
	}
}

// unscraped returns the targets with fewer than two successful scrapes.
func (s *Server) unscraped(ctx context.Context) ([]string, error) {
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
func (s *Server) targetsState() string {
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
func (s *Server) Query(ctx context.Context, expr string) (resultType string, n int, err error) {
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
func (s *Server) Samples(ctx context.Context, expr string) ([]Sample, error) {
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
func (s *Server) query(ctx context.Context, expr string) (string, json.RawMessage, error) {
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

// Rules returns the rules loaded from Options.RuleFiles, with the state of their latest
// evaluation.
func (s *Server) Rules(ctx context.Context) ([]Rule, error) {
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
func (s *Server) getJSON(ctx context.Context, u string, v any) error {
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
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

// LookPath returns the path of the named binary. Without it the test is skipped, except
// under CI=true, where a missing binary is a failure, not a silent skip.
func LookPath(tb testing.TB, name string) string {
	tb.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	if os.Getenv("CI") == "true" {
		tb.Fatalf("%s is required under CI=true: %v", name, err)
	}
	tb.Skipf("%s not installed: %v", name, err)
	return ""
}

// Promtool returns the path of promtool; see LookPath.
func Promtool(tb testing.TB) string {
	tb.Helper()
	return LookPath(tb, "promtool")
}

// config renders prometheus.yml. JSON is valid YAML, and encoding/json quotes paths safely.
func config(opts Options) []byte {
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
		ScrapeConfigs: []scrape{{JobName: "promtest", StaticConfigs: []static{{Targets: opts.Targets}}}},
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

// freePort returns a TCP port that was free on 127.0.0.1 a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// syncBuffer is a bytes.Buffer safe for the concurrent writes of a child's stdout and
// stderr and reads from the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
