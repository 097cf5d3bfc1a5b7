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

// TestAPIRefusesBadInput sends malformed, hostile and unauthenticated
// requests: each gets a clear 4xx JSON error ({"code","error"}), and nothing
// is queued: no asynq task key exists afterwards and the receiver sees
// nothing.
func TestAPIRefusesBadInput(t *testing.T) {
	redis := testenv.StartRedis(t, testenv.RedisOptions{})
	rc := testenv.NewReceiver(t, nil)
	d := testenv.StartDispatcher(t, "all", "REDIS_URL="+redis.URL(), "WEBHOOK_CA_FILE="+rc.CAFile)

	gen := func(id string) string { return genWith(id, "", "") }
	hook := `"` + rc.URL + `/hook"`
	body := func(webhook, generation string) []byte {
		return []byte(`{"webhook":` + webhook + `,"generation":` + generation + `}`)
	}
	valid := body(hook, gen("abuse-valid"))
	const js = "application/json"
	tok := testenv.Token
	post := func(b []byte) rawRequest {
		return rawRequest{method: http.MethodPost, path: "/v1/deliveries", token: tok, ctype: js, body: b}
	}
	with := func(rr rawRequest, f func(*rawRequest)) rawRequest { f(&rr); return rr }
	nested := strings.Repeat(`{"a":`, 20) + `1` + strings.Repeat(`}`, 20)
	bigItems := make([]string, 501)
	for i := range bigItems {
		bigItems[i] = `{}`
	}

	tests := []struct {
		name   string
		req    rawRequest
		status int
		code   string
	}{
		// Syntax.
		{"empty body", post([]byte{}), 400, "malformed"},
		{"truncated", post(valid[:len(valid)/2]), 400, "malformed"},
		{"unquoted keys", post([]byte(`{webhook:1}`)), 400, "malformed"},
		{"trailing garbage", post(append(append([]byte{}, valid...), `{}`...)), 400, "malformed"},
		{"two values", post(append(append([]byte{}, valid...), valid...)), 400, "malformed"},
		{"top-level array", post([]byte(`[` + string(valid) + `]`)), 400, "malformed"},
		{"top-level string", post([]byte(`"hello"`)), 400, "malformed"},
		{"null", post([]byte(`null`)), 400, "invalid_generation"},
		{"BOM", post(append([]byte("\ufeff"), valid...)), 400, "malformed"},
		{"NUL byte", post([]byte("{\"webhook\":\x00}")), 400, "malformed"},
		{"raw newline in a string", post(body(hook, strings.Replace(gen("abuse-nl"), "abuse-nl", "abuse\nnl", 1))), 400, "malformed"},
		// Types and values.
		{"webhook a number", post(body(`42`, gen("abuse-t1"))), 400, "malformed"},
		{"webhook an object", post(body(`{"url":`+hook+`}`, gen("abuse-t8"))), 400, "malformed"},
		{"generation a string", post(body(hook, `"abuse-t2"`)), 400, "malformed"},
		{"generation an array", post(body(hook, `[`+gen("abuse-t3")+`]`)), 400, "malformed"},
		{"id a number", post(body(hook, `{"id":12345}`)), 400, "malformed"},
		{"id a huge number", post(body(hook, `{"id":123456789012345678901234567890123456789}`)), 400, "malformed"},
		{"id 1e999", post(body(hook, `{"id":1e999}`)), 400, "malformed"},
		{"thumbnail a bool", post(body(hook, genWith("abuse-t4", "thumbnail", `true`))), 400, "malformed"},
		{"createdAt a number", post(body(hook, genWith("abuse-t5", "createdAt", `1705314600`))), 400, "malformed"},
		{"createdAt huge year", post(body(hook, genWith("abuse-t6", "createdAt", `"99999-01-01T00:00:00Z"`))), 400, "invalid_generation"},
		{"status an object", post(body(hook, genWith("abuse-t7", "status", `{"ok":true}`))), 400, "malformed"},
		{"unknown field", post([]byte(`{"webhook":` + hook + `,"generation":` + gen("abuse-u") + `,"priority":1}`)), 400, "malformed"},
		{"unknown generation field", post(body(hook, strings.Replace(gen("abuse-u2"), `{`, `{"secret":"x",`, 1))), 400, "malformed"},
		{"duplicate webhook", post([]byte(`{"webhook":"https://a.example.com/","webhook":` + hook + `,"generation":` + gen("abuse-d1") + `}`)), 400, "malformed"},
		{"duplicate id", post(body(hook, strings.Replace(gen("abuse-d2"), `{`, `{"id":"other",`, 1))), 400, "malformed"},
		{"duplicate by escape", post(body(hook, strings.Replace(gen("abuse-d3"), `{`, `{"\u0069d":"other",`, 1))), 400, "malformed"},
		{"nested 20 deep", post([]byte(`{"webhook":` + hook + `,"generation":` + nested + `}`)), 400, "malformed"},
		{"nested 30000 deep", post([]byte(strings.Repeat("[", 30000) + strings.Repeat("]", 30000))), 400, "malformed"},
		{"invalid UTF-8", post(body(hook, strings.Replace(gen("abuse-utf8"), "create-image", "create-\xff\xfe", 1))), 400, "malformed"},
		{"overlong UTF-8", post(body(hook, strings.Replace(gen("abuse-utf8b"), "create-image", "create-\xc0\xaf", 1))), 400, "malformed"},
		{"lone surrogate escape", post(body(hook, strings.Replace(gen("abuse-sur"), "create-image", `create-\ud800`, 1))), 400, "invalid_generation"},
		{"id with CRLF", post(body(hook, gen("abuse\r\nX-Injected: 1"))), 400, "invalid_generation"},
		{"id with NUL", post(body(hook, gen("abuse\x00nul"))), 400, "invalid_generation"},
		{"id with slash", post(body(hook, gen("../../admin"))), 400, "invalid_generation"},
		{"id 129 bytes", post(body(hook, gen(strings.Repeat("a", 129)))), 400, "invalid_generation"},
		{"webhook with CRLF", post(body(`"`+rc.URL+`/a\r\nHost: evil"`, gen("abuse-w1"))), 422, "webhook_refused"},
		{"webhook private", post(body(`"https://192.168.1.1/hook"`, gen("abuse-w2"))), 422, "webhook_refused"},
		{"webhook metadata", post(body(`"https://169.254.169.254/latest/meta-data/"`, gen("abuse-w3"))), 422, "webhook_refused"},
		{"webhook 2049 bytes", post(body(`"https://hooks.example.com/`+strings.Repeat("a", 2049)+`"`, gen("abuse-w4"))), 422, "webhook_refused"},
		// Size.
		{"body over 64 KiB", post(body(hook, strings.Replace(gen("abuse-big"), "create-image", strings.Repeat("x", 64<<10), 1))), 413, "too_large"},
		{"chunked body over 64 KiB", with(post(bytes.Repeat([]byte(" "), 70<<10)), func(r *rawRequest) { r.chunked = true }), 413, "too_large"},
		{"batch over 500 items", rawRequest{method: http.MethodPost, path: "/v1/deliveries/batch", token: tok, ctype: js,
			body: []byte(`{"deliveries":[` + strings.Join(bigItems, ",") + `]}`)}, 413, "too_many_items"},
		{"batch over 1 MiB", rawRequest{method: http.MethodPost, path: "/v1/deliveries/batch", token: tok, ctype: js,
			body: bytes.Repeat([]byte(" "), 1<<20+1)}, 413, "too_large"},
		{"batch empty", rawRequest{method: http.MethodPost, path: "/v1/deliveries/batch", token: tok, ctype: js, body: []byte(`{"deliveries":[]}`)}, 400, "empty_batch"},
		// Content type.
		{"no content type", with(post(valid), func(r *rawRequest) { r.ctype = "" }), 415, "unsupported_media_type"},
		{"text/plain", with(post(valid), func(r *rawRequest) { r.ctype = "text/plain" }), 415, "unsupported_media_type"},
		{"form", with(post(valid), func(r *rawRequest) { r.ctype = "application/x-www-form-urlencoded" }), 415, "unsupported_media_type"},
		{"json lookalike", with(post(valid), func(r *rawRequest) { r.ctype = "application/jsonx" }), 415, "unsupported_media_type"},
		{"malformed content type", with(post(valid), func(r *rawRequest) { r.ctype = "application/json; charset" }), 415, "unsupported_media_type"},
		// Authentication.
		{"no token", with(post(valid), func(r *rawRequest) { r.token = "" }), 401, "unauthorized"},
		{"wrong token", with(post(valid), func(r *rawRequest) { r.token = "wrong" }), 401, "unauthorized"},
		{"token prefix", with(post(valid), func(r *rawRequest) { r.token = tok[:len(tok)-1] }), 401, "unauthorized"},
		{"token plus suffix", with(post(valid), func(r *rawRequest) { r.token = tok + "x" }), 401, "unauthorized"},
		{"basic auth", with(post(valid), func(r *rawRequest) { r.auth = "Basic dXNlcjp0ZXN0LXRva2VuLTAxMjM0NTY3ODk=" }), 401, "unauthorized"},
		{"bare token", with(post(valid), func(r *rawRequest) { r.auth = tok }), 401, "unauthorized"},
		{"token in query", with(post(valid), func(r *rawRequest) { r.token = ""; r.path += "?token=" + tok }), 401, "unauthorized"},
		{"no token on GET", rawRequest{method: http.MethodGet, path: "/v1/deliveries/abuse-valid"}, 401, "unauthorized"},
		// Routes and methods.
		{"unknown route", rawRequest{method: http.MethodGet, path: "/v1/nope", token: tok}, 404, "not_found"},
		{"unknown version", with(post(valid), func(r *rawRequest) { r.path = "/v2/deliveries" }), 404, "not_found"},
		{"admin", rawRequest{method: http.MethodGet, path: "/admin"}, 404, "not_found"},
		{"trailing slash", with(post(valid), func(r *rawRequest) { r.path = "/v1/deliveries/" }), 404, "not_found"},
		{"unknown id", rawRequest{method: http.MethodGet, path: "/v1/deliveries/abuse-never", token: tok}, 404, "not_found"},
		{"id with CRLF in path", rawRequest{method: http.MethodGet, path: "/v1/deliveries/a%0D%0AX-Injected:%201", token: tok}, 404, "not_found"},
		{"PUT", with(post(valid), func(r *rawRequest) { r.method = http.MethodPut }), 405, "method_not_allowed"},
		// DELETE /v1/deliveries/{id} is a route (failed or delivered deliveries); not on the collection.
		{"DELETE", rawRequest{method: http.MethodDelete, path: "/v1/deliveries", token: tok}, 405, "method_not_allowed"},
		{"PATCH", with(post(valid), func(r *rawRequest) { r.method = http.MethodPatch }), 405, "method_not_allowed"},
		{"GET batch", rawRequest{method: http.MethodGet, path: "/v1/deliveries/batch", token: tok}, 405, "method_not_allowed"},
		{"POST healthz", rawRequest{method: http.MethodPost, path: "/healthz", ctype: js, body: valid}, 405, "method_not_allowed"},
		{"TRACE", rawRequest{method: http.MethodTrace, path: "/v1/deliveries", token: tok}, 405, "method_not_allowed"},
	}
	var accepted []string
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := tt.req.send(t, d.APIURL)
			if resp.Status != tt.status {
				t.Fatalf("status %d %s, want %d", resp.Status, resp.Body, tt.status)
			}
			if tt.status == http.StatusAccepted {
				var a struct{ ID string }
				resp.JSON(t, &a)
				accepted = append(accepted, a.ID)
				return
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q, want application/json", ct)
			}
			var e struct {
				Code  string `json:"code"`
				Error string `json:"error"`
			}
			if err := json.Unmarshal(resp.Body, &e); err != nil || e.Code != tt.code || e.Error == "" {
				t.Errorf("body %s: want {\"code\":%q,\"error\":…} (%v)", resp.Body, tt.code, err)
			}
			if len(resp.Body) > 2048 {
				t.Errorf("error body is %d bytes: it echoes the input", len(resp.Body))
			}
			if bytes.Contains(resp.Body, []byte("X-Injected")) || bytes.Contains(resp.Body, []byte("\r\n")) {
				t.Errorf("error body echoes the injected header: %q", resp.Body)
			}
			if resp.Status == http.StatusUnauthorized && resp.Header.Get("WWW-Authenticate") == "" {
				t.Errorf("401 without WWW-Authenticate")
			}
			if resp.Status == http.StatusMethodNotAllowed && resp.Header.Get("Allow") == "" {
				t.Errorf("405 without Allow")
			}
		})
	}

	// Nothing above stored anything (a lone surrogate escape, which
	// encoding/json would read as U+FFFD, is refused like invalid UTF-8).
	time.Sleep(500 * time.Millisecond)
	if keys, err := testenv.Command(redis.Addr(), "KEYS", "asynq:{webhooks}:t:*"); err != nil || len(keys.([]any)) != len(accepted) {
		t.Errorf("task keys after the bad input: %v (%v), want only %v", keys, err, accepted)
	}
	for _, r := range rc.Requests() {
		if id := r.Header.Get("X-Media-Id"); !contains(accepted, id) {
			t.Errorf("receiver got %s from refused input", id)
		}
	}
	if resp := d.Call(t, http.MethodGet, "/v1/deliveries/abuse-valid", nil); resp.Status != http.StatusNotFound {
		t.Errorf("GET abuse-valid = %d, want 404", resp.Status)
	}
	// The positive controls: charset is fine, and the scheme is case-insensitive.
	ok := rawRequest{method: http.MethodPost, path: "/v1/deliveries", auth: "bearer " + tok, ctype: "application/json; charset=utf-8", body: valid}
	if resp := ok.send(t, d.APIURL); resp.Status != http.StatusAccepted {
		t.Errorf("valid request with charset and lower-case scheme: %d %s", resp.Status, resp.Body)
	}
}

// genWith is a valid generation as JSON text with one field's value replaced
// by raw JSON (none when key is "").
func genWith(id, key, raw string) string {
	g := testenv.Generation(id)
	if key != "" {
		g[key] = json.RawMessage(raw)
	}
	b, err := json.Marshal(g)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
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
	if out, err := redis.Do("CONFIG", "SET", "requirepass", password); err != nil || out != "+OK" {
		t.Fatalf("requirepass: %q %v", out, err)
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
