package test

import (
	"net/http"
	"testing"

	"github.com/artificialstudio/webhook-dispatcher/test/testenv"
)

// TestReadyzNeedsWrites: a Redis that answers PING but refuses writes
// (min-replicas-to-write with no replica: NOREPLICAS) makes /readyz answer
// 503 on the API and on a worker, and 200 again once writes are allowed.
// Before, /readyz only sent PING and said 200 while every enqueue failed.
func TestReadyzNeedsWrites(t *testing.T) {
	redis := testenv.StartRedis(t, testenv.RedisOptions{})
	env := []string{"REDIS_URL=" + redis.URL()}
	api := testenv.StartDispatcher(t, "api", env...)
	worker := testenv.StartDispatcher(t, "worker", env...)
	urls := map[string]string{"api": api.APIURL + "/readyz", "worker": worker.MetricsURL + "/readyz"}
	for name, u := range urls {
		if resp := testenv.Call(t, http.MethodGet, u, "", nil); resp.Status != http.StatusOK {
			t.Fatalf("%s /readyz with a healthy Redis: %d", name, resp.Status)
		}
	}
	if _, err := redis.Do("CONFIG", "SET", "min-replicas-to-write", "1"); err != nil {
		t.Fatal(err)
	}
	if got, err := redis.Do("PING"); err != nil || got != "PONG" {
		t.Fatalf("PING with writes refused: %v, %v (the fault needs a Redis that still answers PING)", got, err)
	}
	for name, u := range urls {
		if resp := testenv.Call(t, http.MethodGet, u, "", nil); resp.Status != http.StatusServiceUnavailable {
			t.Errorf("%s /readyz with writes refused: %d, want 503", name, resp.Status)
		}
	}
	if _, err := redis.Do("CONFIG", "SET", "min-replicas-to-write", "0"); err != nil {
		t.Fatal(err)
	}
	for name, u := range urls {
		if resp := testenv.Call(t, http.MethodGet, u, "", nil); resp.Status != http.StatusOK {
			t.Errorf("%s /readyz with writes allowed again: %d, want 200", name, resp.Status)
		}
	}
}
