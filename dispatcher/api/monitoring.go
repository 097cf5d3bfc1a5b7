package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
)

// basicAuth lets a browser into /monitoring/ with MonitoringPassword (any
// user name). It is a credential of its own: the API token, which can
// enqueue and redeliver, does not open the monitoring UI, and the monitoring
// password opens nothing else. asynqmon shows whole task payloads, webhook
// URLs included, and those may carry a customer's secret in the path or
// query: whoever holds this password can read them.
func (a *API) basicAuth(next http.Handler) http.Handler {
	want := sha256.Sum256([]byte(a.MonitoringPassword))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, pass, ok := r.BasicAuth()
		// Hashing first makes the comparison constant-time in the length too.
		got := sha256.Sum256([]byte(pass))
		if !ok || a.MonitoringPassword == "" || subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="webhook-dispatcher monitoring", charset="UTF-8"`)
			writeError(w, http.StatusUnauthorized, "unauthorized", "monitoring needs MONITORING_PASSWORD as the basic-auth password")
			return
		}
		next.ServeHTTP(w, r)
	})
}
