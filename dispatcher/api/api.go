// Package api is the dispatcher's HTTP API: enqueue (single and batch),
// status, listing, redelivery and the registration check, for the generation
// pipeline and for operators. It depends only on the small Service interface
// (the queue service satisfies it), so it is tested in process with a fake.
//
// It may not touch Redis or asynq directly.
package api

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/artificialstudio/webhook-dispatcher/dispatcher"
	"github.com/artificialstudio/webhook-dispatcher/dispatcher/api/strictjson"
	"github.com/artificialstudio/webhook-dispatcher/payload"
	"github.com/artificialstudio/webhook-dispatcher/urlguard"
)

// Request size limits.
const (
	MaxRequestBytes = 64 << 10
	MaxBatchBytes   = 1 << 20
	MaxBatchItems   = 500
	// batchParallelism bounds the concurrent enqueues of one batch request.
	batchParallelism = 16
)

// EnqueueRecorder receives the API's measurements; *metrics.Metrics satisfies it.
type EnqueueRecorder interface {
	Enqueued(result dispatcher.Result)
	ObserveBatch(size int)
	Redelivered(n int)
}

// Service is what the API needs of the queue service (*queue.Service).
type Service interface {
	// Enqueue stores d; errors wrap dispatcher.ErrDuplicate or ErrUnavailable.
	Enqueue(ctx context.Context, d dispatcher.Delivery) error
	// Status reports one delivery; errors wrap dispatcher.ErrNotFound or ErrUnavailable.
	Status(ctx context.Context, id string) (dispatcher.Status, error)
	// ListFailed pages through failed deliveries, newest first.
	ListFailed(ctx context.Context, cursor string, limit int) ([]dispatcher.Status, string, error)
	// Redeliver queues a failed or delivered delivery again.
	Redeliver(ctx context.Context, id string) error
	// RedeliverFailedSince redelivers every delivery failed at or after since.
	RedeliverFailedSince(ctx context.Context, since time.Time) (int, error)
	// Ping checks that the queue's Redis answers.
	Ping(ctx context.Context) error
	// Delete forgets a failed or delivered delivery and frees its id; errors
	// wrap dispatcher.ErrInProgress, ErrNotFound or ErrUnavailable.
	Delete(ctx context.Context, id string) error
}

// API serves the enqueue and operator API. Service and Token are required;
// nil Guard means the default policy, nil Log discards, nil Metrics skips,
// nil Monitoring or an empty MonitoringPassword leaves /monitoring/ unrouted.
type API struct {
	Service    Service
	Guard      *urlguard.Guard
	Token      string
	Log        *slog.Logger
	Metrics    EnqueueRecorder
	Monitoring http.Handler // asynqmon, served under /monitoring/ behind basic auth
	// SigningKeys are listed by GET /v1/signing-keys (empty: signing off).
	SigningKeys []SigningKey
	// Tester serves POST /v1/webhooks/test; nil leaves it unrouted.
	Tester TestSender

	// MaxInflightBytes caps the request body bytes held at once (inflight.go);
	// 0 means DefaultMaxInflightBytes, negative no cap.
	MaxInflightBytes int64
	// MonitoringPassword is the basic-auth password of /monitoring/
	// (monitoring.go), a read-only credential apart from Token.
	MonitoringPassword string

	tokenOnce sync.Once
	testLimit testLimiter
	tokenHash [sha256.Size]byte
}

// DeliveryRequest is the body of POST /v1/deliveries and one batch item.
type DeliveryRequest struct {
	Webhook    string              `json:"webhook"`
	Generation *payload.Generation `json:"generation"`
	// Signing, when present, carries the receiver's "v1" secret: stored
	// with the delivery, never in the task payload, never returned.
	Signing *SigningRequest `json:"signing,omitempty"`
}

// Handler returns the API's routes.
func (a *API) Handler() http.Handler {
	mux := http.NewServeMux()
	v1 := func(pattern string, m methods) { mux.Handle(pattern, a.authenticated(m)) }
	v1("/v1/deliveries", methods{http.MethodPost: a.createDelivery, http.MethodGet: a.listDeliveries})
	v1("/v1/deliveries/batch", methods{http.MethodPost: a.createBatch})
	v1("/v1/deliveries/redeliver", methods{http.MethodPost: a.redeliverBulk})
	v1("/v1/deliveries/{id}", methods{http.MethodGet: a.getDelivery, http.MethodDelete: a.deleteDelivery})
	v1("/v1/deliveries/{id}/redeliver", methods{http.MethodPost: a.redeliverOne})
	v1("/v1/deliveries/{id}/cancel", methods{http.MethodPost: a.cancelOne})
	v1("/v1/queue", methods{http.MethodGet: a.queueStats})
	v1("/v1/webhooks/check", methods{http.MethodPost: a.checkWebhook})
	v1("/v1/signing-keys", methods{http.MethodGet: a.listSigningKeys})
	if a.Tester != nil {
		v1("/v1/webhooks/test", methods{http.MethodPost: a.testWebhook})
	}
	mux.Handle("/healthz", methods{http.MethodGet: Healthz})
	mux.Handle("/readyz", methods{http.MethodGet: Readyz(a.Service.Ping)})
	if a.Monitoring != nil && a.MonitoringPassword != "" {
		mux.Handle("/monitoring/", a.basicAuth(readOnly(a.Monitoring)))
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", "no such route: "+r.URL.Path)
	})
	return limitInflight(mux, a.MaxInflightBytes)
}

// Healthz answers 200 while the process runs.
func Healthz(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// Readyz answers 200 when ping succeeds within a second, else 503.
func Readyz(ping func(context.Context) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), time.Second)
		defer cancel()
		if err := ping(ctx); err != nil {
			writeError(w, http.StatusServiceUnavailable, "redis_unavailable", "redis is not reachable")
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	}
}

// methods routes by HTTP method and answers others with a JSON 405.
type methods map[string]http.HandlerFunc

func (m methods) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h, ok := m[r.Method]; ok {
		h(w, r)
		return
	}
	if r.Method == http.MethodHead {
		if h, ok := m[http.MethodGet]; ok {
			h(w, r)
			return
		}
	}
	allowed := make([]string, 0, len(m))
	for k := range m {
		allowed = append(allowed, k)
	}
	w.Header().Set("Allow", strings.Join(allowed, ", "))
	writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", r.Method+" is not allowed here")
}

func (a *API) tokenMatches(got string) bool {
	if a.Token == "" {
		return false
	}
	// Hashing first makes the comparison constant-time in the length too.
	a.tokenOnce.Do(func() { a.tokenHash = sha256.Sum256([]byte(a.Token)) })
	g := sha256.Sum256([]byte(got))
	return subtle.ConstantTimeCompare(g[:], a.tokenHash[:]) == 1
}

func (a *API) authenticated(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scheme, token, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		if !strings.EqualFold(scheme, "Bearer") || !a.tokenMatches(strings.TrimSpace(token)) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="webhook-dispatcher"`)
			writeError(w, http.StatusUnauthorized, "unauthorized", "missing or wrong bearer token")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// readOnly refuses writes to the monitoring UI's API (asynqmon's ReadOnly
// option hides the buttons; this holds the line on the server too).
func readOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			writeError(w, http.StatusForbidden, "read_only", "monitoring is read-only")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// apiError is an error answer: status, a stable code and a message.
type apiError struct {
	Status  int                  `json:"-"`
	Code    string               `json:"code"`
	Message string               `json:"error"`
	Fields  []payload.FieldError `json:"fields,omitempty"`
}

func (e *apiError) Error() string { return e.Message }

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, &apiError{Status: status, Code: code, Message: msg})
}

func writeAPIError(w http.ResponseWriter, e *apiError) { writeJSON(w, e.Status, e) }

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// readBody enforces the JSON content type and the size limit.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, *apiError) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return nil, &apiError{Status: http.StatusUnsupportedMediaType, Code: "unsupported_media_type", Message: "Content-Type must be application/json"}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, &apiError{Status: http.StatusRequestEntityTooLarge, Code: "too_large", Message: fmt.Sprintf("request body over %d bytes", limit)}
		}
		return nil, &apiError{Status: http.StatusBadRequest, Code: "bad_body", Message: "cannot read request body"}
	}
	return body, nil
}

// readJSON reads a JSON request body of at most limit bytes into v with
// strictjson.Decode.
func readJSON(w http.ResponseWriter, r *http.Request, limit int64, v any) *apiError {
	body, e := readBody(w, r, limit)
	if e != nil {
		return e
	}
	if err := strictjson.Decode(body, v); err != nil {
		return malformed(err)
	}
	return nil
}

func malformed(err error) *apiError {
	return &apiError{Status: http.StatusBadRequest, Code: "malformed", Message: err.Error()}
}

// prepare validates one request and fixes its body bytes; nothing touches Redis.
func (a *API) prepare(req DeliveryRequest) (dispatcher.Delivery, *apiError) {
	if req.Generation == nil {
		return dispatcher.Delivery{}, &apiError{Status: http.StatusBadRequest, Code: "invalid_generation", Message: "generation is required",
			Fields: []payload.FieldError{{Field: "generation", Reason: "is required"}}}
	}
	g, err := payload.Normalize(*req.Generation)
	if err != nil {
		e := &apiError{Status: http.StatusBadRequest, Code: "invalid_generation", Message: err.Error()}
		var ve *payload.ValidationError
		if errors.As(err, &ve) {
			e.Fields = ve.Fields
		}
		return dispatcher.Delivery{}, e
	}
	if req.Webhook == "" {
		return dispatcher.Delivery{}, &apiError{Status: http.StatusBadRequest, Code: "invalid_webhook", Message: "webhook is required",
			Fields: []payload.FieldError{{Field: "webhook", Reason: "is required"}}}
	}
	secret, e := parseSigning(req.Signing)
	if e != nil {
		return dispatcher.Delivery{}, e
	}
	if err := a.Guard.CheckURL(req.Webhook); err != nil {
		return dispatcher.Delivery{}, &apiError{Status: http.StatusUnprocessableEntity, Code: "webhook_refused", Message: err.Error()}
	}
	body, err := payload.Encode(g)
	if err != nil {
		return dispatcher.Delivery{}, &apiError{Status: http.StatusBadRequest, Code: "invalid_generation", Message: err.Error()}
	}
	return dispatcher.Delivery{ID: g.ID, Webhook: req.Webhook, Body: body, Signed: !secret.IsZero(), Secret: secret}, nil
}

// enqueue stores d and maps the outcome to an answer status.
func (a *API) enqueue(ctx context.Context, d dispatcher.Delivery) (int, *apiError) {
	return a.answer(d, a.Service.Enqueue(ctx, d))
}

// answer maps the outcome err of d's enqueue to an answer status, counting
// and logging it.
func (a *API) answer(d dispatcher.Delivery, err error) (int, *apiError) {
	switch {
	case err == nil:
		a.count(dispatcher.ResultAccepted)
		return http.StatusAccepted, nil
	case errors.Is(err, dispatcher.ErrDuplicate):
		a.count(dispatcher.ResultDuplicate)
		return http.StatusConflict, &apiError{Status: http.StatusConflict, Code: "duplicate", Message: "a delivery for generation " + d.ID + " already exists"}
	default:
		a.count(dispatcher.ResultUnavailable)
		a.log().Warn("enqueue failed", "delivery_id", d.ID, "error", err)
		return http.StatusServiceUnavailable, &apiError{Status: http.StatusServiceUnavailable, Code: "unavailable", Message: "queue unavailable or too slow: the delivery may not have been stored; send it again (409 then means it was)"}
	}
}

type acceptedResponse struct {
	ID    string           `json:"id"`
	State dispatcher.State `json:"state"`
}

func (a *API) createDelivery(w http.ResponseWriter, r *http.Request) {
	var req DeliveryRequest
	if e := readJSON(w, r, MaxRequestBytes, &req); e != nil {
		a.count(dispatcher.ResultInvalid)
		writeAPIError(w, e)
		return
	}
	d, e := a.prepare(req)
	if e != nil {
		a.countRefusal(e)
		writeAPIError(w, e)
		return
	}
	status, e := a.enqueue(r.Context(), d)
	if e != nil {
		writeAPIError(w, e)
		return
	}
	w.Header().Set("Location", "/v1/deliveries/"+d.ID)
	writeJSON(w, status, acceptedResponse{ID: d.ID, State: dispatcher.StatePending})
}

// BatchResult is one item's answer in a batch, in request order.
type BatchResult struct {
	ID     string               `json:"id,omitempty"`
	Status int                  `json:"status"`
	State  dispatcher.State     `json:"state,omitempty"`
	Error  string               `json:"error,omitempty"`
	Code   string               `json:"code,omitempty"`
	Fields []payload.FieldError `json:"fields,omitempty"`
}

func (a *API) createBatch(w http.ResponseWriter, r *http.Request) {
	body, e := readBody(w, r, MaxBatchBytes)
	if e != nil {
		writeAPIError(w, e)
		return
	}
	var req batchRequest
	// The envelope is checked strictly (a repeated "deliveries" is refused);
	// its items only for syntax, and one by one below, so that one bad item
	// (a duplicate key, say) never blocks the others. Past MaxBatchItems,
	// items are counted and not decoded.
	if err := strictjson.Decode(body, &req); err != nil {
		var tooMany *strictjson.TooManyItemsError
		if errors.As(err, &tooMany) {
			writeError(w, http.StatusRequestEntityTooLarge, "too_many_items", fmt.Sprintf("at most %d deliveries per batch, got %d", MaxBatchItems, tooMany.Items))
			return
		}
		writeAPIError(w, malformed(err))
		return
	}
	if len(req.Deliveries) == 0 {
		writeError(w, http.StatusBadRequest, "empty_batch", "deliveries must hold at least one item")
		return
	}
	if a.Metrics != nil {
		a.Metrics.ObserveBatch(len(req.Deliveries))
	}
	results := a.enqueueBatch(r.Context(), req.Deliveries)
	writeJSON(w, http.StatusOK, map[string]any{"results": results})
}

// enqueueBatch validates every item, then enqueues the valid ones with bounded
// concurrency. Once Redis fails, items not yet sent are answered 503 without
// trying, so the caller resends exactly those.
func (a *API) enqueueBatch(ctx context.Context, items []json.RawMessage) []BatchResult {
	results := make([]BatchResult, len(items))
	deliveries := make([]dispatcher.Delivery, len(items))
	todo := make([]int, 0, len(items))
	seen := make(map[string]struct{}, len(items))
	for i, raw := range items {
		var req DeliveryRequest
		if err := strictjson.Decode(raw, &req); err != nil {
			a.count(dispatcher.ResultInvalid)
			results[i] = resultFromError(malformed(err))
			results[i].ID = looseID(raw)
			continue
		}
		d, e := a.prepare(req)
		if e != nil {
			a.countRefusal(e)
			results[i] = resultFromError(e)
			if req.Generation != nil {
				results[i].ID = req.Generation.ID
			}
			continue
		}
		if _, dup := seen[d.ID]; dup {
			a.count(dispatcher.ResultDuplicate)
			results[i] = BatchResult{ID: d.ID, Status: http.StatusConflict, Code: "duplicate", Error: "generation " + d.ID + " appears earlier in this batch"}
			continue
		}
		seen[d.ID] = struct{}{}
		deliveries[i] = d
		todo = append(todo, i)
	}

	if bs, ok := a.Service.(BatchService); ok {
		a.enqueueMany(ctx, bs, deliveries, todo, results)
		return results
	}
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		broken bool
		next   = make(chan int)
	)
	workers := min(batchParallelism, len(todo))
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				d := deliveries[i]
				mu.Lock()
				skip := broken
				mu.Unlock()
				if skip {
					a.count(dispatcher.ResultUnavailable)
					results[i] = BatchResult{ID: d.ID, Status: http.StatusServiceUnavailable, Code: "unavailable", Error: "queue unavailable, not stored; resend this item"}
					continue
				}
				status, e := a.enqueue(ctx, d)
				if e != nil {
					results[i] = resultFromError(e)
					results[i].ID = d.ID
					if status == http.StatusServiceUnavailable {
						mu.Lock()
						broken = true
						mu.Unlock()
					}
					continue
				}
				results[i] = BatchResult{ID: d.ID, Status: status, State: dispatcher.StatePending}
			}
		}()
	}
	for _, i := range todo {
		next <- i
	}
	close(next)
	wg.Wait()
	return results
}

// looseID digs the generation id out of an item that failed strict decoding,
// so the caller can tell which item it was; "" when it cannot.
func looseID(raw json.RawMessage) string {
	var item struct {
		Generation struct {
			ID string `json:"id"`
		} `json:"generation"`
	}
	if json.Unmarshal(raw, &item) != nil || len(item.Generation.ID) > payload.MaxIDLength {
		return ""
	}
	return item.Generation.ID
}

func resultFromError(e *apiError) BatchResult {
	return BatchResult{Status: e.Status, Code: e.Code, Error: e.Message, Fields: e.Fields}
}

func (a *API) getDelivery(w http.ResponseWriter, r *http.Request) {
	st, err := a.Service.Status(r.Context(), r.PathValue("id"))
	if err != nil {
		a.writeServiceError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (a *API) redeliverOne(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := a.Service.Redeliver(r.Context(), id); err != nil {
		a.writeServiceError(w, err)
		return
	}
	if a.Metrics != nil {
		a.Metrics.Redelivered(1)
	}
	a.log().Info("redelivery queued", "delivery_id", id)
	writeJSON(w, http.StatusAccepted, acceptedResponse{ID: id, State: dispatcher.StatePending})
}

// deleteDelivery forgets a failed or delivered delivery (409 while it is
// pending or retrying) and answers {"id","deleted":1}.
func (a *API) deleteDelivery(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := a.Service.Delete(r.Context(), id); err != nil {
		a.writeServiceError(w, err)
		return
	}
	a.log().Info("delivery deleted", "delivery_id", id)
	writeJSON(w, http.StatusOK, map[string]any{"id": id, "deleted": 1})
}

func (a *API) checkWebhook(w http.ResponseWriter, r *http.Request) {
	var req struct {
		URL *string `json:"url"`
	}
	if e := readJSON(w, r, MaxRequestBytes, &req); e != nil {
		writeAPIError(w, e)
		return
	}
	if req.URL == nil {
		writeError(w, http.StatusBadRequest, "malformed", "url is required")
		return
	}
	if err := a.Guard.CheckURL(*req.URL); err != nil {
		writeJSON(w, http.StatusUnprocessableEntity, map[string]any{"ok": false, "reason": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"ok": true})
}

func (a *API) writeServiceError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, dispatcher.ErrNotFound):
		writeError(w, http.StatusNotFound, "not_found", "no such delivery")
	case errors.Is(err, dispatcher.ErrInProgress):
		writeError(w, http.StatusConflict, "in_progress", "the delivery is still pending or retrying")
	case errors.Is(err, dispatcher.ErrDuplicate):
		writeError(w, http.StatusConflict, "duplicate", "a delivery with this id is already queued")
	default:
		a.log().Warn("request failed", "error", err)
		writeError(w, http.StatusServiceUnavailable, "unavailable", "queue unavailable; retry later")
	}
}

func (a *API) count(result dispatcher.Result) {
	if a.Metrics != nil {
		a.Metrics.Enqueued(result)
	}
}

func (a *API) countRefusal(e *apiError) {
	if e.Status == http.StatusUnprocessableEntity {
		a.count(dispatcher.ResultRefused)
	} else {
		a.count(dispatcher.ResultInvalid)
	}
}

func (a *API) log() *slog.Logger {
	if a.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return a.Log
}
