package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/artificialstudio/webhook-dispatcher/dispatcher"
)

// baseFake implements Service only: what a minimal queue service offers.
type baseFake struct {
	failedCalls int
}

func (f *baseFake) Enqueue(context.Context, dispatcher.Delivery) error { return nil }
func (f *baseFake) Status(context.Context, string) (dispatcher.Status, error) {
	return dispatcher.Status{}, dispatcher.ErrNotFound
}
func (f *baseFake) ListFailed(_ context.Context, cursor string, limit int) ([]dispatcher.Status, string, error) {
	f.failedCalls++
	return []dispatcher.Status{{ID: "f1", State: dispatcher.StateFailed}}, "", nil
}
func (f *baseFake) Redeliver(context.Context, string) error { return nil }
func (f *baseFake) RedeliverFailedSince(context.Context, time.Time) (int, error) {
	return 3, nil
}
func (f *baseFake) Delete(context.Context, string) error { return nil }
func (f *baseFake) Ping(context.Context) error           { return nil }

// opsFake also implements Operations and records what it was asked.
type opsFake struct {
	baseFake
	gotFilter dispatcher.Filter
	gotCursor string
	gotLimit  int
	gotDryRun bool
	gotTop    int
	cancelErr map[string]error
	cancelled []string
}

func (f *opsFake) List(_ context.Context, flt dispatcher.Filter, cursor string, limit int) ([]dispatcher.Status, string, error) {
	f.gotFilter, f.gotCursor, f.gotLimit = flt, cursor, limit
	if cursor == "bad" {
		return nil, "", fmt.Errorf("%w: %q", dispatcher.ErrBadCursor, cursor)
	}
	return []dispatcher.Status{{ID: "d1", State: flt.State}}, "next-1", nil
}

func (f *opsFake) Stats(_ context.Context, top int) (dispatcher.QueueStats, error) {
	f.gotTop = top
	return dispatcher.QueueStats{Counts: map[dispatcher.State]int{dispatcher.StatePending: 4},
		TopDestinations: []dispatcher.DestinationBacklog{{Host: "a.example.com", Pending: 4, Backlog: 4}}, Scanned: 4, ScanLimit: 10, Complete: true}, nil
}

func (f *opsFake) Cancel(_ context.Context, id string) error {
	if err := f.cancelErr[id]; err != nil {
		return err
	}
	f.cancelled = append(f.cancelled, id)
	return nil
}

func (f *opsFake) RedeliverFailed(_ context.Context, flt dispatcher.Filter, dryRun bool, _ func(int, int)) (dispatcher.BulkResult, error) {
	f.gotFilter, f.gotDryRun = flt, dryRun
	if dryRun {
		return dispatcher.BulkResult{Matched: 7, DryRun: true}, nil
	}
	return dispatcher.BulkResult{Matched: 7, Done: 6, Skipped: 1}, nil
}

const listToken = "list-test-token"

func serveList(t *testing.T, svc Service, method, target, body string) (int, map[string]any) {
	t.Helper()
	h := (&API{Service: svc, Token: listToken}).Handler()
	req := httptest.NewRequest(method, target, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+listToken)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var out map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		t.Fatalf("%s %s: body %q is not JSON: %v", method, target, rec.Body.String(), err)
	}
	return rec.Code, out
}

func TestListDeliveriesFilters(t *testing.T) {
	f := &opsFake{}
	code, out := serveList(t, f, http.MethodGet, "/v1/deliveries?state=retrying&host=Hooks.Example.com&since=2024-01-15T00:00:00Z&limit=7&cursor=c1", "")
	if code != http.StatusOK || out["nextCursor"] != "next-1" {
		t.Fatalf("list = %d %v", code, out)
	}
	want := dispatcher.Filter{State: dispatcher.StateRetrying, Host: "Hooks.Example.com", Since: time.Date(2024, 1, 15, 0, 0, 0, 0, time.UTC)}
	if !f.gotFilter.Since.Equal(want.Since) || f.gotFilter.State != want.State || f.gotFilter.Host != want.Host || f.gotCursor != "c1" || f.gotLimit != 7 {
		t.Errorf("service asked for %+v cursor %q limit %d, want %+v c1 7", f.gotFilter, f.gotCursor, f.gotLimit, want)
	}
	for _, state := range dispatcher.States() {
		if code, out := serveList(t, f, http.MethodGet, "/v1/deliveries?state="+string(state), ""); code != http.StatusOK || f.gotFilter.State != state {
			t.Errorf("state %s: %d %v (service got %q)", state, code, out, f.gotFilter.State)
		}
	}
}

func TestListDeliveriesRefusesBadQueries(t *testing.T) {
	for _, target := range []string{
		"/v1/deliveries",               // no state
		"/v1/deliveries?state=waiting", // unknown state
		"/v1/deliveries?state=pending&since=yesterday",
		"/v1/deliveries?state=pending&limit=0",
		"/v1/deliveries?state=pending&limit=1001",
		"/v1/deliveries?state=pending&cursor=bad",
	} {
		if code, out := serveList(t, &opsFake{}, http.MethodGet, target, ""); code != http.StatusBadRequest || out["code"] == "" {
			t.Errorf("%s = %d %v, want 400 with a code", target, code, out)
		}
	}
}

func TestListWithoutOperations(t *testing.T) {
	f := &baseFake{}
	if code, out := serveList(t, f, http.MethodGet, "/v1/deliveries?state=failed", ""); code != http.StatusOK || f.failedCalls != 1 {
		t.Errorf("unfiltered failed listing on a plain Service = %d %v (ListFailed calls %d)", code, out, f.failedCalls)
	}
	for _, target := range []string{"/v1/deliveries?state=pending", "/v1/deliveries?state=failed&host=a.example.com", "/v1/queue"} {
		if code, _ := serveList(t, f, http.MethodGet, target, ""); code != http.StatusNotImplemented {
			t.Errorf("%s on a plain Service = %d, want 501", target, code)
		}
	}
}

func TestQueueStatsRoute(t *testing.T) {
	f := &opsFake{}
	code, out := serveList(t, f, http.MethodGet, "/v1/queue?top=3", "")
	if code != http.StatusOK || f.gotTop != 3 {
		t.Fatalf("stats = %d %v, top %d", code, out, f.gotTop)
	}
	counts, _ := out["counts"].(map[string]any)
	if counts["pending"] != float64(4) || out["complete"] != true {
		t.Errorf("stats body = %v", out)
	}
	if code, _ := serveList(t, f, http.MethodGet, "/v1/queue?top=0", ""); code != http.StatusBadRequest {
		t.Errorf("top=0 = %d, want 400", code)
	}
	if code, _ := serveList(t, f, http.MethodPost, "/v1/queue", "{}"); code != http.StatusMethodNotAllowed {
		t.Errorf("POST /v1/queue = %d, want 405", code)
	}
}

func TestCancelRoute(t *testing.T) {
	f := &opsFake{cancelErr: map[string]error{
		"busy": fmt.Errorf("cancel busy: %w (active)", dispatcher.ErrInProgress),
		"gone": fmt.Errorf("cancel gone: %w", dispatcher.ErrNotFound),
		"down": fmt.Errorf("cancel down: %w", dispatcher.ErrUnavailable),
	}}
	code, out := serveList(t, f, http.MethodPost, "/v1/deliveries/d1/cancel", "")
	if code != http.StatusOK || out["state"] != "failed" || out["lastError"] != "cancelled" || len(f.cancelled) != 1 || f.cancelled[0] != "d1" {
		t.Errorf("cancel d1 = %d %v (cancelled %v)", code, out, f.cancelled)
	}
	for id, want := range map[string]int{"busy": http.StatusConflict, "gone": http.StatusNotFound, "down": http.StatusServiceUnavailable} {
		if code, out := serveList(t, f, http.MethodPost, "/v1/deliveries/"+id+"/cancel", ""); code != want {
			t.Errorf("cancel %s = %d %v, want %d", id, code, out, want)
		}
	}
	if code, _ := serveList(t, f, http.MethodGet, "/v1/deliveries/d1/cancel", ""); code != http.StatusMethodNotAllowed {
		t.Errorf("GET cancel = %d, want 405", code)
	}
}

func TestRedeliverBulkFilters(t *testing.T) {
	f := &opsFake{}
	code, out := serveList(t, f, http.MethodPost, "/v1/deliveries/redeliver",
		`{"state":"failed","host":"a.example.com","since":"2024-01-15T00:00:00Z","until":"2024-01-16T00:00:00Z","dryRun":true}`)
	if code != http.StatusOK || out["matched"] != float64(7) || out["queued"] != float64(0) || out["dryRun"] != true || !f.gotDryRun {
		t.Fatalf("dry run = %d %v", code, out)
	}
	if f.gotFilter.Host != "a.example.com" || !f.gotFilter.Until.Equal(time.Date(2024, 1, 16, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("filter = %+v", f.gotFilter)
	}
	code, out = serveList(t, f, http.MethodPost, "/v1/deliveries/redeliver", `{"state":"failed"}`)
	if code != http.StatusOK || out["queued"] != float64(6) || out["skipped"] != float64(1) || f.gotDryRun {
		t.Errorf("real run = %d %v", code, out)
	}
	for _, body := range []string{`{"state":"pending"}`, `{"state":"failed","until":"soon"}`, `{"state":"failed","hosts":"a.example.com"}`} {
		if code, out := serveList(t, f, http.MethodPost, "/v1/deliveries/redeliver", body); code != http.StatusBadRequest {
			t.Errorf("%s = %d %v, want 400", body, code, out)
		}
	}
	// A plain Service still redelivers by since, and refuses what it cannot do.
	if code, out := serveList(t, &baseFake{}, http.MethodPost, "/v1/deliveries/redeliver", `{"state":"failed"}`); code != http.StatusOK || out["queued"] != float64(3) {
		t.Errorf("plain service = %d %v", code, out)
	}
	if code, _ := serveList(t, &baseFake{}, http.MethodPost, "/v1/deliveries/redeliver", `{"state":"failed","dryRun":true}`); code != http.StatusNotImplemented {
		t.Errorf("plain service dry run = %d, want 501", code)
	}
}
