package dispatcher

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/hibiken/asynq"

	"github.com/artificialstudio/webhook-dispatcher/payload"
	"github.com/artificialstudio/webhook-dispatcher/schedule"
	"github.com/artificialstudio/webhook-dispatcher/urlguard"
)

// Outcomes of one attempt, as logged, counted and returned by the API.
const (
	OutcomeDelivered  = "delivered"
	OutcomeHTTPStatus = "http_status"
	OutcomeTimeout    = "timeout"
	OutcomeDNS        = "dns"
	OutcomeConnect    = "connect"
	OutcomeTLS        = "tls"
	OutcomeBlocked    = "blocked"
)

// MaxResponseBytes is how much of a response body is read before the
// connection is given up: enough for keep-alive on ordinary answers, bounded
// against a receiver that streams gigabytes.
const MaxResponseBytes = 64 << 10

// maxEarlyWait bounds how long a handler waits for a retry that asynq handed
// over before its nominal time. asynq stores due times in whole seconds, so a
// retry is at most one second early; the margin covers clock steps.
const maxEarlyWait = 2 * time.Second

// Log attribute keys.
const (
	keyDeliveryID = "delivery_id"
	keyAttempt    = "attempt"
	keyOutcome    = "outcome"
	keyStatus     = "status"
	keyDuration   = "duration_ms"
	keyHost       = "host"
)

// Doer sends one HTTP request; *http.Client satisfies it.
type Doer interface {
	Do(*http.Request) (*http.Response, error)
}

// Recorder receives the worker's measurements; *metrics.Metrics satisfies it.
type Recorder interface {
	ObserveAttempt(outcome string, status int, attempt int, d time.Duration)
	ObserveDelivered(endToEnd time.Duration)
	Failed()
	Deferred()
	InFlight(delta int)
}

// StatusError is a response other than 200.
type StatusError struct{ Code int }

func (e *StatusError) Error() string { return fmt.Sprintf("receiver answered %d, want 200", e.Code) }

// ErrDeferred means the destination's concurrency cap was full: the attempt
// was not made and not counted, and the task comes back later.
var ErrDeferred = errors.New("dispatcher: destination busy, attempt deferred")

// DeferError is a deferral with the wait the limiter booked for it.
type DeferError struct{ Delay time.Duration }

func (e *DeferError) Error() string {
	return fmt.Sprintf("%v; next try in %s", ErrDeferred, e.Delay.Round(time.Millisecond))
}

// Is makes errors.Is(err, ErrDeferred) true.
func (e *DeferError) Is(target error) bool { return target == ErrDeferred }

// IsFailure tells asynq which errors spend one of the attempts: all but a
// deferral. Pass it as asynq.Config.IsFailure.
func IsFailure(err error) bool { return !errors.Is(err, ErrDeferred) }

// RetryDelay adapts a schedule to asynq.Config.RetryDelayFunc: n is the number
// of retries so far. A deferral comes back after the wait it carries (asynq
// does not count deferrals, so n cannot tell how often a task was deferred).
func RetryDelay(s schedule.Schedule) asynq.RetryDelayFunc {
	return func(n int, err error, _ *asynq.Task) time.Duration {
		var de *DeferError
		if errors.As(err, &de) {
			return de.Delay
		}
		if errors.Is(err, ErrDeferred) {
			return MinDefer
		}
		if d, ok := s.Delay(n); ok {
			return d
		}
		return s[len(s)-1] // asynq archives before asking past the end
	}
}

// Handler delivers one webhook per task. Client is required; a nil Store keeps
// no attempt log (and cannot hold back early retries), nil Log discards, nil
// Metrics skips, nil Limiter imposes no per-destination cap.
type Handler struct {
	Client    Doer
	Store     *Store
	Schedule  schedule.Schedule
	Timeout   time.Duration // whole exchange per attempt; zero means 5s
	UserAgent string
	Limiter   *HostLimiter
	Log       *slog.Logger
	Metrics   Recorder
}

var _ asynq.Handler = (*Handler)(nil)

// ProcessTask makes one attempt. It returns nil only for a 200 answer.
func (h *Handler) ProcessTask(ctx context.Context, t *asynq.Task) error {
	d, err := decodeTask(t.Payload())
	if err != nil {
		h.log().ErrorContext(ctx, "unreadable task", "error", err)
		return fmt.Errorf("%w: %w", err, asynq.SkipRetry)
	}
	retried, _ := asynq.GetRetryCount(ctx)
	maxRetry, ok := asynq.GetMaxRetry(ctx)
	if !ok {
		maxRetry = schedule.Steps
	}
	final := retried >= maxRetry

	if err := h.waitForNominalTime(ctx, d.ID, retried); err != nil {
		return err
	}

	host, hostname := destination(d.Webhook)
	release, err := h.acquire(ctx, d.ID, host, hostname, final)
	if err != nil {
		return err
	}
	defer release()

	if h.Metrics != nil {
		h.Metrics.InFlight(1)
		defer h.Metrics.InFlight(-1)
	}
	a, err := h.attempt(ctx, d)
	h.Limiter.Observe(host, a.EndedAt.Sub(a.StartedAt))
	if err != nil && ctx.Err() != nil && errors.Is(ctx.Err(), context.Canceled) {
		// Shutdown: asynq puts the task back without spending an attempt, so
		// this one is not logged as failed either.
		return ctx.Err()
	}
	a.Attempt = retried + 1
	h.record(ctx, d, a, hostname)

	if err == nil {
		if h.Metrics != nil {
			h.Metrics.ObserveDelivered(time.Since(d.EnqueuedAt))
		}
		return nil
	}
	err = fmt.Errorf("deliver %s attempt %d: %w", d.ID, a.Attempt, err)
	if final {
		h.markFailed(ctx, d, a)
	}
	return err
}

// acquire takes one of the destination's slots. When they are all taken it
// waits briefly if the destination answers fast (a slot frees up soon), and
// otherwise defers the task without spending an attempt. The last attempt
// cannot be deferred (asynq archives a task that errors on its last attempt,
// deferral or not), so it waits for its slot.
func (h *Handler) acquire(ctx context.Context, id, host, hostname string, final bool) (func(), error) {
	if release, ok := h.Limiter.TryAcquire(host); ok {
		return release, nil
	}
	if final {
		return h.Limiter.Acquire(ctx, host)
	}
	if wait := h.Limiter.WorthWaiting(host, slotWaitBudget); wait > 0 {
		wctx, cancel := context.WithTimeout(ctx, wait)
		release, err := h.Limiter.Acquire(wctx, host)
		cancel()
		if err == nil {
			return release, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
	if h.Metrics != nil {
		h.Metrics.Deferred()
	}
	delay := h.Limiter.DeferFor(host)
	h.log().DebugContext(ctx, "destination busy; attempt deferred", keyDeliveryID, id, keyHost, hostname, "delay_ms", delay.Milliseconds())
	return nil, fmt.Errorf("deliver %s: %w", id, &DeferError{Delay: delay})
}

// slotWaitBudget is the longest a task waits in a worker slot for a busy
// destination's slot before it is deferred instead.
const slotWaitBudget = 250 * time.Millisecond

// waitForNominalTime holds back a retry that asynq handed over early: its due
// time is stored in whole seconds, so without this a 5 s retry starts after
// 4–5 s. The nominal time is the end of the last failed attempt plus the step.
func (h *Handler) waitForNominalTime(ctx context.Context, id string, retried int) error {
	if retried == 0 || h.Store == nil {
		return nil
	}
	step, ok := h.Schedule.Delay(retried - 1)
	if !ok {
		return nil
	}
	last, found, err := h.Store.LastAttempt(ctx, id)
	if err != nil {
		h.log().WarnContext(ctx, "cannot read attempt log; not holding back retry", keyDeliveryID, id, "error", err)
		return nil
	}
	if !found || last.Outcome == OutcomeDelivered {
		return nil
	}
	wait := time.Until(last.EndedAt.Add(step))
	if wait <= 0 {
		return nil
	}
	wait = min(wait, maxEarlyWait)
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// attempt POSTs d once and classifies the result.
func (h *Handler) attempt(ctx context.Context, d Delivery) (Attempt, error) {
	timeout := h.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	a := Attempt{StartedAt: time.Now()}
	finish := func(outcome string, err error) (Attempt, error) {
		a.EndedAt = time.Now()
		a.DurationMs = float64(a.EndedAt.Sub(a.StartedAt).Microseconds()) / 1000
		a.Outcome = outcome
		if err != nil {
			a.Error = err.Error()
		}
		return a, err
	}

	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.Webhook, bytes.NewReader(d.Body))
	if err != nil {
		return finish(OutcomeConnect, fmt.Errorf("build request: %w", err))
	}
	payload.SetHeaders(req.Header, d.ID, h.UserAgent)
	resp, err := h.Client.Do(req)
	if err != nil {
		// net/http names the whole URL in its errors; the path and query may
		// carry the customer's secret, and this text is stored and shown.
		var ue *url.Error
		if errors.As(err, &ue) {
			ue.URL = redactURL(ue.URL)
		}
		return finish(Classify(err), err)
	}
	a.Status = resp.StatusCode
	a.ResponseBody = readSnippet(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return finish(OutcomeHTTPStatus, &StatusError{Code: resp.StatusCode})
	}
	// The receiver acknowledged with 200; a body that then stalls does not
	// undo the acknowledgement.
	return finish(OutcomeDelivered, nil)
}

// readSnippet keeps the first ResponseSnippetBytes of body and reads on to at
// most MaxResponseBytes, so a small answer leaves the connection reusable.
func readSnippet(body io.Reader) string {
	var buf [ResponseSnippetBytes]byte
	n, _ := io.ReadFull(body, buf[:])
	if n == len(buf) {
		_, _ = io.CopyN(io.Discard, body, MaxResponseBytes-int64(n))
	}
	return string(buf[:n])
}

// record logs a (hostname only: the path and query may carry a customer's
// secret), counts it and writes it to the attempt log.
func (h *Handler) record(ctx context.Context, d Delivery, a Attempt, hostname string) {
	if h.Store != nil {
		// The log write must not be lost to the attempt's own deadline.
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		if err := h.Store.AppendAttempt(wctx, d.ID, a); err != nil {
			h.log().WarnContext(ctx, "cannot write attempt log", keyDeliveryID, d.ID, "error", err)
		}
		cancel()
	}
	if h.Metrics != nil {
		h.Metrics.ObserveAttempt(a.Outcome, a.Status, a.Attempt, a.EndedAt.Sub(a.StartedAt))
	}
	level := slog.LevelInfo
	if a.Outcome != OutcomeDelivered {
		level = slog.LevelWarn
	}
	h.log().Log(ctx, level, "delivery attempt",
		keyDeliveryID, d.ID,
		keyAttempt, a.Attempt,
		keyOutcome, a.Outcome,
		keyStatus, a.Status,
		keyDuration, a.DurationMs,
		keyHost, hostname,
	)
}

func (h *Handler) markFailed(ctx context.Context, d Delivery, a Attempt) {
	if h.Metrics != nil {
		h.Metrics.Failed()
	}
	h.log().ErrorContext(ctx, "delivery failed: attempts exhausted", keyDeliveryID, d.ID, keyAttempt, a.Attempt, keyOutcome, a.Outcome)
	if h.Store == nil {
		return
	}
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	lastErr := a.Outcome
	if a.Error != "" {
		lastErr = a.Error
	}
	if err := h.Store.MarkFailed(wctx, FailedRecord{Delivery: d, FailedAt: a.EndedAt, LastError: lastErr}); err != nil {
		h.log().ErrorContext(ctx, "cannot record failed delivery; asynq's archive still holds it", keyDeliveryID, d.ID, "error", err)
	}
}

func (h *Handler) log() *slog.Logger {
	if h.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return h.Log
}

// Classify maps a transport error to an attempt outcome.
func Classify(err error) string {
	var (
		dnsErr   *net.DNSError
		recErr   tls.RecordHeaderError
		alertErr tls.AlertError
		verErr   *tls.CertificateVerificationError
		unkAuth  x509.UnknownAuthorityError
		invalid  x509.CertificateInvalidError
		hostErr  x509.HostnameError
		netErr   net.Error
	)
	switch {
	case errors.Is(err, urlguard.ErrForbidden):
		return OutcomeBlocked
	case errors.As(err, &dnsErr):
		return OutcomeDNS
	case errors.As(err, &recErr), errors.As(err, &alertErr), errors.As(err, &verErr),
		errors.As(err, &unkAuth), errors.As(err, &invalid), errors.As(err, &hostErr):
		return OutcomeTLS
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		return OutcomeTimeout
	default:
		return OutcomeConnect
	}
}

// destination returns the per-destination cap's key (scheme, host and port)
// and the host name alone, for logs, from one parse of the webhook URL.
func destination(raw string) (key, hostname string) {
	u, err := url.Parse(raw)
	if err != nil {
		return raw, ""
	}
	return u.Scheme + "://" + u.Host, u.Hostname()
}

// redactURL keeps the scheme and host of raw and hides the rest.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	if u.Path == "" && u.RawQuery == "" && u.Fragment == "" {
		return u.Scheme + "://" + u.Host
	}
	return u.Scheme + "://" + u.Host + "/…"
}
