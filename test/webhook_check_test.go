package test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/artificialstudio/webhook-dispatcher/test/testenv"
)

// TestWebhookCheckEndpoint: POST /v1/webhooks/check gives the registration
// verdict that POST /v1/deliveries applies.
func TestWebhookCheckEndpoint(t *testing.T) {
	redis := testenv.StartRedis(t, testenv.RedisOptions{})
	// No exemptions here: the default, fully closed policy.
	d := testenv.StartDispatcher(t, "api", "REDIS_URL="+redis.URL(), "URLGUARD_ALLOW_CIDRS=")
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
		resp := d.Call(t, http.MethodPost, "/v1/webhooks/check", map[string]string{"url": tt.url})
		var out struct {
			OK     bool   `json:"ok"`
			Reason string `json:"reason"`
		}
		resp.JSON(t, &out)
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
	if resp := d.Call(t, http.MethodPost, "/v1/webhooks/check", map[string]string{}); resp.Status != http.StatusBadRequest {
		t.Errorf("missing url: %d, want 400", resp.Status)
	}
	if resp := testenv.Call(t, http.MethodPost, d.APIURL+"/v1/webhooks/check", "", map[string]string{"url": "https://a.com/"}); resp.Status != http.StatusUnauthorized {
		t.Errorf("no token: %d, want 401", resp.Status)
	}
}
