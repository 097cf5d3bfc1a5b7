package testenv

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestDashboardExprs(t *testing.T) {
	path := filepath.Join(t.TempDir(), "d.json")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(`{"panels":[
		{"type":"row","collapsed":true,"panels":[{"targets":[{"expr":"rate(a[$__rate_interval])"}]}]},
		{"datasource":{"uid":"$datasource"},
		 "targets":[{"expr":"rate(b[${__interval}])"},{"expr":""},{"refId":"C"}]},
		{"targets":[{"expr":"increase(c[$__range]) / $__range_s"}]},
		{"targets":[{"expr":"label_replace(d, \"x\", \"$1\", \"y\", \"(.*)\")"}]}
	]}`)
	got, err := DashboardExprs(path)
	want := []string{
		"rate(a[1m])", // nested in a collapsed row
		"rate(b[1m])",
		"increase(c[1m]) / 60",
		`label_replace(d, "x", "$1", "y", "(.*)")`, // $1 is PromQL, not a variable
	}
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("DashboardExprs = %q, %v\nwant %q", got, err, want)
	}

	write(`{"panels":[{"targets":[{"expr":"up{job=\"$job\"}"}]}]}`)
	if _, err := DashboardExprs(path); err == nil || !strings.Contains(err.Error(), "$job") {
		t.Errorf("DashboardExprs with $job: err = %v, want one naming $job", err)
	}

	write(`{"panels":`)
	if _, err := DashboardExprs(path); err == nil {
		t.Error("DashboardExprs of broken JSON: no error")
	}
}

func TestCheckLoopback(t *testing.T) {
	tests := []struct {
		target string
		ok     bool
	}{
		{"127.0.0.1:9090", true},
		{"127.1.2.3:80", true},
		{"[::1]:9090", true},
		{"localhost:9090", true},
		{"10.0.0.1:9090", false},
		{"api:9090", false},
		{"example.com:443", false},
		{"127.0.0.1", false}, // no port
	}
	for _, tt := range tests {
		if err := checkLoopback(tt.target); (err == nil) != tt.ok {
			t.Errorf("checkLoopback(%q) = %v, want ok=%v", tt.target, err, tt.ok)
		}
	}
}

// TestPrometheus starts Prometheus against a fixed exposition and queries it.
func TestPrometheus(t *testing.T) {
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		w.Write([]byte("# TYPE demo_total counter\ndemo_total{kind=\"a\"} 1\ndemo_total{kind=\"b\"} 2\n"))
	}))
	t.Cleanup(target.Close)
	s := StartPrometheus(t, PrometheusOptions{Targets: []string{strings.TrimPrefix(target.URL, "http://")}})
	s.WaitScraped(t, 30*time.Second)

	ctx := context.Background()
	tests := []struct {
		expr     string
		wantType string
		wantN    int
		wantErr  bool
	}{
		{"demo_total", "vector", 2, false},
		{"sum(demo_total)", "vector", 1, false},
		{"demo_total[1m]", "matrix", 2, false},
		{"scalar(sum(demo_total))", "scalar", 1, false},
		{"missing_metric", "vector", 0, false},
		{"sum(", "", 0, true}, // parse error
	}
	for _, tt := range tests {
		typ, n, err := s.Query(ctx, tt.expr)
		if typ != tt.wantType || n != tt.wantN || (err != nil) != tt.wantErr {
			t.Errorf("Query(%q) = %q, %d, %v; want %q, %d, err=%v", tt.expr, typ, n, err, tt.wantType, tt.wantN, tt.wantErr)
		}
	}
	samples, err := s.Samples(ctx, `sum(demo_total)`)
	if err != nil || len(samples) != 1 || samples[0].Value != 3 {
		t.Errorf("Samples(sum(demo_total)) = %v, %v; want one sample of 3", samples, err)
	}
}
