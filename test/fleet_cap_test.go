package test

import (
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/artificialstudio/webhook-dispatcher/test/testenv"
)

// TestFleetCapTwoWorkers: two worker processes on one Redis Cluster share
// HOST_CONCURRENCY=10 for a slow destination (the default fleet scope): the
// receiver never sees more than 10 requests at once. One worker is then
// SIGKILLed holding slots; the other gets to 10 again once the dead one's
// leases (DELIVERY_TIMEOUT + 5 s) run out, not after asynq's ~1 minute.
func TestFleetCapTwoWorkers(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Redis Cluster and three dispatcher processes")
	}
	c := testenv.StartCluster(t, 3, 0)
	const cap, hold = 10, 700 * time.Millisecond
	var (
		mu       sync.Mutex
		inFlight int
		maxSeen  int
		atCap    []time.Time // when in-flight reached the cap
	)
	rc := testenv.NewReceiver(t, func(w http.ResponseWriter, _ *http.Request, _ int) {
		mu.Lock()
		inFlight++
		maxSeen = max(maxSeen, inFlight)
		if inFlight == cap {
			atCap = append(atCap, time.Now())
		}
		mu.Unlock()
		time.Sleep(hold)
		mu.Lock()
		inFlight--
		mu.Unlock()
		w.WriteHeader(http.StatusOK)
	})
	env := []string{"REDIS_URL=" + c.URL(), "QUEUE_SHARDS=6", "WEBHOOK_CA_FILE=" + rc.CAFile,
		"HOST_CONCURRENCY=" + fmt.Sprint(cap), "WORKER_CONCURRENCY=30", "DELIVERY_TIMEOUT=3s"}
	lease := 3*time.Second + 5*time.Second
	api := testenv.StartDispatcher(t, "api", env...)
	a := testenv.StartDispatcher(t, "worker", env...)
	testenv.StartDispatcher(t, "worker", env...)

	const n = 300
	for i := range n {
		id := fmt.Sprintf("cap-%d", i)
		if resp := api.Call(t, http.MethodPost, "/v1/deliveries", testenv.Delivery(rc.URL, id)); resp.Status != http.StatusAccepted {
			t.Fatalf("enqueue %s: %d %s", id, resp.Status, resp.Body)
		}
	}
	rc.WaitCount(t, 40, 60*time.Second)
	a.Kill()
	killedAt := time.Now()
	deadline := killedAt.Add(lease + 10*time.Second)
	var back time.Time
	for back.IsZero() && time.Now().Before(deadline) {
		mu.Lock()
		for _, at := range atCap {
			if at.After(killedAt.Add(hold)) { // after the dead worker's last requests ended
				back = at
				break
			}
		}
		mu.Unlock()
		time.Sleep(50 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if maxSeen > cap {
		t.Errorf("receiver saw %d requests at once, cap %d", maxSeen, cap)
	}
	if maxSeen < cap {
		t.Errorf("receiver saw at most %d at once: the cap of %d was never used in full", maxSeen, cap)
	}
	if back.IsZero() {
		t.Fatalf("after SIGKILL of one worker, the survivor never reached %d in flight within lease %s + 10 s", cap, lease)
	}
	t.Logf("in flight back at the cap %s after the SIGKILL (lease %s)", back.Sub(killedAt).Round(100*time.Millisecond), lease)
}
