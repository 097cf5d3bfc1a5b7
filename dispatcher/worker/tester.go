package worker

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/artificialstudio/webhook-dispatcher/dispatcher"
	"github.com/artificialstudio/webhook-dispatcher/payload"
	"github.com/artificialstudio/webhook-dispatcher/payload/signature"
	"github.com/artificialstudio/webhook-dispatcher/urlguard"
)

// Tester makes test sends: one real attempt to a customer's URL right now,
// with a sample body of the documented shape, through the same client, URL
// guard, timeout and signing as deliveries. Nothing is queued, logged in
// the attempt log or retried; rate limiting is the caller's (the API's).
//
// Client is required (NewClient); nil Guard means the default policy; nil
// Signer signs only with a secret passed to Send; zero Timeout means 5s.
type Tester struct {
	Client    Doer
	Guard     *urlguard.Guard
	Signer    Signer
	Timeout   time.Duration
	UserAgent string
}

// SampleBody returns the test webhook's body for id: the provider's
// documented example (an image generation), with id and createdAt now.
func SampleBody(id string, now time.Time) ([]byte, error) {
	thumb := "https://files.artificialstudio.ai/thumbnails/abc123.jpg"
	g, err := payload.Normalize(payload.Generation{
		ID: id, Status: "success", Tool: "create-image", Type: "image",
		Output:    "https://files.artificialstudio.ai/generations/abc123.png",
		Thumbnail: &thumb, CreatedAt: now.UTC().Format("2006-01-02T15:04:05.000Z07:00"),
	})
	if err != nil {
		return nil, fmt.Errorf("sample body: %w", err)
	}
	return payload.Encode(g)
}

// NewTestID returns dispatcher.TestIDPrefix and 24 random hex digits.
func NewTestID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b) // crypto/rand does not fail on supported platforms
	return dispatcher.TestIDPrefix + hex.EncodeToString(b)
}

// Send makes one test attempt to webhook, signed with the Tester's keys and
// secret (if not zero), and reports it. It never returns an error: every
// failure is an Outcome and an Error in the result.
func (t *Tester) Send(ctx context.Context, webhook string, secret signature.Secret) dispatcher.TestResult {
	r := dispatcher.TestResult{ID: NewTestID()}
	fail := func(o dispatcher.Outcome, err error) dispatcher.TestResult {
		r.Outcome, r.Error = o, err.Error()
		return r
	}
	guard := t.Guard
	if guard == nil {
		guard = urlguard.New()
	}
	if err := guard.CheckURL(webhook); err != nil {
		return fail(dispatcher.OutcomeBlocked, err)
	}
	start := time.Now()
	body, err := SampleBody(r.ID, start)
	if err != nil {
		return fail(dispatcher.OutcomeConnect, err)
	}
	timeout := t.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, webhook, bytes.NewReader(body))
	if err != nil {
		return fail(dispatcher.OutcomeConnect, fmt.Errorf("build request: %w", err))
	}
	payload.SetHeaders(req.Header, r.ID, t.UserAgent)
	if err := signRequest(t.Signer, req.Header, r.ID, start, body, secret); err != nil {
		return fail(dispatcher.OutcomeConnect, err)
	}
	resp, err := t.Client.Do(req)
	if err == nil {
		r.Status = resp.StatusCode
		r.TLS = tlsInfo(resp.TLS)
		readSnippet(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			err = &dispatcher.StatusError{Code: resp.StatusCode}
		}
	} else {
		var ue *url.Error
		if errors.As(err, &ue) {
			ue.URL = redactURL(ue.URL)
		}
		var ve *tls.CertificateVerificationError
		if errors.As(err, &ve) && len(ve.UnverifiedCertificates) > 0 {
			na := ve.UnverifiedCertificates[0].NotAfter.UTC()
			r.TLS = &dispatcher.TLSInfo{CertNotAfter: &na}
		}
	}
	took := time.Since(start)
	r.DurationMs = float64(took.Microseconds()) / 1000
	r.Outcome = dispatcher.Classify(err)
	r.OK = err == nil
	r.AnsweredWithin5s = r.Status != 0 && took <= dispatcher.AnswerWithin
	if err != nil {
		r.Error = err.Error()
	}
	return r
}

// tlsInfo reports the negotiated version and the leaf's expiry; nil for a
// plain-HTTP answer.
func tlsInfo(cs *tls.ConnectionState) *dispatcher.TLSInfo {
	if cs == nil {
		return nil
	}
	info := &dispatcher.TLSInfo{Version: tls.VersionName(cs.Version)}
	if len(cs.PeerCertificates) > 0 {
		na := cs.PeerCertificates[0].NotAfter.UTC()
		info.CertNotAfter = &na
	}
	return info
}
