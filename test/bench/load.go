package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"

	"github.com/artificialstudio/webhook-dispatcher/test/testenv"
)

var errStopped = errors.New("stopped")

// appendGeneration appends a valid generation object (~300 bytes as sent).
func appendGeneration(b []byte, id string) []byte {
	b = append(b, `{"id":"`...)
	b = append(b, id...)
	b = append(b, `","status":"success","tool":"create-image","type":"image","output":"https://files.artificialstudio.ai/generations/`...)
	b = append(b, id...)
	b = append(b, `.png","thumbnail":"https://files.artificialstudio.ai/thumbnails/`...)
	b = append(b, id...)
	b = append(b, `.jpg","createdAt":"2024-01-15T10:30:00.000Z"}`...)
	return b
}

// appendDelivery appends one POST /v1/deliveries body.
func appendDelivery(b []byte, webhook, id string) []byte {
	b = append(b, `{"webhook":"`...)
	b = append(b, webhook...)
	b = append(b, `","generation":`...)
	b = appendGeneration(b, id)
	return append(b, '}')
}

// batchBody is a POST /v1/deliveries/batch body.
func batchBody(webhooks, ids []string) []byte {
	b := make([]byte, 0, len(ids)*420+32)
	b = append(b, `{"deliveries":[`...)
	for i, id := range ids {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendDelivery(b, webhooks[i], id)
	}
	return append(b, "]}"...)
}

// postJSON sends body to the API and returns the status and answer.
func (e *env) postJSON(ctx context.Context, path string, body []byte) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.api.APIURL+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+testenv.Token)
	resp, err := e.apiClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	return resp.StatusCode, raw, err
}

// enqueueOne posts one delivery; anything but 202 is an error.
func (e *env) enqueueOne(ctx context.Context, webhook, id string) error {
	body := appendDelivery(make([]byte, 0, 512), webhook, id)
	status, raw, err := e.postJSON(ctx, "/v1/deliveries", body)
	if err != nil {
		return err
	}
	if status != http.StatusAccepted {
		return fmt.Errorf("POST /v1/deliveries: %d %s", status, clip(raw))
	}
	return nil
}

// enqueueBatch posts one batch and returns how many items were accepted;
// any item not accepted is an error.
func (e *env) enqueueBatch(ctx context.Context, webhooks, ids []string) (int, error) {
	status, raw, err := e.postJSON(ctx, "/v1/deliveries/batch", batchBody(webhooks, ids))
	if err != nil {
		return 0, err
	}
	if status != http.StatusOK {
		return 0, fmt.Errorf("POST /v1/deliveries/batch: %d %s", status, clip(raw))
	}
	var ans struct {
		Results []struct {
			Status int    `json:"status"`
			Error  string `json:"error"`
		} `json:"results"`
	}
	if err := json.Unmarshal(raw, &ans); err != nil {
		return 0, fmt.Errorf("batch answer: %w", err)
	}
	n := 0
	for _, r := range ans.Results {
		if r.Status == http.StatusAccepted {
			n++
		} else if err == nil {
			err = fmt.Errorf("batch item: %d %s", r.Status, r.Error)
		}
	}
	if len(ans.Results) != len(ids) {
		return n, fmt.Errorf("batch answer has %d results for %d items", len(ans.Results), len(ids))
	}
	return n, err
}

// enqueueSet puts n deliveries through the batch endpoint (500 per request, 4
// at a time). webhook(i) and id(i) name item i.
func (e *env) enqueueSet(ctx context.Context, n int, webhook, id func(i int) string) error {
	const size, conc = 500, 4
	var next atomic.Int64
	errc := make(chan error, conc)
	for range conc {
		go func() {
			for {
				start := int(next.Add(size)) - size
				if start >= n || ctx.Err() != nil {
					errc <- ctx.Err()
					return
				}
				end := min(start+size, n)
				hooks, ids := make([]string, 0, end-start), make([]string, 0, end-start)
				for i := start; i < end; i++ {
					hooks, ids = append(hooks, webhook(i)), append(ids, id(i))
				}
				if _, err := e.enqueueBatch(ctx, hooks, ids); err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	var first error
	for range conc {
		if err := <-errc; err != nil && first == nil {
			first = err
		}
	}
	return first
}

func clip(b []byte) string {
	if len(b) > 300 {
		return string(b[:300]) + "…"
	}
	return string(b)
}

// --- bare asynq ---

// bareTaskType is the baseline's task type.
const bareTaskType = "webhook:deliver"

// barePayload is the baseline's task: where to POST and the exact body, as
// the dispatcher's task carries them.
type barePayload struct {
	ID         string          `json:"id"`
	Webhook    string          `json:"webhook"`
	EnqueuedAt time.Time       `json:"enqueuedAt"`
	Body       json.RawMessage `json:"body"`
}

func bareTask(webhook, id string) *asynq.Task {
	b := make([]byte, 0, 600)
	b = append(b, `{"id":"`...)
	b = append(b, id...)
	b = append(b, `","webhook":"`...)
	b = append(b, webhook...)
	b = append(b, `","enqueuedAt":"`...)
	b = time.Now().UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","body":`...)
	b = appendGeneration(b, id)
	b = append(b, '}')
	return asynq.NewTask(bareTaskType, b)
}

// bareEnqueue enqueues with the client's defaults plus the queue name and
// any extra options.
func bareEnqueue(ctx context.Context, c *asynq.Client, webhook, id string, extra ...asynq.Option) error {
	_, err := c.EnqueueContext(ctx, bareTask(webhook, id), append([]asynq.Option{asynq.Queue(queue)}, extra...)...)
	return err
}

// dispatcherOptions are the task options the dispatcher itself uses (see
// dispatcher.Service): the generation id as task id, nine retries, and a
// 7-day retention of completed tasks, which makes asynq keep each completed
// task instead of deleting it.
func dispatcherOptions(id string) []asynq.Option {
	return []asynq.Option{asynq.TaskID(id), asynq.MaxRetry(9), asynq.Retention(7 * 24 * time.Hour), asynq.Timeout(time.Minute)}
}

// bareSet enqueues n tasks, 16 at a time; opts, when set, adds per-task options.
func bareSet(ctx context.Context, c *asynq.Client, n int, webhook, id func(i int) string, opts ...func(id string) []asynq.Option) error {
	return parallel(ctx, 16, n, func(i int) error {
		tid := id(i)
		var extra []asynq.Option
		for _, o := range opts {
			extra = append(extra, o(tid)...)
		}
		return bareEnqueue(ctx, c, webhook(i), tid, extra...)
	})
}

// parallel runs fn(0..n-1) on conc goroutines and returns the first error.
func parallel(ctx context.Context, conc, n int, fn func(i int) error) error {
	var next atomic.Int64
	var once sync.Once
	var first error
	var wg sync.WaitGroup
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := fn(i); err != nil {
					once.Do(func() { first = err })
					next.Store(int64(n)) // stop the others
					return
				}
			}
		}()
	}
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	return first
}

// receiverClient is a well-configured shared HTTPS client: keep-alive pool
// sized to the concurrency, the receivers' CA trusted, HTTP/1.1 like the
// dispatcher's own client.
func receiverClient(caFile string, concurrency int) (*http.Client, error) {
	pemBytes, err := os.ReadFile(caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		return nil, errors.New("receiver CA: no certificate")
	}
	return &http.Client{
		Transport: &http.Transport{
			TLSClientConfig:     &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool},
			TLSHandshakeTimeout: 5 * time.Second,
			DisableCompression:  true,
			MaxIdleConns:        2 * concurrency,
			MaxIdleConnsPerHost: concurrency,
			IdleConnTimeout:     90 * time.Second,
		},
		Timeout: 5 * time.Second,
	}, nil
}

// bareHandler POSTs each task's body to its webhook: one HTTPS POST per
// task, 200 or an error.
func bareHandler(client *http.Client) asynq.HandlerFunc {
	return func(ctx context.Context, t *asynq.Task) error {
		var p barePayload
		if err := json.Unmarshal(t.Payload(), &p); err != nil {
			return fmt.Errorf("%w: %w", err, asynq.SkipRetry)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.Webhook, bytes.NewReader(p.Body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Media-Id", p.ID)
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("receiver answered %d", resp.StatusCode)
		}
		return nil
	}
}

// quietLogger is asynq's Logger, printing errors only.
type quietLogger struct{}

func (quietLogger) Debug(...any) {}
func (quietLogger) Info(...any)  {}
func (quietLogger) Warn(...any)  {}
func (quietLogger) Error(args ...any) {
	fmt.Fprintln(os.Stderr, append([]any{"bare asynq:"}, args...)...)
}
func (quietLogger) Fatal(args ...any) {
	fmt.Fprintln(os.Stderr, append([]any{"bare asynq fatal:"}, args...)...)
}

// bareServer is the baseline worker: asynq.Server with the dispatcher's
// concurrency and poll settings and the shared client.
type bareServer struct {
	srv    *asynq.Server
	client *http.Client
}

func (e *env) startBare(concurrency int, retryDelay time.Duration) (*bareServer, error) {
	client, err := receiverClient(e.rcv.caFile, concurrency)
	if err != nil {
		return nil, err
	}
	srv := asynq.NewServer(asynq.RedisClientOpt{Addr: e.redisAddr, PoolSize: concurrency + 32}, asynq.Config{
		Concurrency:              concurrency,
		Queues:                   map[string]int{queue: 1},
		TaskCheckInterval:        pollInterval,
		DelayedTaskCheckInterval: forwardInterval,
		RetryDelayFunc:           func(int, error, *asynq.Task) time.Duration { return retryDelay },
		Logger:                   quietLogger{},
		LogLevel:                 asynq.ErrorLevel,
		ShutdownTimeout:          2 * time.Second,
	})
	mux := asynq.NewServeMux()
	mux.Handle(bareTaskType, bareHandler(client))
	if err := srv.Start(mux); err != nil {
		return nil, fmt.Errorf("bare asynq server: %w", err)
	}
	return &bareServer{srv: srv, client: client}, nil
}

func (b *bareServer) stop() {
	b.srv.Shutdown()
	b.client.CloseIdleConnections()
}

// --- open-loop load ---

// paced sends rate items per second for dur, open loop: a pacer releases item
// i at start+i/rate and up to conc senders send them. send gets the item's
// sequence number and stamps its own enqueue time. It returns how many were
// sent and the achieved rate.
func paced(ctx context.Context, rate float64, dur time.Duration, conc int, send func(ctx context.Context, seq int) error) (int, float64, error) {
	total := int(rate * dur.Seconds())
	jobs := make(chan int, total)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var sent atomic.Int64
	var once sync.Once
	var first error
	var wg sync.WaitGroup
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				if err := send(ctx, i); err != nil {
					once.Do(func() { first = err; cancel() })
					return
				}
				sent.Add(1)
			}
		}()
	}
	start := time.Now()
	tick := time.NewTicker(time.Millisecond)
	next := 0
pace:
	for next < total {
		select {
		case <-ctx.Done():
			break pace
		case now := <-tick.C:
			due := min(total, int(now.Sub(start).Seconds()*rate)+1)
			for ; next < due; next++ {
				jobs <- next
			}
		}
	}
	tick.Stop()
	close(jobs)
	wg.Wait()
	elapsed := time.Since(start)
	if first == nil && ctx.Err() != nil {
		first = errStopped
	}
	return int(sent.Load()), float64(sent.Load()) / elapsed.Seconds(), first
}

// closedLoop runs conc goroutines calling op until dur passes; op returns how
// many items it completed. It returns items per second.
func closedLoop(ctx context.Context, conc int, dur time.Duration, op func(ctx context.Context, worker, iter int) (int, error)) (float64, int, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var done atomic.Int64
	var once sync.Once
	var first error
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(dur)
	for w := range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for iter := 0; time.Now().Before(deadline) && ctx.Err() == nil; iter++ {
				n, err := op(ctx, w, iter)
				if err != nil {
					once.Do(func() { first = err; cancel() })
					return
				}
				done.Add(int64(n))
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if first == nil && ctx.Err() != nil {
		first = errStopped
	}
	if first == nil && done.Load() == 0 {
		first = errors.New("nothing completed")
	}
	return float64(done.Load()) / elapsed.Seconds(), int(done.Load()), first
}

// percentile of sorted durations (nearest rank); q in [0,1].
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func sortDurations(d []time.Duration) {
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
}
