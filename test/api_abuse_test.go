package test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/artificialstudio/webhook-dispatcher/test/testenv"
)

// rawRequest describes one request as a client could really send it.
type rawRequest struct {
	method, path string
	token        string // "" sends no Authorization header
	auth         string // a whole Authorization header, overriding token
	ctype        string // "" sends no Content-Type
	body         []byte
	chunked      bool // hide the length (Transfer-Encoding: chunked)
}

func (rr rawRequest) send(t *testing.T, base string) testenv.Response {
	t.Helper()
	var body io.Reader
	if rr.body != nil {
		body = bytes.NewReader(rr.body)
		if rr.chunked {
			body = io.MultiReader(body) // not a *bytes.Reader: no ContentLength
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, rr.method, base+rr.path, body)
	if err != nil {
		t.Fatal(err)
	}
	if rr.ctype != "" {
		req.Header.Set("Content-Type", rr.ctype)
	}
	switch {
	case rr.auth != "":
		req.Header.Set("Authorization", rr.auth)
	case rr.token != "":
		req.Header.Set("Authorization", "Bearer "+rr.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", rr.method, rr.path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return testenv.Response{Status: resp.StatusCode, Body: raw, Header: resp.Header}
}

// TestNoSecretsInMetricsLogsOrErrors runs against a Redis that needs a
// password given in REDIS_URL, delivers a webhook whose URL carries secrets in
// its path and query (failing twice, so error paths log too), provokes error
// answers, and then checks that the API token, the Redis password, the
// webhook's path and query, and the generation's data appear in none of
// /metrics, /healthz, /readyz, the process log, or the error bodies. The
// generation id is the delivery id: it is in the log (delivery_id, by design)
// and in a 409's message (the caller's own key), never in /metrics.
func TestNoSecretsInMetricsLogsOrErrors(t *testing.T) {
	password := randomHex(t)
	redis := testenv.StartRedis(t, testenv.RedisOptions{})
	// Set after start: the harness's readiness check does not authenticate.
	if out, err := redis.Do("CONFIG", "SET", "requirepass", password); err != nil || out != "OK" {
		t.Fatalf("requirepass: %v %v", out, err)
	}
	rc := testenv.NewReceiver(t, func(w http.ResponseWriter, _ *http.Request, n int) {
		switch n {
		case 1: // a transport error, whose text names the URL
			if conn, _, err := w.(http.Hijacker).Hijack(); err == nil {
				conn.Close()
			}
		case 2:
			w.WriteHeader(http.StatusInternalServerError)
		default:
			w.WriteHeader(http.StatusOK)
		}
	})
	redisURL := "redis://:" + password + "@" + redis.Addr() + "/0"
	d := testenv.StartDispatcher(t, "all", "REDIS_URL="+redisURL, "WEBHOOK_CA_FILE="+rc.CAFile, faultRetries)

	const (
		id          = "leakcheck-7f3a9c"
		pathSecret  = "path-secret-5b1d"
		querySecret = "query-secret-c0de"
		outputMark  = "output-mark-91e2"
	)
	webhook := rc.URL + "/hooks/" + pathSecret + "?sig=" + querySecret
	g := testenv.Generation(id)
	g["output"] = "https://files.artificialstudio.ai/generations/" + outputMark + ".png"
	if resp := d.Call(t, http.MethodPost, "/v1/deliveries", map[string]any{"webhook": webhook, "generation": g}); resp.Status != http.StatusAccepted {
		t.Fatalf("enqueue: %d %s", resp.Status, resp.Body)
	}
	d.WaitState(t, id, "delivered", 15*time.Second)

	// Error answers, some carrying the secrets in the request.
	var errorBodies []string
	for _, rr := range []rawRequest{
		{method: http.MethodPost, path: "/v1/deliveries", token: testenv.Token, ctype: "application/json",
			body: mustJSON(t, map[string]any{"webhook": webhook, "generation": g})}, // 409
		{method: http.MethodPost, path: "/v1/deliveries", token: testenv.Token, ctype: "application/json",
			body: mustJSON(t, map[string]any{"webhook": "https://user:" + querySecret + "@hooks.example.com/" + pathSecret, "generation": testenv.Generation("leak-2")})},
		{method: http.MethodPost, path: "/v1/deliveries", token: testenv.Token, ctype: "application/json",
			body: mustJSON(t, map[string]any{"webhook": "http://hooks.example.com/" + pathSecret + "?q=" + querySecret, "generation": testenv.Generation("leak-3")})},
		{method: http.MethodPost, path: "/v1/deliveries", token: testenv.Token, ctype: "application/json",
			body: mustJSON(t, map[string]any{"webhook": "https://10.1.2.3/" + pathSecret + "?q=" + querySecret, "generation": testenv.Generation("leak-4")})},
		{method: http.MethodPost, path: "/v1/deliveries", token: testenv.Token, ctype: "application/json",
			body: []byte(`{"webhook":"` + webhook + `","generation":{"id":"leak-5","output":"` + outputMark + `"},"x":1}`)},
		{method: http.MethodPost, path: "/v1/deliveries", token: querySecret, ctype: "application/json", body: []byte(`{}`)},
	} {
		resp := rr.send(t, d.APIURL)
		if resp.Status < 400 {
			t.Fatalf("%s %s: %d, want an error", rr.method, rr.path, resp.Status)
		}
		errorBodies = append(errorBodies, string(resp.Body))
	}

	get := func(url string) string {
		resp := testenv.Call(t, http.MethodGet, url, "", nil)
		return string(resp.Body)
	}
	metricsText := get(d.MetricsURL + "/metrics")
	if !strings.Contains(metricsText, "webhook_delivery_attempts_total") {
		t.Fatalf("/metrics has no attempt counter:\n%.2000s", metricsText)
	}
	everywhere := map[string]string{
		"/metrics":         metricsText,
		"/healthz":         get(d.APIURL + "/healthz"),
		"/readyz":          get(d.APIURL + "/readyz"),
		"metrics /healthz": get(d.MetricsURL + "/healthz"),
		"metrics /readyz":  get(d.MetricsURL + "/readyz"),
		"log":              d.Logs(),
		"error bodies":     strings.Join(errorBodies, "\n"),
	}
	secrets := map[string]string{
		"API token":        testenv.Token,
		"Redis password":   password,
		"webhook path":     pathSecret,
		"webhook query":    querySecret,
		"generation data":  outputMark,
		"receiver address": strings.TrimPrefix(rc.URL, "https://"),
	}
	for where, text := range everywhere {
		for what, secret := range secrets {
			if strings.Contains(text, secret) {
				t.Errorf("%s contains the %s %q", where, what, secret)
			}
		}
	}
	if strings.Contains(metricsText, id) {
		t.Errorf("/metrics contains the generation id %q", id)
	}
	if !strings.Contains(d.Logs(), `"delivery_id":"`+id+`"`) {
		t.Errorf("the log has no delivery_id for %s: the leak checks looked at an empty log?", id)
	}
}

func randomHex(t *testing.T) string {
	t.Helper()
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestAPIServerLimits checks the HTTP server's own limits: a client that
// never finishes its headers (slowloris, one byte every 500 ms) is cut off
// by ReadHeaderTimeout (5 s), and headers over MaxHeaderBytes get 431 while
// ordinary large ones pass.
func TestAPIServerLimits(t *testing.T) {
	redis := testenv.StartRedis(t, testenv.RedisOptions{})
	d := testenv.StartDispatcher(t, "api", "REDIS_URL="+redis.URL())
	addr := strings.TrimPrefix(d.APIURL, "http://")

	t.Run("slowloris", func(t *testing.T) {
		t.Parallel()
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		start := time.Now()
		if _, err := io.WriteString(conn, "POST /v1/deliveries HTTP/1.1\r\nHost: x\r\nX-Slow: "); err != nil {
			t.Fatal(err)
		}
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			tick := time.NewTicker(500 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
					if _, err := conn.Write([]byte("a")); err != nil {
						return
					}
				}
			}
		}()
		_ = conn.SetReadDeadline(time.Now().Add(15 * time.Second))
		line, err := bufio.NewReader(conn).ReadString('\n')
		took := time.Since(start)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("connection still open after %s of trickled headers", took)
		}
		t.Logf("trickled headers cut off after %s (%q, %v)", took.Round(time.Millisecond), line, err)
		if took < 4*time.Second || took > 8*time.Second {
			t.Errorf("cut off after %s, want about ReadHeaderTimeout (5 s)", took)
		}
		if line != "" && !strings.Contains(line, "408") {
			t.Errorf("answer %q, want the connection closed or 408", line)
		}
	})
	t.Run("huge header", func(t *testing.T) {
		t.Parallel()
		for _, tt := range []struct {
			size   int
			status int
		}{
			{16 << 10, http.StatusNotFound},
			{64 << 10, http.StatusRequestHeaderFieldsTooLarge},
		} {
			req, _ := http.NewRequest(http.MethodGet, d.APIURL+"/nope", nil)
			req.Header.Set("X-Big", strings.Repeat("a", tt.size))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatalf("%d-byte header: %v", tt.size, err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Errorf("%d-byte header: %d, want %d", tt.size, resp.StatusCode, tt.status)
			}
		}
		many, _ := http.NewRequest(http.MethodGet, d.APIURL+"/nope", nil)
		for i := range 2000 {
			many.Header.Add("X-Many", strings.Repeat("b", 20)+string(rune('a'+i%26)))
		}
		resp, err := http.DefaultClient.Do(many)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("2000 header lines: %d, want 431", resp.StatusCode)
		}
	})
}
