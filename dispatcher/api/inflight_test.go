package api

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/artificialstudio/webhook-dispatcher/dispatcher"
	"github.com/artificialstudio/webhook-dispatcher/urlguard"
)

// gateService is a Service whose Enqueue blocks until open is closed,
// counting the enqueues waiting there.
type gateService struct {
	open    chan struct{}
	waiting atomic.Int64
}

func (s *gateService) Enqueue(ctx context.Context, _ dispatcher.Delivery) error {
	s.waiting.Add(1)
	defer s.waiting.Add(-1)
	select {
	case <-s.open:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *gateService) Delete(context.Context, string) error { return nil }

func (s *gateService) Status(context.Context, string) (dispatcher.Status, error) {
	return dispatcher.Status{}, dispatcher.ErrNotFound
}

func (s *gateService) ListFailed(context.Context, string, int) ([]dispatcher.Status, string, error) {
	return nil, "", nil
}
func (s *gateService) Redeliver(context.Context, string) error { return nil }
func (s *gateService) RedeliverFailedSince(context.Context, time.Time) (int, error) {
	return 0, nil
}
func (s *gateService) Ping(context.Context) error { return nil }

// bigBatch is a one-item batch padded with JSON whitespace to size bytes.
func bigBatch(id string, size int) string {
	item := `{"webhook":"https://127.0.0.1/hook","generation":{"id":"` + id + `","status":"success","tool":"create-image","type":"image","output":"https://files.artificialstudio.ai/a.png","thumbnail":"https://files.artificialstudio.ai/a.jpg","createdAt":"2024-01-15T10:30:00.000Z"}}`
	b := `{"deliveries":[` + item + `]}`
	return b + strings.Repeat(" ", size-len(b))
}

// TestInflightBodyBytesCapped: 20 concurrent ~1 MB batches against a 4 MiB
// cap while enqueueing is stalled: 4 are held, the other 16 are answered 503
// with Retry-After at once, reads are not refused, and once the held ones are
// answered the budget is free again.
func TestInflightBodyBytesCapped(t *testing.T) {
	svc := &gateService{open: make(chan struct{})}
	a := &API{
		Service:          svc,
		Guard:            urlguard.New(netip.MustParsePrefix("127.0.0.1/32")),
		Token:            "tok",
		MaxInflightBytes: 4 << 20,
	}
	srv := httptest.NewServer(a.Handler())
	t.Cleanup(srv.Close)
	post := func(body string) (*http.Response, error) {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v1/deliveries/batch", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer tok")
		req.Header.Set("Content-Type", "application/json")
		return srv.Client().Do(req)
	}
	const size = 1_000_000
	const n = 20
	var mu sync.Mutex
	codes := map[int]int{}
	retryAfter := map[string]int{}
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := post(bigBatch("507f1f77bcf86cd7994390"+string(rune('a'+i)), size))
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			mu.Lock()
			codes[resp.StatusCode]++
			if resp.StatusCode == http.StatusServiceUnavailable {
				retryAfter[resp.Header.Get("Retry-After")]++
			}
			mu.Unlock()
		}()
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		refused := codes[http.StatusServiceUnavailable]
		mu.Unlock()
		if refused+int(svc.waiting.Load()) == n || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := svc.waiting.Load(); got != 4 {
		t.Errorf("%d batches held at once, want 4 (4 MiB / 1 MB)", got)
	}
	// A read needs no body budget.
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/v1/deliveries/x", nil)
	req.Header.Set("Authorization", "Bearer tok")
	if resp, err := srv.Client().Do(req); err != nil || resp.StatusCode == http.StatusServiceUnavailable {
		t.Errorf("GET while the cap is reached: %v %v, want an answer other than 503", resp, err)
	} else {
		resp.Body.Close()
	}
	close(svc.open)
	wg.Wait()
	if codes[http.StatusOK] != 4 || codes[http.StatusServiceUnavailable] != n-4 {
		t.Errorf("answers %v, want 4 x 200 and %d x 503", codes, n-4)
	}
	if retryAfter["1"] != n-4 {
		t.Errorf("Retry-After on the 503s: %v, want \"1\" on each", retryAfter)
	}
	resp, err := post(bigBatch("507f1f77bcf86cd799439099", size))
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("after the held batches were answered: %v %v, want 200", resp, err)
	}
	resp.Body.Close()
}

// TestInflightReservation: what a request reserves.
func TestInflightReservation(t *testing.T) {
	for _, tt := range []struct {
		name   string
		method string
		body   string
		length int64
		want   int64
	}{
		{"get", http.MethodGet, "", 0, 0},
		{"known length", http.MethodPost, "abc", 3, 3},
		{"chunked", http.MethodPost, "abc", -1, MaxBatchBytes},
		{"declared over the largest body", http.MethodPost, "abc", 10 << 20, MaxBatchBytes},
	} {
		r := httptest.NewRequest(tt.method, "/", strings.NewReader(tt.body))
		r.ContentLength = tt.length
		if tt.body == "" {
			r.Body = http.NoBody
		}
		if got := reservation(r); got != tt.want {
			t.Errorf("%s: reservation = %d, want %d", tt.name, got, tt.want)
		}
	}
}
