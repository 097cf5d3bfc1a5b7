package test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/artificialstudio/webhook-dispatcher/test/testenv"
)

// TestMonitoringUI: asynqmon is mounted at /monitoring/, behind basic auth
// with MONITORING_PASSWORD (not the API token), and read-only.
func TestMonitoringUI(t *testing.T) {
	const password = "monitoring-test-password"
	_, rc, d := startStack(t, nil, "MONITORING_PASSWORD="+password)
	if resp := d.Call(t, http.MethodPost, "/v1/deliveries", testenv.Delivery(rc.URL, "mon-1")); resp.Status != http.StatusAccepted {
		t.Fatalf("enqueue: %d", resp.Status)
	}
	get := func(method, path, pass string) (int, string) {
		req, _ := http.NewRequest(method, d.APIURL+path, nil)
		if pass != "" {
			req.SetBasicAuth("operator", pass)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if code, _ := get(http.MethodGet, "/monitoring/", ""); code != http.StatusUnauthorized {
		t.Errorf("no credentials: %d, want 401", code)
	}
	if code, _ := get(http.MethodGet, "/monitoring/", "wrong"); code != http.StatusUnauthorized {
		t.Errorf("wrong password: %d, want 401", code)
	}
	if code, _ := get(http.MethodGet, "/monitoring/", testenv.Token); code != http.StatusUnauthorized {
		t.Errorf("API token as the password: %d, want 401 (the token can enqueue; monitoring has its own credential)", code)
	}
	code, body := get(http.MethodGet, "/monitoring/", password)
	if code != http.StatusOK || !strings.Contains(strings.ToLower(body), "<html") {
		t.Errorf("UI: %d %.200s", code, body)
	}
	code, body = get(http.MethodGet, "/monitoring/api/queues", password)
	if code != http.StatusOK || !strings.Contains(body, `"webhooks"`) {
		t.Errorf("queues API: %d %.300s, want the webhooks queue", code, body)
	}
	if code, _ := get(http.MethodPost, "/monitoring/api/queues/webhooks:pause", password); code != http.StatusForbidden {
		t.Errorf("pausing the queue through the UI: %d, want 403 (read-only)", code)
	}
	if code, _ := get(http.MethodDelete, "/monitoring/api/queues/webhooks", password); code != http.StatusForbidden {
		t.Errorf("deleting the queue through the UI: %d, want 403 (read-only)", code)
	}
}
