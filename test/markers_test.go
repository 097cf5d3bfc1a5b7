package test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/artificialstudio/webhook-dispatcher/test/testenv"
)

// TestDeliveredAfterRetention delivers, redelivers within RETENTION, then
// drops asynq's completed task the way asynq's janitor does once RETENTION
// has passed: GET still answers delivered with the latest deliveredAt (from
// the delivered marker), a resend answers 409 (the id is reserved for
// DEDUPE_WINDOW), and a redelivery answers 404 (the body went with the task).
func TestDeliveredAfterRetention(t *testing.T) {
	t.Parallel()
	redis := testenv.StartRedis(t, testenv.RedisOptions{})
	rc := testenv.NewReceiver(t, testenv.Status(http.StatusOK))
	env := []string{"REDIS_URL=" + redis.URL(), "WEBHOOK_CA_FILE=" + rc.CAFile}
	api := testenv.StartDispatcher(t, "api", env...)
	testenv.StartDispatcher(t, "worker", env...)
	const id = "507f1f77bcf86cd799439011"
	enqueueOK(t, api, rc.URL, id)
	first := api.WaitState(t, id, "delivered", 30*time.Second)

	// Within RETENTION the completed task has the body: redelivery works.
	if resp := api.Call(t, http.MethodPost, "/v1/deliveries/"+id+"/redeliver", nil); resp.Status != http.StatusAccepted {
		t.Fatalf("redeliver within RETENTION: %d %s, want 202", resp.Status, resp.Body)
	}
	rc.WaitCount(t, 2, 30*time.Second)
	var inAsynq map[string]any
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		inAsynq = api.WaitState(t, id, "delivered", 30*time.Second)
		if inAsynq["deliveredAt"] != first["deliveredAt"] {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("deliveredAt still %v after the redelivery", first["deliveredAt"])
		}
	}

	// RETENTION passes: asynq's janitor deletes the task hash and its entry.
	if got := redisDo(t, redis, "ZREM", asynqKey("completed"), id); got != ":1" {
		t.Fatalf("ZREM completed: %s, want :1 (the task was not in asynq's completed set)", got)
	}
	redisDo(t, redis, "DEL", asynqKey("t:"+id))

	var st map[string]any
	if resp := api.Call(t, http.MethodGet, "/v1/deliveries/"+id, nil); resp.Status != http.StatusOK {
		t.Fatalf("GET after retention: %d %s, want 200", resp.Status, resp.Body)
	} else {
		resp.JSON(t, &st)
	}
	// The marker keeps deliveredAt in milliseconds.
	if st["state"] != "delivered" || msOf(t, st["deliveredAt"]) != msOf(t, inAsynq["deliveredAt"]) {
		t.Errorf("GET after retention: state %v deliveredAt %v, want delivered %v (to the millisecond)", st["state"], st["deliveredAt"], inAsynq["deliveredAt"])
	}
	if st["attemptCount"] != float64(2) {
		t.Errorf("attemptCount %v, want 2 (the log outlives RETENTION: ATTEMPT_LOG_RETENTION)", st["attemptCount"])
	}
	if resp := api.Call(t, http.MethodPost, "/v1/deliveries", testenv.Delivery(rc.URL, id)); resp.Status != http.StatusConflict {
		t.Errorf("resend after retention: %d %s, want 409", resp.Status, resp.Body)
	}
	if resp := api.Call(t, http.MethodPost, "/v1/deliveries/"+id+"/redeliver", nil); resp.Status != http.StatusNotFound {
		t.Errorf("redeliver after retention: %d %s, want 404", resp.Status, resp.Body)
	}
	if got := redisDo(t, redis, "KEYS", "webhook:delivered:*"); !strings.Contains(got, "webhook:delivered:") {
		t.Errorf("no delivered marker hash in Redis: %s", got)
	}
	if resp := api.Call(t, http.MethodGet, "/v1/deliveries/never-sent", nil); resp.Status != http.StatusNotFound {
		t.Errorf("GET of an unknown id: %d, want 404", resp.Status)
	}
	if n := rc.Count(); n != 2 {
		t.Errorf("receiver got %d POSTs, want 2", n)
	}
}

// msOf parses an RFC 3339 time of a GET answer to Unix milliseconds.
func msOf(t *testing.T, v any) int64 {
	t.Helper()
	s, _ := v.(string)
	at, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatalf("time %v: %v", v, err)
	}
	return at.UnixMilli()
}
