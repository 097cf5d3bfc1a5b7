package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/artificialstudio/webhook-dispatcher/dispatcher"
)

// batchFake is a Service with EnqueueBatch: it records each call's ids and
// answers by id prefix ("dup-" duplicate, "down-" unavailable, else stored).
type batchFake struct {
	*fakeService
	mu    sync.Mutex
	calls [][]string
}

func (f *batchFake) EnqueueBatch(_ context.Context, ds []dispatcher.Delivery) []error {
	ids := make([]string, len(ds))
	errs := make([]error, len(ds))
	for i, d := range ds {
		ids[i] = d.ID
		switch {
		case strings.HasPrefix(d.ID, "dup-"):
			errs[i] = fmt.Errorf("enqueue %s: %w", d.ID, dispatcher.ErrDuplicate)
		case strings.HasPrefix(d.ID, "down-"):
			errs[i] = fmt.Errorf("enqueue %s: %w", d.ID, dispatcher.ErrUnavailable)
		}
	}
	f.mu.Lock()
	f.calls = append(f.calls, ids)
	f.mu.Unlock()
	return errs
}

// TestBatchUsesEnqueueBatch: a Service with EnqueueBatch gets the batch's
// valid, first-seen items in one call, in request order (no Enqueue per
// item), and each answer maps to the item's status as a single enqueue's
// would: 202, 409, 503; invalid and repeated items are answered without it.
func TestBatchUsesEnqueueBatch(t *testing.T) {
	svc := &batchFake{fakeService: newFakeService()}
	svc.enqueueErr = func(id string) error {
		t.Errorf("Enqueue(%s) called: the batch should go through EnqueueBatch", id)
		return nil
	}
	srv := newTestAPI(t, svc)
	item := func(id string) json.RawMessage {
		return json.RawMessage(`{"webhook":"https://127.0.0.1:8443/h","generation":` + generationJSON(id, "", "") + `}`)
	}
	items := []json.RawMessage{item("ok-1"), item("dup-1"), json.RawMessage(`{"webhook":5}`), item("down-1"), item("ok-1"), item("ok-2")}
	resp := call(t, srv.URL, http.MethodPost, "/v1/deliveries/batch", map[string]any{"deliveries": items})
	var out struct{ Results []BatchResult }
	if err := json.Unmarshal(resp.Body, &out); err != nil || resp.Status != http.StatusOK || len(out.Results) != len(items) {
		t.Fatalf("batch: %d %s (%v)", resp.Status, resp.Body, err)
	}
	want := []struct {
		id     string
		status int
	}{{"ok-1", 202}, {"dup-1", 409}, {"", 400}, {"down-1", 503}, {"ok-1", 409}, {"ok-2", 202}}
	for i, w := range want {
		if r := out.Results[i]; r.ID != w.id || r.Status != w.status {
			t.Errorf("item %d = %+v, want id %q status %d", i, r, w.id, w.status)
		}
	}
	if len(svc.calls) != 1 || !slices.Equal(svc.calls[0], []string{"ok-1", "dup-1", "down-1", "ok-2"}) {
		t.Errorf("EnqueueBatch calls = %v, want one with [ok-1 dup-1 down-1 ok-2]", svc.calls)
	}
}
