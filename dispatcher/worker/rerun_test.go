package worker

import (
	"context"
	"crypto/x509"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/artificialstudio/webhook-dispatcher/dispatcher"
	"github.com/artificialstudio/webhook-dispatcher/schedule"
	"github.com/artificialstudio/webhook-dispatcher/urlguard"
)

// TestRerunOfDeliveredCycleDoesNotPost: asynq runs a task again whose
// attempt already delivered (a refused completion write, an expired lease).
// The run completes without a POST; a redelivery, a new cycle with a new
// EnqueuedAt, POSTs again.
func TestRerunOfDeliveredCycleDoesNotPost(t *testing.T) {
	srv, hits := tlsReceiver(t, func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	st := newTestStore(t)
	h := &Handler{
		Client:   NewClient(ClientOptions{Guard: urlguard.New(netip.MustParsePrefix("127.0.0.1/32")), RootCAs: poolOf(srv)}),
		Store:    st,
		Schedule: schedule.Production,
		Timeout:  2 * time.Second,
	}
	ctx := context.Background()
	cycle1 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	task := func(enqueued time.Time) dispatcher.Delivery {
		return dispatcher.Delivery{ID: "rerun-1", Webhook: srv.URL + "/hook", EnqueuedAt: enqueued, Body: []byte(`{"id":"rerun-1"}`)}
	}
	run := func(d dispatcher.Delivery) error {
		tk, err := dispatcher.NewTask(d)
		if err != nil {
			t.Fatal(err)
		}
		return h.ProcessTask(ctx, tk)
	}
	if err := run(task(cycle1)); err != nil || hits.Load() != 1 {
		t.Fatalf("first run: %v, %d POSTs, want nil and 1", err, hits.Load())
	}
	if err := run(task(cycle1)); err != nil || hits.Load() != 1 {
		t.Fatalf("rerun of the delivered cycle: %v, %d POSTs, want nil and still 1", err, hits.Load())
	}
	log, _ := st.Attempts(ctx, "rerun-1")
	if len(log) != 1 || !log[0].Cycle.Equal(cycle1) {
		t.Fatalf("attempt log %+v, want the one attempt of cycle %s", log, cycle1)
	}
	// A redelivery is a new cycle: it must POST.
	if err := run(task(cycle1.Add(time.Hour))); err != nil || hits.Load() != 2 {
		t.Fatalf("redelivery: %v, %d POSTs, want nil and 2", err, hits.Load())
	}
}

func poolOf(srv interface{ Client() *http.Client }) *x509.CertPool {
	return srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
}
