// Package test holds the integration tests: the built dispatcher binary
// against a real redis-server and real HTTPS receivers, all on loopback.
package test

import (
	"bytes"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/artificialstudio/webhook-dispatcher/test/testenv"
)

// fastRetries keeps the published shape at a test-friendly scale.
const fastRetries = "RETRY_SCHEDULE=50ms,50ms,50ms,50ms,50ms,50ms,50ms,50ms,50ms"

func startStack(t *testing.T, respond func(http.ResponseWriter, *http.Request, int), env ...string) (*testenv.Redis, *testenv.Receiver, *testenv.Dispatcher) {
	t.Helper()
	redis := testenv.StartRedis(t, testenv.RedisOptions{})
	rc := testenv.NewReceiver(t, respond)
	env = append([]string{"REDIS_URL=" + redis.URL(), "WEBHOOK_CA_FILE=" + rc.CAFile}, env...)
	d := testenv.StartDispatcher(t, "all", env...)
	return redis, rc, d
}

func TestDeliverEndToEnd(t *testing.T) {
	_, rc, d := startStack(t, nil)
	resp := d.Call(t, http.MethodPost, "/v1/deliveries", testenv.Delivery(rc.URL+"/hooks/generation?customer=7", "507f1f77bcf86cd799439011"))
	if resp.Status != http.StatusAccepted || !strings.Contains(string(resp.Body), `"state":"pending"`) {
		t.Fatalf("enqueue: %d %s", resp.Status, resp.Body)
	}
	reqs := rc.WaitCount(t, 1, 10*time.Second)
	got := reqs[0]
	wantBody := `{"id":"507f1f77bcf86cd799439011","status":"success","tool":"create-image","type":"image","output":"https://files.artificialstudio.ai/generations/507f1f77bcf86cd799439011.png","thumbnail":"https://files.artificialstudio.ai/thumbnails/507f1f77bcf86cd799439011.jpg","createdAt":"2024-01-15T10:30:00.000Z"}`
	if string(got.Body) != wantBody {
		t.Errorf("body =\n%s\nwant\n%s", got.Body, wantBody)
	}
	if got.Path != "/hooks/generation?customer=7" {
		t.Errorf("path = %q", got.Path)
	}
	for k, v := range map[string]string{
		"Content-Type":     "application/json",
		"X-Webhook-Source": "artificial-studio",
		"X-Media-Id":       "507f1f77bcf86cd799439011",
	} {
		if got.Header.Get(k) != v {
			t.Errorf("header %s = %q, want %q", k, got.Header.Get(k), v)
		}
	}
	if ua := got.Header.Get("User-Agent"); !strings.HasPrefix(ua, "artificial-studio-webhooks/") {
		t.Errorf("User-Agent = %q", ua)
	}
	st := d.WaitState(t, "507f1f77bcf86cd799439011", "delivered", 10*time.Second)
	if n := st["attemptCount"]; n != float64(1) {
		t.Errorf("attemptCount = %v, want 1", n)
	}
	time.Sleep(300 * time.Millisecond) // a second POST would arrive in this window
	if n := rc.Count(); n != 1 {
		t.Errorf("receiver got %d POSTs, want exactly 1", n)
	}
}

func TestRetryAfterServerError(t *testing.T) {
	_, rc, d := startStack(t, func(w http.ResponseWriter, _ *http.Request, n int) {
		if n == 1 {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusOK)
	}, fastRetries)
	if resp := d.Call(t, http.MethodPost, "/v1/deliveries", testenv.Delivery(rc.URL, "gen-retry-1")); resp.Status != http.StatusAccepted {
		t.Fatalf("enqueue: %d %s", resp.Status, resp.Body)
	}
	reqs := rc.WaitCount(t, 2, 15*time.Second)
	if !bytes.Equal(reqs[0].Body, reqs[1].Body) {
		t.Errorf("retry sent different bytes:\n%s\n%s", reqs[0].Body, reqs[1].Body)
	}
	st := d.WaitState(t, "gen-retry-1", "delivered", 10*time.Second)
	attempts := st["attempts"].([]any)
	if len(attempts) != 2 {
		t.Fatalf("attempts = %v, want 2", attempts)
	}
	first := attempts[0].(map[string]any)
	if first["outcome"] != "http_status" || first["status"] != float64(500) {
		t.Errorf("first attempt = %v, want http_status 500", first)
	}
}

func TestDuplicateEnqueue(t *testing.T) {
	_, rc, d := startStack(t, nil)
	body := testenv.Delivery(rc.URL, "gen-dup-1")
	if resp := d.Call(t, http.MethodPost, "/v1/deliveries", body); resp.Status != http.StatusAccepted {
		t.Fatalf("first enqueue: %d %s", resp.Status, resp.Body)
	}
	rc.WaitCount(t, 1, 10*time.Second)
	d.WaitState(t, "gen-dup-1", "delivered", 10*time.Second)
	resp := d.Call(t, http.MethodPost, "/v1/deliveries", body)
	if resp.Status != http.StatusConflict || !strings.Contains(string(resp.Body), "duplicate") {
		t.Fatalf("second enqueue: %d %s, want 409 duplicate", resp.Status, resp.Body)
	}
	time.Sleep(500 * time.Millisecond)
	if n := rc.Count(); n != 1 {
		t.Errorf("receiver got %d POSTs, want 1", n)
	}
}

func TestBadInputNothingQueued(t *testing.T) {
	_, rc, d := startStack(t, nil)
	valid := func(id string) map[string]any { return testenv.Delivery(rc.URL, id) }
	with := func(id string, f func(g map[string]any)) map[string]any {
		b := valid(id)
		f(b["generation"].(map[string]any))
		return b
	}
	tests := []struct {
		name   string
		token  string
		ctype  string
		body   any
		status int
	}{
		{"malformed JSON", testenv.Token, "", `{"webhook":`, 400},
		{"unknown field", testenv.Token, "", map[string]any{"webhook": rc.URL, "generation": testenv.Generation("x1"), "extra": 1}, 400},
		{"missing generation", testenv.Token, "", map[string]any{"webhook": rc.URL}, 400},
		{"missing id", testenv.Token, "", with("", func(g map[string]any) { delete(g, "id") }), 400},
		{"unknown type", testenv.Token, "", with("bad-type", func(g map[string]any) { g["type"] = "hologram" }), 400},
		{"status failed", testenv.Token, "", with("bad-status", func(g map[string]any) { g["status"] = "failed" }), 400},
		{"audio thumbnail", testenv.Token, "", with("bad-audio", func(g map[string]any) { g["type"] = "audio" }), 400},
		{"bad createdAt", testenv.Token, "", with("bad-time", func(g map[string]any) { g["createdAt"] = "yesterday" }), 400},
		{"relative output", testenv.Token, "", with("bad-out", func(g map[string]any) { g["output"] = "/a.png" }), 400},
		{"id with CRLF", testenv.Token, "", with("a\r\nX-Evil: 1", func(map[string]any) {}), 400},
		{"id too long", testenv.Token, "", with(strings.Repeat("a", 129), func(map[string]any) {}), 400},
		{"http webhook", testenv.Token, "", map[string]any{"webhook": strings.Replace(rc.URL, "https", "http", 1), "generation": testenv.Generation("x2")}, 422},
		{"localhost webhook", testenv.Token, "", map[string]any{"webhook": "https://localhost/hook", "generation": testenv.Generation("x3")}, 422},
		{"private webhook", testenv.Token, "", map[string]any{"webhook": "https://10.0.0.5/hook", "generation": testenv.Generation("x4")}, 422},
		{"metadata webhook", testenv.Token, "", map[string]any{"webhook": "https://169.254.169.254/latest", "generation": testenv.Generation("x5")}, 422},
		{"over 64 KiB", testenv.Token, "", with("big", func(g map[string]any) { g["tool"] = strings.Repeat("t", 70<<10) }), 413},
		{"wrong content type", testenv.Token, "text/plain", valid("ctype"), 415},
		{"no token", "", "", valid("notoken"), 401},
		{"wrong token", "wrong", "", valid("wrongtoken"), 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var resp testenv.Response
			if tt.ctype != "" {
				resp = callWithType(t, d.APIURL+"/v1/deliveries", tt.token, tt.ctype, tt.body)
			} else {
				resp = testenv.Call(t, http.MethodPost, d.APIURL+"/v1/deliveries", tt.token, tt.body)
			}
			if resp.Status != tt.status {
				t.Fatalf("status = %d (%s), want %d", resp.Status, resp.Body, tt.status)
			}
			if !strings.Contains(resp.Header.Get("Content-Type"), "application/json") || !strings.Contains(string(resp.Body), `"error"`) {
				t.Errorf("want a JSON error body, got %q", resp.Body)
			}
		})
	}
	// Nothing was queued: the queue is empty and the receiver saw nothing.
	time.Sleep(500 * time.Millisecond)
	if n := rc.Count(); n != 0 {
		t.Errorf("receiver got %d requests from refused input", n)
	}
	if resp := d.Call(t, http.MethodGet, "/v1/deliveries/x1", nil); resp.Status != http.StatusNotFound {
		t.Errorf("GET x1 = %d, want 404", resp.Status)
	}
}

func callWithType(t *testing.T, url, token, ctype string, body any) testenv.Response {
	t.Helper()
	b, _ := jsonMarshal(body)
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(b))
	req.Header.Set("Content-Type", ctype)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	return testenv.Response{Status: resp.StatusCode, Body: buf.Bytes(), Header: resp.Header}
}

func TestRedisDownAnswers503(t *testing.T) {
	redis, rc, d := startStack(t, nil)
	redis.Kill()
	resp := d.Call(t, http.MethodPost, "/v1/deliveries", testenv.Delivery(rc.URL, "gen-down-1"))
	if resp.Status != http.StatusServiceUnavailable {
		t.Fatalf("enqueue with Redis down: %d %s, want 503", resp.Status, resp.Body)
	}
	if resp := testenv.Call(t, http.MethodGet, d.APIURL+"/readyz", "", nil); resp.Status != http.StatusServiceUnavailable {
		t.Errorf("readyz = %d, want 503", resp.Status)
	}
	if resp := testenv.Call(t, http.MethodGet, d.APIURL+"/healthz", "", nil); resp.Status != http.StatusOK {
		t.Errorf("healthz = %d, want 200 (the process is up)", resp.Status)
	}
	// Recovers on its own once Redis is back.
	redis.Start(t)
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp := d.Call(t, http.MethodPost, "/v1/deliveries", testenv.Delivery(rc.URL, "gen-down-1"))
		if resp.Status == http.StatusAccepted {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("enqueue after Redis restart: %d %s", resp.Status, resp.Body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	rc.WaitCount(t, 1, 15*time.Second)
}
