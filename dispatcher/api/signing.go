package api

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/artificialstudio/webhook-dispatcher/dispatcher"
	"github.com/artificialstudio/webhook-dispatcher/payload"
	"github.com/artificialstudio/webhook-dispatcher/payload/signature"
)

// SigningRequest is the optional "signing" member of a delivery request (and
// of a test send): the receiver's own "v1" secret, "whsec_" + base64.
type SigningRequest struct {
	Secret string `json:"secret"`
}

// parseSigning reads the optional signing member; the zero Secret when absent.
// The error never quotes the secret.
func parseSigning(s *SigningRequest) (signature.Secret, *apiError) {
	if s == nil {
		return signature.Secret{}, nil
	}
	sec, err := signature.ParseSecret(s.Secret)
	if err != nil {
		// ParseSecret's errors say what is wrong without quoting the text.
		return signature.Secret{}, &apiError{Status: http.StatusBadRequest, Code: "invalid_signing", Message: err.Error(),
			Fields: []payload.FieldError{{Field: "signing.secret", Reason: "must be whsec_ and the standard base64 of 24 to 64 bytes"}}}
	}
	return sec, nil
}

// SigningKey is one public key of the provider's v1a signing keys, as
// GET /v1/signing-keys lists it for the provider to publish.
type SigningKey struct {
	// ID is the key's id (signature.PublicKey.ID: a prefix of its RFC 7638
	// JWK thumbprint).
	ID string `json:"id"`
	// Version is the webhook-signature version it verifies: "v1a".
	Version string `json:"version"`
	// PublicKey is "whpk_" + base64 of the 32-byte Ed25519 public key.
	PublicKey string `json:"publicKey"`
	// CreatedAt comes from the "# created" line before the key in the key
	// file; nil when the file does not say.
	CreatedAt *time.Time `json:"createdAt"`
}

// TestSender makes one test attempt right now; *worker.Tester satisfies it.
type TestSender interface {
	Send(ctx context.Context, webhook string, secret signature.Secret) dispatcher.TestResult
}

// TestSendInterval is how often one destination (scheme://host:port) may be
// sent a test webhook, per API process.
const TestSendInterval = 10 * time.Second

func (a *API) listSigningKeys(w http.ResponseWriter, _ *http.Request) {
	keys := a.SigningKeys
	if keys == nil {
		keys = []SigningKey{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"keys": keys})
}

// testWebhook answers POST /v1/webhooks/test {"url", "signing"?}: 200 with
// the TestResult once an attempt was made (whatever its outcome), 422 with
// outcome "blocked" when the URL guard refuses the URL (nothing sent), 429
// while the destination was tested less than TestSendInterval ago.
func (a *API) testWebhook(w http.ResponseWriter, r *http.Request) {
	var req struct {
		URL     *string         `json:"url"`
		Signing *SigningRequest `json:"signing"`
	}
	if e := readJSON(w, r, MaxRequestBytes, &req); e != nil {
		writeAPIError(w, e)
		return
	}
	if req.URL == nil {
		writeError(w, http.StatusBadRequest, "malformed", "url is required")
		return
	}
	secret, e := parseSigning(req.Signing)
	if e != nil {
		writeAPIError(w, e)
		return
	}
	if err := a.Guard.CheckURL(*req.URL); err != nil {
		writeJSON(w, http.StatusUnprocessableEntity, dispatcher.TestResult{Outcome: dispatcher.OutcomeBlocked, Error: err.Error()})
		return
	}
	if wait := a.testLimit.take(destinationKey(*req.URL), time.Now()); wait > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int((wait+time.Second-1)/time.Second)))
		writeError(w, http.StatusTooManyRequests, "rate_limited",
			fmt.Sprintf("this destination was tested less than %s ago; try again in %s", TestSendInterval, wait.Round(time.Second)))
		return
	}
	res := a.Tester.Send(r.Context(), *req.URL, secret)
	a.log().Info("test webhook sent", "id", res.ID, "host", hostOnly(*req.URL), "outcome", res.Outcome, "status", res.Status)
	writeJSON(w, http.StatusOK, res)
}

// testLimiter allows one test send per destination per TestSendInterval, in
// this process.
type testLimiter struct {
	mu   sync.Mutex
	last map[string]time.Time
}

// take books a test send to dest at now, or returns how long to wait.
func (l *testLimiter) take(dest string, now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.last == nil {
		l.last = map[string]time.Time{}
	}
	if t, ok := l.last[dest]; ok && now.Sub(t) < TestSendInterval {
		return TestSendInterval - now.Sub(t)
	}
	if len(l.last) >= 10000 { // forget destinations whose interval is over
		for k, t := range l.last {
			if now.Sub(t) >= TestSendInterval {
				delete(l.last, k)
			}
		}
	}
	l.last[dest] = now
	return 0
}

// destinationKey is scheme://host:port of a URL that passed the guard, with
// the default port filled in, so https://a.example and https://a.example:443
// share one budget.
func destinationKey(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	host, port := strings.ToLower(u.Hostname()), u.Port()
	if port == "" {
		port = "443"
	}
	return u.Scheme + "://" + net.JoinHostPort(host, port)
}

func hostOnly(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return u.Hostname()
}
