package api

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestMonitoringCredential: /monitoring/ opens with MONITORING_PASSWORD only
// (not the API token), stays read-only, and is not routed without a password.
func TestMonitoringCredential(t *testing.T) {
	ui := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	call := func(a *API, method, path string, auth func(*http.Request)) int {
		r := httptest.NewRequest(method, path, nil)
		if auth != nil {
			auth(r)
		}
		w := httptest.NewRecorder()
		a.Handler().ServeHTTP(w, r)
		return w.Code
	}
	basic := func(pass string) func(*http.Request) {
		return func(r *http.Request) { r.SetBasicAuth("operator", pass) }
	}
	bearer := func(tok string) func(*http.Request) {
		return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok) }
	}
	a := &API{Service: &gateService{}, Token: "api-token", Monitoring: ui, MonitoringPassword: "mon-pass"}
	for _, tt := range []struct {
		name   string
		method string
		path   string
		auth   func(*http.Request)
		want   int
	}{
		{"no credentials", http.MethodGet, "/monitoring/", nil, http.StatusUnauthorized},
		{"API token as password", http.MethodGet, "/monitoring/", basic("api-token"), http.StatusUnauthorized},
		{"wrong password", http.MethodGet, "/monitoring/", basic("mon-pas"), http.StatusUnauthorized},
		{"monitoring password", http.MethodGet, "/monitoring/", basic("mon-pass"), http.StatusOK},
		{"write with monitoring password", http.MethodPost, "/monitoring/api/queues/webhooks:pause", basic("mon-pass"), http.StatusForbidden},
		{"monitoring password on /v1", http.MethodGet, "/v1/deliveries", bearer("mon-pass"), http.StatusUnauthorized},
	} {
		if got := call(a, tt.method, tt.path, tt.auth); got != tt.want {
			t.Errorf("%s: %s %s = %d, want %d", tt.name, tt.method, tt.path, got, tt.want)
		}
	}
	off := &API{Service: &gateService{}, Token: "api-token", Monitoring: ui}
	for _, auth := range []func(*http.Request){nil, basic(""), basic("api-token")} {
		if got := call(off, http.MethodGet, "/monitoring/", auth); got != http.StatusNotFound {
			t.Errorf("without MONITORING_PASSWORD: /monitoring/ = %d, want 404 (not routed)", got)
		}
	}
}
