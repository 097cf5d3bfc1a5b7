package testenv

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Token is the API token every dispatcher started here gets.
const Token = "test-token-0123456789"

// dispatcherStartTimeout bounds the wait for /healthz.
const dispatcherStartTimeout = 60 * time.Second

// Dispatcher is a running dispatcher process.
type Dispatcher struct {
	*Proc
	Mode       string
	APIURL     string // http://127.0.0.1:PORT
	MetricsURL string
}

// DispatcherOptions configure NewDispatcher.
type DispatcherOptions struct {
	// Bin is the dispatcher binary; empty means BuildBinary's.
	Bin string
	// Mode is the subcommand: "all", "api" or "worker".
	Mode string
	// Env are KEY=VALUE settings added after the harness's own (PATH, HOME, API_ADDR and
	// METRICS_ADDR on free loopback ports, API_TOKEN=Token, URLGUARD_ALLOW_CIDRS allowing
	// 127.0.0.1); a later setting of a key wins.
	Env []string
	// Dir receives the process's log, dispatcher-MODE-*.log; it must exist.
	Dir string
}

// NewDispatcher runs the binary in o.Mode with a minimal environment and waits until it
// serves /healthz (the API's, or the metrics server's for a worker). Kill stops it.
func NewDispatcher(ctx context.Context, o DispatcherOptions) (*Dispatcher, error) {
	bin := o.Bin
	if bin == "" {
		var err error
		if bin, err = BuildBinary(ctx); err != nil {
			return nil, err
		}
	}
	apiPort, err := FindFreePort()
	if err != nil {
		return nil, err
	}
	metricsPort, err := FindFreePort()
	if err != nil {
		return nil, err
	}
	d := &Dispatcher{
		Mode:       o.Mode,
		APIURL:     "http://127.0.0.1:" + strconv.Itoa(apiPort),
		MetricsURL: "http://127.0.0.1:" + strconv.Itoa(metricsPort),
	}
	logFile, err := os.CreateTemp(o.Dir, "dispatcher-"+o.Mode+"-*.log")
	if err != nil {
		return nil, err
	}
	logFile.Close()
	cmd := exec.Command(bin, o.Mode)
	cmd.Env = append([]string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + os.Getenv("HOME"),
		"API_ADDR=127.0.0.1:" + strconv.Itoa(apiPort),
		"METRICS_ADDR=127.0.0.1:" + strconv.Itoa(metricsPort),
		"API_TOKEN=" + Token,
		"URLGUARD_ALLOW_CIDRS=127.0.0.1/32",
	}, o.Env...)
	if d.Proc, err = StartProc(cmd, logFile.Name()); err != nil {
		return nil, err
	}
	healthURL := d.MetricsURL + "/healthz"
	if o.Mode != "worker" {
		healthURL = d.APIURL + "/healthz"
	}
	client := &http.Client{Timeout: 2 * time.Second}
	err = poll(ctx, dispatcherStartTimeout, 20*time.Millisecond, func() (bool, error) {
		if d.Exited() {
			return false, giveUp{errors.New("exited at start")}
		}
		resp, err := client.Get(healthURL)
		if err != nil {
			return false, err
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, fmt.Errorf("GET /healthz: %s", resp.Status)
	})
	if err != nil {
		d.Kill()
		return nil, d.Failure(fmt.Errorf("dispatcher %s not healthy: %w", o.Mode, err))
	}
	return d, nil
}

// StartDispatcher runs the binary (built by Binary) in mode ("all", "api", "worker"),
// with env (KEY=VALUE) added to a minimal environment and fast test settings
// (POLL_INTERVAL=10ms, FORWARD_INTERVAL=50ms, LOG_LEVEL=debug), and waits until it is
// healthy. The process is killed when the test ends, and its log shown if the test
// failed.
func StartDispatcher(tb testing.TB, mode string, env ...string) *Dispatcher {
	tb.Helper()
	d, err := NewDispatcher(context.Background(), DispatcherOptions{
		Bin:  Binary(tb),
		Mode: mode,
		Env:  append([]string{"POLL_INTERVAL=10ms", "FORWARD_INTERVAL=50ms", "LOG_LEVEL=debug"}, env...),
		Dir:  tb.TempDir(),
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		d.Kill()
		if tb.Failed() {
			tb.Logf("dispatcher %s logs:\n%s", mode, d.Tail(8000))
		}
	})
	return d
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

// WaitState polls GET /v1/deliveries/{id} until its state is want, failing tb after
// timeout.
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
