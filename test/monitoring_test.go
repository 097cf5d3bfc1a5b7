package test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/artificialstudio/webhook-dispatcher/test/testenv"
)

// TestMonitoringUI: asynqmon is mounted at /monitoring/, behind basic auth
// with the API token as the password, and read-only.
func TestMonitoringUI(t *testing.T) {
	_, rc, d := startStack(t, nil)
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
	code, body := get(http.MethodGet, "/monitoring/", testenv.Token)
	if code != http.StatusOK || !strings.Contains(strings.ToLower(body), "<html") {
		t.Errorf("UI: %d %.200s", code, body)
	}
	code, body = get(http.MethodGet, "/monitoring/api/queues", testenv.Token)
	if code != http.StatusOK || !strings.Contains(body, `"webhooks"`) {
		t.Errorf("queues API: %d %.300s, want the webhooks queue", code, body)
	}
	if code, _ := get(http.MethodPost, "/monitoring/api/queues/webhooks:pause", testenv.Token); code != http.StatusForbidden {
		t.Errorf("pausing the queue through the UI: %d, want 403 (read-only)", code)
	}
	if code, _ := get(http.MethodDelete, "/monitoring/api/queues/webhooks", testenv.Token); code != http.StatusForbidden {
		t.Errorf("deleting the queue through the UI: %d, want 403 (read-only)", code)
	}
}
