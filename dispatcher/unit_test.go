package dispatcher

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/artificialstudio/webhook-dispatcher/schedule"
	"github.com/artificialstudio/webhook-dispatcher/urlguard"
)

func TestDecodeStrict(t *testing.T) {
	type req struct {
		A string         `json:"a"`
		B map[string]any `json:"b"`
	}
	tests := []struct {
		name, body, wantErr string
	}{
		{"ok", `{"a":"x","b":{"c":[1,{"d":2}]}}`, ""},
		{"duplicate key", `{"a":"x","a":"y"}`, "duplicate key"},
		{"nested duplicate", `{"a":"x","b":{"c":1,"c":2}}`, "duplicate key"},
		{"same key in sibling objects", `{"b":{"c":{"k":1},"d":{"k":2}}}`, ""},
		{"unknown field", `{"z":1}`, "unknown field"},
		{"wrong type", `{"a":5}`, "a must be a string"},
		{"huge number", `{"a":1e999999}`, "a must be a string"},
		{"truncated", `{"a":"x"`, "unexpected end"},
		{"trailing data", `{"a":"x"} {}`, "after the JSON value"},
		{"invalid UTF-8", "{\"a\":\"\xff\"}", "UTF-8"},
		{"deep", strings.Repeat(`{"b":`, 40) + "1" + strings.Repeat("}", 40), "deeper than"},
		{"empty", ``, "unexpected end"},
		{"not an object", `[]`, "must be an object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var v req
			err := decodeStrict([]byte(tt.body), &v)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("decodeStrict = %v", err)
				}
				return
			}
			if err == nil || !errors.Is(err, errMalformed) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("decodeStrict = %v, want malformed mentioning %q", err, tt.wantErr)
			}
		})
	}
}

func TestTaskRoundTripKeepsBytes(t *testing.T) {
	body := []byte(`{"id":"x","output":"https://a.example/?q=<b>&c=\u2028"}`)
	raw, err := encodeTask(Delivery{ID: "x", Webhook: "https://a.example/h", EnqueuedAt: time.Unix(1, 0), Body: body})
	if err != nil {
		t.Fatal(err)
	}
	d, err := decodeTask(raw)
	if err != nil {
		t.Fatal(err)
	}
	if string(d.Body) != string(body) {
		t.Errorf("body changed in the task:\n%s\n%s", d.Body, body)
	}
	// Strings that need escaping survive too, and the payload is plain JSON.
	odd := Delivery{ID: "a\"b\\c\x01", Webhook: "https://a.example/h?q=\"x\"", EnqueuedAt: time.Unix(2, 5).UTC(), Body: body}
	raw, err = encodeTask(odd)
	if err != nil || !json.Valid(raw) {
		t.Fatalf("encodeTask = %s, %v", raw, err)
	}
	back, err := decodeTask(raw)
	if err != nil || back.ID != odd.ID || back.Webhook != odd.Webhook || !back.EnqueuedAt.Equal(odd.EnqueuedAt) || string(back.Body) != string(body) {
		t.Errorf("round trip = %+v, %v", back, err)
	}
	if _, err := encodeTask(Delivery{ID: "x", Webhook: "https://a.example/", Body: []byte("{not json")}); err == nil {
		t.Error("encodeTask accepted a body that is not JSON")
	}
	if _, err := decodeTask([]byte(`{"id":"x"}`)); !errors.Is(err, ErrBadTask) {
		t.Errorf("decodeTask(incomplete) = %v, want ErrBadTask", err)
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{fmt.Errorf("dial: %w", urlguard.ErrForbidden), OutcomeBlocked},
		{&net.DNSError{Err: "no such host", Name: "x.example", IsNotFound: true}, OutcomeDNS},
		{&net.DNSError{Err: "timeout", Name: "x.example", IsTimeout: true}, OutcomeDNS},
		{context.DeadlineExceeded, OutcomeTimeout},
		{&net.OpError{Op: "dial", Err: os.ErrDeadlineExceeded}, OutcomeTimeout},
		{&tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}, OutcomeTLS},
		{x509.CertificateInvalidError{Reason: x509.Expired}, OutcomeTLS},
		{tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}, OutcomeTLS},
		{tls.AlertError(40), OutcomeTLS},
		{&net.OpError{Op: "dial", Err: errors.New("connection refused")}, OutcomeConnect},
		{errors.New("connection reset by peer"), OutcomeConnect},
	}
	for _, tt := range tests {
		if got := Classify(tt.err); got != tt.want {
			t.Errorf("Classify(%v) = %s, want %s", tt.err, got, tt.want)
		}
	}
}

// TestAttemptErrorsHideURLSecrets: a transport error names the URL; the
// attempt log and the error handed to asynq must not carry its path or query.
func TestAttemptErrorsHideURLSecrets(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // a closed port: the dial is refused
	store := newTestStore(t)
	h := &Handler{
		Client:   NewClient(ClientOptions{Guard: urlguard.New(netip.MustParsePrefix("127.0.0.1/32"))}),
		Store:    store,
		Schedule: schedule.Production,
		Timeout:  time.Second,
	}
	const secret = "s3cr3t-token"
	err = h.ProcessTask(context.Background(), testTask(t, "redact-1", "https://"+addr+"/hooks/"+secret+"?key="+secret))
	if err == nil || strings.Contains(err.Error(), secret) {
		t.Fatalf("ProcessTask error %q carries the secret (or is nil)", err)
	}
	attempts, _ := store.Attempts(context.Background(), "redact-1")
	if len(attempts) != 1 || attempts[0].Outcome != OutcomeConnect {
		t.Fatalf("attempts = %+v, want one connect failure", attempts)
	}
	if strings.Contains(attempts[0].Error, secret) || !strings.Contains(attempts[0].Error, addr) {
		t.Errorf("attempt error %q: want the host, not the secret", attempts[0].Error)
	}
}

func TestRetryDelayAndIsFailure(t *testing.T) {
	f := RetryDelay(schedule.Production)
	for n := range schedule.Steps {
		want, _ := schedule.Delay(n)
		if got := f(n, errors.New("500"), nil); got != want {
			t.Errorf("RetryDelay(%d) = %s, want %s", n, got, want)
		}
	}
	deferred := fmt.Errorf("deliver x: %w", &DeferError{Delay: 7 * time.Second})
	if got := f(3, deferred, nil); got != 7*time.Second {
		t.Errorf("RetryDelay(deferred 7s) = %s, want 7s", got)
	}
	if got := f(3, ErrDeferred, nil); got != MinDefer {
		t.Errorf("RetryDelay(ErrDeferred) = %s, want %s", got, MinDefer)
	}
	if IsFailure(deferred) || !IsFailure(errors.New("500")) {
		t.Error("IsFailure: a deferral must not spend an attempt; anything else must")
	}
}

func TestHostLimiter(t *testing.T) {
	l := NewHostLimiter(2)
	r1, ok1 := l.TryAcquire("a")
	r2, ok2 := l.TryAcquire("a")
	_, ok3 := l.TryAcquire("a")
	rb, okb := l.TryAcquire("b")
	if !ok1 || !ok2 || ok3 || !okb {
		t.Fatalf("TryAcquire = %v %v %v %v, want true true false true", ok1, ok2, ok3, okb)
	}
	if l.InUse("a") != 2 {
		t.Errorf("InUse(a) = %d", l.InUse("a"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := l.Acquire(ctx, "a"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Acquire on a full host = %v, want deadline", err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		r, err := l.Acquire(context.Background(), "a")
		if err != nil {
			t.Error(err)
			return
		}
		r()
	}()
	r1()
	r1() // release is idempotent
	wg.Wait()
	r2()
	rb()
	if l.InUse("a") != 0 || l.InUse("b") != 0 {
		t.Errorf("slots still held after release: a %d, b %d", l.InUse("a"), l.InUse("b"))
	}
	var none *HostLimiter
	if r, ok := none.TryAcquire("a"); !ok {
		t.Error("nil limiter refused")
	} else {
		r()
	}
	if NewHostLimiter(0) != nil {
		t.Error("NewHostLimiter(0) should impose no cap")
	}
}

func TestHostLimiterWorthWaiting(t *testing.T) {
	l := NewHostLimiter(2)
	budget := 250 * time.Millisecond
	if w := l.WorthWaiting("unseen", budget); w != 0 {
		t.Errorf("unseen host: wait %s, want 0", w)
	}
	r, _ := l.TryAcquire("new")
	if w := l.WorthWaiting("new", budget); w <= 0 || w > budget {
		t.Errorf("host whose first attempt just began: wait %s, want (0, %s]", w, budget)
	}
	r()
	l.Observe("fast", 5*time.Millisecond)
	if w := l.WorthWaiting("fast", budget); w != budget {
		t.Errorf("fast host: wait %s, want %s", w, budget)
	}
	l.Observe("dead", 5*time.Second)
	if w := l.WorthWaiting("dead", budget); w != 0 {
		t.Errorf("host whose attempts time out: wait %s, want 0", w)
	}
	for range 20 {
		l.Observe("recovering", time.Millisecond)
	}
	// A bounded number of tasks wait in worker slots for one destination:
	// as many as it has slots before it is measured, four times that after.
	fill := func(host string, waiters int) (stop func()) {
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for range waiters {
			wg.Add(1)
			go func() { defer wg.Done(); _, _ = l.Acquire(ctx, host) }()
		}
		for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
			l.mu.Lock()
			w := l.hosts[host].waiters
			l.mu.Unlock()
			if w == waiters {
				break
			}
		}
		return func() { cancel(); wg.Wait() }
	}
	held1, _ := l.TryAcquire("fast")
	held2, _ := l.TryAcquire("fast")
	stop := fill("fast", 7)
	if w := l.WorthWaiting("fast", budget); w != budget {
		t.Errorf("measured fast host with 7 waiters: wait %s, want %s", w, budget)
	}
	stop()
	stop = fill("fast", 8)
	if w := l.WorthWaiting("fast", budget); w != 0 {
		t.Errorf("measured fast host with 8 waiters (4 × 2 slots): wait %s, want 0", w)
	}
	stop()
	n1, _ := l.TryAcquire("unmeasured")
	n2, _ := l.TryAcquire("unmeasured")
	stop = fill("unmeasured", 2)
	if w := l.WorthWaiting("unmeasured", budget); w != 0 {
		t.Errorf("unmeasured host with 2 waiters: wait %s, want 0", w)
	}
	stop()
	n1()
	n2()
	held1()
	held2()
	if w := l.WorthWaiting("recovering", budget); w != budget {
		t.Errorf("moving average did not follow fast attempts: wait %s", w)
	}
	var none *HostLimiter
	none.Observe("x", time.Second)
	if none.WorthWaiting("x", budget) != 0 {
		t.Error("nil limiter asked to wait")
	}
}

// TestHostLimiterDeferFor: deferrals to a slow destination are spread at the
// rate it drains, bounded, and the booking resets once it has spare slots.
func TestHostLimiterDeferFor(t *testing.T) {
	l := NewHostLimiter(2)
	l.Observe("dead", 5*time.Second) // one slot-time is 5s / 2 slots
	var last time.Duration
	for i := range 10 {
		d := l.DeferFor("dead")
		if i > 1 && d <= last {
			t.Fatalf("deferral %d: %s, not after the previous %s", i, d, last)
		}
		last = d
	}
	if last < 24*time.Second || last > 26*time.Second {
		t.Errorf("10th deferral waits %s, want ~25s (10 × 5s / 2 slots)", last)
	}
	for range 1000 {
		last = l.DeferFor("dead")
	}
	if last != MaxDefer {
		t.Errorf("deferral after a long backlog = %s, want the cap %s", last, MaxDefer)
	}
	l.Observe("fast", time.Millisecond)
	if d := l.DeferFor("fast"); d != MinDefer {
		t.Errorf("fast destination deferral = %s, want %s", d, MinDefer)
	}
	// A destination with a free slot again starts a fresh booking.
	r, ok := l.TryAcquire("dead")
	if !ok {
		t.Fatal("no slot")
	}
	r()
	if d := l.DeferFor("dead"); d > 3*time.Second {
		t.Errorf("deferral after spare capacity = %s, want a fresh booking (~2.5s)", d)
	}
	if d := (*HostLimiter)(nil).DeferFor("x"); d != MinDefer {
		t.Errorf("nil limiter deferral = %s", d)
	}
}

func TestStoreListFailedPages(t *testing.T) {
	s := newTestStore(t)
	ctx := context.Background()
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	// Seven records, three sharing one millisecond: pages must neither skip nor repeat.
	for i, ms := range []int{1, 2, 2, 2, 3, 4, 5} {
		r := FailedRecord{Delivery: Delivery{ID: fmt.Sprintf("f%d", i), Webhook: "https://a.example/", Body: []byte(`{}`)},
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
	if _, _, err := s.ListFailed(ctx, "garbage", 2); !errors.Is(err, ErrBadCursor) {
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
				if err := s.AppendAttempt(ctx, fmt.Sprintf("gc-%d", g), Attempt{Attempt: i + 1, Outcome: OutcomeDelivered}); err != nil {
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
	if err := s.AppendAttempt(ctx, "after", Attempt{}); !errors.Is(err, ErrStoreClosed) {
		t.Errorf("append after Close = %v, want ErrStoreClosed", err)
	}
}

func TestAttemptLogBounded(t *testing.T) {
	s := newTestStore(t)
	ctx := context.Background()
	for i := 1; i <= MaxLoggedAttempts+7; i++ {
		if err := s.AppendAttempt(ctx, "b", Attempt{Attempt: i, Outcome: OutcomeTimeout}); err != nil {
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
