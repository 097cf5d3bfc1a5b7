package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/artificialstudio/webhook-dispatcher/dispatcher"
	"github.com/artificialstudio/webhook-dispatcher/urlguard"
)

const testToken = "test-token-0123456789"

// fakeService is the queue service as the API sees it: it remembers what it
// was asked to store, and answers with the errors a test sets.
type fakeService struct {
	mu         sync.Mutex
	stored     map[string]dispatcher.Delivery
	enqueueErr func(id string) error // nil: store and succeed
	statusErr  error
	pingErr    error
	redeliver  []string
	since      []time.Time
}

func newFakeService() *fakeService { return &fakeService{stored: map[string]dispatcher.Delivery{}} }

func (f *fakeService) Enqueue(_ context.Context, d dispatcher.Delivery) error {
	f.mu.Lock()
	fail := f.enqueueErr
	f.mu.Unlock()
	if fail != nil {
		if err := fail(d.ID); err != nil {
			return err
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, dup := f.stored[d.ID]; dup {
		return fmt.Errorf("enqueue %s: %w", d.ID, dispatcher.ErrDuplicate)
	}
	f.stored[d.ID] = d
	return nil
}

func (f *fakeService) Status(_ context.Context, id string) (dispatcher.Status, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.statusErr != nil {
		return dispatcher.Status{}, f.statusErr
	}
	d, ok := f.stored[id]
	if !ok {
		return dispatcher.Status{}, fmt.Errorf("status %s: %w", id, dispatcher.ErrNotFound)
	}
	return dispatcher.Status{ID: id, State: dispatcher.StatePending, Webhook: d.Webhook}, nil
}

func (f *fakeService) ListFailed(_ context.Context, cursor string, limit int) ([]dispatcher.Status, string, error) {
	if cursor == "bogus" {
		return nil, "", fmt.Errorf("list: %w", dispatcher.ErrBadCursor)
	}
	return []dispatcher.Status{{ID: fmt.Sprintf("f-%d", limit), State: dispatcher.StateFailed}}, "next-page", nil
}

func (f *fakeService) Redeliver(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch id {
	case "in-progress":
		return fmt.Errorf("redeliver: %w", dispatcher.ErrInProgress)
	case "unknown":
		return fmt.Errorf("redeliver: %w", dispatcher.ErrNotFound)
	}
	f.redeliver = append(f.redeliver, id)
	return nil
}

func (f *fakeService) RedeliverFailedSince(_ context.Context, since time.Time) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.since = append(f.since, since)
	return 3, nil
}

func (f *fakeService) Delete(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.stored[id]; !ok {
		return fmt.Errorf("delete %s: %w", id, dispatcher.ErrNotFound)
	}
	return fmt.Errorf("delete %s: %w", id, dispatcher.ErrInProgress) // the fake's deliveries are all pending
}

func (f *fakeService) Ping(context.Context) error { return f.pingErr }

func (f *fakeService) storedIDs() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	ids := make([]string, 0, len(f.stored))
	for id := range f.stored {
		ids = append(ids, id)
	}
	return ids
}

// newTestAPI serves an API over svc on a loopback httptest server; the URL
// guard lets 127.0.0.1 through, as the binary-level tests configure it.
func newTestAPI(tb testing.TB, svc Service) *httptest.Server {
	tb.Helper()
	a := &API{Service: svc, Guard: urlguard.New(netip.MustParsePrefix("127.0.0.1/32")), Token: testToken}
	srv := httptest.NewServer(a.Handler())
	tb.Cleanup(srv.Close)
	return srv
}

// generationJSON is a valid generation as JSON text with one field's value
// replaced by raw JSON (none when key is "").
func generationJSON(id, key, raw string) string {
	g := map[string]any{
		"id": id, "status": "success", "tool": "create-image", "type": "image",
		"output":    "https://files.artificialstudio.ai/generations/" + id + ".png",
		"thumbnail": "https://files.artificialstudio.ai/thumbnails/" + id + ".jpg",
		"createdAt": "2024-01-15T10:30:00Z",
	}
	if key != "" {
		g[key] = json.RawMessage(raw)
	}
	b, err := json.Marshal(g)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// rawRequest describes one request as a client could really send it.
type rawRequest struct {
	method, path string
	token        string // "" sends no Authorization header
	auth         string // a whole Authorization header, overriding token
	ctype        string // "" sends no Content-Type
	body         []byte
	chunked      bool // hide the length (Transfer-Encoding: chunked)
}

type response struct {
	Status int
	Body   []byte
	Header http.Header
}

func (rr rawRequest) send(t *testing.T, base string) response {
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
	return response{Status: resp.StatusCode, Body: raw, Header: resp.Header}
}

func call(t *testing.T, base, method, path string, body any) response {
	t.Helper()
	rr := rawRequest{method: method, path: path, token: testToken}
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rr.body, rr.ctype = b, "application/json"
	}
	return rr.send(t, base)
}

// TestAPIRefusesBadInput sends malformed, hostile and unauthenticated
// requests: each gets a clear 4xx JSON error ({"code","error"}), and nothing
// reaches the queue service. (It ran against the built binary and Redis
// before the API became a package; the answers are the same bytes.)
func TestAPIRefusesBadInput(t *testing.T) {
	svc := newFakeService()
	srv := newTestAPI(t, svc)
	const receiver = "https://127.0.0.1:8443"

	gen := func(id string) string { return generationJSON(id, "", "") }
	hook := `"` + receiver + `/hook"`
	body := func(webhook, generation string) []byte {
		return []byte(`{"webhook":` + webhook + `,"generation":` + generation + `}`)
	}
	valid := body(hook, gen("abuse-valid"))
	const js = "application/json"
	tok := testToken
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
		{"thumbnail a bool", post(body(hook, generationJSON("abuse-t4", "thumbnail", `true`))), 400, "malformed"},
		{"createdAt a number", post(body(hook, generationJSON("abuse-t5", "createdAt", `1705314600`))), 400, "malformed"},
		{"createdAt huge year", post(body(hook, generationJSON("abuse-t6", "createdAt", `"99999-01-01T00:00:00Z"`))), 400, "invalid_generation"},
		{"status an object", post(body(hook, generationJSON("abuse-t7", "status", `{"ok":true}`))), 400, "malformed"},
		{"unknown field", post([]byte(`{"webhook":` + hook + `,"generation":` + gen("abuse-u") + `,"priority":1}`)), 400, "malformed"},
		{"unknown generation field", post(body(hook, strings.Replace(gen("abuse-u2"), `{`, `{"secret":"x",`, 1))), 400, "malformed"},
		{"duplicate webhook", post([]byte(`{"webhook":"https://a.example.com/","webhook":` + hook + `,"generation":` + gen("abuse-d1") + `}`)), 400, "malformed"},
		{"duplicate id", post(body(hook, strings.Replace(gen("abuse-d2"), `{`, `{"id":"other",`, 1))), 400, "malformed"},
		{"duplicate by escape", post(body(hook, strings.Replace(gen("abuse-d3"), `{`, `{"\u0069d":"other",`, 1))), 400, "malformed"},
		// Keys match exactly: encoding/json alone folds case (and the Kelvin
		// sign K, U+212A, into k), so these would have replaced the real field.
		{"key in upper case", post([]byte(`{"WEBHOOK":"https://a.example.com/","webhook":` + hook + `,"generation":` + gen("abuse-f1") + `}`)), 400, "malformed"},
		{"key with Kelvin sign", post([]byte(`{"webhook":` + hook + `,"webhooK":"https://a.example.com/","generation":` + gen("abuse-f2") + `}`)), 400, "malformed"},
		{"id in title case", post(body(hook, strings.Replace(gen("abuse-f3"), `{`, `{"Id":"other",`, 1))), 400, "malformed"},
		{"only a folded key", post([]byte(`{"Webhook":` + hook + `,"generation":` + gen("abuse-f4") + `}`)), 400, "malformed"},
		{"batch repeats deliveries", rawRequest{method: http.MethodPost, path: "/v1/deliveries/batch", token: tok, ctype: js,
			body: []byte(`{"deliveries":[{"webhook":` + hook + `,"generation":` + gen("abuse-f5") + `}],"deliveries":[]}`)}, 400, "malformed"},
		{"nested 20 deep", post([]byte(`{"webhook":` + hook + `,"generation":` + nested + `}`)), 400, "malformed"},
		{"nested 30000 deep", post([]byte(strings.Repeat("[", 30000) + strings.Repeat("]", 30000))), 400, "malformed"},
		{"invalid UTF-8", post(body(hook, strings.Replace(gen("abuse-utf8"), "create-image", "create-\xff\xfe", 1))), 400, "malformed"},
		{"overlong UTF-8", post(body(hook, strings.Replace(gen("abuse-utf8b"), "create-image", "create-\xc0\xaf", 1))), 400, "malformed"},
		{"lone surrogate escape", post(body(hook, strings.Replace(gen("abuse-sur"), "create-image", `create-\ud800`, 1))), 400, "invalid_generation"},
		{"id with CRLF", post(body(hook, gen("abuse\r\nX-Injected: 1"))), 400, "invalid_generation"},
		{"id with NUL", post(body(hook, gen("abuse\x00nul"))), 400, "invalid_generation"},
		{"id with slash", post(body(hook, gen("../../admin"))), 400, "invalid_generation"},
		{"id 129 bytes", post(body(hook, gen(strings.Repeat("a", 129)))), 400, "invalid_generation"},
		{"webhook with CRLF", post(body(`"`+receiver+`/a\r\nHost: evil"`, gen("abuse-w1"))), 422, "webhook_refused"},
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
		{"DELETE unknown id", rawRequest{method: http.MethodDelete, path: "/v1/deliveries/abuse-never", token: tok}, 404, "not_found"},
		{"PATCH", with(post(valid), func(r *rawRequest) { r.method = http.MethodPatch }), 405, "method_not_allowed"},
		{"GET batch", rawRequest{method: http.MethodGet, path: "/v1/deliveries/batch", token: tok}, 405, "method_not_allowed"},
		{"POST healthz", rawRequest{method: http.MethodPost, path: "/healthz", ctype: js, body: valid}, 405, "method_not_allowed"},
		{"TRACE", rawRequest{method: http.MethodTrace, path: "/v1/deliveries", token: tok}, 405, "method_not_allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := tt.req.send(t, srv.URL)
			if resp.Status != tt.status {
				t.Fatalf("status %d %s, want %d", resp.Status, resp.Body, tt.status)
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

	// Nothing above reached the queue service (a lone surrogate escape,
	// which encoding/json would read as U+FFFD, is refused like invalid UTF-8).
	if ids := svc.storedIDs(); len(ids) != 0 {
		t.Errorf("refused input was stored: %v", ids)
	}
	// The positive controls: charset is fine, and the scheme is case-insensitive.
	ok := rawRequest{method: http.MethodPost, path: "/v1/deliveries", auth: "bearer " + tok, ctype: "application/json; charset=utf-8", body: valid}
	if resp := ok.send(t, srv.URL); resp.Status != http.StatusAccepted {
		t.Errorf("valid request with charset and lower-case scheme: %d %s", resp.Status, resp.Body)
	}
	if ids := svc.storedIDs(); len(ids) != 1 || ids[0] != "abuse-valid" {
		t.Errorf("stored %v after the valid request, want [abuse-valid]", ids)
	}
}

// TestWebhookCheckEndpoint: POST /v1/webhooks/check gives the registration
// verdict that POST /v1/deliveries applies, under the default policy.
func TestWebhookCheckEndpoint(t *testing.T) {
	a := &API{Service: newFakeService(), Token: testToken} // nil Guard: the default, fully closed policy
	srv := httptest.NewServer(a.Handler())
	t.Cleanup(srv.Close)
	tests := []struct {
		url    string
		status int
		reason string
	}{
		{"https://your-server.com/webhook", 200, ""},
		{"https://93.184.215.14/hook", 200, ""},
		{"http://your-server.com/webhook", 422, "https"},
		{"https://localhost/hook", 422, "localhost"},
		{"https://127.0.0.1:6379/", 422, "127.0.0.1"},
		{"https://169.254.169.254/latest/meta-data", 422, "169.254"},
		{"https://0x7f.1/", 422, ""},
		{"https://2130706433/", 422, ""},
		{"https://[::ffff:10.0.0.1]/", 422, ""},
		{"https://user:pass@your-server.com/", 422, ""},
	}
	for _, tt := range tests {
		resp := call(t, srv.URL, http.MethodPost, "/v1/webhooks/check", map[string]string{"url": tt.url})
		var out struct {
			OK     bool   `json:"ok"`
			Reason string `json:"reason"`
		}
		if err := json.Unmarshal(resp.Body, &out); err != nil {
			t.Fatalf("%s: %s: %v", tt.url, resp.Body, err)
		}
		if resp.Status != tt.status || out.OK != (tt.status == 200) {
			t.Errorf("%s: %d %s, want %d", tt.url, resp.Status, resp.Body, tt.status)
			continue
		}
		if tt.status == 422 && (out.Reason == "" || !strings.Contains(out.Reason, tt.reason)) {
			t.Errorf("%s: reason %q, want one mentioning %q", tt.url, out.Reason, tt.reason)
		}
		if strings.Contains(out.Reason, "pass@") {
			t.Errorf("%s: the reason echoes the credentials: %q", tt.url, out.Reason)
		}
	}
	if resp := call(t, srv.URL, http.MethodPost, "/v1/webhooks/check", map[string]string{}); resp.Status != http.StatusBadRequest {
		t.Errorf("missing url: %d, want 400", resp.Status)
	}
	noToken := rawRequest{method: http.MethodPost, path: "/v1/webhooks/check", ctype: "application/json", body: []byte(`{"url":"https://a.com/"}`)}
	if resp := noToken.send(t, srv.URL); resp.Status != http.StatusUnauthorized {
		t.Errorf("no token: %d, want 401", resp.Status)
	}
}

// TestServiceErrorsMapToStatus: every error of the queue service becomes the
// documented status and code, and a 503 never leaks the cause's text.
func TestServiceErrorsMapToStatus(t *testing.T) {
	svc := newFakeService()
	srv := newTestAPI(t, svc)
	delivery := func(id string) map[string]any {
		var g map[string]any
		_ = json.Unmarshal([]byte(generationJSON(id, "", "")), &g)
		return map[string]any{"webhook": "https://127.0.0.1:8443/hook", "generation": g}
	}
	if resp := call(t, srv.URL, http.MethodPost, "/v1/deliveries", delivery("m-1")); resp.Status != http.StatusAccepted || resp.Header.Get("Location") != "/v1/deliveries/m-1" {
		t.Fatalf("first enqueue: %d %s (Location %q)", resp.Status, resp.Body, resp.Header.Get("Location"))
	}
	if resp := call(t, srv.URL, http.MethodPost, "/v1/deliveries", delivery("m-1")); resp.Status != http.StatusConflict {
		t.Errorf("duplicate: %d, want 409", resp.Status)
	}
	svc.enqueueErr = func(string) error {
		return fmt.Errorf("enqueue: %w: dial tcp 10.1.2.3:6379: refused", dispatcher.ErrUnavailable)
	}
	resp := call(t, srv.URL, http.MethodPost, "/v1/deliveries", delivery("m-2"))
	if resp.Status != http.StatusServiceUnavailable || bytes.Contains(resp.Body, []byte("10.1.2.3")) {
		t.Errorf("unavailable: %d %s, want 503 without the cause", resp.Status, resp.Body)
	}
	svc.enqueueErr = nil

	if resp := call(t, srv.URL, http.MethodGet, "/v1/deliveries/m-1", nil); resp.Status != http.StatusOK {
		t.Errorf("GET stored: %d", resp.Status)
	}
	if resp := call(t, srv.URL, http.MethodGet, "/v1/deliveries/nope", nil); resp.Status != http.StatusNotFound {
		t.Errorf("GET unknown: %d, want 404", resp.Status)
	}
	svc.statusErr = fmt.Errorf("status: %w", dispatcher.ErrUnavailable)
	if resp := call(t, srv.URL, http.MethodGet, "/v1/deliveries/m-1", nil); resp.Status != http.StatusServiceUnavailable {
		t.Errorf("GET with Redis down: %d, want 503", resp.Status)
	}
	svc.statusErr = nil

	for _, tt := range []struct {
		id     string
		status int
	}{{"failed-1", 202}, {"in-progress", 409}, {"unknown", 404}} {
		if resp := call(t, srv.URL, http.MethodPost, "/v1/deliveries/"+tt.id+"/redeliver", nil); resp.Status != tt.status {
			t.Errorf("redeliver %s: %d %s, want %d", tt.id, resp.Status, resp.Body, tt.status)
		}
	}
	resp = call(t, srv.URL, http.MethodPost, "/v1/deliveries/redeliver", map[string]string{"state": "failed", "since": "2024-01-15T00:00:00Z"})
	if resp.Status != http.StatusOK || !bytes.Contains(resp.Body, []byte(`"queued":3`)) {
		t.Errorf("bulk redeliver: %d %s", resp.Status, resp.Body)
	}
	if len(svc.since) != 1 || !svc.since[0].Equal(time.Date(2024, 1, 15, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("bulk redeliver asked for since %v", svc.since)
	}
	for _, bad := range []map[string]string{{"state": "pending"}, {"state": "failed", "since": "yesterday"}} {
		if resp := call(t, srv.URL, http.MethodPost, "/v1/deliveries/redeliver", bad); resp.Status != http.StatusBadRequest {
			t.Errorf("bulk redeliver %v: %d, want 400", bad, resp.Status)
		}
	}
}

// TestListFailedParameters: limit and cursor are validated, and the page and
// next cursor come back as the service gave them.
func TestListFailedParameters(t *testing.T) {
	srv := newTestAPI(t, newFakeService())
	resp := call(t, srv.URL, http.MethodGet, "/v1/deliveries?state=failed&limit=7", nil)
	var page struct {
		Deliveries []dispatcher.Status `json:"deliveries"`
		NextCursor string              `json:"nextCursor"`
	}
	if err := json.Unmarshal(resp.Body, &page); err != nil || resp.Status != http.StatusOK ||
		len(page.Deliveries) != 1 || page.Deliveries[0].ID != "f-7" || page.NextCursor != "next-page" {
		t.Fatalf("list: %d %s (%v)", resp.Status, resp.Body, err)
	}
	for _, q := range []string{"state=failed&limit=0", "state=failed&limit=1001", "state=failed&limit=x", "state=failed&cursor=bogus"} {
		if resp := call(t, srv.URL, http.MethodGet, "/v1/deliveries?"+q, nil); resp.Status != http.StatusBadRequest {
			t.Errorf("%s: %d, want 400", q, resp.Status)
		}
	}
}

// TestBatchStopsAfterUnavailable: once the queue fails, later items are
// answered 503 without being tried, so the caller resends exactly those.
func TestBatchStopsAfterUnavailable(t *testing.T) {
	svc := newFakeService()
	var tried sync.Map
	svc.enqueueErr = func(id string) error {
		tried.Store(id, true)
		if id == "b-3" {
			return fmt.Errorf("enqueue: %w", dispatcher.ErrUnavailable)
		}
		// A Redis round trip: the failure of b-3 is known long before the
		// first wave of 16 concurrent enqueues ends.
		time.Sleep(5 * time.Millisecond)
		return nil
	}
	srv := newTestAPI(t, svc)
	items := make([]json.RawMessage, 0, 40)
	for i := range 40 {
		items = append(items, json.RawMessage(`{"webhook":"https://127.0.0.1:8443/h","generation":`+generationJSON(fmt.Sprintf("b-%d", i), "", "")+`}`))
	}
	resp := call(t, srv.URL, http.MethodPost, "/v1/deliveries/batch", map[string]any{"deliveries": items})
	var out struct{ Results []BatchResult }
	if err := json.Unmarshal(resp.Body, &out); err != nil || resp.Status != http.StatusOK || len(out.Results) != len(items) {
		t.Fatalf("batch: %d %s (%v)", resp.Status, resp.Body, err)
	}
	stored := map[string]bool{}
	for _, id := range svc.storedIDs() {
		stored[id] = true
	}
	unavailable := 0
	for i, r := range out.Results {
		want := fmt.Sprintf("b-%d", i)
		if r.ID != want {
			t.Errorf("result %d names %q, want %q", i, r.ID, want)
		}
		switch r.Status {
		case http.StatusAccepted:
			if !stored[r.ID] {
				t.Errorf("%s answered 202 but not stored", r.ID)
			}
		case http.StatusServiceUnavailable:
			unavailable++
			if stored[r.ID] {
				t.Errorf("%s answered 503 but stored", r.ID)
			}
		default:
			t.Errorf("%s: status %d", r.ID, r.Status)
		}
	}
	if unavailable == 0 {
		t.Error("no item was answered 503 after the queue failed")
	}
	notTried := 0
	for i := range items {
		if _, ok := tried.Load(fmt.Sprintf("b-%d", i)); !ok {
			notTried++
		}
	}
	if notTried == 0 {
		t.Error("every item was tried after the queue failed: the batch does not stop")
	}
}

// TestReadyz: 200 while the service's Redis answers, 503 when it does not.
func TestReadyz(t *testing.T) {
	svc := newFakeService()
	srv := newTestAPI(t, svc)
	if resp := (rawRequest{method: http.MethodGet, path: "/readyz"}).send(t, srv.URL); resp.Status != http.StatusOK {
		t.Errorf("readyz with Redis up: %d", resp.Status)
	}
	svc.pingErr = errors.New("dial tcp: refused")
	if resp := (rawRequest{method: http.MethodGet, path: "/readyz"}).send(t, srv.URL); resp.Status != http.StatusServiceUnavailable {
		t.Errorf("readyz with Redis down: %d, want 503", resp.Status)
	}
}
