package api

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/artificialstudio/webhook-dispatcher/dispatcher"
	"github.com/artificialstudio/webhook-dispatcher/payload/signature"
	"github.com/artificialstudio/webhook-dispatcher/urlguard"
)

// TestEnqueueWithSigningSecret: single and batch requests may carry
// "signing": {"secret"}; the secret reaches the service with the delivery
// and no answer, error or GET shows it; a malformed secret is a 400 that
// does not echo it.
func TestEnqueueWithSigningSecret(t *testing.T) {
	svc := newFakeService()
	srv := newTestAPI(t, svc)
	sec, _ := signature.GenerateSecret(nil)
	secretB64 := strings.TrimPrefix(sec.Reveal(), signature.PrefixSecret)
	item := func(id, secret string) json.RawMessage {
		return json.RawMessage(`{"webhook":"https://hooks.example.com/h","generation":` + generationJSON(id, "", "") + `,"signing":{"secret":"` + secret + `"}}`)
	}
	var answers []response
	r := rawRequest{method: http.MethodPost, path: "/v1/deliveries", token: testToken, ctype: "application/json", body: item("s-1", sec.Reveal())}.send(t, srv.URL)
	if r.Status != http.StatusAccepted {
		t.Fatalf("signed enqueue: %d %s", r.Status, r.Body)
	}
	answers = append(answers, r)
	batch := `{"deliveries":[` + string(item("s-2", sec.Reveal())) + `,` + string(item("s-3", "whsec_"+secretB64[:10])) + `]}`
	r = rawRequest{method: http.MethodPost, path: "/v1/deliveries/batch", token: testToken, ctype: "application/json", body: []byte(batch)}.send(t, srv.URL)
	answers = append(answers, r)
	var br struct{ Results []BatchResult }
	if err := json.Unmarshal(r.Body, &br); err != nil || len(br.Results) != 2 || br.Results[0].Status != 202 || br.Results[1].Status != 400 || br.Results[1].Code != "invalid_signing" {
		t.Fatalf("batch: %s", r.Body)
	}
	for _, bad := range []string{secretB64, "whsec_" + secretB64 + "!", "whsk_" + secretB64} {
		r = rawRequest{method: http.MethodPost, path: "/v1/deliveries", token: testToken, ctype: "application/json", body: item("s-bad", bad)}.send(t, srv.URL)
		if r.Status != http.StatusBadRequest || !strings.Contains(string(r.Body), "signing.secret") {
			t.Errorf("bad secret: %d %s, want 400 naming signing.secret", r.Status, r.Body)
		}
		answers = append(answers, r)
	}
	r = rawRequest{method: http.MethodPost, path: "/v1/deliveries", token: testToken, ctype: "application/json",
		body: []byte(`{"webhook":"https://hooks.example.com/h","generation":` + generationJSON("s-4", "", "") + `,"signing":{"secret":"` + sec.Reveal() + `","extra":1}}`)}.send(t, srv.URL)
	if r.Status != http.StatusBadRequest {
		t.Errorf("unknown member in signing: %d %s, want 400", r.Status, r.Body)
	}
	answers = append(answers, r, call(t, srv.URL, http.MethodGet, "/v1/deliveries/s-1", nil))
	for _, a := range answers {
		if strings.Contains(string(a.Body), secretB64[:16]) {
			t.Errorf("answer carries the secret: %s", a.Body)
		}
	}
	for _, id := range []string{"s-1", "s-2"} {
		d := svc.stored[id]
		if !d.Signed || d.Secret.Reveal() != sec.Reveal() {
			t.Errorf("%s reached the service without its secret (signed %v)", id, d.Signed)
		}
	}
	if _, ok := svc.stored["s-3"]; ok {
		t.Error("an item with a malformed secret was stored")
	}
	// Unsigned requests stay unsigned.
	if r := call(t, srv.URL, http.MethodPost, "/v1/deliveries", map[string]any{"webhook": "https://hooks.example.com/h", "generation": json.RawMessage(generationJSON("u-1", "", ""))}); r.Status != 202 || svc.stored["u-1"].Signed {
		t.Errorf("unsigned: %d %s, signed %v", r.Status, r.Body, svc.stored["u-1"].Signed)
	}
}

func TestListSigningKeys(t *testing.T) {
	created := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a := &API{Service: newFakeService(), Token: testToken, SigningKeys: []SigningKey{
		{ID: "abc", Version: "v1a", PublicKey: "whpk_x", CreatedAt: &created},
		{ID: "def", Version: "v1a", PublicKey: "whpk_y"},
	}}
	srv := httptest.NewServer(a.Handler())
	t.Cleanup(srv.Close)
	r := call(t, srv.URL, http.MethodGet, "/v1/signing-keys", nil)
	want := `{"keys":[{"id":"abc","version":"v1a","publicKey":"whpk_x","createdAt":"2026-01-01T00:00:00Z"},{"id":"def","version":"v1a","publicKey":"whpk_y","createdAt":null}]}`
	if r.Status != 200 || strings.TrimSpace(string(r.Body)) != want {
		t.Errorf("GET /v1/signing-keys = %d %s, want %s", r.Status, r.Body, want)
	}
	// Signing off: an empty list, not null.
	off := newTestAPI(t, newFakeService())
	if r := call(t, off.URL, http.MethodGet, "/v1/signing-keys", nil); r.Status != 200 || strings.TrimSpace(string(r.Body)) != `{"keys":[]}` {
		t.Errorf("signing off: %d %s", r.Status, r.Body)
	}
}

// fakeTester records test sends and answers delivered.
type fakeTester struct {
	mu      sync.Mutex
	urls    []string
	secrets []signature.Secret
}

func (f *fakeTester) Send(_ context.Context, webhook string, secret signature.Secret) dispatcher.TestResult {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.urls = append(f.urls, webhook)
	f.secrets = append(f.secrets, secret)
	return dispatcher.TestResult{ID: "test_1", OK: true, Status: 200, Outcome: dispatcher.OutcomeDelivered, AnsweredWithin5s: true}
}

// TestWebhookTestRateLimit: one test send per destination per 10 s; other
// destinations are not held up; a refused URL is a 422 that sends nothing
// and spends no budget; the optional secret reaches the tester.
func TestWebhookTestRateLimit(t *testing.T) {
	ft := &fakeTester{}
	a := &API{Service: newFakeService(), Token: testToken, Guard: urlguard.New(netip.MustParsePrefix("127.0.0.1/32")), Tester: ft}
	srv := httptest.NewServer(a.Handler())
	t.Cleanup(srv.Close)
	send := func(body any) response { return call(t, srv.URL, http.MethodPost, "/v1/webhooks/test", body) }

	r := send(map[string]any{"url": "https://10.0.0.5/hook"})
	var res dispatcher.TestResult
	if err := json.Unmarshal(r.Body, &res); r.Status != 422 || err != nil || res.OK || res.Outcome != dispatcher.OutcomeBlocked || res.Error == "" {
		t.Errorf("refused URL: %d %s", r.Status, r.Body)
	}
	sec, _ := signature.GenerateSecret(nil)
	r = send(map[string]any{"url": "https://127.0.0.1:8443/a", "signing": map[string]string{"secret": sec.Reveal()}})
	if r.Status != 200 || !strings.Contains(string(r.Body), `"ok":true`) {
		t.Fatalf("first test send: %d %s", r.Status, r.Body)
	}
	for _, u := range []string{"https://127.0.0.1:8443/a", "https://127.0.0.1:8443/other-path?x=1", "https://127.0.0.1:8443"} {
		r = send(map[string]any{"url": u})
		if r.Status != http.StatusTooManyRequests || r.Header.Get("Retry-After") == "" {
			t.Errorf("second test send to %s within 10 s: %d %s (Retry-After %q), want 429", u, r.Status, r.Body, r.Header.Get("Retry-After"))
		}
	}
	if r = send(map[string]any{"url": "https://127.0.0.1:9443/a"}); r.Status != 200 {
		t.Errorf("another destination: %d %s, want 200", r.Status, r.Body)
	}
	if len(ft.urls) != 2 || ft.secrets[0].Reveal() != sec.Reveal() || !ft.secrets[1].IsZero() {
		t.Errorf("tester got %v, want the two allowed sends, the first with its secret", ft.urls)
	}
	if r = send(map[string]any{"signing": map[string]string{"secret": "nope"}}); r.Status != 400 {
		t.Errorf("no url: %d, want 400", r.Status)
	}
	// The limiter itself: allowed again once the interval is over.
	var l testLimiter
	t0 := time.Now()
	if l.take("d", t0) != 0 || l.take("d", t0.Add(TestSendInterval-time.Millisecond)) == 0 || l.take("d", t0.Add(TestSendInterval)) != 0 {
		t.Error("testLimiter: want one take per TestSendInterval")
	}
}
