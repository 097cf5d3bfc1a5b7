package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/artificialstudio/webhook-dispatcher/dispatcher"
)

func newTestStore(tb testing.TB) *Store {
	tb.Helper()
	mr := miniredis.RunT(tb)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	tb.Cleanup(func() { rdb.Close() })
	return New(rdb, time.Hour)
}

func TestStoreListFailedPages(t *testing.T) {
	s := newTestStore(t)
	ctx := context.Background()
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	// Seven records, three sharing one millisecond: pages must neither skip nor repeat.
	for i, ms := range []int{1, 2, 2, 2, 3, 4, 5} {
		r := dispatcher.FailedRecord{Delivery: dispatcher.Delivery{ID: fmt.Sprintf("f%d", i), Webhook: "https://a.example/", Body: []byte(`{}`)},
			FailedAt: base.Add(time.Duration(ms) * time.Millisecond)}
		if err := s.MarkFailed(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	cursor := ""
	for page := 0; page < 10; page++ {
		recs, next, err := s.ListFailed(ctx, cursor, 2)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			got = append(got, r.ID)
		}
		if next == "" {
			break
		}
		cursor = next
	}
	if want := "f6,f5,f4,f3,f2,f1,f0"; strings.Join(got, ",") != want {
		t.Errorf("pages = %s, want %s", strings.Join(got, ","), want)
	}
	if _, _, err := s.ListFailed(ctx, "garbage", 2); !errors.Is(err, dispatcher.ErrBadCursor) {
		t.Errorf("bad cursor: %v", err)
	}
	ids, err := s.FailedSince(ctx, base.Add(3*time.Millisecond))
	if err != nil || strings.Join(ids, ",") != "f4,f5,f6" {
		t.Errorf("FailedSince = %v, %v", ids, err)
	}
	if err := s.ClearFailed(ctx, "f4"); err != nil {
		t.Fatal(err)
	}
	if n, _ := s.CountFailed(ctx); n != 6 {
		t.Errorf("CountFailed after clear = %d, want 6", n)
	}
}

// TestAttemptLogGroupCommit: concurrent appends share pipelines and every one
// is stored before AppendAttempt returns.
func TestAttemptLogGroupCommit(t *testing.T) {
	s := newTestStore(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	for g := range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 5 {
				if err := s.AppendAttempt(ctx, fmt.Sprintf("gc-%d", g), dispatcher.Attempt{Attempt: i + 1, Outcome: dispatcher.OutcomeDelivered}); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	for g := range 64 {
		all, err := s.Attempts(ctx, fmt.Sprintf("gc-%d", g))
		if err != nil || len(all) != 5 || all[4].Attempt != 5 {
			t.Fatalf("gc-%d: %d entries, %v", g, len(all), err)
		}
	}
	s.Close()
	s.Close() // idempotent
	if err := s.AppendAttempt(ctx, "after", dispatcher.Attempt{}); !errors.Is(err, ErrStoreClosed) {
		t.Errorf("append after Close = %v, want ErrStoreClosed", err)
	}
}

func TestAttemptLogBounded(t *testing.T) {
	s := newTestStore(t)
	ctx := context.Background()
	for i := 1; i <= MaxLoggedAttempts+7; i++ {
		if err := s.AppendAttempt(ctx, "b", dispatcher.Attempt{Attempt: i, Outcome: dispatcher.OutcomeTimeout}); err != nil {
			t.Fatal(err)
		}
	}
	all, err := s.Attempts(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != MaxLoggedAttempts || all[0].Attempt != 8 {
		t.Errorf("log holds %d entries from attempt %d, want %d from 8", len(all), all[0].Attempt, MaxLoggedAttempts)
	}
	last, ok, err := s.LastAttempt(ctx, "b")
	if err != nil || !ok || last.Attempt != MaxLoggedAttempts+7 {
		t.Errorf("LastAttempt = %+v %v %v", last, ok, err)
	}
}

// TestAttemptWrittenTwiceCountsOnce: a retried write that Redis had taken
// leaves two identical adjacent entries; the log shows one.
func TestAttemptWrittenTwiceCountsOnce(t *testing.T) {
	s := newTestStore(t)
	ctx := context.Background()
	a := dispatcher.Attempt{Attempt: 1, StartedAt: time.Unix(1, 5), Outcome: dispatcher.OutcomeDelivered}
	for range 2 {
		if err := s.AppendAttempt(ctx, "twice", a); err != nil {
			t.Fatal(err)
		}
	}
	b := a
	b.Attempt = 2
	if err := s.AppendAttempt(ctx, "twice", b); err != nil {
		t.Fatal(err)
	}
	all, err := s.Attempts(ctx, "twice")
	if err != nil || len(all) != 2 || all[0].Attempt != 1 || all[1].Attempt != 2 {
		t.Errorf("Attempts = %+v, %v; want attempts 1 and 2 once each", all, err)
	}
}
