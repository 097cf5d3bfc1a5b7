package test

import (
	"net/http"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/artificialstudio/webhook-dispatcher/test/testenv"
)

// TestDeliveriesCommands drives the operator commands against the same Redis
// as a running dispatcher: list the failed delivery, show its attempts,
// redeliver it by id and in bulk.
func TestDeliveriesCommands(t *testing.T) {
	var healthy atomic.Bool
	redis, rc, d := startStack(t, func(w http.ResponseWriter, _ *http.Request, _ int) {
		if healthy.Load() {
			w.WriteHeader(http.StatusOK)
			return
		}
		w.WriteHeader(http.StatusServiceUnavailable)
	}, fastRetries)
	for _, id := range []string{"cli-1", "cli-2"} {
		if resp := d.Call(t, http.MethodPost, "/v1/deliveries", testenv.Delivery(rc.URL, id)); resp.Status != http.StatusAccepted {
			t.Fatalf("enqueue: %d", resp.Status)
		}
		d.WaitState(t, id, "failed", 30*time.Second)
	}
	cli := func(args ...string) (string, error) {
		cmd := exec.Command(testenv.Binary(t), args...)
		cmd.Env = []string{"REDIS_URL=" + redis.URL()}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}

	out, err := cli("deliveries", "list", "--state", "failed")
	if err != nil || !strings.Contains(out, "cli-1") || !strings.Contains(out, "cli-2") || !strings.Contains(out, "2 shown") {
		t.Fatalf("list: %v\n%s", err, out)
	}
	if !strings.Contains(out, "503") {
		t.Errorf("list does not say why they failed:\n%s", out)
	}
	out, err = cli("deliveries", "show", "cli-1")
	if err != nil || !strings.Contains(out, `"state": "failed"`) || strings.Count(out, `"outcome": "http_status"`) != 10 {
		t.Fatalf("show: %v\n%s", err, out)
	}

	healthy.Store(true)
	out, err = cli("deliveries", "redeliver", "cli-1")
	if err != nil || !strings.Contains(out, "queued cli-1 again") {
		t.Fatalf("redeliver: %v\n%s", err, out)
	}
	d.WaitState(t, "cli-1", "delivered", 10*time.Second)
	out, err = cli("deliveries", "redeliver", "--since", time.Now().Add(-time.Hour).UTC().Format(time.RFC3339))
	if err != nil || !strings.Contains(out, "queued 1 failed deliveries again") {
		t.Fatalf("redeliver --since: %v\n%s", err, out)
	}
	d.WaitState(t, "cli-2", "delivered", 10*time.Second)
	out, err = cli("deliveries", "list")
	if err != nil || !strings.Contains(out, "0 shown") {
		t.Errorf("list after redelivery: %v\n%s", err, out)
	}
	if _, err := cli("deliveries", "show", "nope"); err == nil {
		t.Errorf("show of an unknown id succeeded")
	}
	if out, err := cli("deliveries", "redeliver"); err == nil || !strings.Contains(out, "usage") {
		t.Errorf("redeliver without id or --since: %v %s", err, out)
	}
}
