// Package worker delivers webhooks: the asynq handler that makes one attempt
// per task, the guarded HTTP client it POSTs with, and ServerConfig, the one
// constructor of the asynq.Config that runs it (retry delays, what counts as
// a failure and which queues to poll, set together). Tester makes one test
// attempt outside the queue with the same client, guard and signing.
//
// It reads and writes Redis only through the store and asynq, and serves no
// HTTP.
package worker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/hibiken/asynq"

	"github.com/artificialstudio/webhook-dispatcher/dispatcher"
	"github.com/artificialstudio/webhook-dispatcher/dispatcher/limiter"
	"github.com/artificialstudio/webhook-dispatcher/dispatcher/reconcile"
	"github.com/artificialstudio/webhook-dispatcher/dispatcher/store"
	"github.com/artificialstudio/webhook-dispatcher/payload"
	"github.com/artificialstudio/webhook-dispatcher/payload/signature"
	"github.com/artificialstudio/webhook-dispatcher/schedule"
	"github.com/artificialstudio/webhook-dispatcher/urlguard"
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
	ObserveAttempt(outcome dispatcher.Outcome, status int, attempt int, d time.Duration)
	ObserveDelivered(endToEnd time.Duration)
	Failed()
	Deferred()
	InFlight(delta int)
}

// Handler delivers one webhook per task. Client is required; a nil Store keeps
// no attempt log (and cannot hold back early retries), nil Log discards, nil
// Metrics skips, nil Limiter imposes no per-destination cap. The zero
// Schedule means schedule.Production.
type Handler struct {
	Client    Doer
	Store     *store.Store
	Schedule  schedule.Schedule
	Timeout   time.Duration // whole exchange per attempt; zero means 5s
	UserAgent string
	Limiter   limiter.Limiter
	Log       *slog.Logger
	Metrics   Recorder
	// Signer adds the Standard Webhooks headers with the provider's v1a
	// keys; nil sends them only for deliveries with their own v1 secret.
	Signer Signer
}

var _ asynq.Handler = (*Handler)(nil)

// ProcessTask makes one attempt. It returns nil only for a 200 answer.
func (h *Handler) ProcessTask(ctx context.Context, t *asynq.Task) error {
	d, err := dispatcher.DecodeTask(t.Payload())
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

	last, found := h.lastAttempt(ctx, d.ID)
	if found && last.InCycle(d) && last.Outcome == dispatcher.OutcomeDelivered {
		// asynq runs a task again whose attempt already ended (a completion
		// write that failed, a lease that expired under a stalled worker, a
		// task the reconciler handed back): the receiver has its 200, so this
		// run completes the task without a POST and without an attempt.
		h.log().InfoContext(ctx, "already delivered in this cycle; completing without a POST", keyDeliveryID, d.ID, keyAttempt, last.Attempt)
		if r, ok := h.Metrics.(interface{ Reconciled(kind string) }); ok {
			r.Reconciled(reconcile.KindRerunSkipped)
		}
		h.markDelivered(ctx, d.ID, last.EndedAt) // the first run may have ended before its marker
		return nil
	}
	if err := h.waitForNominalTime(ctx, last, found, retried); err != nil {
		return err
	}

	secret, err := h.deliverySecret(ctx, d, final)
	if err != nil {
		return err
	}

	host, hostname := destination(d.Webhook)
	slot, err := h.acquire(ctx, d.ID, host, hostname, final)
	if err != nil {
		return err
	}

	if h.Metrics != nil {
		h.Metrics.InFlight(1)
		defer h.Metrics.InFlight(-1)
	}
	a, err := h.attempt(ctx, d, secret)
	h.limiter().Release(slot, a.EndedAt.Sub(a.StartedAt))
	if err != nil && ctx.Err() != nil && errors.Is(ctx.Err(), context.Canceled) {
		// Shutdown: asynq puts the task back without spending an attempt, so
		// this one is not logged as failed either.
		return ctx.Err()
	}
	a.Attempt = retried + 1
	a.Cycle = d.EnqueuedAt
	logged := h.record(ctx, d, a, hostname)

	if err == nil {
		if !logged { // else the log write carried the marker (store.AppendDelivered)
			h.markDelivered(ctx, d.ID, a.EndedAt)
		}
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

// acquire takes one of the destination's slots or defers the task (the
// limiter's policy), counting and logging a deferral.
func (h *Handler) acquire(ctx context.Context, id, host, hostname string, final bool) (limiter.Slot, error) {
	slot, err := h.limiter().Acquire(ctx, host, final)
	if err == nil {
		return slot, nil
	}
	var de *dispatcher.DeferError
	if errors.As(err, &de) {
		if h.Metrics != nil {
			h.Metrics.Deferred()
		}
		h.log().DebugContext(ctx, "destination busy; attempt deferred", keyDeliveryID, id, keyHost, hostname, "delay_ms", de.Delay.Milliseconds())
	}
	return limiter.Slot{}, fmt.Errorf("deliver %s: %w", id, err)
}

func (h *Handler) limiter() limiter.Limiter {
	if h.Limiter == nil {
		return limiter.Unlimited{}
	}
	return h.Limiter
}

func (h *Handler) schedule() schedule.Schedule {
	if h.Schedule == (schedule.Schedule{}) {
		return schedule.Production
	}
	return h.Schedule
}

// lastAttempt reads the newest entry of id's attempt log; found is false
// without a store, with an empty log, or when Redis cannot be read (logged:
// the attempt then goes ahead, at worst a duplicate POST).
func (h *Handler) lastAttempt(ctx context.Context, id string) (dispatcher.Attempt, bool) {
	if h.Store == nil {
		return dispatcher.Attempt{}, false
	}
	last, found, err := h.Store.LastAttempt(ctx, id)
	if err != nil {
		h.log().WarnContext(ctx, "cannot read attempt log; attempting without checking it", keyDeliveryID, id, "error", err)
		return dispatcher.Attempt{}, false
	}
	return last, found
}

// waitForNominalTime holds back a retry that asynq handed over early: its due
// time is stored in whole seconds, so without this a 5 s retry starts after
// 4–5 s. The nominal time is the end of the last failed attempt (last, the
// newest log entry) plus the step.
func (h *Handler) waitForNominalTime(ctx context.Context, last dispatcher.Attempt, found bool, retried int) error {
	if retried == 0 || !found || last.Outcome == dispatcher.OutcomeDelivered {
		return nil
	}
	nominal, ok := h.schedule().Next(last.EndedAt, retried)
	if !ok {
		return nil
	}
	wait := time.Until(nominal)
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

// attempt POSTs d once, signed afresh (see signRequest), and classifies the result.
func (h *Handler) attempt(ctx context.Context, d dispatcher.Delivery, secret signature.Secret) (dispatcher.Attempt, error) {
	timeout := h.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// The hard end: whatever the answer's shape, the connection is closed
	// when ctx ends (see attemptConn).
	ctx, release := holdConns(ctx)
	defer release()

	a := dispatcher.Attempt{StartedAt: time.Now()}
	finish := func(err error) (dispatcher.Attempt, error) {
		a.EndedAt = time.Now()
		a.DurationMs = float64(a.EndedAt.Sub(a.StartedAt).Microseconds()) / 1000
		a.Outcome = dispatcher.Classify(err)
		if err != nil {
			a.Error = err.Error()
		}
		return a, err
	}

	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.Webhook, bytes.NewReader(d.Body))
	if err != nil {
		return finish(fmt.Errorf("build request: %w", err))
	}
	payload.SetHeaders(req.Header, d.ID, h.UserAgent)
	if err := signRequest(h.Signer, req.Header, d.ID, a.StartedAt, d.Body, secret); err != nil {
		return finish(err)
	}
	markReplayable(req)
	resp, err := h.Client.Do(req)
	if err != nil {
		// net/http names the whole URL in its errors; the path and query may
		// carry the customer's secret, and this text is stored and shown.
		var ue *url.Error
		if errors.As(err, &ue) {
			ue.URL = redactURL(ue.URL)
		}
		return finish(deadlineCause(ctx, err))
	}
	a.Status = resp.StatusCode
	if resp.StatusCode < http.StatusOK {
		// Only 101 reaches here (net/http skips other 1xx): an upgraded
		// stream is not an answer to a webhook; it is not read.
		resp.Body.Close()
		return finish(&dispatcher.StatusError{Code: resp.StatusCode})
	}
	a.ResponseBody = readSnippet(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return finish(&dispatcher.StatusError{Code: resp.StatusCode})
	}
	// The receiver acknowledged with 200; a body that then stalls does not
	// undo the acknowledgement.
	return finish(nil)
}

// readSnippet keeps the first dispatcher.ResponseSnippetBytes of body and reads on to at
// most MaxResponseBytes, so a small answer leaves the connection reusable.
func readSnippet(body io.Reader) string {
	var buf [dispatcher.ResponseSnippetBytes]byte
	n, _ := io.ReadFull(body, buf[:])
	if n == len(buf) {
		_, _ = io.CopyN(io.Discard, body, MaxResponseBytes-int64(n))
	}
	return string(buf[:n])
}

// record logs a (hostname only: the path and query may carry a customer's
// secret), counts it and writes it to the attempt log, with the delivered
// marker when a delivered; logged reports that the store holds them.
func (h *Handler) record(ctx context.Context, d dispatcher.Delivery, a dispatcher.Attempt, hostname string) (logged bool) {
	if h.Store != nil {
		logged = h.appendAttempt(ctx, d.ID, a)
	}
	if h.Metrics != nil {
		h.Metrics.ObserveAttempt(a.Outcome, a.Status, a.Attempt, a.EndedAt.Sub(a.StartedAt))
	}
	level := slog.LevelInfo
	if a.Outcome != dispatcher.OutcomeDelivered {
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
	return logged
}

// attemptLogWait bounds how long a handler keeps trying to write an
// attempt's log entry while Redis refuses or drops writes (a stall, a
// paused replica under min-replicas-to-write, a restart). The entry of a
// delivered attempt is what keeps a rerun of the task from POSTing again,
// so it is worth holding the worker slot for: asynq's lease (30 s) is not
// at risk.
const attemptLogWait = 10 * time.Second

// appendAttempt writes a to id's log (with id's delivered marker when a
// delivered: store.AppendDelivered), trying again every 200 ms for up to
// attemptLogWait; the attempt's own deadline or a shutdown does not cut it.
// It reports whether the write succeeded.
func (h *Handler) appendAttempt(ctx context.Context, id string, a dispatcher.Attempt) bool {
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), attemptLogWait)
	defer cancel()
	write := h.Store.AppendAttempt
	if a.Outcome == dispatcher.OutcomeDelivered {
		write = h.Store.AppendDelivered
	}
	for {
		actx, cancelTry := context.WithTimeout(wctx, 2*time.Second)
		err := write(actx, id, a)
		cancelTry()
		if err == nil {
			return true
		}
		if wctx.Err() != nil || errors.Is(err, store.ErrStoreClosed) {
			h.log().WarnContext(ctx, "cannot write attempt log", keyDeliveryID, id, "error", err)
			return false
		}
		select {
		case <-wctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func (h *Handler) markFailed(ctx context.Context, d dispatcher.Delivery, a dispatcher.Attempt) {
	if h.Metrics != nil {
		h.Metrics.Failed()
	}
	h.log().ErrorContext(ctx, "delivery failed: attempts exhausted", keyDeliveryID, d.ID, keyAttempt, a.Attempt, keyOutcome, a.Outcome)
	if h.Store == nil {
		return
	}
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	lastErr := string(a.Outcome)
	if a.Error != "" {
		lastErr = a.Error
	}
	if err := h.Store.MarkFailed(wctx, dispatcher.FailedRecord{Delivery: d, FailedAt: a.EndedAt, LastError: lastErr}); err != nil {
		h.log().ErrorContext(ctx, "cannot record failed delivery; asynq's archive still holds it", keyDeliveryID, d.ID, "error", err)
	}
}

func (h *Handler) log() *slog.Logger {
	if h.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return h.Log
}

// destination returns the per-destination cap's key (urlguard.DestinationKey:
// registrable domain and port) and the host name alone, for logs, from one parse of the webhook URL.
func destination(raw string) (key, hostname string) {
	u, err := url.Parse(raw)
	if err != nil {
		return raw, ""
	}
	// One server counts once however its URL is spelt (case, trailing dot,
	// default port, IDN forms, subdomains of one registrable domain).
	key, err = urlguard.DestinationKey(raw)
	if err != nil {
		key = u.Scheme + "://" + u.Host
	}
	return key, u.Hostname()
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
