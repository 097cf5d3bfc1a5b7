package test

import (
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/artificialstudio/webhook-dispatcher/test/testenv"
)

// TestPerDestinationCap: with HOST_CONCURRENCY=2 and ten deliveries to one
// slow host, never more than two are in flight to it; deliveries to another
// host are not held up; and waiting for a slot spends no attempt.
func TestPerDestinationCap(t *testing.T) {
	redis := testenv.StartRedis(t, testenv.RedisOptions{})
	var inFlight, maxInFlight atomic.Int64
	slow := testenv.NewReceiver(t, func(w http.ResponseWriter, _ *http.Request, _ int) {
		n := inFlight.Add(1)
		for {
			m := maxInFlight.Load()
			if n <= m || maxInFlight.CompareAndSwap(m, n) {
				break
			}
		}
		time.Sleep(400 * time.Millisecond)
		inFlight.Add(-1)
		w.WriteHeader(http.StatusOK)
	})
	fast := testenv.NewReceiver(t, nil)
	d := testenv.StartDispatcher(t, "all", "REDIS_URL="+redis.URL(), "WEBHOOK_CA_FILE="+slow.CAFile,
		"HOST_CONCURRENCY=2", "WORKER_CONCURRENCY=20")

	// Both destinations have been seen before, as a customer's endpoint
	// usually has: the worker knows how fast each one answers.
	for _, rc := range []*testenv.Receiver{slow, fast} {
		id := "warm-" + strings.TrimPrefix(rc.URL, "https://127.0.0.1:")
		if resp := d.Call(t, http.MethodPost, "/v1/deliveries", testenv.Delivery(rc.URL, id)); resp.Status != http.StatusAccepted {
			t.Fatalf("warm-up: %d", resp.Status)
		}
		d.WaitState(t, id, "delivered", 10*time.Second)
	}
	maxInFlight.Store(0)
	warm := fast.Count()

	start := time.Now()
	for i := range 10 {
		if resp := d.Call(t, http.MethodPost, "/v1/deliveries", testenv.Delivery(slow.URL, fmt.Sprintf("slow-%d", i))); resp.Status != http.StatusAccepted {
			t.Fatalf("enqueue slow: %d", resp.Status)
		}
	}
	for i := range 10 {
		if resp := d.Call(t, http.MethodPost, "/v1/deliveries", testenv.Delivery(fast.URL, fmt.Sprintf("fast-%d", i))); resp.Status != http.StatusAccepted {
			t.Fatalf("enqueue fast: %d", resp.Status)
		}
	}
	fastReqs := fast.WaitCount(t, warm+10, 10*time.Second)
	fastDone := fastReqs[len(fastReqs)-1].At.Sub(start)
	// Ten slow deliveries two at a time take at least 5 × 400 ms; the fast
	// host must not have waited behind them.
	slow.WaitCount(t, 11, 30*time.Second)
	slowDone := time.Since(start)
	t.Logf("fast host done after %s, slow host after %s, max in flight to slow host %d", fastDone, slowDone, maxInFlight.Load())
	if m := maxInFlight.Load(); m > 2 {
		t.Errorf("max in flight to the slow host = %d, want <= 2", m)
	}
	if maxInFlight.Load() < 2 {
		t.Errorf("max in flight = %d: the cap was never reached, the test proves nothing", maxInFlight.Load())
	}
	if fastDone > 1500*time.Millisecond {
		t.Errorf("fast host's deliveries took %s: held up by the slow host", fastDone)
	}
	for i := range 10 {
		st := d.WaitState(t, fmt.Sprintf("slow-%d", i), "delivered", 10*time.Second)
		if n := len(st["attempts"].([]any)); n != 1 {
			t.Errorf("slow-%d: %d attempts logged, want 1 (waiting for a slot spends none)", i, n)
		}
	}
	if got := slow.Count(); got != 11 {
		t.Errorf("slow host got %d POSTs, want 11 (one warm-up)", got)
	}
}
