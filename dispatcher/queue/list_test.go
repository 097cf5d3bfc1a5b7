package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/artificialstudio/webhook-dispatcher/dispatcher"
)

// TestListPagesAcrossInspectorPages lists more pending deliveries than one
// Inspector page holds, filtered by host, and checks every match comes back
// exactly once.
func TestListPagesAcrossInspectorPages(t *testing.T) {
	s, _ := newTestService(t)
	ctx := context.Background()
	const n = scanPage*2 + 37
	for i := range n {
		host := "a.example.com"
		if i%3 == 0 {
			host = "B.example.com"
		}
		d := dispatcher.Delivery{ID: fmt.Sprintf("d%04d", i), Webhook: "https://" + host + "/h", Body: json.RawMessage(`{}`)}
		if err := s.Enqueue(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		host  string
		limit int
		want  int
	}{{"", 1000, n}, {"b.example.com.", 100, (n + 2) / 3}, {"A.EXAMPLE.COM", 333, n - (n+2)/3}, {"c.example.com", 50, 0}} {
		seen := map[string]bool{}
		cursor, pages := "", 0
		for {
			list, next, err := s.List(ctx, dispatcher.Filter{State: dispatcher.StatePending, Host: c.host}, cursor, c.limit)
			if err != nil {
				t.Fatal(err)
			}
			pages++
			if len(list) > c.limit {
				t.Fatalf("page of %d over limit %d", len(list), c.limit)
			}
			for _, st := range list {
				if seen[st.ID] {
					t.Fatalf("host %q: %s listed twice", c.host, st.ID)
				}
				seen[st.ID] = true
			}
			if next == "" {
				break
			}
			if pages > 100 {
				t.Fatal("no end of pages")
			}
			cursor = next
		}
		if len(seen) != c.want {
			t.Errorf("host %q limit %d: %d listed over %d pages, want %d", c.host, c.limit, len(seen), pages, c.want)
		}
	}
	for _, bad := range []string{"x", "q0.0.0", "q9.1.0", "q0.1.-1", "q0.1.500", "q0.1"} {
		if _, _, err := s.List(ctx, dispatcher.Filter{State: dispatcher.StatePending}, bad, 10); !errors.Is(err, dispatcher.ErrBadCursor) {
			t.Errorf("cursor %q: %v, want ErrBadCursor", bad, err)
		}
	}
}

// TestListFailedFiltered pages through more failed records than one store
// page, filtered by host and failure time.
func TestListFailedFiltered(t *testing.T) {
	s, _ := newTestService(t)
	ctx := context.Background()
	const n = scanPage + 150
	t0 := time.Date(2024, 1, 15, 0, 0, 0, 0, time.UTC)
	for i := range n {
		host := "a.example.com"
		if i%2 == 0 {
			host = "b.example.com"
		}
		rec := dispatcher.FailedRecord{Delivery: dispatcher.Delivery{ID: fmt.Sprintf("f%04d", i), Webhook: "https://" + host + "/h", Body: json.RawMessage(`{}`)},
			FailedAt: t0.Add(time.Duration(i) * time.Second), LastError: "x"}
		if err := s.Store.MarkFailed(ctx, rec); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		f    dispatcher.Filter
		want int
	}{
		{dispatcher.Filter{Host: "b.example.com"}, (n + 1) / 2},
		{dispatcher.Filter{Since: t0.Add(600 * time.Second)}, n - 600},
		{dispatcher.Filter{Host: "a.example.com", Since: t0.Add(100 * time.Second), Until: t0.Add(200 * time.Second)}, 50},
	} {
		c.f.State = dispatcher.StateFailed
		seen := map[string]bool{}
		cursor := ""
		for pages := 0; ; pages++ {
			list, next, err := s.List(ctx, c.f, cursor, 70)
			if err != nil {
				t.Fatal(err)
			}
			for _, st := range list {
				if seen[st.ID] || !c.f.MatchHost(st.Webhook) || !c.f.MatchTime(*st.FailedAt) {
					t.Fatalf("%+v: %s listed twice or not matching", c.f, st.ID)
				}
				seen[st.ID] = true
			}
			if next == "" || pages > 100 {
				break
			}
			cursor = next
		}
		if len(seen) != c.want {
			t.Errorf("%+v: %d listed, want %d", c.f, len(seen), c.want)
		}
	}
}
