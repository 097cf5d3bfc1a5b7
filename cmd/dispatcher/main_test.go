package main

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/artificialstudio/webhook-dispatcher/test/testenv"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestAllOnEmbeddedRedis runs `all` with no REDIS_URL, as the README's first
// command does, and delivers one webhook through it.
func TestAllOnEmbeddedRedis(t *testing.T) {
	rc := testenv.NewReceiver(t, nil)
	apiAddr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	env := map[string]string{
		"API_ADDR":             apiAddr,
		"METRICS_ADDR":         "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t)),
		"URLGUARD_ALLOW_CIDRS": "127.0.0.1/32",
		"WEBHOOK_CA_FILE":      rc.CAFile,
		"POLL_INTERVAL":        "10ms",
	}
	var stdout, stderr lockedBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"all"}, func(k string) string { return env[k] }, &stdout, &stderr) }()

	// The generated token is printed once on stderr.
	var token string
	deadline := time.Now().Add(20 * time.Second)
	for token == "" {
		if _, after, ok := strings.Cut(stderr.String(), "generated for this run only: "); ok {
			token = strings.TrimSpace(strings.SplitN(after, "\n", 2)[0])
		}
		if time.Now().After(deadline) {
			t.Fatalf("no generated token printed; stderr: %s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if strings.Contains(stdout.String(), token) {
		t.Errorf("the token appears in the JSON log")
	}
	testenv.WaitForDial(t, apiAddr, 10*time.Second)
	resp := testenv.Call(t, http.MethodPost, "http://"+apiAddr+"/v1/deliveries", token, testenv.Delivery(rc.URL, "embedded-1"))
	if resp.Status != http.StatusAccepted {
		t.Fatalf("enqueue: %d %s", resp.Status, resp.Body)
	}
	reqs := rc.WaitCount(t, 1, 15*time.Second)
	if reqs[0].Header.Get("X-Media-Id") != "embedded-1" {
		t.Errorf("X-Media-Id = %q", reqs[0].Header.Get("X-Media-Id"))
	}
	if !strings.Contains(stdout.String(), "EMBEDDED IN-MEMORY Redis") {
		t.Errorf("no loud warning about the embedded Redis in the log")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("run did not return after cancel")
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"api without redis", []string{"api"}, map[string]string{"API_TOKEN": "x"}, "REDIS_URL is required"},
		{"worker without redis", []string{"worker"}, nil, "REDIS_URL is required"},
		{"api without token", []string{"api"}, map[string]string{"REDIS_URL": "redis://127.0.0.1:1"}, "API_TOKEN is required"},
		{"bad schedule", []string{"all"}, map[string]string{"RETRY_SCHEDULE": "1s,2s"}, "RETRY_SCHEDULE"},
		{"bad concurrency", []string{"all"}, map[string]string{"WORKER_CONCURRENCY": "zero"}, "WORKER_CONCURRENCY"},
		{"bad timeout", []string{"all"}, map[string]string{"DELIVERY_TIMEOUT": "-1s"}, "DELIVERY_TIMEOUT"},
		{"bad cidr", []string{"all"}, map[string]string{"URLGUARD_ALLOW_CIDRS": "not-a-cidr"}, "URLGUARD_ALLOW_CIDRS"},
		{"bad redis url", []string{"worker"}, map[string]string{"REDIS_URL": "postgres://user:hunter2@db"}, "not a valid"},
		{"unknown command", []string{"frobnicate"}, nil, "unknown command"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := run(context.Background(), tt.args, func(k string) string { return tt.env[k] }, &out, &errOut)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "hunter2") || strings.Contains(out.String(), "hunter2") {
				t.Errorf("a Redis password leaked: %v", err)
			}
		})
	}
}

func TestFlagOverridesEnv(t *testing.T) {
	cfg, _, err := loadConfig("all", []string{"-worker-concurrency", "7"}, func(k string) string {
		return map[string]string{"WORKER_CONCURRENCY": "3", "DELIVERY_TIMEOUT": "2s"}[k]
	})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Concurrency != 7 || cfg.DeliveryTimeout != 2*time.Second || cfg.APIAddr != ":8080" {
		t.Errorf("cfg = %+v", cfg)
	}
	if cfg.ShutdownTimeout != 7*time.Second {
		t.Errorf("ShutdownTimeout = %s, want DELIVERY_TIMEOUT+5s", cfg.ShutdownTimeout)
	}
}

func TestCheckURLCommand(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"check-url", "https://example.com/hook"}, func(string) string { return "" }, &out, &out); err != nil {
		t.Errorf("public URL: %v (%s)", err, out.String())
	}
	out.Reset()
	err := run(context.Background(), []string{"check-url", "https://169.254.169.254/latest/meta-data"}, func(string) string { return "" }, &out, &out)
	if !errors.Is(err, errRefused) || exitCode(err) != 1 || !strings.HasPrefix(out.String(), "refused: ") {
		t.Errorf("metadata URL: err %v, exit %d, out %q", err, exitCode(err), out.String())
	}
}
