package testenv

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
)

// ModuleRoot is the repository root (the folder holding go.mod).
func ModuleRoot(tb testing.TB) string {
	tb.Helper()
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// Binary builds ./cmd/dispatcher once per test process and returns its path.
// DISPATCHER_BIN, when set, is used instead (a prebuilt binary).
func Binary(tb testing.TB) string {
	tb.Helper()
	if p := os.Getenv("DISPATCHER_BIN"); p != "" {
		return p
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "dispatcher-bin-")
		if err != nil {
			buildErr = err
			return
		}
		buildPath = filepath.Join(dir, "dispatcher")
		cmd := exec.Command("go", "build", "-o", buildPath, "./cmd/dispatcher")
		cmd.Dir = ModuleRoot(tb)
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		tb.Fatal(buildErr)
	}
	return buildPath
}

// Token is the API token the harness gives every dispatcher.
const Token = "test-token-0123456789"

// Dispatcher is a running dispatcher process.
type Dispatcher struct {
	tb         testing.TB
	Mode       string
	APIURL     string // http://127.0.0.1:PORT
	MetricsURL string
	cmd        *exec.Cmd
	logs       *syncBuffer
	done       chan struct{}
	exitErr    error
	env        []string
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// StartDispatcher runs the binary in mode ("all", "api", "worker") with env
// (KEY=VALUE) added to a minimal environment, on free loopback ports, and
// waits until it serves /healthz.
func StartDispatcher(tb testing.TB, mode string, env ...string) *Dispatcher {
	tb.Helper()
	apiPort, metricsPort := FreePort(tb), FreePort(tb)
	d := &Dispatcher{
		tb:         tb,
		Mode:       mode,
		APIURL:     "http://127.0.0.1:" + strconv.Itoa(apiPort),
		MetricsURL: "http://127.0.0.1:" + strconv.Itoa(metricsPort),
		logs:       &syncBuffer{},
		done:       make(chan struct{}),
	}
	d.env = append([]string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + os.Getenv("HOME"),
		"API_ADDR=127.0.0.1:" + strconv.Itoa(apiPort),
		"METRICS_ADDR=127.0.0.1:" + strconv.Itoa(metricsPort),
		"API_TOKEN=" + Token,
		"URLGUARD_ALLOW_CIDRS=127.0.0.1/32",
		"POLL_INTERVAL=10ms",
		"FORWARD_INTERVAL=50ms",
		"LOG_LEVEL=debug",
	}, env...)
	d.cmd = exec.Command(Binary(tb), mode)
	d.cmd.Env = d.env
	d.cmd.Stdout = d.logs
	d.cmd.Stderr = d.logs
	if err := d.cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	go func() {
		d.exitErr = d.cmd.Wait()
		close(d.done)
	}()
	tb.Cleanup(func() {
		d.Kill()
		if tb.Failed() {
			tb.Logf("dispatcher %s logs:\n%s", mode, tail(d.logs.String(), 8000))
		}
	})
	healthURL := d.MetricsURL + "/healthz"
	if mode != "worker" {
		healthURL = d.APIURL + "/healthz"
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-d.done:
			tb.Fatalf("dispatcher %s exited at start: %v\n%s", mode, d.exitErr, d.logs.String())
		default:
		}
		resp, err := http.Get(healthURL)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return d
			}
		}
		if time.Now().After(deadline) {
			tb.Fatalf("dispatcher %s not healthy: %v\n%s", mode, err, d.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// Logs returns everything the process printed so far.
func (d *Dispatcher) Logs() string { return d.logs.String() }

// PID is the process id.
func (d *Dispatcher) PID() int { return d.cmd.Process.Pid }

// Signal sends sig to the process.
func (d *Dispatcher) Signal(sig os.Signal) { _ = d.cmd.Process.Signal(sig) }

// Kill sends SIGKILL and waits for the exit.
func (d *Dispatcher) Kill() {
	_ = d.cmd.Process.Signal(syscall.SIGKILL)
	<-d.done
}

// Wait waits up to timeout for the process to exit and returns its error.
func (d *Dispatcher) Wait(timeout time.Duration) (exited bool, err error) {
	select {
	case <-d.done:
		return true, d.exitErr
	case <-time.After(timeout):
		return false, nil
	}
}

// Response is an API answer.
type Response struct {
	Status int
	Body   []byte
	Header http.Header
}

// JSON decodes the body into v, failing the test on error.
func (r Response) JSON(tb testing.TB, v any) {
	tb.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		tb.Fatalf("decode %s: %v", r.Body, err)
	}
}

// Call sends one API request with the harness token and a JSON body (string,
// []byte or a value to marshal; nil for none).
func (d *Dispatcher) Call(tb testing.TB, method, path string, body any) Response {
	tb.Helper()
	return Call(tb, method, d.APIURL+path, Token, body)
}

// Call sends one request to url with a bearer token ("" for none).
func Call(tb testing.TB, method, url, token string, body any) Response {
	tb.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			tb.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		tb.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return Response{Status: resp.StatusCode, Body: raw, Header: resp.Header}
}

// Generation returns a valid generation object for id.
func Generation(id string) map[string]any {
	return map[string]any{
		"id":        id,
		"status":    "success",
		"tool":      "create-image",
		"type":      "image",
		"output":    "https://files.artificialstudio.ai/generations/" + id + ".png",
		"thumbnail": "https://files.artificialstudio.ai/thumbnails/" + id + ".jpg",
		"createdAt": "2024-01-15T10:30:00Z",
	}
}

// Delivery is a POST /v1/deliveries body.
func Delivery(webhook, id string) map[string]any {
	return map[string]any{"webhook": webhook, "generation": Generation(id)}
}

// State polls GET /v1/deliveries/{id} until its state is want.
func (d *Dispatcher) WaitState(tb testing.TB, id, want string, timeout time.Duration) map[string]any {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	var last map[string]any
	for {
		resp := d.Call(tb, http.MethodGet, "/v1/deliveries/"+id, nil)
		if resp.Status == http.StatusOK {
			last = map[string]any{}
			resp.JSON(tb, &last)
			if last["state"] == want {
				return last
			}
		}
		if time.Now().After(deadline) {
			tb.Fatalf("delivery %s: state %v (HTTP %d), want %s within %s", id, last["state"], resp.Status, want, timeout)
		}
		time.Sleep(25 * time.Millisecond)
	}
}
