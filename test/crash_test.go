package test

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/artificialstudio/webhook-dispatcher/test/testenv"
)

// faultRetries keeps the published nine steps but at 100 ms each, so a task
// that comes back through the retry set is tried again at once.
const faultRetries = "RETRY_SCHEDULE=100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms"

// enqueueOK posts one delivery through d and fails the test unless it is
// answered 202.
func enqueueOK(t *testing.T, d *testenv.Dispatcher, webhook, id string) {
	t.Helper()
	if resp := d.Call(t, http.MethodPost, "/v1/deliveries", testenv.Delivery(webhook, id)); resp.Status != http.StatusAccepted {
		t.Fatalf("enqueue %s: %d %s", id, resp.Status, resp.Body)
	}
}

// attemptLog is the attempt log of a GET /v1/deliveries/{id} answer.
func attemptLog(st map[string]any) []map[string]any {
	raw, _ := st["attempts"].([]any)
	out := make([]map[string]any, 0, len(raw))
	for _, a := range raw {
		m, _ := a.(map[string]any)
		out = append(out, m)
	}
	return out
}

// idsSeen counts the requests per X-Media-Id.
func idsSeen(reqs []testenv.Request) map[string]int {
	out := map[string]int{}
	for _, r := range reqs {
		out[r.Header.Get("X-Media-Id")]++
	}
	return out
}

// logLines counts the lines of logs that contain every one of subs.
func logLines(logs string, subs ...string) int {
	n := 0
	for _, line := range strings.Split(logs, "\n") {
		all := true
		for _, s := range subs {
			all = all && strings.Contains(line, s)
		}
		if all {
			n++
		}
	}
	return n
}

// TestWorkerKilledMidDelivery SIGKILLs a worker process while the receiver
// holds its requests open. A second worker process, already running, takes
// the deliveries over once asynq's lease (30 s) has expired and the
// reconciler (RECONCILE_INTERVAL) hands them back: nothing is lost, the
// receiver sees each delivery twice, and the killed attempt, which left no
// entry in the attempt log, is not spent: the log and the count agree.
func TestWorkerKilledMidDelivery(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for asynq's lease expiry and recoverer: 55–120 s")
	}
	t.Parallel()
	redis := testenv.StartRedis(t, testenv.RedisOptions{})
	var held sync.Map // ids whose first request was held open
	rc := testenv.NewReceiver(t, func(w http.ResponseWriter, r *http.Request, _ int) {
		if _, again := held.LoadOrStore(r.Header.Get("X-Media-Id"), true); !again {
			<-r.Context().Done() // until the worker dies (or the test ends)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	env := []string{"REDIS_URL=" + redis.URL(), "WEBHOOK_CA_FILE=" + rc.CAFile, faultRetries, "DELIVERY_TIMEOUT=30s", "RECONCILE_INTERVAL=2s"}
	api := testenv.StartDispatcher(t, "api", env...)
	w1 := testenv.StartDispatcher(t, "worker", env...)

	const n = 5
	for i := range n {
		enqueueOK(t, api, rc.URL, fmt.Sprintf("crash-%d", i))
	}
	rc.WaitCount(t, n, 15*time.Second) // all n in flight on w1, held open
	w2 := testenv.StartDispatcher(t, "worker", env...)
	time.Sleep(200 * time.Millisecond) // w2 is polling; the tasks are w1's
	if c := rc.Count(); c != n {
		t.Fatalf("receiver got %d requests before the kill, want %d", c, n)
	}
	killed := time.Now()
	w1.Kill()

	reqs := rc.WaitCount(t, 2*n, 150*time.Second)
	first, last := reqs[n].At.Sub(killed), reqs[2*n-1].At.Sub(killed)
	t.Logf("worker SIGKILLed with %d deliveries in flight: the other worker delivered them %.1f–%.1f s after the kill", n, first.Seconds(), last.Seconds())
	seen := idsSeen(reqs)
	for i := range n {
		id := fmt.Sprintf("crash-%d", i)
		if seen[id] != 2 {
			t.Errorf("%s: receiver saw it %d times, want 2 (held, then redelivered)", id, seen[id])
		}
		st := api.WaitState(t, id, "delivered", 10*time.Second)
		log := attemptLog(st)
		// The killed attempt never wrote its entry, so the reconciler handed
		// the task back without spending it: the delivery is attempt 1.
		if len(log) != 1 || log[0]["attempt"] != float64(1) || log[0]["outcome"] != "delivered" || st["attemptCount"] != float64(1) {
			t.Errorf("%s: attemptCount %v, attempt log %v, want one entry: attempt 1, delivered", id, st["attemptCount"], log)
		}
	}
	if got := logLines(w2.Logs(), `"msg":"delivery attempt"`, `"outcome":"delivered"`); got != n {
		t.Errorf("the second worker logged %d delivered attempts, want %d", got, n)
	}
}

// TestWorkerSIGTERMFinishesInFlight stops a worker with SIGTERM while it
// holds four slow (1.5 s) deliveries: it takes no new work, finishes those
// four, and exits 0 well within SHUTDOWN_TIMEOUT; a worker started afterwards
// delivers the rest. Every delivery arrives once, in one attempt.
func TestWorkerSIGTERMFinishesInFlight(t *testing.T) {
	t.Parallel()
	redis := testenv.StartRedis(t, testenv.RedisOptions{})
	rc := testenv.NewReceiver(t, func(w http.ResponseWriter, r *http.Request, _ int) {
		select {
		case <-time.After(1500 * time.Millisecond):
			w.WriteHeader(http.StatusOK)
		case <-r.Context().Done():
		}
	})
	const shutdownTimeout = 6 * time.Second
	env := []string{"REDIS_URL=" + redis.URL(), "WEBHOOK_CA_FILE=" + rc.CAFile, faultRetries,
		"DELIVERY_TIMEOUT=5s", "SHUTDOWN_TIMEOUT=" + shutdownTimeout.String(), "WORKER_CONCURRENCY=4"}
	api := testenv.StartDispatcher(t, "api", env...)
	w1 := testenv.StartDispatcher(t, "worker", env...)

	const n = 10
	for i := range n {
		enqueueOK(t, api, rc.URL, fmt.Sprintf("term-%d", i))
	}
	inFlight := rc.WaitCount(t, 4, 10*time.Second)
	sent := time.Now()
	w1.Signal(syscall.SIGTERM)
	exited, err := w1.Wait(shutdownTimeout + 5*time.Second)
	took := time.Since(sent)
	if !exited {
		t.Fatalf("worker still running %s after SIGTERM", took)
	}
	if err != nil {
		t.Fatalf("worker exited with %v after SIGTERM, want status 0", err)
	}
	t.Logf("SIGTERM with %d deliveries in flight: worker exited 0 after %s (SHUTDOWN_TIMEOUT %s)", len(inFlight), took.Round(time.Millisecond), shutdownTimeout)
	if took > shutdownTimeout {
		t.Errorf("shutdown took %s, more than SHUTDOWN_TIMEOUT %s", took, shutdownTimeout)
	}
	// What was in flight was finished by w1 itself, before it exited.
	byW1 := rc.Requests()
	for _, r := range byW1 {
		id := r.Header.Get("X-Media-Id")
		st := api.WaitState(t, id, "delivered", time.Second)
		if log := attemptLog(st); len(log) != 1 || log[0]["outcome"] != "delivered" {
			t.Errorf("%s (in flight at SIGTERM): attempt log %v, want one delivered attempt", id, log)
		}
	}
	if len(byW1) < 4 || len(byW1) == n {
		t.Fatalf("w1 made %d requests in all, want its 4 in flight and not all %d", len(byW1), n)
	}

	testenv.StartDispatcher(t, "worker", env...)
	reqs := rc.WaitCount(t, n, 20*time.Second)
	for i := range n {
		id := fmt.Sprintf("term-%d", i)
		st := api.WaitState(t, id, "delivered", 10*time.Second)
		if log := attemptLog(st); len(log) != 1 || log[0]["attempt"] != float64(1) || log[0]["outcome"] != "delivered" {
			t.Errorf("%s: attempt log %v, want one attempt, delivered", id, log)
		}
	}
	time.Sleep(300 * time.Millisecond) // a repeat would arrive here
	for id, c := range idsSeen(rc.Requests()) {
		if c != 1 {
			t.Errorf("%s arrived %d times, want 1", id, c)
		}
	}
	if len(reqs) > n {
		t.Errorf("receiver got %d requests for %d deliveries", len(reqs), n)
	}
}

// TestWorkerSIGTERMHandsBackAtShutdownTimeout stops a worker whose deliveries
// outlast SHUTDOWN_TIMEOUT: at the timeout asynq cancels them and puts them
// back at the head of the queue without spending an attempt, and the process
// exits 0. Another worker delivers them; their attempt logs hold one attempt,
// numbered 1. The cut-off POST had reached the receiver, which therefore sees
// each delivery twice (at-least-once).
func TestWorkerSIGTERMHandsBackAtShutdownTimeout(t *testing.T) {
	t.Parallel()
	redis := testenv.StartRedis(t, testenv.RedisOptions{})
	var held sync.Map
	rc := testenv.NewReceiver(t, func(w http.ResponseWriter, r *http.Request, _ int) {
		if _, again := held.LoadOrStore(r.Header.Get("X-Media-Id"), true); !again {
			select {
			case <-time.After(8 * time.Second):
			case <-r.Context().Done():
				return
			}
		}
		w.WriteHeader(http.StatusOK)
	})
	const shutdownTimeout = time.Second
	env := []string{"REDIS_URL=" + redis.URL(), "WEBHOOK_CA_FILE=" + rc.CAFile, faultRetries,
		"DELIVERY_TIMEOUT=10s", "SHUTDOWN_TIMEOUT=" + shutdownTimeout.String()}
	api := testenv.StartDispatcher(t, "api", env...)
	w1 := testenv.StartDispatcher(t, "worker", env...)
	const n = 3
	for i := range n {
		enqueueOK(t, api, rc.URL, fmt.Sprintf("handback-%d", i))
	}
	rc.WaitCount(t, n, 10*time.Second)
	sent := time.Now()
	w1.Signal(syscall.SIGTERM)
	exited, err := w1.Wait(shutdownTimeout + 5*time.Second)
	took := time.Since(sent)
	if !exited || err != nil {
		t.Fatalf("after SIGTERM: exited %v, err %v (after %s), want exit status 0", exited, err, took)
	}
	t.Logf("SIGTERM with %d deliveries outlasting SHUTDOWN_TIMEOUT %s: worker exited 0 after %s", n, shutdownTimeout, took.Round(time.Millisecond))
	if took > shutdownTimeout+3*time.Second {
		t.Errorf("exit took %s, want about SHUTDOWN_TIMEOUT %s", took, shutdownTimeout)
	}
	for i := range n {
		id := fmt.Sprintf("handback-%d", i)
		st := api.WaitState(t, id, "pending", time.Second)
		if log := attemptLog(st); len(log) != 0 {
			t.Errorf("%s: handed back with attempt log %v, want none (no attempt spent)", id, log)
		}
		if got := logLines(w1.Logs(), `"msg":"delivery attempt"`, `"delivery_id":"`+id+`"`); got != 0 {
			t.Errorf("%s: the stopped worker logged %d attempts for it, want 0", id, got)
		}
	}

	testenv.StartDispatcher(t, "worker", env...)
	for i := range n {
		id := fmt.Sprintf("handback-%d", i)
		st := api.WaitState(t, id, "delivered", 15*time.Second)
		if log := attemptLog(st); len(log) != 1 || log[0]["attempt"] != float64(1) || log[0]["outcome"] != "delivered" {
			t.Errorf("%s: attempt log %v, want exactly one: attempt 1, delivered", id, log)
		}
	}
	if seen := idsSeen(rc.Requests()); len(seen) != n {
		t.Errorf("receiver saw %v", seen)
	} else {
		for id, c := range seen {
			if c != 2 {
				t.Errorf("%s arrived %d times, want 2 (cut off, then delivered)", id, c)
			}
		}
	}
}
